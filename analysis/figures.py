"""Paper-quality figures (PNG and PDF) from results frames and trial latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import importance, tables
from marl import names, plots, results
from marl.plots import plt, save

PRIVATE_COLOUR, SHARED_COLOUR = "#4c72b0", "#dd8452"
TERM_LABELS = {"alpha": "α (MI)", "beta": "β (TC)", "gamma": "γ (dim-wise KL)"}
CHANCE_STYLE = dict(color="0.3", ls="--", lw=1)


def chance_levels(df: pd.DataFrame, split: str = "test") -> dict[tuple[str, str], float]:
    """(latent, task) -> mean `chance/<split>/...` rate over finished trials, where recorded."""
    ok, _ = tables.usable(df)
    out = {}
    for latent in names.LATENTS:
        for task in names.TASKS:
            col = names.chance(latent, task, split)
            if col in ok and ok[col].notna().any():
                out[latent, task] = float(ok[col].mean())
    return out


def _chance_line(ax, chance: dict, task: str, latents=names.SUBSPACES, label: bool = True) -> None:
    """One dashed line at the task's chance rate (the mean over the latents shown)."""
    rates = [chance[lat, task] for lat in latents if (lat, task) in chance]
    if rates:
        ax.axhline(float(np.mean(rates)), **CHANCE_STYLE, label="chance" if label else None)


def ablation_bars(ablation: pd.DataFrame, path_base, chance: dict | None = None) -> list[Path]:
    """α/β/γ columns × timbre/pitch rows; private vs shared bars per weight (0 = recon only),
    error bars = std over seeds, as in the paper's ablation figure; dashed: chance
    (`chance_levels`)."""
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.2), sharey=True, constrained_layout=True)
    recon = ablation[ablation["term"] == "recon"]
    for col, term in enumerate(tables.TERMS):
        rows = pd.concat([recon, ablation[ablation["term"] == term]]).sort_values("weight")
        x = np.arange(len(rows))
        for row, task in enumerate(names.TASKS):
            ax = axes[row, col]
            for offset, sub, colour in ((-0.2, "private", PRIVATE_COLOUR), (0.2, "shared", SHARED_COLOUR)):
                mean = rows[f"{sub}/{task} mean"].to_numpy()
                std = np.nan_to_num(rows[f"{sub}/{task} std"].to_numpy())
                ax.bar(x + offset, mean, 0.4, yerr=std, capsize=2, color=colour, label=sub)
            _chance_line(ax, chance or {}, task)
            ax.set_xticks(x, [f"{w:g}" for w in rows["weight"]])
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(TERM_LABELS[term])
            if row == 1:
                ax.set_xlabel("weight (0 = reconstruction only)")
            if col == 0:
                ax.set_ylabel(f"{task} accuracy")
    axes[0, 0].legend(fontsize=8)
    return save(fig, path_base)


def mi_heatmap_for_trial(row: pd.Series, path_base) -> list[Path]:
    mi = {(t, s): list(row[names.mi(t, s)]) for t in names.TASKS for s in names.SUBSPACES}
    return plots.mi_heatmap(mi, path_base, title=str(row.get("trial", ""))[:60])


def trial_latents(row: pd.Series) -> tuple[pd.DataFrame | None, str]:
    """The test latents in a trial's final checkpoint (a local path or a URI), or None and why not."""
    ckpt = row.get("checkpoint")
    if not isinstance(ckpt, str) or not ckpt:
        return None, f"trial {row.get('trial')} has no checkpoint in results.parquet"
    file = f"{ckpt.rstrip('/')}/latents.parquet"
    try:
        if not results.exists(file):
            return None, f"{file} does not exist (moved, deleted, or storage not reachable from here)"
        return results.read_parquet(file), ""
    except OSError as err:  # unreachable cluster storage, missing credentials, ...
        return None, f"{file} could not be read: {str(err).splitlines()[0][:160]}"


def umap_for_trial(row: pd.Series, path_base, seed: int = 0) -> tuple[list[Path] | None, str]:
    """UMAP of private / both / shared latents from the trial's final checkpoint; (None, why)
    when the checkpoint cannot be read."""
    latents, why = trial_latents(row)
    if latents is None:
        return None, why
    private = latents.filter(regex=r"^private_\d+$").to_numpy()
    shared = latents.filter(regex=r"^shared_\d+$").to_numpy()
    sets = {"private": private, "both": np.concatenate([private, shared], 1), "shared": shared}
    emb = {}
    for name, codes in sets.items():
        cols = [f"umap_{name}_x", f"umap_{name}_y"]
        if set(cols) <= set(latents.columns):
            emb[name] = latents[cols].to_numpy()
        else:
            emb[name] = plots.umap_embedding(codes, seed)
    return plots.umap_scatter(emb, latents["timbre"].to_numpy(), path_base, names=plots.timbre_names(latents)), ""


def latent_size_curves(table: pd.DataFrame, path_base, chance: dict | None = None) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    for task, ls in zip(names.TASKS, ("-.", ":")):
        rates = [(chance or {})[k] for k in ((s, task) for s in names.SUBSPACES) if k in (chance or {})]
        if rates:
            ax.axhline(float(np.mean(rates)), color="0.3", ls=ls, lw=1, label=f"chance ({task})")
    table = table.sort_values("latent_dim")
    for acc, style in zip(tables.ACCURACIES, ("-o", "-s", "--o", "--s")):
        ax.errorbar(table["latent_dim"], table[f"{acc} mean"], yerr=np.nan_to_num(table[f"{acc} std"]),
                    fmt=style, capsize=2, label=acc)
    ax.set_xscale("log", base=2)
    ax.set_xticks(table["latent_dim"].unique(), [str(int(d)) for d in table["latent_dim"].unique()])
    ax.set_xlabel("latent dimension per subspace")
    ax.set_ylabel("probe accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path_base)


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows not dominated by any other row, all objectives to maximise."""
    keep = np.ones(len(values), dtype=bool)
    for i, v in enumerate(values):
        dominated = np.all(values >= v, axis=1) & np.any(values > v, axis=1)
        keep[i] = not dominated.any()
    return keep


def pareto_front(df: pd.DataFrame, path_base) -> list[Path]:
    """shared→timbre vs private→pitch, coloured by leakage; the Pareto-optimal trials
    (maximise both, minimise leakage) are outlined."""
    ok, _ = tables.usable(df)
    x, y = ok[names.probe("shared", "timbre")].to_numpy(), ok[names.probe("private", "pitch")].to_numpy()
    leak = ok[names.LEAKAGE].to_numpy()
    front = pareto_mask(np.stack([x, y, -leak], 1))
    fig, ax = plt.subplots(figsize=(4.8, 3.8), constrained_layout=True)
    sc = ax.scatter(x, y, c=leak, cmap="viridis_r", s=25)
    ax.scatter(x[front], y[front], s=80, facecolors="none", edgecolors="crimson", label="Pareto front")
    chance = chance_levels(df)
    if ("shared", "timbre") in chance:
        ax.axvline(chance["shared", "timbre"], **CHANCE_STYLE, label="chance")
    if ("private", "pitch") in chance:
        ax.axhline(chance["private", "pitch"], **CHANCE_STYLE)
    fig.colorbar(sc, label="leakage (lower is better)")
    ax.set_xlabel("shared → timbre accuracy")
    ax.set_ylabel("private → pitch accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path_base)


def tradeoff(df: pd.DataFrame, path_base, kind: str = "linear") -> list[Path]:
    """Reconstruction error against chance-corrected test separation, one point per setting
    (`config/ablation` label, else term and weight), mean ± std over seeds: where the objectives
    trade information for disentanglement."""
    ok, _ = tables.usable(df)
    ok = tables.ablation_setting(ok)
    by_weight = ok["term"] + " " + ok["weight"].map("{:g}".format)
    if "config/ablation" in ok:  # a label naming several weights (the paper's ablation) gets them
        label = ok["config/ablation"].astype(str)
        several = ok.groupby(label)["weight"].transform("nunique") > 1
        label = label.where(~several, by_weight)
    else:
        label = by_weight
    sep = names.separation("test", kind)
    stats = ok.assign(setting=label).groupby("setting")[["loss/recon", sep]].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    for setting, row in stats.iterrows():
        ax.errorbar(row[("loss/recon", "mean")], row[(sep, "mean")], xerr=np.nan_to_num(row[("loss/recon", "std")]),
                    yerr=np.nan_to_num(row[(sep, "std")]), fmt="o", capsize=2, ms=4)
        ax.annotate(setting, (row[("loss/recon", "mean")], row[(sep, "mean")]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("reconstruction error (last epoch, lower is better)")
    ax.axhline(0.0, **CHANCE_STYLE, label="chance (no separation)")
    ax.set_ylabel(f"separation ({kind} probes, test; chance-corrected)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save(fig, path_base)


def parallel_coordinates(df: pd.DataFrame, path_base) -> list[Path]:
    """One line per finished trial through its swept fields and its validation separation,
    coloured by the latter; each axis spans its own range, on the field's scale
    (`importance.axes`: linear, log10 with 0 at the bottom, or evenly spaced levels)."""
    ok = importance.finished(df)
    fields = importance.axes(ok)
    value = ok[names.SELECTION].to_numpy(dtype=float)
    lo, hi = float(value.min()), float(value.max())
    span = hi - lo if hi > lo else 1.0
    ys = np.column_stack([a.position(ok[a.column]) for a in fields] + [(value - lo) / span])
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * (len(fields) + 1)), 3.8), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for y, v in sorted(zip(ys, value), key=lambda p: p[1]):  # best trials drawn last, on top
        ax.plot(range(ys.shape[1]), y, color=cmap((v - lo) / span), alpha=0.7, lw=1.2)
    for i, a in enumerate(fields):
        ax.axvline(i, color="0.5", lw=0.8)
        for t, text in a.ticks()[:12]:
            ax.annotate(text, (i, t), xytext=(-3, 0), textcoords="offset points", ha="right",
                        va="center", fontsize=7)
    k = len(fields)
    ax.axvline(k, color="0.5", lw=0.8)
    for t in (0.0, 0.5, 1.0):
        ax.annotate(f"{lo + t * span:.3f}", (k, t), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    labels = [f"{a.field}" + (" (log)" if a.scale == "log10" else "") for a in fields]
    ax.set_xticks(range(k + 1), labels + ["validation\nseparation"], fontsize=8)
    ax.set_xlim(-0.6, k + 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax, label=f"{names.SELECTION} (chance-corrected)")
    ax.set_title(f"Swept fields against validation separation ({len(ok)} finished trials)", fontsize=9)
    return save(fig, path_base)
