
import numpy as np
import pandas as pd
import pytest

from analysis import figures, load_results, tables
from analysis.report import build_report
from marl import names
from tests.conftest import in_process, run_module


def fake_results(seeds=(0, 1, 2), diverged_one=True) -> pd.DataFrame:
    """Trials with known accuracies: value = base + 0.01 * seed, so means and stds are exact."""
    rows = []
    settings = [(0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 0.1), (0.0, 0.0, 0.5)]
    for i, (a, b, g) in enumerate(settings):
        for seed in seeds:
            row = {"trial": f"t{i}_{seed}", "status": "ok", "error": None,
                   "config/alpha": a, "config/beta": b, "config/gamma": g, "config/seed": seed,
                   "config/latent_dim": 8, "checkpoint": None}
            for j, latent in enumerate(names.LATENTS):
                for k, task in enumerate(names.TASKS):
                    row[names.probe(latent, task)] = 0.1 * i + 0.05 * j + 0.02 * k + 0.01 * seed
                    # validation figures rank the settings differently from the test ones
                    row[names.probe(latent, task, "val")] = 0.9 if (i, latent, task) == (2, "shared", "timbre") else 0.5
            for split in names.SPLITS:
                for latent in names.LATENTS:
                    row[names.chance(latent, "timbre", split)], row[names.chance(latent, "pitch", split)] = 1 / 4, 1 / 21
                row[names.separation(split)] = names.separation_score(row, split)
                row[names.leakage(split)] = names.leakage_score(row, split)
            for f in names.TASKS:
                for s in names.SUBSPACES:
                    row[names.mi(f, s)] = [0.1 * i, 0.2, 0.3, 0.4]
                    row[names.mi_mean(f, s)] = float(np.mean(row[names.mi(f, s)]))
            for s in (*names.SUBSPACES, "both"):
                row[names.mig(s)] = 0.5
            row["loss/recon"] = 10.0 + i + seed
            for sub in names.KL_SUBSPACES:
                row[names.kl_exact(sub, "dim_kl")] = 1.0 + i + 0.1 * seed
                row[names.kl_bias(sub, "dim_kl")] = -2.0 * i - 0.1 * seed
            rows.append(row)
    if diverged_one:
        rows.append({"trial": "bad", "status": "diverged", "config/alpha": 0.0, "config/beta": 0.0,
                     "config/gamma": 0.1, "config/seed": 9, "config/latent_dim": 8,
                     names.probe("private", "timbre"): 100.0})
    return pd.DataFrame(rows)


@pytest.fixture
def results_dir(tmp_path):
    d = tmp_path / "exp_a"
    d.mkdir()
    fake_results().to_parquet(d / "results.parquet")
    return d


def test_ablation_table_means_stds_and_counts_are_exact(results_dir):
    df = load_results(results_dir)
    assert set(df["experiment"]) == {"exp_a"}
    table = tables.ablation_table(df)
    assert table.attrs["n_excluded"] == 1  # the diverged trial is left out of every mean
    assert list(table["term"]) == ["recon", "alpha", "beta", "gamma", "gamma"]
    assert list(table["n_seeds"]) == [3, 3, 3, 3, 3]
    gamma01 = table[(table["term"] == "gamma") & np.isclose(table["weight"], 0.1)].iloc[0]
    # setting index 3: private/timbre = 0.3 + 0.01*seed -> mean 0.31, std 0.01
    assert gamma01["private/timbre mean"] == pytest.approx(0.31)
    assert gamma01["private/timbre std"] == pytest.approx(0.01)
    assert gamma01["shared/pitch mean"] == pytest.approx(0.3 + 0.05 + 0.02 + 0.01)
    recon = table[table["term"] == "recon"].iloc[0]
    assert recon["weight"] == 0.0 and recon["shared/timbre mean"] == pytest.approx(0.06)


def test_probe_table_for_a_selected_configuration(results_dir):
    table, chosen = tables.probe_table(load_results(results_dir), {"gamma": "0.5"})
    row = table.set_index("latent").loc["both"]
    assert row["n_seeds"] == 3
    assert row["pitch mean"] == pytest.approx(0.4 + 0.10 + 0.02 + 0.01)
    assert row["pitch std"] == pytest.approx(0.01)


def test_probe_table_defaults_to_best_validation_separation_and_reports_test_figures(results_dir):
    df = load_results(results_dir)
    table, chosen = tables.probe_table(df)
    ok = df[df.status == "ok"]
    keys = ["config/alpha", "config/beta", "config/gamma"]
    best = ok.groupby(keys)[names.SELECTION].mean().idxmax()
    assert (chosen["alpha"], chosen["beta"], chosen["gamma"]) == best == (0.0, 1.0, 0.0)
    assert ok.groupby(keys)[names.SEPARATION].mean().idxmax() != best  # test clips would pick another
    row = table.set_index("latent").loc["shared"]
    assert row["timbre mean"] == pytest.approx(0.2 + 0.05 + 0.01)  # test accuracy of setting 2


def test_mi_summary_and_paper_comparison(results_dir):
    df = load_results(results_dir)
    mi = tables.mi_summary(df)
    assert len(mi) == 5
    assert mi["mi_mean/timbre/shared"].iloc[0] == pytest.approx(np.mean([0.0, 0.2, 0.3, 0.4]))
    cmp = tables.paper_comparison(tables.ablation_table(df))
    g = cmp[cmp["term"] == "gamma"].iloc[0]
    assert g["private/timbre paper"] == 0.70
    assert g["private/timbre diff"] == pytest.approx(0.31 - 0.70)
    assert set(cmp["term"]) == {"recon", "gamma", "beta"}  # only settings both have


def test_kl_table_means_over_seeds_per_configuration(results_dir, tmp_path):
    table = tables.kl_table(load_results(results_dir))
    assert table.attrs["n_excluded"] == 1 and len(table) == 5 and (table["n_seeds"] == 3).all()
    gamma_half = table[np.isclose(table["gamma"], 0.5)].iloc[0]  # setting i = 4, seeds 0-2
    assert gamma_half[names.kl_exact("fused", "dim_kl") + " mean"] == pytest.approx(5.1)
    assert gamma_half[names.kl_bias("private0", "dim_kl") + " mean"] == pytest.approx(-8.1)
    assert gamma_half[names.kl_bias("private0", "dim_kl") + " std"] == pytest.approx(0.1)
    build_report([results_dir], tmp_path / "report", umap=False)
    assert "Dimension-wise KL: exact" in (tmp_path / "report" / "report.md").read_text()


def test_many_experiments_with_different_columns(results_dir, tmp_path):
    other = tmp_path / "exp_b"
    other.mkdir()
    df = fake_results(seeds=(5,), diverged_one=False).assign(**{"config/extra": "x"})
    df.to_parquet(other / "results.parquet")
    both = load_results([results_dir, other])
    assert set(both["experiment"]) == {"exp_a", "exp_b"}
    assert both["config/extra"].isna().sum() == 16 and (both["config/extra"] == "x").sum() == 5


def test_latent_size_table_and_curves(tmp_path):
    df = pd.concat([fake_results(diverged_one=False).assign(**{"config/latent_dim": d}) for d in (2, 8)])
    table = tables.latent_size_table(df[df["config/gamma"] == 0.1])
    assert list(table["latent_dim"]) == [2, 8] and list(table["n_seeds"]) == [3, 3]
    paths = figures.latent_size_curves(table, tmp_path / "ls")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_table_files_are_written_in_three_formats(results_dir, tmp_path):
    table = tables.ablation_table(load_results(results_dir))
    paths = tables.write_table(table, tmp_path, "ablation")
    assert pd.read_csv(paths["csv"])["n_seeds"].tolist() == [3] * 5
    md = paths["md"].read_text()
    assert "0.310 ± 0.010" in md and md.startswith("| term |")
    assert r"\pm" in paths["tex"].read_text() and r"\begin{tabular}" in paths["tex"].read_text()


def test_pareto_front_keeps_only_non_dominated_points():
    values = np.array([[1.0, 1.0], [0.5, 0.5], [1.0, 0.2], [0.2, 1.2]])
    assert figures.pareto_mask(values).tolist() == [True, False, False, True]


def test_report_writes_every_figure(results_dir, tmp_path):
    out = tmp_path / "rep"
    build_report([results_dir], out, umap=False)
    for fig in ("ablation_bars", "mi_heatmap", "pareto_front", "tradeoff"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 1000
    text = (out / "report.md").read_text()
    assert "figures/ablation_bars.png" in text and "1 diverged" in text


def run_report(*args, cwd=None):
    return run_module("analysis.report", *args, cwd=cwd)


def test_report_cli_on_a_smoke_sweep(smoke_sweep, tmp_path):
    root, proc = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "report"
    rep = run_report(str(root / "results" / "smoke"), "--out", str(out))
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert "| latent |" in rep.stdout or "| term |" in rep.stdout
    assert (out / "report.md").exists() and list((out / "tables").glob("*.tex"))
    assert (out / "figures" / "umap.png").stat().st_size > 1000  # from the trial's checkpoint latents
    assert (out / "figures" / "loss_curves.png").stat().st_size > 1000  # from epochs.parquet


def test_bad_input_is_one_line_exit_2(tmp_path):
    proc = run_report(str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.parquet").write_bytes(b"PAR1 this is not parquet")
    proc = in_process("analysis.report", corrupt, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "Parquet" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = in_process("analysis.report", empty, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "results.parquet" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_convergence_gaps_find_the_cheapest_setting_within_tolerance():
    # two settings x two sizes x two seeds, evaluated at epochs 10 and 20; accuracies approach
    # the largest setting's (n=200, epoch 20) as 1 - 1/(n * epoch) * 100
    rows, reports = [], []
    for gamma in (0.0, 0.1):
        for n in (100, 200):
            for seed in (0, 1):
                trial = f"g{gamma}_n{n}_s{seed}"
                rows.append({"trial": trial, "status": "ok", "config/alpha": 0.0, "config/beta": 0.0,
                             "config/gamma": gamma, "config/n_train_pairs": n, "config/seed": seed})
                for epoch in (5, 10, 20):
                    report = {"trial": trial, "epoch": epoch}
                    if epoch != 5:  # epoch 5 was not an evaluation
                        report[names.SEPARATION] = 0.0
                        for col in tables.CONVERGENCE_METRICS:
                            report[col] = 1 - 100 / (n * epoch) + 0.001 * seed
                    reports.append(report)
    curve = tables.convergence_table(pd.DataFrame(rows), pd.DataFrame(reports))
    assert len(curve) == 2 * 2 * 2 and set(curve["n_seeds"]) == {2}  # epoch 5 left out
    gaps = tables.convergence_gaps(curve, tolerance=0.02)
    by = gaps.set_index(["n_train_pairs", "epoch"])["max_gap"]
    assert by[200, 20] == 0.0
    assert by[100, 10] == pytest.approx(100 / 1000 - 100 / 4000)  # 0.075
    assert by[200, 10] == pytest.approx(100 / 2000 - 100 / 4000)  # 0.025: outside 0.02
    assert by[100, 20] == pytest.approx(0.025)
    converged = gaps[gaps["converged"]]
    assert list(zip(converged["n_train_pairs"], converged["epoch"])) == [(200, 20)]
    assert not tables.convergence_gaps(curve, tolerance=0.03).query("converged").empty
    first = tables.convergence_gaps(curve, tolerance=0.03).query("converged").iloc[0]
    assert (first["n_train_pairs"], first["epoch"]) == (100, 20)  # same cost as (200, 10): fewer pairs first


def test_report_reads_results_and_checkpoints_through_uris(smoke_sweep, tmp_path):
    """Cluster storage: results.parquet and the checkpoints it names are URIs (file:// here,
    s3:// or gs:// on a cluster), read through pyarrow.fs."""
    root, _ = smoke_sweep
    df = pd.read_parquet(root / "results" / "smoke" / "results.parquet")
    sweep = tmp_path / "bucket" / "smoke"
    sweep.mkdir(parents=True)
    df.assign(checkpoint="file://" + df["checkpoint"]).to_parquet(sweep / "results.parquet")
    out = tmp_path / "report"
    build_report([f"file://{sweep}"], out)
    assert (out / "figures" / "umap.png").stat().st_size > 1000  # latents read from a file:// checkpoint

    df.assign(checkpoint=f"file://{tmp_path}/gone").to_parquet(sweep / "results.parquet")
    rep = run_report(f"file://{sweep}", "--out", str(tmp_path / "report2"))
    assert rep.returncode == 0, rep.stderr[-2000:]
    text = (tmp_path / "report2" / "report.md").read_text()
    assert "Not drawn:" in text and f"{tmp_path}/gone/latents.parquet does not exist" in text
    assert "UMAP figure not drawn" in rep.stderr


def test_umap_keeps_its_compiled_code_for_the_next_process():
    """Compiling umap's numba functions took every report ~16 s; they are cached on disk now."""
    from pathlib import Path

    import umap.umap_

    from marl import plots

    emb = plots.umap_embedding(np.random.default_rng(0).normal(size=(64, 4)), seed=0)
    assert emb.shape == (64, 2) and np.isfinite(emb).all()
    stats = umap.umap_.smooth_knn_dist.stats  # one of the functions umap itself does not cache
    assert stats.cache_path is not None and Path(stats.cache_path).is_dir()
    assert sum(stats.cache_hits.values()) + sum(stats.cache_misses.values()) > 0  # loaded or compiled, then saved


def test_recipe_gaps_find_the_cheapest_recipe_within_tolerance_of_the_reference():
    offsets = {"reference": (0.0, 0.0), "a": (-0.01, -0.05), "b": (0.02, 0.02)}  # recon, gamma
    size = {"reference": (400, 120), "a": (100, 10), "b": (50, 10)}
    rows = []
    for recipe, (recon, gamma) in offsets.items():
        for weight, offset in ((0.0, recon), (0.1, gamma)):
            for seed in (0, 1):
                rows.append({"status": "ok", "config/recipe": recipe, "config/alpha": 0.0, "config/beta": 0.0,
                             "config/gamma": weight, "config/seed": seed, "config/n_train_pairs": size[recipe][0],
                             "config/epochs": size[recipe][1],
                             **{m: 0.9 + offset + 0.002 * seed for m in tables.CONVERGENCE_METRICS}})
    rows.append({**rows[0], "status": "diverged", **{m: 0.0 for m in tables.CONVERGENCE_METRICS}})  # not counted
    gaps = tables.recipe_gaps(pd.DataFrame(rows), tolerance=0.03)
    assert gaps["recipe"].tolist() == ["b", "a", "reference"]  # by cost
    assert gaps["max_gap"].tolist() == pytest.approx([0.02, 0.05, 0.0])
    assert gaps["within"].tolist() == [True, False, True] and set(gaps["n_seeds"]) == {2}
    assert gaps["pair_epochs"].tolist() == [500, 1000, 48000]
