"""Datasets: pairs of normalised log-mels that share a timbre and differ in pitch class.

Every source yields waveforms, factors and class names: the synthetic one (marl.synth) and
the real-instrument ones (marl.sources, `cfg.source`). Only this module turns them into
log-mels (marl.features), normalises and caches them. Everything is a pure function of the data
fields of the config and is cached on disk under a hash of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from marl import synth
from marl.config import Config
from marl.files import replace_atomically
from marl.features import log_mel
from marl.names import DATA_SPLITS, FACTOR_OF_TASK

TIMBRES = synth.TIMBRES
SPLITS = DATA_SPLITS
CACHE_VERSION = 5  # bump when synthesis changes, so old caches are not reused


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


def generate(cfg: Config) -> Dataset:
    """Build the dataset from scratch (deterministic in the data fields of cfg)."""
    gen = torch.Generator().manual_seed(cfg.data_seed)
    sizes = (("train", cfg.n_train_pairs), ("test", cfg.n_test_pairs), ("val", cfg.n_val_pairs))
    extra: dict = {}
    if cfg.source == "synth":
        # test before val: train and test stay those of the two-split datasets of CACHE_VERSION 1
        raw = {name: spectrograms(*synth.pairs(n, cfg, gen), cfg) for name, n in sizes}
        n_classes = {"timbre": len(TIMBRES), "pitch": cfg.n_pitch_classes}
    else:
        from marl.sources import note_bank, pair_split
        from marl.splits import SPLIT_IDS, note_splits, timbre_factor

        bank = note_bank(cfg)
        bank.factors["note"] = torch.arange(len(bank.waves))  # which note a clip was cut from
        split = bank.split if bank.split is not None else note_splits(bank.factors, cfg.split_by, gen)
        raw = {name: spectrograms(*pair_split(bank.subset(split == SPLIT_IDS[name]), n, cfg, gen, name), cfg)
               for name, n in sizes}
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


def spectrograms(waves: torch.Tensor, factors: dict, cfg: Config) -> tuple[torch.Tensor, dict]:
    """A split's pairs of waveforms (n, 2, n_samples) -> their log-mels (n, 2, n_mels, n_frames),
    one split at a time (the waveforms are the larger), and its factors."""
    mels = log_mel(waves.reshape(-1, waves.shape[-1]), cfg).reshape(*waves.shape[:2], cfg.n_mels, cfg.n_frames)
    return mels, factors


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
            replace_atomically(path, lambda tmp: torch.save(state, tmp))
    splits = {name: Split(state[f"{name}_x"], {k: state[f"{name}_{k}"] for k in state["factors"]})
              for name in SPLITS}
    return Dataset(**splits, mean=state["mean"], std=state["std"], n_classes=state["n_classes"],
                   tasks=state["tasks"], midi=state["midi"], skipped=tuple(state["skipped"]),
                   timbre_names=tuple(state["timbre_names"]))


def prebuild(cfgs: list[Config]) -> None:
    """Build each distinct dataset of an embedded-Ray sweep in the driver, on all its cores:
    trials, which get 1 thread each when given 1 CPU, then load it from this node's cache
    instead of generating it themselves."""
    distinct = {json.dumps(c.data_dict(), sort_keys=True): c for c in cfgs}  # 30 trials, one dataset
    todo = [c for c in distinct.values() if not cache_path(c).exists()]  # each path once: it lists files
    if todo:
        start = time.perf_counter()
        for cfg in todo:
            load_dataset(cfg)
        print(f"data: {len(todo)} dataset(s) built in {time.perf_counter() - start:.0f} s")
