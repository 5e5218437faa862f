"""`python -m analysis.report RESULTS_DIR [RESULTS_DIR ...] --out OUT`

Writes OUT/report.md (tables inline, figures linked), OUT/report.html (the same tables and
figures on one self-contained page), OUT/tables/*.{csv,md,tex} and OUT/figures/*.{png,pdf},
and prints the main table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis import figures, html, importance, tables
from analysis.load import load_epochs, load_results
from marl import names, plots
from marl.cli import ArgumentParser, parse_key_values
from marl.errors import UserError, exit_on_user_error
from marl.files import check_writable


def build_report(paths, out: Path, select: dict | None = None, umap: bool = True) -> str:
    """Write every table and figure that the results support; returns the main table (Markdown)."""
    df = load_results(paths)
    check_writable(out, "out")
    ok, excluded = tables.usable(df)
    if ok.empty:
        raise UserError(f"none of the {len(df)} trials finished (status ok); nothing to report")
    tdir, fdir = out / "tables", out / "figures"
    summary = (f"Experiments: {', '.join(sorted(df['experiment'].unique()))}. Trials: {len(df)}, "
               f"finished: {len(ok)}, left out of every mean: {excluded}"
               + (f" ({_status_counts(df)})" if excluded else "") + ".")
    md = ["# MARL sweep report\n", summary + "\n"]
    page = html.Page("MARL sweep report")  # report.html: every table and figure that report.md gets
    page.text(summary)
    chance = figures.chance_levels(df)

    def add_table(title, table, name, note=""):
        tables.write_table(table, tdir, name)
        md.extend([f"## {title}\n", note + "\n" if note else "", tables.to_markdown(table), "",
                   f"Files: [csv](tables/{name}.csv) · [md](tables/{name}.md) · [tex](tables/{name}.tex)\n"])
        page.table(title, table, note, f"tables/{name}.csv, .md, .tex")

    def add_figure(title, paths_written):
        if paths_written:
            png = paths_written[0].relative_to(out)
            md.extend([f"### {title}\n", f"![{title}]({png}) ([pdf]({png.with_suffix('.pdf')}))\n"])
            page.figure(title, paths_written[0])

    def add_note(title, text):
        md.append(f"### {title}\n\n{text}\n")
        page.heading(title, 3)
        page.note(text)

    main = None
    ablation = tables.ablation_table(df)
    # an ablation: reconstruction only beside settings with one loss term on
    if (ablation["term"] == "recon").any() and (ablation["term"] != "recon").any():
        add_table("Loss ablation (MLP probes, test accuracy, mean ± std over seeds)", ablation, "ablation",
                  "Reconstruction plus one term at a time; `n_seeds` finished trials per row; "
                  "separation is chance-corrected.")
        if names.probe("shared", "pitch", "test", "linear") in ok:
            add_table("Loss ablation (linear probes, test accuracy)", tables.ablation_table(df, "linear"),
                      "ablation_linear")
        add_figure("Ablation bars", figures.ablation_bars(ablation, fdir / "ablation_bars", chance))
        comparison = tables.paper_comparison(ablation)
        if not comparison.empty:
            add_table("Ours beside the paper", comparison, "paper_comparison",
                      "Paper values read off its ablation figure (±0.02); diff = ours − paper.")
        main = ablation

    probe, chosen = tables.probe_table(df, select)
    label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in chosen.items()) or "all trials"
    add_table(f"Probe table ({label})", probe, "probe_table",
              "Per-clip codes (shared = the clip's own μ_s); `fused` = the pair's PoE code.")
    main = main if main is not None else probe

    # (the recipe space varies more than size and length: its own table below compares its recipes)
    if "config/n_train_pairs" in ok and ok["config/n_train_pairs"].nunique() > 1 and "config/recipe" not in ok:
        curve = tables.convergence_table(df, load_epochs(paths))
        if curve["epoch"].nunique() > 1 or curve["n_train_pairs"].nunique() > 1:
            add_table("Convergence (test probe accuracy by training pairs and epoch)", curve, "convergence",
                      "Every evaluation the trials reported (`eval_every`); mean ± std over seeds.")
            add_table("Distance from the largest setting", tables.convergence_gaps(curve), "convergence_gaps",
                      "max_gap: the largest |difference| of any mean accuracy above from the largest "
                      "setting's; converged: within 0.02. Sorted by cost (pair-epochs).")

    if "config/recipe" in ok and (ok["config/recipe"] == "reference").any():
        add_table("Recipes against the reference (the `recipe` space)", tables.recipe_gaps(df), "recipe_gaps",
                  "max_gap: the largest |difference| of any mean test accuracy (linear and MLP, "
                  "both objectives) from the reference's; within: ≤ 0.03. Sorted by cost (pair-epochs).")

    add_table("Mutual information (nats, mean over dimensions and seeds) and MIG",
              tables.mi_summary(df), "mi_summary",
              "`mi_baseline`: the same estimate with the factor shuffled, i.e. the binned "
              "estimator's bias; only MI above it carries information.")

    if names.dci("completeness") in ok and ok[names.dci("completeness")].notna().any():
        add_table("Disentanglement scores (DCI, SAP, modularity, explicitness) and where each factor lives",
                  tables.disentanglement_table(df), "disentanglement",
                  "Per-clip codes, private and shared dimensions together (disentanglement_lib's "
                  "definitions, docs/analysis.md); `share/<measure>/<factor>/<subspace>`: the part of "
                  "the factor's DCI importance or binned MI carried by that subspace.")

    if names.kl_exact("fused", "dim_kl") in ok and ok[names.kl_exact("fused", "dim_kl")].notna().any():
        add_table("Dimension-wise KL: exact, and the estimator's error (nats)", tables.kl_table(df), "kl",
                  "`kl_exact`: over all N training posteriors; `kl_bias`: the training estimator "
                  "minus exact on the same samples z (docs/analysis.md).")

    if ok["config/latent_dim"].nunique() > 1 if "config/latent_dim" in ok else False:
        size = tables.latent_size_table(df)
        add_table("Latent size", size, "latent_size")
        add_figure("Latent-size curves", figures.latent_size_curves(size, fdir / "latent_size", chance))
        main = size if main is probe else main

    add_importance(df, add_table, add_figure, add_note, fdir)
    trial = _chosen_trial(ok, chosen)
    add_figure(f"MI matrix ({trial['trial']})", figures.mi_heatmap_for_trial(trial, fdir / "mi_heatmap"))
    epochs = load_epochs([p for p in paths if not str(p).endswith(".parquet")])
    if "trial" in epochs and (epochs["trial"] == trial["trial"]).any():
        add_figure(f"Loss curves ({trial['trial']})",
                   plots.loss_curves(epochs[epochs["trial"] == trial["trial"]], fdir / "loss_curves"))
    if umap:
        drawn, why = figures.umap_for_trial(trial, fdir / "umap")
        add_figure(f"UMAP ({trial['trial']})", drawn)
        if not drawn:  # said in the report and on stderr, never skipped silently
            add_note(f"UMAP ({trial['trial']})", f"Not drawn: {why}.")
            print(f"report: UMAP figure not drawn: {why}", file=sys.stderr)
    if "loss/recon" in ok and ok.get("config/ablation", ok.get("config/gamma")).nunique() > 1:
        kind = "linear" if names.separation("test", "linear") in ok else "mlp"
        add_figure(f"Trade-off: reconstruction against separation ({kind} probes)",
                   figures.tradeoff(df, fdir / "tradeoff", kind))
    if len(ok) >= 2 and names.LEAKAGE in ok:
        add_figure("Pareto front (shared→timbre, private→pitch, leakage)",
                   figures.pareto_front(df, fdir / "pareto_front"))
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(page.render())
    return tables.to_markdown(main)


def add_importance(df, add_table, add_figure, add_note, fdir: Path) -> None:
    """fANOVA importance of the swept fields for validation separation, and the
    parallel-coordinates figure; a one-line note where there is no estimate."""
    title = f"Hyperparameter importance (fANOVA, {names.SELECTION})"
    table, why = importance.importance_table(df)
    if why:
        add_note(title, f"Not estimated: {why}.")
    else:
        add_table(title, table, "importance",
                  f"Optuna's fANOVA (seeded) on an in-memory study of the {table.attrs['n_trials']} "
                  "finished trials: each swept field's share of the variance of validation separation; "
                  "`scale`: the field's axis (docs/analysis.md).")
    ok = importance.finished(df)
    if len(ok) >= 2 and importance.axes(ok):
        add_figure("Parallel coordinates: swept fields against validation separation",
                   figures.parallel_coordinates(df, fdir / "parallel_coordinates"))


def _status_counts(df) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items() if s != "ok")


def _chosen_trial(ok, chosen: dict):
    """The first seed of the chosen configuration (the figures show one trial)."""
    rows = tables.matching(ok, chosen)
    rows = rows if len(rows) else ok
    return rows.sort_values("config/seed").iloc[0] if "config/seed" in rows else rows.iloc[0]


def main(argv=None) -> None:
    p = ArgumentParser(prog="python -m analysis.report", description=__doc__.strip().splitlines()[0])
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="sweep folder(s): <storage>/<name>, a local path or a URI (s3://, gs://, file://)")
    p.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    p.add_argument("--select", action="append", metavar="KEY=VALUE",
                   help="configuration for the probe table and trial figures (default: best validation separation)")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP figure (it takes ~15 s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    main_table = build_report(args.results, out, parse_key_values(args.select, "--select"), umap=not args.no_umap)
    print(main_table)
    print(f"\nreport: {out / 'report.md'}, {out / 'report.html'}")


if __name__ == "__main__":
    exit_on_user_error(main)
