"""The part of `gamma_study` a 2-core CPU runs in about 1.5 h (issue 19's budget): γ = 0.1 ×
estimator {mws, mss_batch, bank} × 2 seeds, summed likelihood, at paper scale (6 trials). The
γ = 1 run of the best estimator and the γ = 0 / mss rows come from their own sweeps
(docs/reproduction.md, "Settle γ")."""

from ray import tune

from search_spaces.gamma_study import BASE, points

DESCRIPTION = "gamma 0.1 x estimator mws/mss_batch/bank x 2 seeds, summed likelihood, paper scale"
SPACE = {"point": tune.grid_search(points((0.1,), ("mws", "mss_batch", "bank"), ("sum",), baseline=False)),
         "seed": tune.grid_search([0, 1])}
BASE = dict(BASE)
NUM_TRIALS = 6
