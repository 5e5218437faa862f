"""The Ray Tune function trainable: MARL training with per-epoch reports and checkpoints.

Every epoch reports the loss terms (`loss/<term>`) and a checkpoint; at evaluation points
(every `eval_every` epochs, and always at the end) it also reports the metrics that
`metrics.json` holds. The final checkpoint carries `metrics.json` and `latents.parquet`, so
analysis can draw a trial's MI heatmap and UMAP without rerunning it. A non-finite loss ends
the trial early with `diverged` = 1 and the epoch it happened.
"""

from __future__ import annotations

import json
from dataclasses import fields
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from marl import names
from marl.config import Config
from marl.data import load_dataset
from marl.train import Trainer, is_finite, pick_device
from search_spaces import resolve_trial_config

STATE_FILE = "trainer.pt"


def trial_config(config: dict) -> Config:
    """The trial's Config from its (possibly nested) Tune config; labels are dropped."""
    known = {f.name for f in fields(Config)}
    return Config.from_dict({k: v for k, v in resolve_trial_config(config).items() if k in known})


def marl_trainable(config: dict) -> None:
    cfg = trial_config(config)
    node = ray.get_runtime_context().get_node_id()  # which machine ran it, for the record
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # match the CPUs Ray gave this trial
    data = load_dataset(cfg)  # built once per node, shared through the on-disk cache
    trainer = Trainer(cfg, data, pick_device(cfg.device))
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(torch.load(Path(d) / STATE_FILE, weights_only=False,
                                               map_location=trainer.device))
    while trainer.epoch < cfg.epochs:
        losses = trainer.run_epoch()
        report = {**losses, "epoch": trainer.epoch, names.DIVERGED: 0, "node": node}
        if not is_finite(losses):
            tune.report({**report, names.DIVERGED: 1, "diverged_epoch": trainer.epoch})
            return
        final = trainer.epoch == cfg.epochs
        due = final or (cfg.eval_every and trainer.epoch % cfg.eval_every == 0)
        latents = None
        if due:
            metrics, latents = trainer.evaluate(with_umap=final and cfg.umap)
            report.update(metrics)
        with tempfile.TemporaryDirectory() as d:
            torch.save(trainer.state_dict(), Path(d) / STATE_FILE)
            if final:
                (Path(d) / "metrics.json").write_text(json.dumps(report, indent=2))
                latents.to_parquet(Path(d) / "latents.parquet", index=False)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
