import numpy as np
import torch

from marl import data, features, synth
from marl.config import Config


def test_generation_is_deterministic_and_seed_dependent(tiny_cfg):
    a, b = data.generate(tiny_cfg), data.generate(tiny_cfg)
    assert torch.equal(a.train.x, b.train.x)
    assert torch.equal(a.test.factors["frequency"], b.test.factors["frequency"])
    c = data.generate(tiny_cfg.replace(data_seed=1))
    assert not torch.equal(a.train.x, c.train.x)


def test_pairs_share_timbre_and_differ_in_pitch_class(tiny_cfg):
    d = data.generate(tiny_cfg)
    f = d.train.factors
    assert (f["timbre"][:, 0] == f["timbre"][:, 1]).all()
    assert (f["pitch_class"][:, 0] != f["pitch_class"][:, 1]).all()
    assert set(f["timbre"].unique().tolist()) == {0, 1, 2, 3}
    cls = synth.pitch_class(f["frequency"], tiny_cfg.f_min, tiny_cfg.f_max, tiny_cfg.n_pitch_classes)
    assert torch.equal(cls, f["pitch_class"])
    assert (f["frequency"] >= tiny_cfg.f_min).all() and (f["frequency"] <= tiny_cfg.f_max).all()


def test_training_statistics_normalise_the_training_split(tiny_cfg):
    d = data.generate(tiny_cfg)
    per_bin = d.train.x.mean(dim=(0, 1, 3))
    assert per_bin.abs().max() < 1e-4
    assert d.test.x.shape == (tiny_cfg.n_test_pairs, 2, tiny_cfg.n_mels, tiny_cfg.n_frames)


def _spectrum(wave, sr):
    mag = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / sr), mag


def test_spectral_peak_rises_with_frequency():
    cfg = Config()
    freqs = torch.tensor([220.0, 440.0, 1000.0, 3000.0, 5900.0], dtype=torch.float64)
    n = len(freqs)
    waves = synth.synthesize(torch.full((n,), 2), freqs, torch.ones(n, dtype=torch.float64),
                            torch.zeros(n, dtype=torch.float64), 8192, cfg.sample_rate)
    peaks = []
    for w in waves:
        hz, mag = _spectrum(w, cfg.sample_rate)
        peaks.append(hz[mag.argmax()])
    assert np.all(np.diff(peaks) > 0)
    assert np.allclose(peaks, freqs.numpy(), rtol=0.02)
    # log-mel peak bin rises too
    mel = features.log_mel(waves, cfg).mean(-1).argmax(-1)
    assert (mel[1:] > mel[:-1]).all()


def test_timbres_differ_in_harmonic_content_at_every_pitch_class():
    cfg = Config()
    width = (np.log(cfg.f_max) - np.log(cfg.f_min)) / cfg.n_pitch_classes
    centres = np.exp(np.log(cfg.f_min) + (np.arange(cfg.n_pitch_classes) + 0.5) * width)
    for f0 in [*centres, cfg.f_max * 0.999]:  # including the very top pitch
        waves = synth.synthesize(torch.arange(4), torch.full((4,), f0, dtype=torch.float64),
                                torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
                                16384, cfg.sample_rate)
        ratios = []
        for w in waves:
            hz, mag = _spectrum(w, cfg.sample_rate)
            at = lambda k: mag[np.argmin(np.abs(hz - k * f0))]  # noqa: E731
            ratios.append((at(2) / at(1), at(3) / at(1)))
        ratios = np.array(ratios)
        sine, tri, saw, sq = ratios
        assert sine.max() < 0.01  # no harmonics
        assert tri[0] < 0.01 and 0.08 < tri[1] < 0.14  # odd only, 1/9
        assert 0.4 < saw[0] < 0.6 and 0.25 < saw[1] < 0.4  # all, 1/k
        assert sq[0] < 0.01 and 0.28 < sq[1] < 0.4  # odd only, 1/3
        # distinguishable: pairwise distance of harmonic profiles
        d = np.linalg.norm(ratios[:, None] - ratios[None], axis=-1)
        assert d[np.triu_indices(4, 1)].min() > 0.05


def test_nothing_is_synthesised_above_nyquist():
    sr = 44100
    wave = synth.synthesize(torch.tensor([2]), torch.tensor([5000.0], dtype=torch.float64),
                           torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 16384, sr)[0]
    hz, mag = _spectrum(wave, sr)
    # sawtooth at 5 kHz: harmonics 1..4 only (20 kHz < 22.05 kHz); an aliased 5th would land at 19.1 kHz
    alias = mag[np.argmin(np.abs(hz - (sr - 25000)))]
    assert alias < 1e-3 * mag.max()


def test_cache_is_reused_and_survives_a_race(tiny_cfg, tmp_path):
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: data.load_dataset(tiny_cfg, tmp_path), range(2))
    assert torch.equal(a.train.x, b.train.x)
    files = list(tmp_path.glob("data-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    c = data.load_dataset(tiny_cfg, tmp_path)
    assert files[0].stat().st_mtime_ns == mtime and torch.equal(c.test.x, a.test.x)
    assert data.cache_path(tiny_cfg.replace(gamma=5.0), tmp_path) == files[0]  # loss fields don't key data
    assert data.cache_path(tiny_cfg.replace(data_seed=3), tmp_path) != files[0]
