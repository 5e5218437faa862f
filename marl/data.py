"""Pairs of normalised log-mels that share a timbre and differ in pitch class; the synthetic
source (spec §1) here, the real-instrument sources in marl/sources.py (`cfg.source`).

A pair is two clips of one waveform type at two frequencies that fall in different pitch
classes. Synthesis is band-limited: only harmonics below Nyquist are summed, so a square wave
at 6 kHz is its fundamental plus its 3rd harmonic, never an aliased mess. Everything is a pure
function of the data fields of the config and is cached on disk under a hash of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio

from marl.config import Config
from marl.names import FACTOR_OF_TASK

TIMBRES = ("sine", "triangle", "sawtooth", "square")
SPLITS = ("train", "test", "val")
CACHE_VERSION = 5  # bump when synthesis changes, so old caches are not reused


def harmonic_amplitudes(timbre: int, n_harmonics: int) -> torch.Tensor:
    """Fourier-series amplitudes of harmonics 1..n_harmonics for a unit-amplitude waveform."""
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)
    odd = (k % 2 == 1).double()
    name = TIMBRES[timbre]
    if name == "sine":
        return (k == 1).double()
    if name == "triangle":
        return odd * (8 / math.pi**2) * torch.where((k - 1) % 4 == 0, 1.0, -1.0) / k**2
    if name == "sawtooth":
        return (2 / math.pi) * torch.where(k % 2 == 1, 1.0, -1.0) / k
    return odd * (4 / math.pi) / k  # square


def synthesize(timbre: torch.Tensor, frequency: torch.Tensor, amplitude: torch.Tensor,
               phase: torch.Tensor, n_samples: int, sample_rate: int,
               chunk: int = 512) -> torch.Tensor:
    """Band-limited waveforms, shape (n, n_samples).

    Clips are processed in chunks sorted by timbre and frequency so that each chunk sums only
    the harmonics its lowest tone needs (a 6 kHz tone has 3 below Nyquist, a 200 Hz one 110).
    """
    n = timbre.numel()
    out = torch.empty(n, n_samples)
    t = torch.arange(n_samples, dtype=torch.float64) / sample_rate
    nyquist = sample_rate / 2
    order = torch.argsort(timbre.double() * 1e6 + frequency.double())
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        f = frequency[idx].double()
        theta = 2 * math.pi * f[:, None] * t[None, :] + phase[idx].double()[:, None]
        wave = torch.zeros(len(idx), n_samples, dtype=torch.float64)
        for tb in timbre[idx].unique().tolist():
            rows = (timbre[idx] == tb).nonzero().squeeze(1)
            n_harm = int(nyquist // float(f[rows].min()))
            amps = harmonic_amplitudes(tb, n_harm)
            theta_rows, f_rows = theta[rows], f[rows]
            acc = torch.zeros_like(theta_rows)
            for k in range(1, n_harm + 1):
                if amps[k - 1] == 0:
                    continue
                below = (k * f_rows < nyquist).double()[:, None]  # band limit per clip
                acc += amps[k - 1] * below * torch.sin(k * theta_rows)
            wave[rows] = acc
        out[idx] = (amplitude[idx].double()[:, None] * wave).float()
    return out


def pitch_class(frequency: torch.Tensor, f_min: float, f_max: float, n_classes: int) -> torch.Tensor:
    """Equal-width bins in log-frequency."""
    pos = (torch.log(frequency) - math.log(f_min)) / (math.log(f_max) - math.log(f_min))
    return (pos * n_classes).floor().clamp(0, n_classes - 1).long()


@dataclass
class Split:
    """Pairs of log-mels `x` (n, 2, n_mels, n_frames) and their factors, each (n, 2)."""

    x: torch.Tensor
    factors: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.x.shape[0]

    def clips(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every clip on its own: x (2n, n_mels, n_frames), factors (2n,), pair-major order."""
        return (self.x.reshape(-1, *self.x.shape[2:]),
                {k: v.reshape(-1) for k, v in self.factors.items()})

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.factors)


@dataclass
class Dataset:
    """Three independently drawn splits: models and probes fit on `train`, model and probe selection use
    `val`, reported figures come from `test`."""

    train: Split
    test: Split
    val: Split
    mean: torch.Tensor  # per-mel-bin statistics of the raw log-mels of the training split
    std: torch.Tensor
    n_classes: dict[str, int]  # per task (timbre, pitch): how many classes the labels take
    # per task: the factor its probes read ("family" for timbre when test instruments are unseen,
    # "" when the task cannot be scored across splits); marl.splits.timbre_factor
    tasks: dict[str, str] = dataclasses.field(default_factory=lambda: dict(FACTOR_OF_TASK))
    midi: list[int] = dataclasses.field(default_factory=list)  # MIDI pitch of each pitch class (real sources)
    skipped: tuple[str, ...] = ()  # notes a source left out, and why
    timbre_names: tuple[str, ...] = TIMBRES  # the name of each timbre class (instrument for real sources)


def sample_factors(n_pairs: int, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Factors for n pairs: one timbre per pair, two distinct pitch classes, uniform log-f in class."""
    timbre = torch.randint(len(TIMBRES), (n_pairs,), generator=gen)
    c1 = torch.randint(cfg.n_pitch_classes, (n_pairs,), generator=gen)
    shift = torch.randint(1, cfg.n_pitch_classes, (n_pairs,), generator=gen)
    classes = torch.stack([c1, (c1 + shift) % cfg.n_pitch_classes], dim=1)
    width = (math.log(cfg.f_max) - math.log(cfg.f_min)) / cfg.n_pitch_classes
    log_f = math.log(cfg.f_min) + (classes + torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64)) * width
    frequency = torch.exp(log_f)
    return {
        "timbre": timbre[:, None].expand(n_pairs, 2).clone(),
        "frequency": frequency,
        # recomputed from the frequency so the label is exactly what the binning rule says
        "pitch_class": pitch_class(frequency, cfg.f_min, cfg.f_max, cfg.n_pitch_classes),
        "amplitude": cfg.amp_min + (cfg.amp_max - cfg.amp_min) * torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64),
        "phase": 2 * math.pi * torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64),
    }


def log_mel(waves: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Log-mel spectrograms in decibels, (n, n_mels, n_frames), floor 80 dB below each clip's peak."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)
    out = []
    for chunk in waves.split(1024):
        out.append(to_db(mel(chunk)[:, None])[:, 0])  # (n, 1, m, t): top_db per clip, not per batch
    return torch.cat(out)


def n_samples_for(cfg: Config) -> int:
    return (cfg.n_frames - 1) * cfg.hop_length  # centred STFT gives exactly n_frames frames


def build_split(n_pairs: int, cfg: Config, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    factors = sample_factors(n_pairs, cfg, gen)
    flat = {k: v.reshape(-1) for k, v in factors.items()}
    waves = synthesize(flat["timbre"], flat["frequency"], flat["amplitude"], flat["phase"],
                       n_samples_for(cfg), cfg.sample_rate)
    spec = log_mel(waves, cfg).reshape(n_pairs, 2, cfg.n_mels, cfg.n_frames)
    return spec, factors


def generate(cfg: Config) -> Dataset:
    """Build the dataset from scratch (deterministic in the data fields of cfg)."""
    gen = torch.Generator().manual_seed(cfg.data_seed)
    sizes = (("train", cfg.n_train_pairs), ("test", cfg.n_test_pairs), ("val", cfg.n_val_pairs))
    extra: dict = {}
    if cfg.source == "synth":
        # test before val: train and test stay those of the two-split datasets of CACHE_VERSION 1
        raw = {name: build_split(n, cfg, gen) for name, n in sizes}
        n_classes = {"timbre": len(TIMBRES), "pitch": cfg.n_pitch_classes}
    else:
        from marl.sources import note_bank, pair_split
        from marl.splits import SPLIT_IDS, note_splits, timbre_factor

        bank = note_bank(cfg)
        bank.factors["note"] = torch.arange(len(bank.waves))  # which note a clip was cut from
        split = bank.split if bank.split is not None else note_splits(bank.factors, cfg.split_by, gen)
        raw = {name: pair_split(bank.subset(split == SPLIT_IDS[name]), n, cfg, gen, name) for name, n in sizes}
        n_classes = dict(bank.n_classes)
        tasks = {**FACTOR_OF_TASK, "timbre": timbre_factor(bank.factors, split)}
        if tasks["timbre"] == "family":
            n_classes["timbre"] = int(bank.factors["family"].max()) + 1
        extra = {"tasks": tasks, "midi": bank.midi, "skipped": bank.skipped, "timbre_names": bank.timbre_names}
    train_x = raw["train"][0]
    mean = train_x.mean(dim=(0, 1, 3))[:, None]
    std = train_x.std(dim=(0, 1, 3))[:, None].clamp_min(1e-6)
    splits = {name: Split((x - mean) / std, f) for name, (x, f) in raw.items()}
    return Dataset(**splits, mean=mean, std=std, n_classes=n_classes, **extra)


def cache_dir() -> Path:
    return Path(os.environ.get("MARL_CACHE", Path.home() / ".cache" / "marl"))


def cache_path(cfg: Config, directory: Path | None = None) -> Path:
    from marl.sources import fingerprint

    key = json.dumps({"version": CACHE_VERSION, **cfg.data_dict(), "files": fingerprint(cfg)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"data-{digest}.pt"


def load_dataset(cfg: Config, directory: Path | None = None) -> Dataset:
    """The dataset for cfg, generated once and cached; safe when processes race.

    A file lock makes concurrent trials on one node wait for the first builder instead of
    building it again; the file is written to a temporary name and renamed into place, so a
    reader never sees half a file.
    """
    from filelock import FileLock

    path = cache_path(cfg, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            state = torch.load(path, weights_only=True)
        else:
            data = generate(cfg)
            state = {"mean": data.mean, "std": data.std, "n_classes": data.n_classes,
                     "factors": list(data.train.factors), "tasks": data.tasks, "midi": data.midi,
                     "skipped": list(data.skipped), "timbre_names": list(data.timbre_names)}
            for name in SPLITS:
                split = getattr(data, name)
                state.update({f"{name}_x": split.x, **{f"{name}_{k}": v for k, v in split.factors.items()}})
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            torch.save(state, tmp)
            os.replace(tmp, path)
    splits = {name: Split(state[f"{name}_x"], {k: state[f"{name}_{k}"] for k in state["factors"]})
              for name in SPLITS}
    return Dataset(**splits, mean=state["mean"], std=state["std"], n_classes=state["n_classes"],
                   tasks=state["tasks"], midi=state["midi"], skipped=tuple(state["skipped"]),
                   timbre_names=tuple(state["timbre_names"]))
