"""Latent dimension per subspace {2, 4, 8, 16, 32} at γ = 0.1 (the paper's favoured point),
3 seeds: 15 trials."""

from ray import tune

DESCRIPTION = "latent_dim in {2, 4, 8, 16, 32} at gamma = 0.1, 3 seeds"
SPACE = {
    "latent_dim": tune.grid_search([2, 4, 8, 16, 32]),
    "seed": tune.grid_search([0, 1, 2]),
}
BASE = {"alpha": 0.0, "beta": 0.0, "gamma": 0.1, "umap": False}
NUM_TRIALS = 15
