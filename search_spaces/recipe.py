"""Converged for less (issue 23): which training recipe reaches the converged regime's figures
for a fraction of its cost? Reconstruction only and γ = 0.1 (with `mws`, the estimator the γ
study recommends), 2 seeds each, under

- the reference: 32768 pairs × 120 epochs at today's constant lr 1e-3, evaluated every 30
  epochs (its epoch-60 reading is configs/paper_scale.yaml's regime);
- recipes at a quarter of paper-scale compute (491,520 pair-epochs: 32768 × 15, 16384 × 30,
  8192 × 60) and at twice the default's (122,880: 8192 × 15, 4096 × 30), with a cosine schedule
  after a 5 % warm-up, at lr 2e-3 (batch 256) or 4e-3 (batch 512).

(1 + 8) recipes × 2 objectives × 2 seeds = 36 trials, compiled as at paper scale.
`analysis.tables.recipe_gaps` finds the cheapest recipe within 0.03 of the reference. About
90 min on the 2-core CPU by the sweep's estimate (two trials at a time; a reference trial is ~25 min of it)."""

from ray import tune

DESCRIPTION = "training recipes (size x length x lr schedule x batch) against 32768 x 120, recon and gamma=0.1, 2 seeds"


def recipe(n_train_pairs: int, epochs: int, lr: float = 2e-3, batch_size: int = 256) -> dict:
    return {"recipe": f"{n_train_pairs}x{epochs} cosine lr {lr:g} b{batch_size}", "n_train_pairs": n_train_pairs,
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "schedule": "cosine", "warmup": 0.05,
            "eval_every": 0}


REFERENCE = {"recipe": "reference", "n_train_pairs": 32768, "epochs": 120, "lr": 1e-3, "batch_size": 256,
             "schedule": "constant", "warmup": 0.0, "eval_every": 30}
RECIPES = [REFERENCE,
           recipe(32768, 15), recipe(32768, 15, 4e-3, 512), recipe(16384, 30), recipe(16384, 30, 4e-3, 512),
           recipe(8192, 60), recipe(8192, 15), recipe(8192, 15, 4e-3, 512), recipe(4096, 30)]
OBJECTIVES = [{"ablation": "recon", "alpha": 0.0, "beta": 0.0, "gamma": 0.0},
              {"ablation": "gamma", "alpha": 0.0, "beta": 0.0, "gamma": 0.1}]
SPACE = {"recipe": tune.grid_search(RECIPES), "point": tune.grid_search(OBJECTIVES), "seed": tune.grid_search([0, 1])}
# mws for both: reconstruction only does not train on the estimate, and one estimator lets a
# GPU pack both objectives' seeds of a recipe into one trial
BASE = {"estimator": "mws", "umap": False, "compile": True}
NUM_TRIALS = 36
