"""Beyond the paper: objectives that ask for private/shared separation (issue 13), each alone
and all together, with γ off and at 0.1, 3 seeds: 5 · 2 · 3 = 30 trials. Weights: swap 1
(a second reconstruction), InfoNCE 1 (log B ≈ 5.5 at batch 256, beside a reconstruction error of
~6 at paper scale), orthogonality 1. Run it at paper scale with `--config configs/paper_scale.yaml`,
and on real instruments with `--set source=soundfont`."""

from ray import tune

DESCRIPTION = "swap / InfoNCE / private-shared orthogonality alone and together, gamma 0 or 0.1, 3 seeds"
OFF = {"alpha": 0.0, "beta": 0.0, "swap": 0.0, "infonce": 0.0, "orthogonal": 0.0}
TERMS = {"none": {}, "swap": {"swap": 1.0}, "infonce": {"infonce": 1.0}, "orthogonal": {"orthogonal": 1.0},
         "all": {"swap": 1.0, "infonce": 1.0, "orthogonal": 1.0}}
POINTS = [{**OFF, **terms, "gamma": gamma, "ablation": name + ("+gamma" if gamma else "")}
          for gamma in (0.0, 0.1) for name, terms in TERMS.items()]
SPACE = {"point": tune.grid_search(POINTS), "seed": tune.grid_search([0, 1, 2])}
BASE = {"umap": False}
NUM_TRIALS = 30
