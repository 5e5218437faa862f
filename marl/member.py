"""A member's folder: metrics.json, latents.parquet and model.pt. A command-line run's output
folder holds one; a sweep's final checkpoint holds one per member (`m<i>/` when packed). One
writer for both, each file written whole or not at all (marl.files.replace_atomically)."""

from __future__ import annotations

from pathlib import Path

import torch

from marl.config import Config
from marl.data import Dataset
from marl.files import replace_atomically, write_json

METRICS_FILE, LATENTS_FILE, MODEL_FILE = "metrics.json", "latents.parquet", "model.pt"


def model_file(cfg: Config, model, data: Dataset) -> dict:
    """What `model.pt` holds: enough to use the model without the data cache."""
    return {"config": cfg.to_dict(), "model": model.state_dict(),
            "normalisation": {"mean": data.mean.cpu(), "std": data.std.cpu()}}


def write_member(folder: Path, metrics: dict, latents, model: dict) -> None:
    """metrics (a flat dict), latents (a DataFrame) and a `model_file` dict into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / METRICS_FILE, metrics)
    replace_atomically(folder / LATENTS_FILE, lambda tmp: latents.to_parquet(tmp, index=False))
    replace_atomically(folder / MODEL_FILE, lambda tmp: torch.save(model, tmp))
