"""Hyperparameter importance: Optuna's fANOVA on validation separation (pure functions).

The results rows become an in-memory Optuna study — one trial per finished row, its swept
config fields as parameters, `names.SELECTION` as its value — so grid sweeps and Optuna
studies get the same estimate. fANOVA fits a random forest to (parameters → value) and splits
the variance of its prediction over the search space into each parameter's share.

Each swept field gets a scale (`axes`), used here and by the parallel-coordinates figure:
- `categorical`: text, booleans, or a field some experiments lack; every level weighs alike.
- `log10`: positive values spread over more than a decade and bunched at the low end of their
  range (log-spaced grids, Optuna's `<w>_log10` fields). Optuna's fANOVA does not take logs
  itself, so the parameter is log10 of the value; 0 (a term switched off) stands one decade
  below the smallest positive value.
- `linear`: other numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis import tables
from marl import names

MIN_TRIALS = 4  # fewer finished trials than this: no estimate
MIN_FIELDS = 2  # with one swept field, it has all the importance by definition
MAX_LEVELS = 8  # a numeric field with at most this many values (a grid) gets a tick at each


@dataclass(frozen=True)
class Axis:
    """One swept field on the scale its parameter lives on."""

    column: str  # config/<field>
    scale: str  # linear | log10 | categorical
    low: float = 0.0  # numeric scales: the parameter's range
    high: float = 1.0
    zero_at: float | None = None  # log10: the parameter value that stands for 0
    choices: tuple = ()  # categorical: the levels, in order
    levels: tuple = ()  # numeric scales with few distinct values (grids): their parameters

    @property
    def field(self) -> str:
        return self.column.replace("config/", "", 1)

    def values(self, col: pd.Series) -> list:
        """The parameter of each row: a float (numeric scales) or one of `choices`."""
        if self.scale == "categorical":
            return [_category(v) for v in col]
        v = col.to_numpy(dtype=float)
        if self.scale == "log10":
            with np.errstate(divide="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), self.zero_at)
        return [float(x) for x in np.clip(v, self.low, self.high)]  # rounding only

    def position(self, col: pd.Series) -> np.ndarray:
        """Each row's place on the axis, 0 (low) to 1 (high): the figure's y."""
        if self.scale == "categorical":
            index = {c: i for i, c in enumerate(self.choices)}
            return np.array([index[c] for c in self.values(col)], float) / max(len(self.choices) - 1, 1)
        return (np.array(self.values(col)) - self.low) / (self.high - self.low)

    def label(self, parameter) -> str:
        """A parameter value in the field's own units."""
        if self.scale == "categorical":
            return str(parameter)
        if self.scale == "log10":
            return "0" if self.zero_at is not None and np.isclose(parameter, self.zero_at) else f"{10 ** parameter:.3g}"
        return f"{parameter:.3g}"

    def ticks(self) -> list[tuple[float, str]]:
        """(position 0–1, label) for the figure's axis: each level; or the ends and middle;
        log10: 0 and the whole decades between."""
        if self.scale == "categorical":
            return [(j / max(len(self.choices) - 1, 1), str(c)) for j, c in enumerate(self.choices)]
        params = [self.low, (self.low + self.high) / 2, self.high]
        if self.levels:
            params = list(self.levels)
        elif self.scale == "log10":
            first = self.low if self.zero_at is None else self.zero_at + 1
            decades = list(range(math.ceil(first - 1e-9), math.floor(self.high + 1e-9) + 1))
            decades = decades[:: max(1, math.ceil(len(decades) / 5))]
            if len(decades) >= 2:
                params = ([self.zero_at] if self.zero_at is not None else []) + [float(d) for d in decades]
        return [((p - self.low) / (self.high - self.low), self.label(p)) for p in params]


def _category(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    return str(value)  # lists, tuples, ...


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Trials that finished (status ok) with a validation separation."""
    ok, _ = tables.usable(df)
    return ok[ok[names.SELECTION].notna()] if names.SELECTION in ok else ok.iloc[:0]


def axes(ok: pd.DataFrame) -> list[Axis]:
    """The swept fields (config fields that vary; seed and bookkeeping left out) and their scales."""
    out = [a if a.scale == "categorical" or ok[a.column].nunique() > MAX_LEVELS else
           replace(a, levels=tuple(sorted(set(a.values(ok[a.column]))))) for a in _scales(ok)]
    return out


def _scales(ok: pd.DataFrame) -> list[Axis]:
    out = []
    for col in tables.varying_config(ok):
        s = ok[col]
        if s.isna().any() or pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            choices = sorted({_category(v) for v in s}, key=lambda c: (str(type(c)), c))
            out.append(Axis(col, "categorical", choices=tuple(choices)))
            continue
        v = np.unique(s.to_numpy(dtype=float))
        pos = v[v > 0]
        bunched = len(pos) >= 2 and np.median(pos) < pos.min() + 0.25 * (pos.max() - pos.min())
        if bunched and pos.max() / pos.min() >= 10:
            zero_at = float(np.log10(pos.min())) - 1 if (v <= 0).any() else None
            if (v < 0).any():  # negative values: no log scale
                out.append(Axis(col, "linear", float(v.min()), float(v.max())))
                continue
            low = zero_at if zero_at is not None else float(np.log10(pos.min()))
            out.append(Axis(col, "log10", low, float(np.log10(pos.max())), zero_at))
        else:
            out.append(Axis(col, "linear", float(v.min()), float(v.max())))
    return out


def study(ok: pd.DataFrame, fields: list[Axis]):
    """An in-memory Optuna study: one completed trial per row, value = validation separation."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = {a.field: CategoricalDistribution(a.choices) if a.scale == "categorical"
             else FloatDistribution(a.low, a.high) for a in fields}
    columns = {a.field: a.values(ok[a.column]) for a in fields}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" lines
    try:
        s = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    s.add_trials([optuna.trial.create_trial(params={f: columns[f][i] for f in dists}, distributions=dists,
                                            value=float(value))
                  for i, value in enumerate(ok[names.SELECTION])])
    return s


def importance_table(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """fANOVA importance of each swept field for validation separation, largest first, summing
    to 1; or an empty table and one line saying why there is no estimate."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    ok = finished(df)
    fields = axes(ok)
    if len(fields) < MIN_FIELDS:
        varied = ", ".join(a.field for a in fields) or "none"
        return pd.DataFrame(), (f"fewer than {MIN_FIELDS} swept fields vary among the {len(ok)} "
                                f"finished trials ({varied})")
    if len(ok) < MIN_TRIALS:
        return pd.DataFrame(), f"{len(ok)} finished trials, fewer than {MIN_TRIALS}"
    if ok[names.SELECTION].nunique() < 2:
        return pd.DataFrame(), f"{names.SELECTION} is the same in every finished trial"
    scores = get_param_importances(study(ok, fields), evaluator=FanovaImportanceEvaluator(seed=seed))
    by_field = {a.field: a for a in fields}
    table = pd.DataFrame([{"field": f, "importance": float(v), "scale": by_field[f].scale,
                           "n_values": ok[by_field[f].column].astype(str).nunique(),
                           "range": _range(by_field[f])} for f, v in scores.items()])
    table = table.sort_values(["importance", "field"], ascending=[False, True]).reset_index(drop=True)
    table.attrs["n_trials"] = len(ok)
    table.attrs["n_excluded"] = len(df) - len(ok)
    return table, ""


def _range(a: Axis) -> str:
    if a.scale == "categorical":
        shown = ", ".join(map(str, a.choices[:6]))
        return shown + (f", … ({len(a.choices)})" if len(a.choices) > 6 else "")
    return f"{a.label(a.low)} – {a.label(a.high)}"
