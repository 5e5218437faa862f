"""The sweep's own cost estimate (marl.cost) for shipped studies, to set beside measured wall
times in docs/performance.md: `python benchmarks/cost.py [--cpus N]`.

Prints one line per study: what `python -m marl.sweep` would print before starting it on this
machine, with N CPUs for the embedded Ray (default: all) and 1 CPU per trial.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_spaces  # noqa: E402
from marl.cost import sweep_estimate  # noqa: E402
from marl.plan import grid_configs  # noqa: E402
from marl.sweep import parse_args  # noqa: E402

STUDIES = {  # name: flags of `python -m marl.sweep`
    "smoke": ["--space", "smoke"],
    "paper_ablation (the default)": [],
    "paper_ablation, configs/paper_scale.yaml": ["--config", "configs/paper_scale.yaml"],
    "recipe (trials of different sizes)": ["--space", "recipe"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpus", type=int, default=os.cpu_count())
    cpus = p.parse_args().cpus
    for name, flags in STUDIES.items():
        args = parse_args(flags)
        planned = grid_configs(search_spaces.load(args.space), args)
        line, _ = sweep_estimate([[cfg] for cfg, _ in planned], max(1, cpus), 1.0, 0.0)
        print(f"{name}: {len(planned)} trials, {cpus} at once: {line}")


if __name__ == "__main__":
    main()
