"""Optuna (NSGA-II via Ray Tune's OptunaSearch), multi-objective: timbre in the shared latent,
pitch in the private one, little leakage. α, β, γ on a log scale that includes 0: a value
<= -3 of `<w>_log10` means the term is off. 24 trials."""

from ray import tune

DESCRIPTION = "Optuna multi-objective over log-scale alpha, beta, gamma (0 included) and latent size"
SEARCH = "optuna"
SPACE = {
    "alpha_log10": tune.uniform(-3.5, 0.3),
    "beta_log10": tune.uniform(-3.5, 0.3),
    "gamma_log10": tune.uniform(-3.5, 0.3),
    "latent_dim": tune.choice([4, 8, 16]),
}
BASE = {"umap": False}
# validation figures: the search never sees the test clips that tables report
METRICS = ["probe/val/mlp/shared/timbre", "probe/val/mlp/private/pitch", "leakage/val/mlp"]
MODES = ["max", "max", "min"]
NUM_SAMPLES = 24
NUM_TRIALS = 24
