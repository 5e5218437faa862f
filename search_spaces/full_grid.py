"""α × β × γ jointly over {0, 0.1, 0.5, 1} each, one seed: 64 trials."""

from ray import tune

DESCRIPTION = "alpha x beta x gamma over {0, 0.1, 0.5, 1}, one seed"
WEIGHTS = [0.0, 0.1, 0.5, 1.0]
SPACE = {
    "alpha": tune.grid_search(WEIGHTS),
    "beta": tune.grid_search(WEIGHTS),
    "gamma": tune.grid_search(WEIGHTS),
}
BASE = {"umap": False}
NUM_TRIALS = 64
