"""The Ray Tune function trainable: MARL training with per-epoch reports and checkpoints.

One code path trains one configuration or a packed trial's K members (`marl.sweep --pack`):
both are a `marl.train.Trainer` of K ≥ 1 configurations. Every epoch reports the loss terms
(`loss/<term>`); at evaluation points (every `eval_every` epochs, and always at the end) it
also reports the metrics that `metrics.json` holds. A packed trial reports member i's figures
as `m<i>/<metric>`. Checkpoints are written every `checkpoint_every` epochs, at evaluations
and at the end; the final one holds, per member (`m<i>/` when packed), `model.pt` (config,
weights, input normalisation), `metrics.json` and `latents.parquet`. A non-finite loss ends a
member early with `diverged` = 1 and the epoch it happened.

The device follows what Ray gave the trial: CUDA when it holds a GPU, the CPU otherwise, so
a resumed sweep trains where its new flags put it.
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
from marl.evaluate import evaluate_members
from marl.train import Trainer, is_finite, model_file, pick_device
from search_spaces import is_packed, trial_members

STATE_FILE = "trainer.pt"


def trial_configs(config: dict) -> list[Config]:
    """The Configs a trial trains (labels such as `ablation` dropped)."""
    known = {f.name for f in fields(Config)}
    return [Config.from_dict({k: v for k, v in m.items() if k in known}) for m in trial_members(config)]


def trial_device(name: str) -> torch.device:
    """`auto` means the GPU Ray gave this trial, if any; never one it did not give."""
    if name == "auto":
        return torch.device("cuda" if ray.get_gpu_ids() else "cpu")
    return pick_device(name)


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


def marl_trainable(config: dict, checkpoint_every: int = 1) -> None:
    cfgs = trial_configs(config)
    cfg, k = cfgs[0], len(cfgs)  # members share everything but alpha, beta, gamma and seed
    packed = is_packed(config)
    prefix = [names.member_prefix(i, packed) for i in range(k)]
    node = ray.get_runtime_context().get_node_id()  # which machine ran it, for the record
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # match the CPUs Ray gave this trial
    data = load_dataset(cfg)  # built once per node, shared through the on-disk cache
    device = trial_device(cfg.device)
    trainer = Trainer(cfgs, data, device)
    diverged: dict[int, int] = {}
    state = restore_state(tune.get_checkpoint(), device)
    if state:
        trainer.load_state_dict(state["trainer"])
        diverged = state["diverged"]

    while trainer.epoch < cfg.epochs and len(diverged) < k:
        losses = trainer.run_epoch()
        report = {"epoch": trainer.epoch, "node": node, "device": device.type}
        for i, member_losses in enumerate(losses):
            if i not in diverged and not is_finite(member_losses):
                diverged[i] = trainer.epoch
            report.update({prefix[i] + key: v for key, v in member_losses.items()})
            report[prefix[i] + names.DIVERGED] = int(i in diverged)
            if i in diverged:
                report[prefix[i] + "diverged_epoch"] = diverged[i]
            # Every report carries every evaluation metric (NaN until evaluated): Tune's
            # searchers and schedulers expect their metric in each result.
            report.update({prefix[i] + key: float("nan") for key in names.eval_scalars()})
        final = trainer.epoch == cfg.epochs or len(diverged) == k
        evaluating = final or bool(cfg.eval_every and trainer.epoch % cfg.eval_every == 0)
        alive = [i for i in range(k) if i not in diverged]
        results = {}
        if evaluating and alive:
            models = trainer.members()
            evaluated = evaluate_members([models[i] for i in alive], [cfgs[i] for i in alive], data,
                                         device, with_umap=final and cfg.umap)
            results = dict(zip(alive, evaluated))
            for i, (metrics, _) in results.items():
                report.update({prefix[i] + key: v for key, v in metrics.items()})
        if not (final or evaluating or trainer.epoch % checkpoint_every == 0):
            tune.report(report)
            continue
        with tempfile.TemporaryDirectory() as d:
            if final:
                for i, (_, latents) in results.items():
                    folder = Path(d) / prefix[i]
                    folder.mkdir(parents=True, exist_ok=True)
                    own = {key: report[key] for key in ("epoch", "node", "device")}
                    own.update({key[len(prefix[i]):]: v for key, v in report.items() if key.startswith(prefix[i])})
                    (folder / "metrics.json").write_text(json.dumps(own, indent=2))
                    latents.to_parquet(folder / "latents.parquet", index=False)
                    torch.save(model_file(cfgs[i], models[i], data), folder / "model.pt")
            torch.save({"trainer": trainer.state_dict(), "diverged": diverged}, Path(d) / STATE_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))

