"""Evaluation on held-out clips (spec §4).

Each clip is encoded alone: private = its μ_p, shared = its μ_s (what a user has for one clip);
`fused` is the pair's product-of-experts mean, given to both clips of the pair. The pure
metric functions (`mi_matrix`, `mig`, `discretize`) take arrays and know nothing of models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import mutual_info_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from marl import names
from marl.config import Config
from marl.data import Dataset, Split


# ---------------------------------------------------------------- pure metrics
def discretize(codes: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per column (disentanglement_lib's convention)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=n_bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mi_matrix(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """MI in nats between each discrete factor (columns of factors) and each code dimension.

    codes: (n, D) continuous, factors: (n, F) discrete -> (F, D).
    """
    binned = discretize(codes, n_bins)
    return np.array([[mutual_info_score(factors[:, f], binned[:, d])
                      for d in range(codes.shape[1])] for f in range(factors.shape[1])])


def entropy(factor: np.ndarray) -> float:
    """H(factor) in nats; equals mutual_info_score(factor, factor)."""
    return float(mutual_info_score(factor, factor))


def mig(mi: np.ndarray, entropies: np.ndarray) -> float:
    """Mutual information gap: mean over factors of (top1 − top2 MI) / H(factor)."""
    if mi.shape[1] < 2:
        return float(np.mean(mi[:, 0] / entropies))
    top = np.sort(mi, axis=1)[:, ::-1]
    return float(np.mean((top[:, 0] - top[:, 1]) / entropies))


def probe_accuracy(z_train, y_train, z_test, y_test, seed: int = 0) -> float:
    """Accuracy of a small MLP classifier on frozen latents (standardised)."""
    clf = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(64,), max_iter=300, early_stopping=True, random_state=seed))
    clf.fit(z_train, y_train)
    return float(clf.score(z_test, y_test))


# ---------------------------------------------------------------- encoding
@torch.no_grad()
def encode(model, split: Split, device, max_pairs: int | None = None) -> dict[str, np.ndarray]:
    """Per-clip codes for the first max_pairs pairs of a split: private, shared, both, fused."""
    was_training = model.training
    model.eval()
    x = split.x[:max_pairs].to(device)
    n = x.shape[0]
    post = model.encode(x.reshape(-1, *x.shape[2:]))
    p1 = type(post)(*(t.view(n, 2, -1)[:, 0] for t in post))
    p2 = type(post)(*(t.view(n, 2, -1)[:, 1] for t in post))
    fused, _ = model.fuse(p1, p2)
    model.train(was_training)
    private, shared = post.mu_p.cpu().numpy(), post.mu_s.cpu().numpy()
    return {
        "private": private, "shared": shared,
        "both": np.concatenate([private, shared], axis=1),
        "fused": fused.repeat_interleave(2, dim=0).cpu().numpy(),  # same code for both clips
    }


def labels(split: Split, max_pairs: int | None = None) -> dict[str, np.ndarray]:
    return {task: split.factors[factor][:max_pairs].reshape(-1).numpy()
            for task, factor in names.FACTOR_OF_TASK.items()}


# ---------------------------------------------------------------- the whole evaluation
def evaluate(model, data: Dataset, cfg: Config, device, with_umap: bool = False):
    """Metrics (names from marl.names) and a DataFrame of held-out latents with their factors."""
    test = encode(model, data.eval, device)
    test_y = labels(data.eval)
    n_probe_pairs = max(1, cfg.probe_train_clips // 2)
    train = encode(model, data.train, device, n_probe_pairs)
    train_y = labels(data.train, n_probe_pairs)

    metrics: dict = {}
    for latent in names.LATENTS:
        for task in names.TASKS:
            metrics[names.probe(latent, task)] = probe_accuracy(
                train[latent], train_y[task], test[latent], test_y[task], cfg.seed)
    metrics[names.SEPARATION] = names.separation(metrics)
    metrics[names.LEAKAGE] = names.leakage(metrics)

    factors = np.stack([test_y[t] for t in names.TASKS], axis=1)
    entropies = np.array([entropy(factors[:, i]) for i in range(factors.shape[1])])
    for subspace in (*names.SUBSPACES, "both"):
        mi = mi_matrix(test[subspace], factors)
        metrics[names.mig(subspace)] = mig(mi, entropies)
        if subspace == "both":
            continue
        for i, task in enumerate(names.TASKS):
            metrics[names.mi(task, subspace)] = mi[i].tolist()
            metrics[names.mi_mean(task, subspace)] = float(mi[i].mean())

    latents = latents_frame(data.eval, test)
    if with_umap:
        from marl.plots import umap_embedding  # imports matplotlib and umap: only when asked for

        for subspace in ("private", "both", "shared"):
            emb = umap_embedding(test[subspace], cfg.seed)
            latents[f"umap_{subspace}_x"], latents[f"umap_{subspace}_y"] = emb[:, 0], emb[:, 1]
    return metrics, latents


def latents_frame(split: Split, codes: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(split)
    frame = {"pair": np.repeat(np.arange(n), 2), "view": np.tile([0, 1], n)}
    frame.update({k: v.reshape(-1).numpy() for k, v in split.factors.items()})
    for name in ("private", "shared", "fused"):
        for d in range(codes[name].shape[1]):
            frame[f"{name}_{d}"] = codes[name][:, d]
    return pd.DataFrame(frame)
