"""Measure MARL's speed on this machine: `python benchmarks/run.py --json PATH [--sweep]`.

Writes JSON with trial_seconds, pairs_per_second, matmul_peak_gflops, mfu, fused_speedup
(with K), a breakdown of a default trial (data, training, evaluation, Ray overhead) and the
machine it ran on. --sweep adds the wall time of the 30-trial paper ablation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from marl.fused import FusedTrainer  # noqa: E402
from marl.train import Trainer, objective, pick_device  # noqa: E402


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
    with FlopCounterMode(display=False) as counter:
        terms = objective(trainer.model, batch[:, 0], batch[:, 1], noise, trainer.weights,
                          trainer.train_x.shape[0], cfg.estimator)
        terms.total.backward()
    trainer.opt.zero_grad(set_to_none=True)
    return counter.get_total_flops()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="where to write the figures")
    parser.add_argument("--fuse-k", type=int, default=16, help="configurations per fused model")
    parser.add_argument("--sweep", action="store_true", help="also time the 30-trial paper ablation")
    args = parser.parse_args()

    cfg = Config.from_dict({"umap": False})
    device = pick_device(cfg.device)
    res: dict = {"machine": {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}}
    print(f"machine: {res['machine']}", file=sys.stderr)
    res["matmul_peak_gflops"] = matmul_peak_gflops(device)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["MARL_CACHE"] = cache
        _, res["data_generate_seconds"] = timed(load_dataset, cfg)
        data, data_load = timed(load_dataset, cfg)  # what a trial pays once the node has it
        trainer = Trainer(cfg, data, device)
        flops = step_flops(trainer)
        trainer.run_epoch()  # warm-up
        epoch_times = []
        for _ in range(2):
            _, t = timed(trainer.run_epoch)
            epoch_times.append(t)
        epoch = min(epoch_times)
        n_batches = cfg.n_train_pairs // cfg.batch_size
        res["pairs_per_second"] = n_batches * cfg.batch_size / epoch
        res["train_flops_per_second_g"] = flops * n_batches / epoch / 1e9
        res["mfu"] = res["train_flops_per_second_g"] / res["matmul_peak_gflops"]
        _, evaluation = timed(trainer.evaluate, False)
        amp = Trainer(cfg.replace(amp=True), data, device)
        amp.run_epoch()  # warm-up
        _, amp_epoch = timed(amp.run_epoch)
        res["amp_pairs_per_second"] = n_batches * cfg.batch_size / amp_epoch  # bf16 autocast

        # a default trial, wall, measured end to end in this process
        def trial():
            t = Trainer(cfg, load_dataset(cfg), device)
            for _ in range(cfg.epochs):
                t.run_epoch()
            t.evaluate(False)
        _, res["trial_seconds"] = timed(trial)
        res["breakdown_seconds"] = {
            "data": data_load, "training": epoch * cfg.epochs, "evaluation": evaluation,
            "ray_overhead_per_trial": ray_overhead_seconds()}

        k = args.fuse_k
        members = [cfg.replace(seed=i, gamma=[0.0, 0.1, 0.5, 1.0][i % 4]) for i in range(k)]
        fused = FusedTrainer(members, data, device)
        fused.run_epoch()  # warm-up
        _, fused_epoch = timed(fused.run_epoch)
        res["fused_k"] = k
        res["fused_pairs_per_second"] = k * n_batches * cfg.batch_size / fused_epoch
        res["fused_speedup"] = res["fused_pairs_per_second"] / res["pairs_per_second"]

    if args.sweep:
        with tempfile.TemporaryDirectory() as storage:
            _, res["paper_ablation_seconds"] = timed(
                subprocess.run, [sys.executable, "-m", "marl.sweep", "--storage", storage],
                check=True, capture_output=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
