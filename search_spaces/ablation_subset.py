"""The paper's ablation cut to one weight per term, for the paper-scale regime where a trial
takes minutes: reconstruction only, α = 1, β = 1, γ = 0.1 and γ = 1, 3 seeds: 15 trials.
Run it with `--config configs/paper_scale.yaml` (docs/reproduction.md)."""

from ray import tune

DESCRIPTION = "recon only, alpha=1, beta=1, gamma=0.1, gamma=1; 3 seeds (run with configs/paper_scale.yaml)"
POINTS = [
    {"ablation": "recon", "alpha": 0.0, "beta": 0.0, "gamma": 0.0},
    {"ablation": "alpha", "alpha": 1.0, "beta": 0.0, "gamma": 0.0},
    {"ablation": "beta", "alpha": 0.0, "beta": 1.0, "gamma": 0.0},
    {"ablation": "gamma", "alpha": 0.0, "beta": 0.0, "gamma": 0.1},
    {"ablation": "gamma", "alpha": 0.0, "beta": 0.0, "gamma": 1.0},
]
SPACE = {"point": tune.grid_search(POINTS), "seed": tune.grid_search([0, 1, 2])}
BASE = {"umap": False}
NUM_TRIALS = 15
