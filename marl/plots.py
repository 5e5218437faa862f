"""Figures drawn from plain arrays and DataFrames (matplotlib only: no torch, no Ray).

Each figure is written as PNG and PDF; the same functions serve `marl.train` and `analysis`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TIMBRE_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")
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
    umap = _umap()
    return umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(codes)


@functools.cache
def _umap():
    """umap (a slow import: only when asked for), its numba functions compiled once per machine
    instead of once per process. umap-learn 0.5 caches few of them, and compiling the rest took
    every report and training run ~16 s (two thirds of a smoke sweep's report); numba keeps the
    compiled code under NUMBA_CACHE_DIR when set, else beside umap's source, else in the user's
    cache folder, and recompiles it when umap or numba change."""
    import umap
    import umap.umap_
    from numba.core.dispatcher import Dispatcher

    for module in (umap.umap_, umap.utils, umap.layouts, umap.distances, umap.sparse, umap.spectral):
        for function in vars(module).values():
            if isinstance(function, Dispatcher):
                try:
                    function.enable_caching()
                except RuntimeError:  # numba found no writable place for a cache: compile as before
                    continue
    return umap


def timbre_names(latents) -> tuple[str, ...] | None:
    """Each timbre class's name from a latents frame's `timbre_name` column, where it has one."""
    if "timbre_name" not in latents:
        return None
    pairs = latents[["timbre", "timbre_name"]].drop_duplicates().set_index("timbre")["timbre_name"]
    return tuple(str(pairs.get(t, t)) for t in range(int(latents["timbre"].max()) + 1))


def umap_scatter(embeddings: dict[str, np.ndarray], timbre: np.ndarray, path_base,
                 title: str = "", names: tuple | None = None) -> list[Path]:
    """UMAP scatters (one per latent set, e.g. private / both / shared) coloured by timbre.
    names: one label per timbre class (default: the class numbers; `timbre_names` of a latents
    frame gives them)."""
    n = int(timbre.max()) + 1 if len(timbre) else 0
    names = tuple(names) if names is not None and len(names) else tuple(str(t) for t in range(n))
    colours = TIMBRE_COLOURS if n <= len(TIMBRE_COLOURS) else plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.2 * len(embeddings), 3.2),
                             constrained_layout=True, squeeze=False)
    for ax, (name, emb) in zip(axes[0], embeddings.items()):
        for t, (colour, label) in enumerate(zip(colours, names[:n])):
            sel = timbre == t
            ax.scatter(emb[sel, 0], emb[sel, 1], s=3, color=colour, label=label, alpha=0.7, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(markerscale=4, fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return save(fig, path_base)


def spectrogram_grid(columns: dict[str, np.ndarray], path_base, title: str = "") -> list[Path]:
    """Log-mel clips side by side: one column per entry (title: array (n, mels, frames)), one
    row per clip, low frequencies at the bottom, one colour scale for the figure."""
    n = len(next(iter(columns.values())))
    vmin = min(float(a.min()) for a in columns.values())
    vmax = max(float(a.max()) for a in columns.values())
    fig, axes = plt.subplots(n, len(columns), figsize=(1.6 * len(columns), 1.4 * n),
                             constrained_layout=True, squeeze=False)
    for c, (name, clips) in enumerate(columns.items()):
        for r in range(n):
            ax = axes[r][c]
            ax.imshow(clips[r], origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, path_base)


def loss_curves(epochs, path_base, title: str = "") -> list[Path]:
    """Each `loss/<term>` column of an epochs table against `epoch`, one panel per term (the
    terms differ by orders of magnitude), one line per trial when there is a `trial` column."""
    terms = [c for c in epochs.columns if c.startswith("loss/")]
    fig, axes = plt.subplots(1, len(terms), figsize=(2.6 * len(terms), 2.4), constrained_layout=True,
                             squeeze=False)
    groups = epochs.groupby("trial") if "trial" in epochs else [("", epochs)]
    for ax, term in zip(axes[0], terms):
        for _, g in groups:
            g = g.sort_values("epoch")
            ax.plot(g["epoch"], g[term], lw=1)
        ax.set_title(term.removeprefix("loss/"), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save(fig, path_base)
