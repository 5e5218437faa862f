"""Real-instrument sources, self-contained models and `marl.encode`, end to end on tiny data."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import marl
from marl import sources
from marl.config import Config
from marl.data import load_dataset
from marl.encode import frame

TINY = ["--n-train-pairs", "256", "--n-test-pairs", "96", "--n-val-pairs", "96", "--batch-size", "64",
        "--hidden", "32", "--latent-dim", "4", "--probe-train-clips", "256", "--umap", "false"]


def cli(module, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def nsynth_dir(tmp_path_factory):
    """A tiny NSynth-layout folder written by the soundfont source: 3 instruments x 3 pitches."""
    out = tmp_path_factory.mktemp("nsynth")
    proc = cli("marl.sources", "export-nsynth", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def soundfont_run(tmp_path_factory):
    """`python -m marl.train --source soundfont --epochs 2 --out R` with its own data cache."""
    root = tmp_path_factory.mktemp("sf")
    cache = root / "cache"
    proc = cli("marl.train", "--source", "soundfont", "--epochs", "2", *TINY, "--out", str(root / "R"),
               env={"MARL_CACHE": str(cache)})
    return root, proc


def test_train_on_soundfont_notes_end_to_end(soundfont_run):
    root, proc = soundfont_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((root / "R" / "metrics.json").read_text())
    assert 0 <= metrics["probe/test/mlp/shared/timbre"] <= 1
    # the cached dataset holds all 8 programs and 21 pitches, with the factors the issue names
    data = load_dataset(Config.from_dict({"source": "soundfont", "n_train_pairs": 256, "n_test_pairs": 96,
                                          "n_val_pairs": 96, "batch_size": 64}), root / "cache")
    assert data.n_classes == {"timbre": len(sources.PROGRAMS), "pitch": 21}
    f = data.train.factors
    assert {"timbre", "family", "pitch", "pitch_class", "velocity", "offset"} <= set(f)
    assert (f["timbre"][:, 0] == f["timbre"][:, 1]).all() and (f["pitch"][:, 0] != f["pitch"][:, 1]).all()
    assert set(f["timbre"].unique().tolist()) == set(range(len(sources.PROGRAMS)))
    assert f["pitch"].min() >= 60 and f["pitch"].max() <= 80
    assert set(f["velocity"].unique().tolist()) <= set(sources.VELOCITIES)


def test_a_silent_or_clipped_render_is_an_error_not_an_example(monkeypatch):
    from marl.errors import UserError

    for wave, word in ((torch.zeros(48000), "silent"), (torch.ones(48000), "clipped")):
        monkeypatch.setattr(sources, "decode_wav", lambda data, rate, w=wave: w)
        monkeypatch.setitem(sys.modules, "midirenderer", type(sys)("midirenderer"))
        sys.modules["midirenderer"].render_wave_from = lambda font, midi: b""
        with pytest.raises(UserError, match=word):
            sources.render_note(b"", 0, 60, 100, 48000)


def test_nsynth_layout_trains_end_to_end(nsynth_dir, tmp_path):
    examples = json.loads((nsynth_dir / "examples.json").read_text())
    assert len(examples) == 9 and len(list((nsynth_dir / "audio").glob("*.wav"))) == 9
    proc = cli("marl.train", "--source", "nsynth", "--data-dir", str(nsynth_dir), "--epochs", "1", *TINY,
               "--out", str(tmp_path / "R"), env={"MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "R" / "model.pt").exists()


def write_folder(root: Path, nsynth_dir: Path, rows=None, columns=("file", "instrument", "pitch")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for wav in (nsynth_dir / "audio").glob("*.wav"):
        shutil.copy(wav, root / wav.name)
    if rows is None:  # the export's names: <family>_synthetic_<instrument>-<pitch>-<velocity>.wav
        rows = [(w.name, w.stem.split("-")[0], int(w.stem.split("-")[1])) for w in sorted(root.glob("*.wav"))]
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return root


def test_a_labelled_folder_of_ones_own_samples_forms_pairs(nsynth_dir, tmp_path):
    folder = write_folder(tmp_path / "mine", nsynth_dir)
    cfg = Config.from_dict({"source": "folder", "data_dir": str(folder), "n_train_pairs": 64,
                            "n_test_pairs": 16, "n_val_pairs": 16, "batch_size": 16})
    data = load_dataset(cfg, tmp_path / "cache")
    assert data.n_classes == {"timbre": 3, "pitch": 3}
    f = data.train.factors
    assert (f["timbre"][:, 0] == f["timbre"][:, 1]).all() and (f["pitch"][:, 0] != f["pitch"][:, 1]).all()
    assert data.train.x.shape == (64, 2, cfg.n_mels, cfg.n_frames) and torch.isfinite(data.train.x).all()
    # a changed folder is not served from the old cache
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text().replace(",60\n", ",61\n"))
    assert load_dataset(cfg, tmp_path / "cache").n_classes == {"timbre": 3, "pitch": 2}


@pytest.mark.parametrize("case, needle", [
    ("missing_folder", "no such folder"),
    ("no_csv", "labels.csv does not exist"),
    ("bad_columns", "missing column(s) pitch"),
    ("unreadable", "not readable audio"),
    ("too_few", "too few notes to form pairs"),
])
def test_bad_folder_input_is_one_line_exit_2(nsynth_dir, tmp_path, case, needle):
    folder = tmp_path / "mine"
    if case == "no_csv":
        folder.mkdir()
    elif case == "bad_columns":
        write_folder(folder, nsynth_dir, rows=[("a.wav", "x")], columns=("file", "timbre"))
    elif case == "unreadable":
        write_folder(folder, nsynth_dir)
        (folder / "broken.wav").write_bytes(b"RIFF not really")
        with open(folder / "labels.csv", "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(("broken.wav", "x", 60))
    elif case == "too_few":
        write_folder(folder, nsynth_dir, rows=[("keyboard_synthetic_000-060-100.wav", "piano", 60),
                                               ("mallet_synthetic_001-061-100.wav", "vibes", 61)])
    proc = cli("marl.train", "--source", "folder", "--data-dir", str(folder), "--epochs", "1", *TINY,
               "--out", str(tmp_path / "R"), env={"MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "R").exists()


def test_framing_cuts_whole_clips_and_pads_only_the_tail():
    clips, starts = frame(torch.arange(25.0), 10, 10)
    assert starts == [0, 10, 20] and clips.shape == (3, 10)
    assert clips[2].tolist() == [20, 21, 22, 23, 24, 0, 0, 0, 0, 0]
    assert frame(torch.arange(10.0), 10, 10)[1] == [0]
    short, starts = frame(torch.ones(4), 10, 10)
    assert starts == [0] and short.sum() == 4
    assert frame(torch.arange(30.0), 10, 5)[1] == [0, 5, 10, 15, 20]


def test_encode_writes_one_row_per_clip_from_a_model_without_its_data_cache(soundfont_run, nsynth_dir, tmp_path):
    root, proc = soundfont_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(root / "cache")  # the model must stand alone
    model = marl.load_model(root / "R" / "model.pt")
    assert not model.training and model.cfg.source == "soundfont" and model.input_mean.shape == (model.cfg.n_mels, 1)
    wav = nsynth_dir / "audio" / "keyboard_synthetic_000-060-100.wav"  # 4 s at 16 kHz
    out = tmp_path / "z.parquet"
    enc = cli("marl.encode", str(root / "R" / "model.pt"), str(wav), str(wav), "--out", str(out))
    assert enc.returncode == 0, enc.stderr[-2000:]
    z = pd.read_parquet(out)
    clip = (model.cfg.n_frames - 1) * model.cfg.hop_length / model.cfg.sample_rate
    per_file = -(-4.0 // clip)  # ceil: whole clips, the tail padded
    assert len(z) == 2 * per_file and set(z["file"]) == {str(wav)}
    assert z["offset"].iloc[1] == pytest.approx(clip)
    d = model.cfg.latent_dim
    assert [f"private_{i}" for i in range(d)] + [f"shared_{i}" for i in range(d)] == list(z.columns[2:])
    assert not (root / "cache").exists()
    bad = cli("marl.encode", str(root / "R" / "model.pt"), str(nsynth_dir / "examples.json"), "--out", str(out))
    assert bad.returncode == 2 and "not readable audio" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_sweep_over_sources_finds_relative_data_folders_from_inside_ray_trials(nsynth_dir, tmp_path):
    """Ray runs trials in their own folders: a relative --data-dir must still name the folder."""
    shutil.copytree(nsynth_dir, tmp_path / "notes")
    space = tmp_path / "src.yaml"
    space.write_text("space:\n  source: {grid: [synth, nsynth]}\nbase: {n_train_pairs: 256, n_test_pairs: 96, "
                     "n_val_pairs: 96, batch_size: 64, hidden: 32, latent_dim: 4, probe_train_clips: 256, "
                     "n_frames: 8, epochs: 1, umap: false}\n")
    proc = subprocess.run([sys.executable, "-m", "marl.sweep", "--space", str(space), "--set", "data_dir=notes",
                           "--storage", str(tmp_path / "r"), "--num-cpus", "2"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "r" / "src" / "results.parquet")
    assert sorted(df["config/source"]) == ["nsynth", "synth"] and set(df["status"]) == {"ok"}
    assert (df["config/data_dir"] == str(tmp_path / "notes")).all()
