"""Disentanglement scores of a code against discrete factors, by disentanglement_lib's
definitions (google-research/disentanglement_lib, evaluation/metrics/):

- DCI (Eastwood & Williams, ICLR 2018; dci.py): one gradient-boosted classifier per factor,
  fitted on training codes; importance[code, factor] = its feature importances. Disentanglement
  = Σ_code (1 − H_F(importance[code, :])) · code's share of all importance; completeness =
  Σ_factor (1 − H_D(importance[:, factor])) · factor's share; H_K is the entropy in base K (the
  number of factors F, or of codes D), so each term lies in [0, 1]. Informativeness = the
  classifiers' mean accuracy on training and on test codes.
- SAP (Kumar et al., ICLR 2018; sap_score.py, discrete factors): score[code, factor] = test
  accuracy of a LinearSVC(C=0.01, balanced) fitted on that one code dimension; SAP = mean over
  factors of (best − second-best score).
- Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018; modularity_explicitness.py):
  modularity = mean over codes of 1 − (Σ_f m_f² − max_f m_f²) / (max_f m_f² · (F − 1)), m the
  code's binned MI with each factor (a code with no MI scores 0); explicitness = mean over
  factors of the macro ROC-AUC of a one-vs-rest logistic regression on all (standardised) codes.
- Subspace shares (ours): the part of a factor's importance, or of its summed binned MI, that the
  private dimensions (the first n_private) carry, and the part the shared ones carry.

Where we depart from the reference (docs/analysis.md, "Disentanglement metrics"): the default
booster is sklearn's histogram GBT (same 100 rounds, depth 3, rate 0.1) with split-gain
importances, ~25× faster than GradientBoostingClassifier at 21 classes (`booster="reference"`
runs dci.py's own); modularity reads the MI of test codes (the caller passes it); explicitness
averages the AUC over the classes a split has both with and without. Scores that compare
factors (disentanglement, modularity) are NaN with fewer than 2 factors, SAP with fewer than 2
codes.

Arrays: codes (n, D) float, factors (n, F) int, one row per clip; matrices are (D, F), codes ×
factors, as in disentanglement_lib.
"""

from __future__ import annotations

import warnings

import numpy as np

# sklearn is imported where it is used: a sweep's driver imports this module (through the
# trainable) and never scores, and importing sklearn costs it ~1.5 s

BOOSTERS = ("fast", "reference")
NAN = float("nan")


# ---------------------------------------------------------------- DCI
def _normalised_entropy(weights: np.ndarray, base: int) -> np.ndarray:
    """Entropy, in base `base`, of each row of weights taken as a distribution. The 1e-11 is
    dci.py's: it keeps an all-zero row at the uniform distribution (entropy 1) instead of 0/0."""
    p = weights + 1e-11
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def _shares_of_total(weights: np.ndarray) -> np.ndarray:
    """Each entry's share of the sum; uniform when everything is 0 (dci.py's fallback)."""
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))


def disentanglement(importance: np.ndarray) -> float:
    """DCI disentanglement of an importance matrix (D codes, F factors)."""
    if importance.shape[1] < 2:  # base-1 entropy: one factor cannot be shared between codes
        return NAN
    per_code = 1.0 - _normalised_entropy(importance, importance.shape[1])
    return float(per_code @ _shares_of_total(importance.sum(axis=1)))


def completeness(importance: np.ndarray) -> float:
    """DCI completeness of an importance matrix (D codes, F factors)."""
    if importance.shape[0] < 2:
        return NAN
    per_factor = 1.0 - _normalised_entropy(importance.T, importance.shape[0])
    return float(per_factor @ _shares_of_total(importance.sum(axis=0)))


def split_gain_importances(model, n_features: int) -> np.ndarray:
    """Feature importances of a fitted HistGradientBoostingClassifier, which sklearn does not
    expose: each feature's summed split gain (the loss reduction of its splits) over every tree
    of every class, normalised to sum 1 (all zeros if no tree split), the analogue of
    GradientBoostingClassifier's summed impurity decrease. Reads the private `_predictors`
    (stable since sklearn 0.21); tests/test_disentanglement.py fails if it ever changes."""
    try:
        trees = [tree for stage in model._predictors for tree in stage]
        nodes = np.concatenate([tree.nodes for tree in trees])
        split = ~nodes["is_leaf"].astype(bool)
        gains = np.bincount(nodes["feature_idx"][split], weights=nodes["gain"][split], minlength=n_features)
    except (AttributeError, KeyError, ValueError) as err:
        raise RuntimeError("this scikit-learn's HistGradientBoostingClassifier no longer exposes its "
                           "trees as marl.disentanglement expects; use booster='reference'") from err
    total = gains.sum()
    return gains / total if total > 0 else gains


def _booster(x: np.ndarray, y: np.ndarray, booster: str, seed: int):
    """A fitted classifier of y from x and its feature importances (summing to 1)."""
    if booster == "reference":  # dci.py: GradientBoostingClassifier() with its defaults
        from sklearn.ensemble import GradientBoostingClassifier

        model = GradientBoostingClassifier(random_state=seed).fit(x, y)
        return model, np.abs(model.feature_importances_)
    if booster != "fast":
        raise ValueError(f"booster: one of {BOOSTERS}, got {booster!r}")
    from sklearn.ensemble import HistGradientBoostingClassifier

    # the reference's size (100 rounds of depth-3 trees, rate 0.1) and leaves of any size, as
    # its trees have; early stopping would hold out training clips the reference fits on
    model = HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.1, min_samples_leaf=1,
                                           early_stopping=False, random_state=seed).fit(x, y)
    return model, split_gain_importances(model, x.shape[1])


def dci(train_codes, train_factors, test_codes, test_factors, booster: str = "fast", seed: int = 0) -> dict:
    """DCI: `importance` (D, F), `disentanglement`, `completeness`, `informativeness_train`
    and `informativeness_test` (mean accuracy over factors)."""
    importance = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    train_acc, test_acc = [], []
    for f in range(train_factors.shape[1]):
        model, importance[:, f] = _booster(train_codes, train_factors[:, f], booster, seed)
        train_acc.append(np.mean(model.predict(train_codes) == train_factors[:, f]))
        test_acc.append(np.mean(model.predict(test_codes) == test_factors[:, f]))
    return {"importance": importance, "disentanglement": disentanglement(importance),
            "completeness": completeness(importance),
            "informativeness_train": float(np.mean(train_acc)), "informativeness_test": float(np.mean(test_acc))}


# ---------------------------------------------------------------- SAP
def sap_matrix(train_codes, train_factors, test_codes, test_factors) -> np.ndarray:
    """(D, F): test accuracy of a linear SVM reading the factor from that code dimension alone."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    score = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    with warnings.catch_warnings():  # C = 0.01 on one feature converges slowly; the score is the reference's
        warnings.simplefilter("ignore", ConvergenceWarning)
        for d in range(score.shape[0]):
            for f in range(score.shape[1]):
                svm = LinearSVC(C=0.01, class_weight="balanced").fit(train_codes[:, d:d + 1], train_factors[:, f])
                score[d, f] = np.mean(svm.predict(test_codes[:, d:d + 1]) == test_factors[:, f])
    return score


def sap(score: np.ndarray) -> float:
    """SAP of a score matrix (D, F): mean over factors of the gap between its top two codes."""
    if score.shape[0] < 2:
        return NAN
    top = np.sort(score, axis=0)
    return float(np.mean(top[-1] - top[-2]))


# ---------------------------------------------------------------- modularity, explicitness
def modularity(mi: np.ndarray) -> float:
    """Modularity of an MI matrix (D codes, F factors): 1 when each code informs one factor only."""
    if mi.shape[1] < 2:  # the deviation from an ideal code is measured against the other factors
        return NAN
    squared = np.square(mi)
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = 1.0 - (squared.sum(axis=1) - top) / (top * (mi.shape[1] - 1))
    per_code[top == 0] = 0.0  # a code that says nothing is not modular (the reference's rule)
    return float(per_code.mean())


def _mean_auc(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro ROC-AUC of the one-vs-rest columns, over the classes the split has and lacks (the
    reference's MultiLabelBinarizer fails on a split that misses a training class)."""
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(labels == c, proba[:, j]) for j, c in enumerate(classes)
            if 0 < np.sum(labels == c) < len(labels)]
    return float(np.mean(aucs)) if aucs else NAN


def explicitness(train_codes, train_factors, test_codes, test_factors) -> tuple[float, float]:
    """Explicitness on training and on test codes (mean over factors)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant dimension (a collapsed unit) stays 0, not 0/0
    x_train, x_test = (train_codes - mean) / std, (test_codes - mean) / std
    train, test = [], []
    for f in range(train_factors.shape[1]):
        # one-vs-rest, as the reference's LogisticRegression() was on the scikit-learn of its day
        # (liblinear, multi_class="ovr"); probabilities normalised over classes, as there
        clf = OneVsRestClassifier(LogisticRegression(solver="liblinear")).fit(x_train, train_factors[:, f])
        train.append(_mean_auc(train_factors[:, f], clf.predict_proba(x_train), clf.classes_))
        test.append(_mean_auc(test_factors[:, f], clf.predict_proba(x_test), clf.classes_))
    return float(np.mean(train)), float(np.mean(test))


# ---------------------------------------------------------------- subspaces
def subspace_shares(weights: np.ndarray, n_private: int) -> np.ndarray:
    """(F, 2): per factor, the share of its weights (a (D, F) matrix of importances or MI) on
    the private dimensions (the first n_private) and on the shared ones; NaN where a factor
    has no weight at all."""
    total = weights.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        private = np.where(total > 0, weights[:n_private].sum(axis=0) / total, NAN)
    return np.stack([private, 1.0 - private], axis=1)


def scores(train_codes, train_factors, test_codes, test_factors, test_mi: np.ndarray, n_private: int,
           booster: str = "fast", seed: int = 0) -> dict:
    """Every score above, fitted on the training codes and scored on the test codes.

    test_mi: (F, D) binned MI of the test codes with the factors (`marl.evaluate.mi_matrix`).
    Returns the scalars of `dci` (importance excluded), `sap`, `modularity`, `explicitness_train`,
    `explicitness_test`, and `shares`: {"importance": (F, 2), "mi": (F, 2)} (private, shared).
    """
    out = dci(train_codes, train_factors, test_codes, test_factors, booster, seed)
    importance = out.pop("importance")
    out["sap"] = sap(sap_matrix(train_codes, train_factors, test_codes, test_factors))
    out["modularity"] = modularity(test_mi.T)
    out["explicitness_train"], out["explicitness_test"] = explicitness(train_codes, train_factors,
                                                                       test_codes, test_factors)
    out["shares"] = {"importance": subspace_shares(importance, n_private),
                     "mi": subspace_shares(test_mi.T, n_private)}
    return out
