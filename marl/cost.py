"""What a grid sweep will cost, printed before it starts: a few training steps of each kind of
trial are timed here, on this machine and device, and counted over every trial's own steps;
its evaluations (a linear model of their size) and start-up add allowances measured on the
2-core development CPU (docs/performance.md, "Cost model"); the trials start in order, each
when a slot frees.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass

import torch

# Allowances and factors measured on the 2-core development CPU (docs/performance.md, "Cost model")
# One member's evaluation, 1 thread, alone: a fixed part (DCI/SAP/explicitness), the probes (per
# probe training clip) and the encoding and exact-KL diagnostics (per training pair): 6.1 s at
# the defaults, 2.4 s with 256 probe clips, 10.2 s at 16384 pairs (measured on 2026-12-07)
EVAL_BASE_SECONDS = 0.9
EVAL_PER_PROBE_CLIP = 0.97e-3
EVAL_PER_TRAIN_PAIR = 0.31e-3
# a trial's start-up and checkpoints: the cached data, the trainer; sweeps reuse a finished trial's
# worker process, so no new process starts (0.7 s measured; 7.6 s when each trial started one)
TRIAL_SECONDS = 1.0
SWEEP_SECONDS = 20.0  # once per sweep: Ray's start, the data, the results files
# a step's time when trials share the CPU's cores and memory: 122 ms against 70 alone (an
# evaluation's: 11.9 s against 6.6, 1.8x, measured before the exact-KL blocks were resized)
CPU_CONTENTION = 1.7
COMPILE_SPEEDUP = 1.3  # `compile: true` on a CPU (1.32x measured); steps are timed eager


# Config fields that set only how many steps and evaluations a trial runs, or nothing a step
# costs: trials that differ in these alone share one timed step
# (infonce and orthogonal are computed whatever their weights; swap is skipped at weight 0)
NOT_IN_A_STEP = {"n_train_pairs", "n_val_pairs", "n_test_pairs", "epochs", "eval_every", "seed", "data_seed",
                 "lr", "schedule", "warmup", "alpha", "beta", "gamma", "infonce", "orthogonal", "temperature",
                 "likelihood", "logvar_min", "probe_train_clips", "probe_input", "umap", "compile", "threads",
                 "device"}
MAX_TIMED = 4  # distinct steps timed before a sweep (~1 s each); trials beyond are costed as the first


@dataclass
class TrialCost:
    step_seconds: float  # one training step (all the trial's members), as the trial will see it
    steps: int
    evaluations: int  # per member
    members: int
    eval_seconds: float  # one member's evaluation, as the trial will see it

    @property
    def seconds(self) -> float:
        return TRIAL_SECONDS + self.steps * self.step_seconds + self.evaluations * self.members * self.eval_seconds


@dataclass
class Estimate:
    trials: list[TrialCost]  # in the order Tune starts them
    capacity: int  # trials at once

    @property
    def trial_seconds(self) -> list[float]:
        return [t.seconds for t in self.trials]

    @property
    def waves(self) -> int:
        return math.ceil(len(self.trials) / max(1, self.capacity))

    @property
    def total_seconds(self) -> float:
        return SWEEP_SECONDS + finish_seconds(self.trial_seconds, self.capacity)


def eval_seconds(cfg) -> float:
    """One evaluation of one member, 1 thread, alone on this CPU (UMAP not counted)."""
    return EVAL_BASE_SECONDS + EVAL_PER_PROBE_CLIP * cfg.probe_train_clips + EVAL_PER_TRAIN_PAIR * cfg.n_train_pairs


def trial_cost(cfgs: list, step_seconds: float, eval_factor: float = 1.0) -> TrialCost:
    """A trial of members `cfgs` at `step_seconds` per step; its evaluations' eval_seconds x `eval_factor`."""
    c = cfgs[0]
    evaluations = 1 + ((c.epochs - 1) // c.eval_every if c.eval_every else 0)  # every eval_every epochs, and the last
    return TrialCost(step_seconds, c.n_train_pairs // c.batch_size * c.epochs, evaluations, len(cfgs),
                     eval_seconds(c) * eval_factor)


def finish_seconds(seconds: list[float], capacity: int) -> float:
    """When the last of trials taking `seconds` ends if they start in order, each as soon as
    one of `capacity` slots is free (how Tune runs a grid)."""
    slots = [0.0] * max(1, min(capacity, len(seconds)))
    for s in seconds:
        heapq.heapreplace(slots, slots[0] + s)
    return max(slots)


def step_key(cfgs: list) -> tuple:
    """What sets a trial's step time: its members' fields but NOT_IN_A_STEP."""
    return tuple(tuple(sorted((k, v) for k, v in c.to_dict().items() if k not in NOT_IN_A_STEP)) for c in cfgs)


def time_step(cfgs: list, data, device: torch.device, threads: int, repeats: int = 8) -> float:
    """Seconds per training step of a Trainer of `cfgs`, after one untimed warm-up step."""
    from marl.trainer import Trainer

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        trainer = Trainer(cfgs, data, device)
        cfg, k = trainer.cfg, len(cfgs)
        index = torch.arange(cfg.batch_size, device=device).expand(k, -1)
        noise = torch.zeros(k, 3, cfg.batch_size, cfg.latent_dim, device=device)

        def step():
            terms, _, _ = trainer.batch_terms(trainer.train_x[index], noise, *trainer.draw_bank(index))
            trainer.opt.zero_grad(set_to_none=True)
            terms[:, 0].sum().backward()
            trainer.opt.step()

        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats
    finally:
        torch.set_num_threads(before)


def describe(e: Estimate, where: str, kinds: int = 1, untimed: int = 0) -> str:
    minutes = f"{e.total_seconds / 60:.1f} min" if e.total_seconds >= 90 else f"{e.total_seconds:.0f} s"
    first, seconds = e.trials[0], e.trial_seconds
    if min(seconds) == max(seconds):
        return (f"estimate: ~{minutes} ({e.waves} round(s) of ~{seconds[0]:.0f} s per trial: "
                f"{first.steps} steps x {first.step_seconds * 1000:.0f} ms, timed on {where}, "
                f"{first.evaluations * first.members} evaluation(s) x ~{first.eval_seconds:.0f} s, "
                f"start-up ~{TRIAL_SECONDS:.0f} s)")
    low, high = round(min(seconds)), round(max(seconds))
    return (f"estimate: ~{minutes} ({len(seconds)} trials of ~{low}" + (f"-{high}" if high > low else "")
            + f" s, {e.capacity} at a time: steps of {kinds} kind(s) of trial timed on "
            f"{where}, start-up ~{TRIAL_SECONDS:.0f} s"
            + (f"; {untimed} more kind(s) costed as the first" if untimed else "") + ")")


def sweep_estimate(trials: list[list], capacity: int, cpus_per_trial: float, gpus: float) -> tuple[str, list[float]]:
    """The line a sweep prints before it starts, and each trial's estimated seconds; `trials`:
    each trial's members. One step is timed for each kind of trial (step_key; the first
    MAX_TIMED kinds), then counted over each trial's own steps. Best effort: a step that cannot
    be timed (out of memory, say) gives a line saying so, and the sweep runs. Steps are timed
    eager (`compile` off: its one-off compile would swamp a few steps). On a GPU they are timed
    in a child process, so that the driver holds no CUDA memory while trials run."""
    on_gpu = bool(gpus) and torch.cuda.is_available()
    threads = trials[0][0].threads or max(1, int(cpus_per_trial))
    keys = [step_key(cfgs) for cfgs in trials]
    kinds: dict[tuple, list] = {}
    for key, cfgs in zip(keys, trials):
        kinds.setdefault(key, [c.replace(compile=False) for c in cfgs])
    timed = dict(list(kinds.items())[:MAX_TIMED])
    try:
        if on_gpu:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                steps = pool.submit(_time_steps, list(timed.values()), "cuda", threads).result()
        else:
            steps = _time_steps(list(timed.values()), "cpu", threads)
    except (RuntimeError, OSError, MemoryError) as err:  # torch's out-of-memory is a RuntimeError
        return f"estimate: not available ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})", []
    step_of = dict(zip(timed, steps))
    shared = CPU_CONTENTION if not on_gpu and min(capacity, len(trials)) > 1 else 1.0
    costs = []
    for key, cfgs in zip(keys, trials):
        step = step_of.get(key, steps[0])
        if not on_gpu:
            step *= shared / (COMPILE_SPEEDUP if cfgs[0].compile else 1.0)
        costs.append(trial_cost(cfgs, step, shared))
    e = Estimate(costs, capacity)
    where = "this GPU" if on_gpu else f"this CPU, {threads} thread(s)"
    return describe(e, where, len(timed), len(kinds) - len(timed)), e.trial_seconds


def _time_steps(kinds: list[list], device: str, threads: int) -> list[float]:
    """Seconds per step of each kind of trial (each one's members)."""
    from marl.data import load_dataset

    return [time_step(cfgs, load_dataset(cfgs[0]), torch.device(device), threads) for cfgs in kinds]
