"""Optuna (NSGA-II) over the separation objectives (issue 13): swap, InfoNCE, orthogonality and
γ on log scales that include 0 (`<w>_log10` <= -3 is off), the InfoNCE temperature too.
Objectives on validation clips: separation up, leakage down. 24 trials."""

from ray import tune

DESCRIPTION = "Optuna multi-objective over log-scale swap, infonce, orthogonal, gamma and the temperature"
SEARCH = "optuna"
SPACE = {
    "swap_log10": tune.uniform(-3.5, 0.5),
    "infonce_log10": tune.uniform(-3.5, 0.5),
    "orthogonal_log10": tune.uniform(-3.5, 0.5),
    "gamma_log10": tune.uniform(-3.5, 0.0),
    "temperature": tune.loguniform(0.03, 1.0),
}
BASE = {"umap": False, "alpha": 0.0, "beta": 0.0}
METRICS = ["separation/val/mlp", "leakage/val/mlp"]
MODES = ["max", "min"]
NUM_SAMPLES = 24
NUM_TRIALS = 24
