"""Figures drawn from plain arrays and DataFrames (matplotlib only: no torch, no Ray).

Each figure is written as PNG and PDF; the same functions serve `marl.train` and `analysis`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TIMBRE_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")
TIMBRE_NAMES = ("sine", "triangle", "sawtooth", "square")
FACTOR_LABELS = {"timbre": "Timbre", "pitch": "Frequency"}


def save(fig, path_base: str | Path) -> list[Path]:
    """Write `<path_base>.png` and `.pdf`; returns the paths."""
    base = Path(path_base)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=200 if p.suffix == ".png" else None, bbox_inches="tight")
    plt.close(fig)
    return paths


def mi_heatmap(mi: dict[tuple[str, str], list[float]], path_base, title: str = "") -> list[Path]:
    """MI (nats) factor × dimension, one panel per subspace, like the paper's MI matrix.

    mi: {(factor, subspace): [MI per dimension]} for factors timbre/pitch, subspaces private/shared.
    """
    subspaces = ("private", "shared")
    factors = ("timbre", "pitch")
    mats = [np.array([mi[(f, s)] for f in factors]) for s in subspaces]
    vmax = max(max(m.max() for m in mats), 1e-6)
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.6 * mats[0].shape[1] * 2, 2.6), constrained_layout=True)
    for ax, mat, sub in zip(axes, mats, subspaces):
        im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 * vmax else "black")
        ax.set_xticks(range(mat.shape[1]), [f"Z{i + 1}" for i in range(mat.shape[1])])
        ax.set_yticks(range(len(factors)), [FACTOR_LABELS[f] for f in factors])
        ax.set_title(f"{sub} latent")
    fig.colorbar(im, ax=axes, label="MI (nats)")
    if title:
        fig.suptitle(title)
    return save(fig, path_base)


def umap_embedding(codes: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP of latent codes; one home for its settings, used by training and analysis."""
    import umap  # slow import (numba); only when asked for

    return umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(codes)


def umap_scatter(embeddings: dict[str, np.ndarray], timbre: np.ndarray, path_base,
                 title: str = "") -> list[Path]:
    """UMAP scatters (one per latent set, e.g. private / both / shared) coloured by timbre."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.2 * len(embeddings), 3.2),
                             constrained_layout=True, squeeze=False)
    for ax, (name, emb) in zip(axes[0], embeddings.items()):
        for t, (colour, label) in enumerate(zip(TIMBRE_COLOURS, TIMBRE_NAMES)):
            sel = timbre == t
            ax.scatter(emb[sel, 0], emb[sel, 1], s=3, c=colour, label=label, alpha=0.7, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(markerscale=4, fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return save(fig, path_base)
