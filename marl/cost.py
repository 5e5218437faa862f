"""What a grid sweep will cost, printed before it starts: a few of its first trial's training
steps are timed here, on this machine and device, and scaled to every trial; evaluations and a
trial's start-up add fixed allowances measured on the 2-core development CPU
(docs/performance.md, "Cost model")."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

# Allowances and factors measured on the 2-core development CPU (docs/performance.md, "Cost model")
# one member's evaluation at the default probe sizes, 1 thread, two trials sharing the cores (11.9 s
# measured on 2026-12-07: probes, DCI/SAP/explicitness, the exact-KL diagnostics)
EVAL_SECONDS = 12.0
# a trial's start-up and checkpoints: the cached data, the trainer; sweeps reuse a finished trial's
# worker process, so no new process starts (0.7 s measured; 7.6 s when each trial started one)
TRIAL_SECONDS = 1.0
SWEEP_SECONDS = 20.0  # once per sweep: Ray's start, the data, the results files
CPU_CONTENTION = 1.7  # a step's time when trials share the CPU's cores and memory: 122 ms against 70 alone
COMPILE_SPEEDUP = 1.3  # `compile: true` on a CPU (1.32x measured); steps are timed eager


@dataclass
class Estimate:
    step_seconds: float  # one training step of a whole trial (all its members), measured
    steps: int  # training steps per trial
    evaluations: int  # evaluations per member
    members: int
    trial_seconds: float
    waves: int  # rounds of trials, `capacity` at a time
    total_seconds: float


def estimate(step_seconds: float, steps_per_epoch: int, epochs: int, eval_every: int, members: int,
             n_trials: int, capacity: int) -> Estimate:
    """The sweep's wall time if every trial costs what its first one does; `step_seconds` is a
    step's time as the trials will see it (contention and compiling already applied)."""
    evaluations = 1 + ((epochs - 1) // eval_every if eval_every else 0)
    steps = steps_per_epoch * epochs
    trial = TRIAL_SECONDS + steps * step_seconds + evaluations * members * EVAL_SECONDS
    waves = math.ceil(n_trials / max(1, capacity))
    return Estimate(step_seconds, steps, evaluations, members, trial, waves, SWEEP_SECONDS + waves * trial)


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


def describe(e: Estimate, where: str) -> str:
    minutes = f"{e.total_seconds / 60:.1f} min" if e.total_seconds >= 90 else f"{e.total_seconds:.0f} s"
    return (f"estimate: ~{minutes} ({e.waves} round(s) of ~{e.trial_seconds:.0f} s per trial: "
            f"{e.steps} steps x {e.step_seconds * 1000:.0f} ms, timed on {where}, "
            f"{e.evaluations * e.members} evaluation(s) x ~{EVAL_SECONDS:.0f} s, start-up ~{TRIAL_SECONDS:.0f} s)")


def sweep_estimate(cfgs: list, n_trials: int, capacity: int, cpus_per_trial: float, gpus: float) -> str:
    """The line a sweep prints before it starts; `cfgs`: its first trial's members. Best effort:
    a step that cannot be timed (out of memory, say) gives a line saying so, and the sweep runs.
    Steps are timed eager (`compile` off: its one-off compile would swamp a few steps). On a GPU
    they are timed in a child process, so that the driver holds no CUDA memory while trials run."""
    compiled = cfgs[0].compile
    cfgs = [c.replace(compile=False) for c in cfgs]
    cfg = cfgs[0]
    on_gpu = bool(gpus) and torch.cuda.is_available()
    threads = cfg.threads or max(1, int(cpus_per_trial))
    try:
        if on_gpu:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                step = pool.submit(_time_first_trial, cfgs, "cuda", threads).result()
        else:
            step = _time_first_trial(cfgs, "cpu", threads)
    except (RuntimeError, OSError, MemoryError) as err:  # torch's out-of-memory is a RuntimeError
        return f"estimate: not available ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
    if not on_gpu:
        step *= (CPU_CONTENTION if min(capacity, n_trials) > 1 else 1.0) / (COMPILE_SPEEDUP if compiled else 1.0)
    e = estimate(step, cfg.n_train_pairs // cfg.batch_size, cfg.epochs, cfg.eval_every, len(cfgs),
                 n_trials, capacity)
    return describe(e, "this GPU" if on_gpu else f"this CPU, {threads} thread(s)")


def _time_first_trial(cfgs: list, device: str, threads: int) -> float:
    from marl.data import load_dataset

    return time_step(cfgs, load_dataset(cfgs[0]), torch.device(device), threads)
