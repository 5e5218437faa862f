"""Settle γ (issue 19): does the dimension-wise KL separate timbre from pitch once its estimator
is honest at N ≫ B, and at the likelihood scale the paper may have used? γ ∈ {0.1, 1} ×
estimator {mss, mws, mss_batch, bank} × likelihood {sum, mean} × 3 seeds, beside the γ = 0
baseline of each likelihood: (2·4 + 1)·2·3 = 54 trials at paper scale, each reporting
kl_exact/* and kl_bias/*. On a GPU: `python -m marl.sweep --space gamma_study`."""

from ray import tune

DESCRIPTION = "gamma 0.1/1 x estimator mss/mws/mss_batch/bank x likelihood sum/mean x 3 seeds, paper scale"
ESTIMATORS = ("mss", "mws", "mss_batch", "bank")
LIKELIHOODS = ("sum", "mean")
OFF = {"alpha": 0.0, "beta": 0.0}


def points(gammas=(0.1, 1.0), estimators=ESTIMATORS, likelihoods=LIKELIHOODS, baseline=True) -> list[dict]:
    out = [{**OFF, "gamma": 0.0, "ablation": "recon", "estimator": "mss", "likelihood": lik}
           for lik in likelihoods] if baseline else []
    return out + [{**OFF, "gamma": g, "ablation": "gamma", "estimator": e, "likelihood": lik}
                  for g in gammas for e in estimators for lik in likelihoods]


SPACE = {"point": tune.grid_search(points()), "seed": tune.grid_search([0, 1, 2])}
# configs/paper_scale.yaml's regime
BASE = {"n_train_pairs": 32768, "epochs": 60, "eval_every": 15, "compile": True, "umap": False}
NUM_TRIALS = 54
