"""Two tiny trials (reconstruction only vs γ = 0.5) that finish in well under a minute:
first contact and tests."""

from ray import tune

DESCRIPTION = "2 tiny trials for a first run and the tests"
SPACE = {"gamma": tune.grid_search([0.0, 0.5])}
BASE = {"n_train_pairs": 256, "n_test_pairs": 96, "n_val_pairs": 96, "epochs": 2, "batch_size": 64, "hidden": 32,
        "latent_dim": 4, "probe_train_clips": 256, "n_frames": 8, "umap": False}
NUM_TRIALS = 2
