"""Tables as DataFrames (pure functions of the results frame) and their CSV/Markdown/LaTeX files.

Means and standard deviations (ddof=1) are over seeds; only trials with status "ok" count, and
each table's `n_excluded` attribute says how many were left out (errored, diverged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import paper
from marl import names
from marl.errors import UserError
from marl.trial import LABEL_KEYS

ACCURACIES = paper.ACCURACIES  # private/shared x timbre/pitch, the paper's four bars
TERMS = ("alpha", "beta", "gamma")  # the paper's terms (the ablation figure's columns)
ALL_TERMS = names.WEIGHTS  # with the terms beyond the paper (swap, infonce, orthogonal)
# not hyperparameters: the seed, where a trial ran, and its labels
IGNORED_CONFIG = {"config/seed", "config/threads", "config/device", *(f"config/{k}" for k in LABEL_KEYS)}


def usable(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Trials that finished (status ok); the number left out."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    return ok, len(df) - len(ok)


def varying_config(df: pd.DataFrame, exclude=()) -> list[str]:
    """Config columns whose value differs between trials (seed and bookkeeping excluded)."""
    cols = [c for c in df.columns if c.startswith("config/") and c not in IGNORED_CONFIG
            and c not in exclude]
    return [c for c in cols if df[c].astype(str).nunique() > 1]


def summarise(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """mean, std and number of seeds of each metric per group."""
    metrics = [m for m in metrics if m in df.columns]
    grouped = df.groupby(by, dropna=False, sort=True)
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m} {stat}" for m, stat in out.columns]
    out.insert(0, "n_seeds", grouped.size())
    return out.reset_index()


def ablation_setting(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `term` (recon, the one weighted term, or mixed) and `weight`, from the loss weights
    the results have (α, β, γ, and swap, infonce, orthogonal where present)."""
    terms = [t for t in ALL_TERMS if f"config/{t}" in df]
    weights = df[[f"config/{t}" for t in terms]].fillna(0.0).to_numpy(dtype=float)
    active = weights > 0
    term = np.where(active.sum(1) == 0, "recon",
                    np.where(active.sum(1) == 1, np.array(terms)[active.argmax(1)], "mixed"))
    weight = np.where(active.sum(1) == 1, weights.max(1), np.where(active.sum(1) == 0, 0.0, np.nan))
    return df.assign(term=term, weight=weight)


def ablation_table(df: pd.DataFrame, kind: str = "mlp") -> pd.DataFrame:
    """Per term and weight: the four test accuracies of `kind` probes and the (chance-corrected)
    test separation, mean ± std over seeds, and the seed count."""
    ok, excluded = usable(df)
    ok = ablation_setting(ok)
    ok = ok[ok["term"] != "mixed"]
    others = varying_config(ok, exclude={f"config/{t}" for t in ALL_TERMS})
    metrics = [names.probe(*a.split("/"), "test", kind) for a in ACCURACIES] + [names.separation("test", kind)]
    table = summarise(ok, ["term", "weight", *others], metrics)
    order = {t: i for i, t in enumerate(("recon", *ALL_TERMS))}
    table = table.sort_values(["term", "weight"], key=lambda s: s.map(order) if s.name == "term" else s)
    table.columns = [c.replace(names.probe_prefix("test", kind), "").replace(f"/test/{kind}", "")
                     for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table.reset_index(drop=True)


def probe_table(df: pd.DataFrame, select: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The paper's probe table (latent × task) for one configuration, mean ± std over seeds.

    select: {config field: value}; by default the configuration with the best mean validation
    separation (model selection never looks at test clips); the table holds test figures.
    Returns the table and the chosen configuration.
    """
    ok, excluded = usable(df)
    keys = varying_config(ok)
    if select:
        chosen = dict(select)
    elif keys:
        best = ok.groupby(keys, dropna=False)[names.SELECTION].mean().idxmax()
        best = best if isinstance(best, tuple) else (best,)
        chosen = {k.replace("config/", ""): v for k, v in zip(keys, best)}
    else:
        chosen = {}
    ok = matching(ok, chosen)
    if ok.empty:
        raise UserError(f"no finished trial matches {chosen}")
    rows = []
    for latent in names.LATENTS:
        row = {"latent": latent, "n_seeds": len(ok)}
        for task in names.TASKS:
            col = ok[names.probe(latent, task)]
            row[f"{task} mean"], row[f"{task} std"] = col.mean(), col.std()
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["n_excluded"] = excluded
    return table, chosen


def matching(df: pd.DataFrame, values: dict) -> pd.DataFrame:
    """Trials whose config/<field> equals each value (numbers compared as numbers)."""
    for key, value in values.items():
        col = f"config/{key}"
        if col not in df:
            raise UserError(f"--select: no config field {key!r} in these results")
        if _is_number(value) and pd.api.types.is_numeric_dtype(df[col]):
            df = df[np.isclose(df[col].astype(float), float(value))]
        else:
            df = df[df[col].astype(str) == str(value)]
    return df


def mi_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean MI (nats) per factor × subspace beside its shuffled-factor baseline, and MIG, per
    configuration, mean over seeds."""
    ok, excluded = usable(df)
    keys = varying_config(ok) or ["experiment"]
    metrics = [m(f, s) for f in names.TASKS for s in names.SUBSPACES for m in (names.mi_mean, names.mi_baseline)] + \
              [names.mig(s) for s in (*names.SUBSPACES, "both")]
    table = summarise(ok, keys, metrics)
    table = table[[c for c in table.columns if not c.endswith(" std")]]
    table.columns = [c.replace(" mean", "").replace("config/", "") for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table


def kl_table(df: pd.DataFrame, term: str = "dim_kl") -> pd.DataFrame:
    """Per configuration: one KL term over the exact aggregate posterior of each subspace
    (`kl_exact/…`) and the training estimator's error on it (`kl_bias/…`), mean ± std over seeds."""
    ok, excluded = usable(df)
    keys = varying_config(ok) or ["experiment"]
    metrics = [f(s, term) for f in (names.kl_exact, names.kl_bias) for s in names.KL_SUBSPACES]
    table = summarise(ok, keys, metrics)
    table.columns = [c.replace("config/", "") for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table


def disentanglement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: DCI, SAP, modularity, explicitness and the private/shared shares of
    each factor's importance and MI (`names.disentanglement_scalars()`, marl.disentanglement),
    mean ± std over seeds."""
    ok, excluded = usable(df)
    keys = varying_config(ok) or ["experiment"]
    table = summarise(ok, keys, names.disentanglement_scalars())
    table.columns = [c.replace("config/", "") for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table


def latent_size_table(df: pd.DataFrame) -> pd.DataFrame:
    ok, excluded = usable(df)
    others = varying_config(ok, exclude={"config/latent_dim"})
    table = summarise(ok, ["config/latent_dim", *others],
                      [names.probe(*a.split("/")) for a in ACCURACIES] + [names.SEPARATION])
    table.columns = [c.replace(names.probe_prefix(), "").replace("config/", "") for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table


CONVERGENCE_METRICS = [names.probe(*a.split("/"), "test", kind)
                       for kind in names.PROBE_KINDS for a in ACCURACIES]


def convergence_table(df: pd.DataFrame, epochs: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Per setting (term, weight), training pairs and epoch: test probe accuracies, mean ± std
    over seeds, from every evaluation the trials reported (`eval_every`)."""
    metrics = metrics or CONVERGENCE_METRICS
    ok, excluded = usable(df)
    ok = ablation_setting(ok)
    evaluated = epochs.dropna(subset=[names.SEPARATION]) if names.SEPARATION in epochs else epochs.iloc[:0]
    merged = evaluated.merge(ok[["trial", "term", "weight", "config/n_train_pairs"]], on="trial")
    table = summarise(merged, ["term", "weight", "config/n_train_pairs", "epoch"], metrics)
    table.insert(4, "pair_epochs", table["config/n_train_pairs"] * table["epoch"])
    table.columns = [c.replace("config/", "").replace("probe/test/", "") for c in table.columns]
    table.attrs["n_excluded"] = excluded
    return table


def convergence_gaps(table: pd.DataFrame, tolerance: float = 0.02) -> pd.DataFrame:
    """Per (n_train_pairs, epoch): the largest |mean − mean at the largest setting| over every
    setting (term, weight) and accuracy of `convergence_table`, its cost in pair-epochs, and
    whether it lies within `tolerance`. Sorted by cost: the first `converged` row is the
    cheapest converged setting."""
    means = [c for c in table.columns if c.endswith(" mean")]
    rows = []
    for (n, epoch), group in table.groupby(["n_train_pairs", "epoch"]):
        gap = 0.0
        for (term, weight), own in group.groupby(["term", "weight"]):
            ref = table[(table["term"] == term) & (table["weight"] == weight)]
            ref = ref[ref["pair_epochs"] == ref["pair_epochs"].max()]
            gap = max(gap, float(np.abs(own[means].to_numpy() - ref[means].to_numpy()).max()))
        rows.append({"n_train_pairs": n, "epoch": epoch, "pair_epochs": n * epoch, "max_gap": gap,
                     "converged": gap <= tolerance})
    return pd.DataFrame(rows).sort_values(["pair_epochs", "n_train_pairs"]).reset_index(drop=True)


def recipe_gaps(df: pd.DataFrame, tolerance: float = 0.03, metrics=None) -> pd.DataFrame:
    """Per recipe (the `recipe` space's label): its cost in pair-epochs and the largest
    |mean − the reference's mean| over both objectives (term, weight) and every test accuracy of
    `metrics`, and whether that lies within `tolerance`. Sorted by cost: the first `within` row
    is the cheapest recipe that reaches the reference's figures."""
    metrics = [m for m in (metrics or CONVERGENCE_METRICS) if m in df]
    ok = ablation_setting(usable(df)[0])
    means = ok.groupby(["config/recipe", "term", "weight"])[metrics].mean()
    reference = means.loc["reference"]
    rows = []
    for name, own in means.groupby(level=0):
        first = ok[ok["config/recipe"] == name].iloc[0]
        n, epochs = int(first["config/n_train_pairs"]), int(first["config/epochs"])
        gap = float((own.loc[name] - reference).abs().to_numpy().max())  # NaN where an objective is missing
        rows.append({"recipe": name, "n_train_pairs": n, "epochs": epochs, "pair_epochs": n * epochs,
                     "n_seeds": int(ok["config/recipe"].eq(name).sum() // max(1, len(own))),
                     "max_gap": gap, "within": gap <= tolerance})
    return pd.DataFrame(rows).sort_values(["pair_epochs", "max_gap"]).reset_index(drop=True)


def paper_comparison(ablation: pd.DataFrame) -> pd.DataFrame:
    """Our ablation means beside the paper's bars, and ours − paper, where the paper has a bar."""
    ours = ablation.set_index(["term", "weight"])
    rows = []
    for (term, weight), theirs in paper.ABLATION.items():
        match = [i for i in ours.index if i[0] == term and np.isclose(i[1], weight)]
        if not match:
            continue
        row = {"term": term, "weight": weight}
        for acc, value in zip(ACCURACIES, theirs):
            mine = ours.loc[match[0], f"{acc} mean"]
            mine = float(mine.iloc[0]) if isinstance(mine, pd.Series) else float(mine)
            row[f"{acc} ours"], row[f"{acc} paper"], row[f"{acc} diff"] = mine, value, mine - value
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- formatting and files
def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def formatted(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """`x mean` + `x std` columns become one `x` column "mean ± std"; other floats rounded."""
    out = {}
    for col in table.columns:
        if col.endswith(" std"):
            continue
        if col.endswith(" mean") and col.replace(" mean", " std") in table:
            base = col[: -len(" mean")]
            std = table[base + " std"]
            out[base] = [f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")
                         for m, s in zip(table[col], std)]
        elif pd.api.types.is_float_dtype(table[col]):
            out[col] = [("" if pd.isna(v) else f"{v:.{digits}f}".rstrip("0").rstrip(".")
                         if col in ("weight",) or col.startswith("config/") else f"{v:.{digits}f}")
                        for v in table[col]]
        else:
            out[col] = table[col].astype(str)
    return pd.DataFrame(out)


def to_markdown(table: pd.DataFrame) -> str:
    f = formatted(table)
    lines = ["| " + " | ".join(f.columns) + " |", "|" + "---|" * len(f.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in f.itertuples(index=False)]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame) -> str:
    f = formatted(table).replace({"±": r"$\\pm$"}, regex=True)
    f.columns = [c.replace("_", r"\_") for c in f.columns]
    f = f.apply(lambda col: col.str.replace("_", r"\_", regex=False))
    return f.to_latex(index=False, escape=False)


def write_table(table: pd.DataFrame, out_dir: Path, name: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(to_markdown(table) + "\n")
    paths["tex"].write_text(to_latex(table))
    return paths
