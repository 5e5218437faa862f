"""The sweep's console: one line per trial event instead of Ray's tables and config boxes.

    [3/30 done, 2 running, ETA 6m10s, best val separation 0.412] trial_3f2a1_00004 done in 34 s (ablation=gamma, gamma=0.1, seed=2)

`python -m marl.sweep --verbose` gives Ray's own output back instead.
"""

from __future__ import annotations

import json
import math
import sys
import time

from ray.tune import Callback

from marl import names

# What Ray's storage logs (worker side) after every checkpoint; silenced in trials unless --verbose.
CHECKPOINT_LOGGER = "ray.train._internal.storage"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def eta(elapsed: float, done: float, total: float) -> str:
    """Time left at the rate work has been done so far ('?' before any): `done` and `total` count
    trials, or their estimated seconds when the trials differ in size."""
    if done <= 0 or total <= done:
        return "?" if total > done else "0s"
    return duration(elapsed / done * (total - done))


def trial_key(axis_value) -> str:
    """A trial's own values (its config's grid axis "trial"), as a key."""
    return json.dumps(axis_value, sort_keys=True, default=str)


def expected_seconds(param_space: dict, seconds: list[float]) -> dict[str, float]:
    """trial_key -> estimated seconds of each trial of a grid (marl.plan.grid_param_space), its
    trials' `seconds` in the same order; {} for a single trial."""
    axis = param_space.get("trial")
    values = axis.get("grid_search", []) if isinstance(axis, dict) else []
    return {trial_key(value): s for value, s in zip(values, seconds)}


def describe(config: dict) -> str:
    """What sets a trial apart: the grid axis `trial` (marl.plan.grid_param_space), or the
    number of configurations a packed trial trains."""
    own = config.get("trial")
    if not isinstance(own, dict):
        return ""
    members = own.get("members")
    if members:
        return f"{len(members)} packed configurations"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in own.items())


def best_selection(result: dict) -> float:
    """The best validation separation in one report (packed trials: over its members)."""
    values = [v for k, v in result.items() if (k == names.SELECTION or k.endswith("/" + names.SELECTION))
              and isinstance(v, (int, float)) and math.isfinite(v)]
    return max(values, default=float("nan"))


class ProgressLines(Callback):
    """Prints one line per trial start, end and error, with the sweep's counts, its ETA and
    the best validation separation reported so far."""

    def __init__(self, total: int, expected: dict[str, float] | None = None, work: float = 0.0):
        self.total = total  # Tune pickles its callbacks with the sweep (tuner.pkl): no stream here
        # to weigh the ETA: trial_key -> estimated seconds (marl.cost), and all trials' seconds
        # (repeated trials share a key)
        self.expected, self.work = expected or {}, work
        self.best = float("nan")
        self.started = time.monotonic()
        self.trial_started: dict[str, float] = {}

    def setup(self, **info):
        self.started = time.monotonic()  # a resumed sweep's ETA counts from its own start

    def line(self, trials, trial, event: str, ended: bool = False) -> None:
        # Tune calls these hooks before it changes the trial's status: count it as it will be
        finished = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}
        running = {t.trial_id for t in trials if t.status == "RUNNING"}
        (finished if ended else running).add(trial.trial_id)
        done, running = len(finished), len(running - finished)
        best = "-" if math.isnan(self.best) else f"{self.best:.3f}"
        what = describe(trial.config)
        work = [self.expected.get(trial_key(t.config.get("trial"))) for t in trials if t.trial_id in finished]
        if self.expected and self.work and None not in work:  # weigh each trial by its estimate
            left = eta(time.monotonic() - self.started, sum(work), self.work)
        else:
            left = eta(time.monotonic() - self.started, done, self.total)
        print(f"[{done}/{self.total} done, {running} running, ETA {left}, "
              f"best val separation {best}] trial_{trial.trial_id} {event}" + (f" ({what})" if what else ""),
              file=sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trial_started[trial.trial_id] = time.monotonic()
        self.line(trials, trial, "started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        best = best_selection(result)
        if not math.isnan(best) and not best <= self.best:
            self.best = best

    def on_trial_complete(self, iteration, trials, trial, **info):
        took = time.monotonic() - self.trial_started.get(trial.trial_id, self.started)
        self.line(trials, trial, f"done in {duration(took)}", ended=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        where = getattr(trial, "path", None) or getattr(trial, "local_path", "")
        self.line(trials, trial, f"errored (its error.txt: {where})", ended=True)
