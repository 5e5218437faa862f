"""The paper's loss ablation: reconstruction only, and each of α, β, γ alone at
{0.1, 0.5, 1}, each with 3 seeds: (1 + 3·3) · 3 = 30 trials."""

from ray import tune

from search_spaces import ablation_points

DESCRIPTION = "reconstruction only + each of alpha, beta, gamma alone at {0.1, 0.5, 1}, 3 seeds"
SPACE = {
    "point": tune.grid_search(ablation_points()),
    "seed": tune.grid_search([0, 1, 2]),
}
BASE = {"umap": False}
NUM_TRIALS = 30
