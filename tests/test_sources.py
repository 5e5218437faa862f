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
from marl import soundfont, sources
from marl.config import Config
from marl.data import load_dataset
from marl.encode import frame
from tests.conftest import in_process, tiny_flags

TINY = tiny_flags("epochs", "n_frames")  # each test sets its epochs; real notes keep the default frames


def assert_one_line_exit_2(proc, needle: str, out: Path) -> None:
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def cli(module, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# two NSynth families, three instruments each: keyboard (GM 0-2: pianos), guitar (GM 24-26)
FIXTURE_PROGRAMS = "0,1,2,24,25,26"
EXPORT = ["--programs", FIXTURE_PROGRAMS, "--velocities", "64,100,127"]


@pytest.fixture(scope="module")
def nsynth_dir(tmp_path_factory):
    """A tiny NSynth-layout folder written by the soundfont source: 6 instruments x 3 pitches x 3
    velocities."""
    out = tmp_path_factory.mktemp("nsynth")
    proc = cli("marl.sources", "export-nsynth", str(out), *EXPORT)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def nsynth_splits_dir(tmp_path_factory):
    """The same notes in NSynth's own split folders, no instrument in two."""
    out = tmp_path_factory.mktemp("nsynth_splits")
    proc = cli("marl.sources", "export-nsynth", str(out), "--splits", *EXPORT)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def soundfont_run(tmp_path_factory):
    """`python -m marl.train --source soundfont --epochs 2 --out R` with its own data cache."""
    root = tmp_path_factory.mktemp("sf")
    cache = root / "cache"
    proc = cli("marl.train", "--source", "soundfont", "--epochs", "2", *TINY, "--out", str(root / "R"),
               "--velocities", "64,96,127", env={"MARL_CACHE": str(cache)})
    return root, proc


def test_train_on_soundfont_notes_end_to_end(soundfont_run):
    root, proc = soundfont_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((root / "R" / "metrics.json").read_text())
    assert 0 <= metrics["probe/test/mlp/shared/timbre"] <= 1
    # the cached dataset holds all 8 programs and 21 pitches, with the factors the issue names
    data = load_dataset(Config.from_dict({"source": "soundfont", "n_train_pairs": 256, "n_test_pairs": 96,
                                          "n_val_pairs": 96, "batch_size": 64, "velocities": "64,96,127"}),
                        root / "cache")
    assert data.n_classes == {"timbre": len(soundfont.PROGRAMS), "pitch": 21}
    f = data.train.factors
    assert {"timbre", "family", "pitch", "pitch_class", "velocity", "offset"} <= set(f)
    assert (f["timbre"][:, 0] == f["timbre"][:, 1]).all() and (f["pitch"][:, 0] != f["pitch"][:, 1]).all()
    assert set(f["timbre"].unique().tolist()) == set(range(len(soundfont.PROGRAMS)))
    assert f["pitch"].min() >= 60 and f["pitch"].max() <= 80
    assert set(f["velocity"].unique().tolist()) <= {64, 96, 127}
    assert set(pd.read_parquet(root / "R" / "latents.parquet")["timbre_name"]) == set(soundfont.program_names(soundfont.PROGRAMS))
    assert "chroma accuracy" in proc.stdout and metrics["chroma/test/mlp/private"] + 1e-6 >= metrics["probe/test/mlp/private/pitch"]


def test_nsynth_layout_trains_end_to_end(nsynth_dir, tmp_path):
    examples = json.loads((nsynth_dir / "examples.json").read_text())
    assert len(examples) == 54 and len(list((nsynth_dir / "audio").glob("*.wav"))) == 54
    proc = cli("marl.train", "--source", "nsynth", "--data-dir", str(nsynth_dir), "--epochs", "1", *TINY,
               "--out", str(tmp_path / "R"), env={"MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "R" / "model.pt").exists()
    # class names travel with the data: each test clip is labelled with its instrument's name
    latents = pd.read_parquet(tmp_path / "R" / "latents.parquet")
    instruments = sorted({e["instrument_str"] for e in examples.values()})
    assert all(instruments[t] == name for t, name in zip(latents["timbre"], latents["timbre_name"]))
    from marl.plots import timbre_names

    assert timbre_names(latents) == tuple(instruments[:len(timbre_names(latents))])


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
    assert data.n_classes == {"timbre": 6, "pitch": 3}
    f = data.train.factors
    assert (f["timbre"][:, 0] == f["timbre"][:, 1]).all() and (f["pitch"][:, 0] != f["pitch"][:, 1]).all()
    assert data.train.x.shape == (64, 2, cfg.n_mels, cfg.n_frames) and torch.isfinite(data.train.x).all()
    # a changed folder is not served from the old cache
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text().replace(",60\n", ",61\n"))
    assert load_dataset(cfg, tmp_path / "cache").n_classes == {"timbre": 6, "pitch": 2}


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
                                               ("keyboard_synthetic_001-061-100.wav", "e-piano", 61)])
    proc = in_process("marl.train", "--source", "folder", "--data-dir", folder, "--epochs", "1", *TINY,
                      "--out", tmp_path / "R")
    assert_one_line_exit_2(proc, needle, tmp_path / "R")


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


# ---------------------------------------------------------------- any GM font; disjoint splits
def test_a_note_is_unusable_only_when_silent_beside_the_fonts_level_or_clipped():
    rms = torch.tensor([0.1, 0.1, 0.1, 0.1, 2e-4, 5e-5, 0.0])  # median of the audible ones: 0.1
    peak = torch.tensor([0.5, 0.5, 0.5, 1.0, 1e-3, 1e-4, 0.0])
    # -54 dB is kept (an absolute 1e-3 threshold would have dropped it); -66 dB and zeros are silent
    assert soundfont.note_problems(rms, peak) == ["", "", "", "clipped", "", "silent", "silent"]
    assert soundfont.note_problems(torch.zeros(2), torch.zeros(2)) == ["silent", "silent"]


@pytest.fixture(scope="module")
def fixture_font(tmp_path_factory):
    """Program 0 loud, 1 quiet (-32 dB: some notes below the old absolute threshold), 2 truly silent below
    velocity 65, 3 silent above MIDI 61."""
    from tests.sf2 import Voice
    from tests.sf2 import soundfont as sf2

    path = tmp_path_factory.mktemp("font") / "fixture.sf2"
    path.write_bytes(sf2([Voice(), Voice(attenuation_cb=800), Voice(velocities=(65, 127)), Voice(keys=(0, 61))]))
    return path


def font_cfg(font, **changes):
    return Config.from_dict({"source": "soundfont", "soundfont": str(font), "n_pitch_classes": 3,
                             "velocities": "64,96,127", "n_train_pairs": 64, "n_test_pairs": 16,
                             "n_val_pairs": 16, "batch_size": 16, **changes})


def test_a_font_with_a_quiet_and_a_silent_note_skips_and_names_the_silent_one(fixture_font):
    from marl.errors import UserError

    bank = soundfont.soundfont_bank(font_cfg(fixture_font, programs="0,1,2"), progress=False)
    assert len(bank.waves) == 3 * 3 * 3 - 3  # program 2's velocity-64 notes only
    assert bank.skipped == tuple(f"program 2 pitch {p} velocity 64: silent" for p in (60, 61, 62))
    quiet = bank.factors["timbre"] == 1
    assert quiet.sum() == 9 and min(float(bank.waves[i].pow(2).mean().sqrt()) for i in quiet.nonzero()[:, 0]) < 1e-3
    with pytest.raises(UserError, match="program 3 renders no usable note at pitch 62"):
        soundfont.soundfont_bank(font_cfg(fixture_font, programs="0,3"), progress=False)


def clip_notes(split, key=("note",)) -> set:
    return {tuple(row) for row in torch.stack([split.factors[k].reshape(-1) for k in key], 1).tolist()}


def test_no_note_feeds_two_splits_for_any_source(fixture_font, nsynth_dir, nsynth_splits_dir, tmp_path):
    from marl.data import generate

    small = {"n_train_pairs": 128, "n_test_pairs": 32, "n_val_pairs": 32, "batch_size": 16}
    cfgs = {"soundfont": font_cfg(fixture_font, programs="0,1,2"),
            "nsynth": Config.from_dict({"source": "nsynth", "data_dir": str(nsynth_dir), **small}),
            "nsynth-splits": Config.from_dict({"source": "nsynth", "data_dir": str(nsynth_splits_dir), **small}),
            "folder": Config.from_dict({"source": "folder", "data_dir": str(write_folder(tmp_path / "f", nsynth_dir)),
                                        **small})}
    for name, cfg in cfgs.items():
        data = generate(cfg)
        notes = {s: clip_notes(getattr(data, s)) for s in ("train", "test", "val")}
        assert all(notes.values()), name
        assert not (notes["train"] & notes["test"] or notes["train"] & notes["val"] or notes["test"] & notes["val"]), name
    # a soundfont note is its (program, pitch, velocity): the same triple never recurs across splits
    data = generate(cfgs["soundfont"])
    triples = [clip_notes(getattr(data, s), ("timbre", "pitch", "velocity")) for s in ("train", "test", "val")]
    assert not (triples[0] & triples[1] or triples[0] & triples[2] or triples[1] & triples[2])
    # synthetic clips are drawn afresh: no (waveform, frequency) recurs across splits
    synth = generate(Config.from_dict({"n_train_pairs": 256, "n_test_pairs": 64, "n_val_pairs": 64, "batch_size": 16}))
    tones = [clip_notes(getattr(synth, s), ("timbre", "frequency")) for s in ("train", "test", "val")]
    assert not (tones[0] & tones[1] or tones[0] & tones[2] or tones[1] & tones[2])


def test_dealing_holds_out_a_fifth_of_each_group_and_pools_small_ones():
    from marl.splits import deal

    keys = ["a"] * 10 + ["b"] * 3 + ["c"] * 2 + ["d"] * 1 + ["e"]
    split = deal(keys, torch.Generator().manual_seed(0))
    count = lambda key, sid: sum(1 for k, s in zip(keys, split.tolist()) if k == key and s == sid)  # noqa: E731
    assert [count("a", s) for s in (0, 1, 2)] == [6, 2, 2] and [count("b", s) for s in (0, 1, 2)] == [1, 1, 1]
    pooled = [s for k, s in zip(keys, split.tolist()) if k in "cde"]  # c, d, e pooled: 4 items
    assert sorted(pooled) == [0, 0, 1, 2]
    assert deal(["x", "x"], torch.Generator().manual_seed(0)).tolist() == [0, 0]  # too few to hold out


def test_every_instrument_keeps_a_training_note_when_each_pitch_has_one_note():
    from marl.splits import note_splits

    # a folder of one file per (instrument, pitch): every group pooled, dealt at random
    factors = {"timbre": torch.arange(10).repeat_interleave(3), "pitch_class": torch.arange(3).repeat(10)}
    for seed in range(20):
        split = note_splits(factors, "note", torch.Generator().manual_seed(seed))
        assert set(factors["timbre"][split == 0].tolist()) == set(range(10)), seed
        assert (split != 0).sum() >= 8  # still about two fifths held out


def test_export_leaves_out_a_note_that_renders_silent(fixture_font, tmp_path):
    proc = cli("marl.sources", "export-nsynth", str(tmp_path / "ns"), "--soundfont", str(fixture_font),
               "--programs", "0,2", "--velocities", "64,100", "--pitches", "2")
    assert proc.returncode == 0, proc.stderr
    assert "6 notes" in proc.stdout and "2 note(s) left out: program 2 pitch 60 velocity 64: silent" in proc.stdout
    assert len(json.loads((tmp_path / "ns" / "examples.json").read_text())) == 6


def test_instrument_split_scores_pitch_and_chroma_on_unseen_instruments(nsynth_dir, tmp_path):
    proc = cli("marl.train", "--source", "nsynth", "--data-dir", str(nsynth_dir), "--split-by", "instrument",
               "--epochs", "1", *TINY, "--out", str(tmp_path / "R"), env={"MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "timbre: scored as instrument family" in proc.stdout
    metrics = json.loads((tmp_path / "R" / "metrics.json").read_text())
    for kind in ("linear", "mlp"):
        # a right pitch has the right chroma (float32 accuracies against a float64 mean: 1e-6)
        assert 0 <= metrics[f"probe/test/{kind}/private/pitch"] <= metrics[f"chroma/test/{kind}/private"] + 1e-6 <= 1 + 1e-6
        assert 0 <= metrics[f"probe/test/{kind}/shared/timbre"] <= 1  # a family: 2 classes here
    data = load_dataset(Config.from_dict({"source": "nsynth", "data_dir": str(nsynth_dir), "split_by": "instrument",
                                          **{k.lstrip("-").replace("-", "_"): v for k, v in zip(TINY[::2], TINY[1::2])}}),
                        tmp_path / "cache")
    seen = set(data.train.factors["timbre"].unique().tolist())
    assert seen.isdisjoint(data.test.factors["timbre"].unique().tolist())
    assert seen.isdisjoint(data.val.factors["timbre"].unique().tolist())
    assert data.tasks["timbre"] == "family" and data.n_classes["timbre"] == 5  # NSynth family 4, keyboard


def test_nsynths_own_split_folders_are_the_splits(nsynth_splits_dir, tmp_path):
    assert {p.name for p in nsynth_splits_dir.iterdir()} == {"nsynth-train", "nsynth-valid", "nsynth-test"}
    proc = cli("marl.train", "--source", "nsynth", "--data-dir", str(nsynth_splits_dir), "--epochs", "1", *TINY,
               "--out", str(tmp_path / "R"), env={"MARL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = Config.from_dict({"source": "nsynth", "data_dir": str(nsynth_splits_dir), "n_train_pairs": 64,
                            "n_test_pairs": 16, "n_val_pairs": 16, "batch_size": 16})
    from marl.data import generate

    data = generate(cfg)
    folders = {split: {e["instrument_str"] for e in json.loads((nsynth_splits_dir / folder / "examples.json").read_text()).values()}
               for split, folder in (("train", "nsynth-train"), ("val", "nsynth-valid"), ("test", "nsynth-test"))}
    instruments = sorted(set().union(*folders.values()))  # timbre classes: the sorted instrument names
    for split, names in folders.items():
        got = {instruments[t] for t in getattr(data, split).factors["timbre"].unique().tolist()}
        assert got == names, split  # every instrument of the folder, and only those
    assert data.tasks["timbre"] == "family"
    # max_notes draws the same notes every time, fewer than there are
    few = sources.nsynth_bank(cfg.replace(max_notes=5))
    assert len(few.waves) == 15 and torch.equal(few.factors["pitch"], sources.nsynth_bank(cfg.replace(max_notes=5)).factors["pitch"])
    assert set(sources.nsynth_bank(cfg.replace(families="guitar")).factors["family"].tolist()) == {3}


@pytest.mark.parametrize("case, needle", [
    ("missing_split", "but not nsynth-valid"),
    ("no_index", "examples.json does not exist"),
    ("bad_family", "unknown NSynth family 'banjo'"),
    ("bad_program", "neither a GM program number"),
])
def test_bad_nsynth_layout_or_fields_are_one_line_exit_2(nsynth_splits_dir, tmp_path, case, needle):
    data = tmp_path / "d"
    shutil.copytree(nsynth_splits_dir, data)
    extra = []
    if case == "missing_split":
        shutil.rmtree(data / "nsynth-valid")
    elif case == "no_index":
        (data / "nsynth-test" / "examples.json").unlink()
    elif case == "bad_family":
        extra = ["--families", "keyboard,banjo"]
    else:
        extra = ["--programs", "0,kazoo"]
    proc = in_process("marl.train", "--source", "nsynth", "--data-dir", data, *extra, "--epochs", "1", *TINY,
                      "--out", tmp_path / "R")
    assert_one_line_exit_2(proc, needle, tmp_path / "R")


@pytest.mark.skipif(not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file(),
                    reason="FluidR3_GM.sf2 absent (Debian: apt-get install fluid-soundfont-gm)")
def test_debians_default_gm_font_renders_every_default_program():
    cfg = Config.from_dict({"source": "soundfont", "soundfont": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
                            "velocities": "64"})
    bank = soundfont.soundfont_bank(cfg, progress=False)  # raises if a (program, pitch) has no note
    # the vibraphone's MIDI 80 at velocity 64 (RMS ~1e-3, -50 dBFS) aborted the old absolute check
    assert "program 11 pitch 80 velocity 64: silent" not in bank.skipped
    assert len(bank.waves) + len(bank.skipped) == 8 * 21
