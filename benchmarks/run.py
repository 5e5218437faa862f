"""Measure MARL's speed on whatever device is present: `python benchmarks/run.py --json PATH`.

Writes JSON naming the machine and its device, with a default trial's `trial_seconds`,
`training_seconds` and `evaluation_seconds` (and `evaluation_share`, and `kl_diagnostics_share`:
the exact-KL diagnostics' part of a trial), pairs_per_second,
matmul_peak_gflops, mfu, `packed_speedup` per K (training steps of K packed configurations
against K steps of one), checkpoint size and write time, and Ray's overhead per trial.
--sweep adds `paper_ablation_seconds`, the wall time of plain `python -m marl.sweep`;
--paper-scale adds `paper_ablation_paper_scale_seconds` (configs/paper_scale.yaml; hours on a CPU).
--compile adds `compiled_step_speedup`: training steps with `torch.compile` against eager, and the
compile time. The JSON is rewritten after each section, so a run cut short keeps what it measured;
a section that fails records its error instead of its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marl.config import Config  # noqa: E402
from marl.data import load_dataset  # noqa: E402
from marl.evaluate import kl_diagnostics  # noqa: E402
from marl.losses import Bank  # noqa: E402
from marl.trainer import Trainer, objective, pick_device  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - start


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak_gflops(device, n: int = 2048, reps: int = 20) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step (forward + backward), counted by torch."""
    cfg = trainer.cfg
    batch = trainer.train_x[: cfg.batch_size]
    noise = torch.randn(3, cfg.batch_size, cfg.latent_dim, device=trainer.device)
    banks = None
    if trainer.bank is not None:
        mu, logvar, own = trainer.draw_bank(torch.arange(cfg.batch_size, device=trainer.device)[None])
        banks = tuple(Bank(mu[0, s], logvar[0, s], own[0]) for s in range(3))
    with FlopCounterMode(display=False) as counter:
        terms = objective(trainer.member(0), batch[:, 0], batch[:, 1], noise, trainer.weights[0],
                          trainer.train_x.shape[0], cfg.estimator, likelihood=cfg.likelihood, banks=banks)[0]
        terms.total.backward()
    return counter.get_total_flops()


def step_seconds(trainer: Trainer, steps: int = 5) -> float:
    """Seconds per training step of all the trainer's members (after one warm-up step)."""
    cfg, k = trainer.cfg, len(trainer)
    batch = trainer.train_x[: cfg.batch_size].expand(k, *trainer.train_x[: cfg.batch_size].shape)
    noise = torch.randn(k, 3, cfg.batch_size, cfg.latent_dim, device=trainer.device)

    def step():
        terms = trainer.batch_terms(batch, noise, *trainer.draw_bank(torch.zeros(k, cfg.batch_size, dtype=torch.long, device=trainer.device)))[0]
        trainer.opt.zero_grad(set_to_none=True)
        terms[:, 0].sum().backward()
        trainer.opt.step()
    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def checkpoint_figures(trainer: Trainer) -> dict:
    """Size and write time of the trainer state a trial checkpoints."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trainer.pt"
        _, seconds = timed(torch.save, trainer.state_dict(), path)
        return {"bytes": path.stat().st_size, "seconds": seconds}


def ray_overhead_seconds(n_trials: int = 4) -> float:
    """Seconds per trial that Ray Tune adds (start-up included), from trivial trials."""
    code = (
        "import time, ray; from ray import tune\n"
        "t = time.perf_counter(); ray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR')\n"
        "def f(config): tune.report({'x': 1})\n"
        "import tempfile; d = tempfile.mkdtemp()\n"
        f"tune.Tuner(f, param_space={{'i': tune.grid_search(list(range({n_trials})))}},"
        " run_config=tune.RunConfig(storage_path=d, verbose=0)).fit()\n"
        "print(time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1]) / n_trials


def sweep_seconds(*extra: str, keep: str | None = None) -> float:
    """Wall time of `python -m marl.sweep`; with `keep`, its results.parquet is copied there."""
    with tempfile.TemporaryDirectory() as storage:
        out, seconds = timed(subprocess.run, [sys.executable, "-m", "marl.sweep", "--storage", storage,
                                              "--name", "bench", *extra], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"marl.sweep exited {out.returncode}: {out.stderr.strip()[-2000:]}")
        if keep:
            shutil.copy(Path(storage) / "bench" / "results.parquet", keep)
    return seconds


def compiled_speedup(cfg: Config, data, device, k: int, mode: str) -> dict:
    """Training-step speed-up of `torch.compile` on the loss (forward and backward) of K members."""
    eager = step_seconds(Trainer([cfg.replace(seed=i) for i in range(k)], data, device))
    trainer = Trainer([cfg.replace(seed=i) for i in range(k)], data, device)
    trainer.terms = torch.compile(trainer.terms, mode=mode)
    start = time.perf_counter()
    step_seconds(trainer, steps=1)  # compiles
    compile_seconds = time.perf_counter() - start
    return {"speedup": eager / step_seconds(trainer, steps=20), "compile_seconds": compile_seconds}


def attempt(res: dict, key: str, fn, *args, **kwargs) -> None:
    """res[key] = fn(...), or the error it raised: one failed section does not lose the others."""
    try:
        res[key] = fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - recorded in the JSON, not hidden
        res[key] = {"error": f"{type(err).__name__}: {err}"}
    print(f"{key}: {res[key]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="where to write the figures")
    parser.add_argument("--pack-k", default=None,
                        help="comma-separated K for packed_speedup (default: 16,64,256 on CUDA, 16 on CPU)")
    parser.add_argument("--sweep", action="store_true", help="also time the 30-trial paper ablation")
    parser.add_argument("--paper-scale", action="store_true",
                        help="also time the paper ablation at configs/paper_scale.yaml")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile on the step")
    parser.add_argument("--keep-results", default=None,
                        help="folder to copy each timed sweep's results.parquet into")
    args = parser.parse_args()
    out = Path(args.json)

    def save() -> None:
        out.write_text(json.dumps(res, indent=2))

    cfg = Config.from_dict({"umap": False})
    device = pick_device(cfg.device)
    res: dict = {"machine": {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}}
    print(f"machine: {res['machine']}", file=sys.stderr)
    res["matmul_peak_gflops"] = matmul_peak_gflops(device)
    save()

    with tempfile.TemporaryDirectory() as cache:
        os.environ["MARL_CACHE"] = cache
        _, res["data_generate_seconds"] = timed(load_dataset, cfg)
        data, data_load = timed(load_dataset, cfg)  # what a trial pays once the node has it

        # a default trial, measured end to end in this process: training, then evaluation
        trainer = Trainer(cfg, data, device)
        flops = step_flops(trainer)
        trainer = Trainer(cfg, data, device)
        epoch_times = []
        for _ in range(cfg.epochs):
            _, t = timed(trainer.run_epoch)
            epoch_times.append(t)
        _, evaluation = timed(trainer.evaluate, False)
        training = sum(epoch_times)
        res["training_seconds"], res["evaluation_seconds"] = training, evaluation
        res["trial_seconds"] = data_load + training + evaluation
        res["evaluation_share"] = evaluation / res["trial_seconds"]
        # the part of evaluation behind kl_exact/* and kl_bias/* (issue 19: at most 10 % of a trial)
        _, res["kl_diagnostics_seconds"] = timed(kl_diagnostics, trainer.member(0), cfg, data.train.x, device)
        res["kl_diagnostics_share"] = res["kl_diagnostics_seconds"] / res["trial_seconds"]
        epoch = min(epoch_times[1:])
        n_batches = cfg.n_train_pairs // cfg.batch_size
        res["pairs_per_second"] = n_batches * cfg.batch_size / epoch
        res["train_flops_per_second_g"] = flops * n_batches / epoch / 1e9
        res["mfu"] = res["train_flops_per_second_g"] / res["matmul_peak_gflops"]
        res["checkpoint"] = checkpoint_figures(trainer)
        amp = Trainer(cfg.replace(amp=True), data, device)
        amp.run_epoch()  # warm-up
        _, amp_epoch = timed(amp.run_epoch)
        res["amp_pairs_per_second"] = n_batches * cfg.batch_size / amp_epoch  # bf16 autocast
        res["breakdown_seconds"] = {"data": data_load, "training": training, "evaluation": evaluation}
        save()
        attempt(res["breakdown_seconds"], "ray_overhead_per_trial", ray_overhead_seconds)
        save()

        ks = [int(k) for k in (args.pack_k or ("16,64,256" if device.type == "cuda" else "16")).split(",")]
        one = step_seconds(Trainer(cfg, data, device))
        res["packed_speedup"], res["packed_checkpoint"] = {}, {}
        for k in ks:
            members = [cfg.replace(seed=i, gamma=[0.0, 0.1, 0.5, 1.0][i % 4]) for i in range(k)]
            packed = Trainer(members, data, device)
            res["packed_speedup"][str(k)] = k * one / step_seconds(packed)
            res["packed_checkpoint"][str(k)] = checkpoint_figures(packed)
            print(f"K={k}: {res['packed_speedup'][str(k)]:.1f}x", file=sys.stderr)
            save()
            del packed

    keep = Path(args.keep_results) if args.keep_results else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        attempt(res, "paper_ablation_seconds", sweep_seconds, keep=keep and str(keep / "default.parquet"))
        save()
    if args.paper_scale:
        attempt(res, "paper_ablation_paper_scale_seconds", sweep_seconds, "--config",
                str(Path(__file__).resolve().parents[1] / "configs" / "paper_scale.yaml"),
                keep=keep and str(keep / "paper_scale.parquet"))
        save()
    if args.compile:  # last: compiling takes minutes
        res["compiled_step_speedup"] = {}
        modes = ["default", "reduce-overhead"] if device.type == "cuda" else ["default"]
        with tempfile.TemporaryDirectory() as cache:
            os.environ["MARL_CACHE"] = cache
            data = load_dataset(cfg)
            for k in (1, ks[0]):
                for mode in modes:
                    attempt(res["compiled_step_speedup"], f"K={k} {mode}", compiled_speedup, cfg, data, device, k, mode)
                    save()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
