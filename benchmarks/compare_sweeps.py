"""Compare two sweeps of the same space setting by setting: the difference of the seed means of
each figure (linear and MLP test probes of private/shared -> timbre/pitch, MLP separation),
whether it lies within the seed spread, and Welch's t.

    python benchmarks/compare_sweeps.py BASE/results.parquet NEW/results.parquet [--markdown]

"Within spread" means |difference| <= the larger of the two settings' seed standard deviations
(the rule docs/performance.md has used since the bf16 study)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.tables import to_markdown  # noqa: E402
from marl import names  # noqa: E402
from marl.results import setting_columns, setting_labels  # noqa: E402

FIGURES = [names.probe(latent, task, "test", kind) for kind in ("linear", "mlp")
           for latent in ("private", "shared") for task in ("timbre", "pitch")] + [names.SEPARATION]


def compare(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    varying = setting_columns(base)  # the new sweep's rows are matched on the base's settings
    base, new = (df.assign(setting=setting_labels(df, varying)) for df in (base, new))
    rows = []
    for key, a in base.groupby("setting"):
        b = new[new["setting"] == key]
        for fig in FIGURES:
            x, y = a[fig].dropna().to_numpy(), b[fig].dropna().to_numpy()
            diff = y.mean() - x.mean()
            spread = max(x.std(ddof=1), y.std(ddof=1))
            t = stats.ttest_ind(y, x, equal_var=False).statistic if min(len(x), len(y)) > 1 else np.nan
            rows.append({"setting": key, "figure": fig, "base": x.mean(), "new": y.mean(), "diff": diff,
                         "spread": spread, "within": abs(diff) <= spread, "t": t, "n": (len(x), len(y))})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("figure", sort=False).agg(
        mean_diff=("diff", "mean"), min=("diff", "min"), max=("diff", "max"),
        within=("within", lambda w: f"{int(w.sum())}/{len(w)}"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="a sweep's folder or its results.parquet")
    parser.add_argument("new", help="the other sweep's folder or results.parquet")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    args = parser.parse_args(argv)
    table = compare(*(pd.read_parquet(Path(p) / "results.parquet" if Path(p).is_dir() else p)
                      for p in (args.base, args.new)))
    pd.set_option("display.width", 200)
    print(table.round(3).to_string())
    out = summary(table).round(3)
    print(to_markdown(out.reset_index()) if args.markdown else out.to_string())
    print(f"{int(table['within'].sum())} of {len(table)} within spread; "
          f"|t| > 2.78: {int((table['t'].abs() > 2.78).sum())}")


if __name__ == "__main__":
    main()
