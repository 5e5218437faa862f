"""The one training loop: `fit` trains a Trainer's members to cfg.epochs, evaluating every
`eval_every` epochs and at the end, and hands each epoch to a hook. `python -m marl.train`'s hook
prints progress and keeps the history; a sweep's trial (marl.trainable) reports to Tune and
checkpoints. A member whose loss turns non-finite is marked diverged and trains no further
evaluation; the loop ends when every member is done or diverged."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from marl import names
from marl.evaluate import evaluate_members
from marl.trainer import Trainer


@dataclass
class Epoch:
    """What one epoch gave, for the hook."""

    epoch: int
    losses: list[dict]  # each member's mean loss terms (`loss/<term>`)
    diverged: dict[int, int]  # member -> the epoch its loss became non-finite
    evaluating: bool  # an evaluation epoch (every eval_every, and the last)
    final: bool  # the last epoch, or every member diverged
    evaluated: dict = field(default_factory=dict)  # member -> (metrics, test latents), when evaluating
    models: list | None = None  # every member as a MARL module, when evaluating
    # seconds spent so far on each of names.TRIAL_TIMES; the hook adds its checkpoint time
    spent: dict = field(default_factory=dict)


def is_finite(losses: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in losses.values())


def fit(trainer: Trainer, on_epoch: Callable[[Epoch], None], diverged: dict[int, int] | None = None) -> dict:
    """Train from trainer.epoch (a restored trainer resumes) to its cfg.epochs; `diverged`
    carries a resumed trial's diverged members. Returns the diverged members."""
    cfg, k = trainer.cfg, len(trainer)
    diverged = dict(diverged or {})
    spent = dict.fromkeys(names.TRIAL_TIMES, 0.0)
    train_s, eval_s, _ = names.TRIAL_TIMES
    while trainer.epoch < cfg.epochs and len(diverged) < k:
        start = time.perf_counter()
        losses = trainer.run_epoch()
        spent[train_s] += time.perf_counter() - start
        for i, member_losses in enumerate(losses):
            if i not in diverged and not is_finite(member_losses):
                diverged[i] = trainer.epoch
        final = trainer.epoch == cfg.epochs or len(diverged) == k
        result = Epoch(trainer.epoch, losses, dict(diverged), evaluating=final or bool(
            cfg.eval_every and trainer.epoch % cfg.eval_every == 0), final=final, spent=spent)
        alive = [i for i in range(k) if i not in diverged]
        if result.evaluating and alive:
            start = time.perf_counter()
            result.models = trainer.members()
            evaluated = evaluate_members([result.models[i] for i in alive], [trainer.cfgs[i] for i in alive],
                                         trainer.data, trainer.device, with_umap=final and cfg.umap)
            result.evaluated = dict(zip(alive, evaluated))
            spent[eval_s] += time.perf_counter() - start
        on_epoch(result)
    return diverged
