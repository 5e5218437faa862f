"""How far the fast DCI booster lands from disentanglement_lib's: `python benchmarks/dci_booster.py`.

Fits both boosters of `marl.disentanglement.dci` (the reference, dci.py's
GradientBoostingClassifier(); the fast default, a histogram GBT of the same size with split-gain
importances) on fixture codes of a default trial's shapes: 4096 training clips
(`probe_train_clips`), 2048 test clips (2 x `n_test_pairs`), 16 dimensions (2 x `latent_dim`:
8 private, then 8 shared), timbre 4 classes (synth), pitch 21. Prints a Markdown table of
D, C, informativeness (train, test) and seconds for each, with |fast - reference| (and the
speed-up, reference seconds / fast seconds, in the seconds column), then the
seconds of every new metric of one model (`marl.disentanglement.scores`).

Fixtures: `aligned` (pitch in dim 0, timbre in dim 8, as class + uniform jitter; the rest
N(0, 0.5²) noise), `rotated` (the same with dims 0 and 8, scaled to one range, rotated by 45°),
`mixture` (pitch as a phase on a circle and a ramp, timbre as a random 3-d embedding, mixed
into all 16 dimensions by a random sparse matrix, plus noise). `--trained` adds the codes of a
default model trained here (15 epochs, ~40 s more) and times that model's whole evaluation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marl import disentanglement as dl  # noqa: E402
from marl.evaluate import mi_matrix  # noqa: E402

N_TRAIN, N_TEST, D, N_PRIVATE, CLASSES = 4096, 2048, 16, 8, (4, 21)


def fixtures(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    f = np.stack([rng.integers(0, k, n) for k in CLASSES], axis=1)
    z = rng.normal(0, 0.5, (n, D))
    z[:, 0], z[:, N_PRIVATE] = f[:, 1] + rng.uniform(0, 1, n), f[:, 0] + rng.uniform(0, 1, n)
    yield "aligned", z, f
    pitch, timbre = z[:, 0] / CLASSES[1], z[:, N_PRIVATE] / CLASSES[0]
    r = z.copy()
    r[:, 0], r[:, N_PRIVATE] = (pitch + timbre) / np.sqrt(2), (pitch - timbre) / np.sqrt(2)
    yield "rotated", r, f
    phase = (f[:, 1] + rng.uniform(0, 1, n)) / CLASSES[1] * 2 * np.pi
    latent = np.concatenate([np.sin(phase)[:, None], np.cos(phase)[:, None], phase[:, None],
                             rng.normal(size=(CLASSES[0], 3))[f[:, 0]]], axis=1)
    mixing = rng.normal(size=(latent.shape[1], D)) * (rng.uniform(size=(1, D)) < 0.5)
    yield "mixture", latent @ mixing + rng.normal(0, 0.5, (n, D)), f


def trained():
    """Codes of a default model trained here, and the seconds of its training and evaluation."""
    import torch

    from marl.config import Config
    from marl.data import load_dataset
    from marl.evaluate import encode, labels
    from marl.trainer import Trainer

    cfg = Config(umap=False)
    data = load_dataset(cfg)
    trainer = Trainer(cfg, data, torch.device("cpu"))
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        trainer.run_epoch()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.evaluate()
    eval_s = time.perf_counter() - start
    model, pairs = trainer.member(0), cfg.probe_train_clips // 2
    parts = [(encode(model, split, torch.device("cpu"), n)["both"], labels(split, data.tasks, n)["both"])
             for split, n in ((data.train, pairs), (data.test, None))]
    z = np.concatenate([p[0] for p in parts])
    f = np.concatenate([np.stack([p[1][t] for t in ("timbre", "pitch")], 1) for p in parts])
    return z, f, train_s, eval_s


def compare(name, z, f, rows):
    split = (slice(0, N_TRAIN), slice(N_TRAIN, None))
    for booster in ("reference", "fast"):
        start = time.perf_counter()
        s = dl.dci(z[split[0]], f[split[0]], z[split[1]], f[split[1]], booster=booster)
        s["seconds"] = time.perf_counter() - start
        rows.append((name, booster, s))
    ref, fast = rows[-2][2], rows[-1][2]
    diff = {k: abs(fast[k] - ref[k]) for k in ref if k not in ("importance", "seconds")}
    rows.append((name, "abs. diff. (speed-up)", {**diff, "seconds": ref["seconds"] / fast["seconds"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", action="store_true", help="add a default model's codes (trains one)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.2f} at the start\n")
    rows, cost = [], []
    sets = list(fixtures())
    if args.trained:
        z, f, train_s, eval_s = trained()
        sets.append(("trained", z, f))
    for name, z, f in sets:
        compare(name, z, f, rows)
        a, b = slice(0, N_TRAIN), slice(N_TRAIN, None)
        start = time.perf_counter()
        dl.scores(z[a], f[a], z[b], f[b], mi_matrix(z[b], f[b]), N_PRIVATE)
        cost.append((name, time.perf_counter() - start))
    keys = ("disentanglement", "completeness", "informativeness_train", "informativeness_test", "seconds")
    print("| fixture | booster | D | C | I train | I test | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, booster, s in rows:
        speedup = "x" if booster.startswith("abs") else ""
        cells = [f"{s[k]:.3f}" for k in keys[:-1]] + [f"{s['seconds']:.1f}{speedup}"]
        print(f"| {name} | {booster} | " + " | ".join(cells) + " |")
    print("\nall new metrics of one model (fast DCI, SAP, modularity, explicitness, shares; MI included):")
    for name, seconds in cost:
        print(f"  {name}: {seconds:.2f} s")
    if args.trained:
        print(f"\ntrained default model: training {train_s:.1f} s (15 epochs), evaluation {eval_s:.1f} s "
              f"(new metrics included)")


if __name__ == "__main__":
    main()
