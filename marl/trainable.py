"""The Ray Tune function trainable: MARL training with per-epoch reports and checkpoints.

Every epoch reports the loss terms (`loss/<term>`) and a checkpoint; at evaluation points
(every `eval_every` epochs, and always at the end) it also reports the metrics that
`metrics.json` holds. The final checkpoint carries `metrics.json` and `latents.parquet`, so
analysis can draw a trial's MI heatmap and UMAP without rerunning it. A non-finite loss ends
the configuration early with `diverged` = 1 and the epoch it happened.

A trial whose config holds `members` (a list of configs, from `marl.sweep --fuse K`) trains
them as one fused model (marl.fused) and reports member i's metrics as `m<i>/<metric>`;
member i's files go to `m<i>/` in the checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import fields
from pathlib import Path

import ray
import torch
from ray import tune

from marl import names
from marl.config import Config
from marl.data import load_dataset
from marl.evaluate import evaluate
from marl.train import Trainer, is_finite, pick_device
from search_spaces import resolve_trial_config

STATE_FILE = "trainer.pt"
MEMBERS = "members"


def trial_config(config: dict) -> Config:
    """The trial's Config from its (possibly nested) Tune config; labels are dropped."""
    known = {f.name for f in fields(Config)}
    return Config.from_dict({k: v for k, v in resolve_trial_config(config).items() if k in known})


def member_prefix(i: int) -> str:
    return f"m{i}/"


def restore_state(checkpoint, device) -> dict | None:
    """The trainer state to resume from: Tune's checkpoint, else the newest intact one beside it.

    After the driver is killed, Tune's saved experiment state can name a checkpoint that
    `num_to_keep` has since deleted (its snapshots are throttled; ray-project/ray#27790), and a
    checkpoint written at the moment of the kill can be partial. Rather than fail the trial,
    fall back to the newest checkpoint in the trial's folder that loads.
    """
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / STATE_FILE, weights_only=False, map_location=device)
    except Exception:  # noqa: BLE001 - missing or partial: look for another
        pass
    trial_dir = Path(checkpoint.path).parent
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            return torch.load(folder / STATE_FILE, weights_only=False, map_location=device)
        except Exception:  # noqa: BLE001
            continue
    return None  # nothing intact: train this trial from the start


def marl_trainable(config: dict) -> None:
    fused = MEMBERS in config
    cfgs = [trial_config(m) for m in config[MEMBERS]] if fused else [trial_config(config)]
    cfg = cfgs[0]  # members share everything but alpha, beta, gamma and seed
    prefix = member_prefix if fused else (lambda i: "")
    node = ray.get_runtime_context().get_node_id()  # which machine ran it, for the record
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # match the CPUs Ray gave this trial
    data = load_dataset(cfg)  # built once per node, shared through the on-disk cache
    device = pick_device(cfg.device)
    if fused:
        from marl.fused import FusedTrainer

        trainer = FusedTrainer(cfgs, data, device)
    else:
        trainer = Trainer(cfg, data, device)
    diverged: dict[int, int] = {}
    state = restore_state(tune.get_checkpoint(), device)
    if state:
        trainer.load_state_dict(state["trainer"])
        diverged = state["diverged"]

    while trainer.epoch < cfg.epochs and len(diverged) < len(cfgs):
        losses = trainer.run_epoch()
        losses = losses if fused else [losses]
        report = {"epoch": trainer.epoch, "node": node}
        for i, member_losses in enumerate(losses):
            if i not in diverged and not is_finite(member_losses):
                diverged[i] = trainer.epoch
            report.update({prefix(i) + k: v for k, v in member_losses.items()})
            report[prefix(i) + names.DIVERGED] = int(i in diverged)
            if i in diverged:
                report[prefix(i) + "diverged_epoch"] = diverged[i]
        final = trainer.epoch == cfg.epochs or len(diverged) == len(cfgs)
        due = trainer.epoch == cfg.epochs or (cfg.eval_every and trainer.epoch % cfg.eval_every == 0)
        with tempfile.TemporaryDirectory() as d:
            for i, member_cfg in enumerate(cfgs):
                # Every report carries every evaluation metric (NaN until evaluated): Tune's
                # searchers and schedulers expect their metric in each result.
                report.update({prefix(i) + k: float("nan") for k in names.eval_scalars()})
                if due and i not in diverged:
                    model = trainer.member(i) if fused else trainer.model
                    metrics, latents = evaluate(model, data, member_cfg, device,
                                                with_umap=final and member_cfg.umap)
                    report.update({prefix(i) + k: v for k, v in metrics.items()})
                    if final:
                        folder = Path(d) / prefix(i)
                        folder.mkdir(parents=True, exist_ok=True)
                        (folder / "metrics.json").write_text(json.dumps(
                            {k[len(prefix(i)):]: v for k, v in report.items() if k.startswith(prefix(i))}, indent=2))
                        latents.to_parquet(folder / "latents.parquet", index=False)
            torch.save({"trainer": trainer.state_dict(), "diverged": diverged}, Path(d) / STATE_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
