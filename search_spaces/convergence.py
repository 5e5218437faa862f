"""When is a trial trained? Reconstruction only and γ = 0.1, 2 seeds, at 8192, 16384 and
32768 training pairs for 60 epochs, evaluated every 15 epochs: each trial gives the probe
accuracies of four training lengths, so (pairs × epochs) is read off epochs.parquet.
12 trials; docs/reproduction.md turns them into configs/paper_scale.yaml."""

from ray import tune

DESCRIPTION = "training size x length: recon only and gamma=0.1 at 8k/16k/32k pairs, 60 epochs, 2 seeds"
SPACE = {
    "point": tune.grid_search([
        {"ablation": "recon", "alpha": 0.0, "beta": 0.0, "gamma": 0.0},
        {"ablation": "gamma", "alpha": 0.0, "beta": 0.0, "gamma": 0.1},
    ]),
    "n_train_pairs": tune.grid_search([8192, 16384, 32768]),
    "seed": tune.grid_search([0, 1]),
}
BASE = {"epochs": 60, "eval_every": 15, "umap": False}
NUM_TRIALS = 12
