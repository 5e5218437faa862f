"""report.html in a real headless browser (Debian's Chromium driven by playwright), and the
fANOVA importance on results with a known answer."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import figures, importance, tables
from analysis.report import build_report
from marl import names
from tests.test_analysis import fake_results

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_executable() -> str | None:
    """Debian's Chromium, else one on PATH; None: playwright's own build, if it has one."""
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser: python playwright is not installed (pip install -e '.[test]')")
    executable = _browser_executable()
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as err:  # no browser build where playwright looks, or one that cannot start
            pytest.skip(f"no browser could be launched ({executable or 'playwright default'}; no "
                        f"/usr/bin/chromium: apt-get install chromium): {str(err).splitlines()[0][:200]}")
        try:
            yield b
        finally:
            b.close()


def test_report_html_shows_tables_and_figures_in_a_browser(browser, tmp_path):
    results = tmp_path / "exp_a"
    results.mkdir()
    fake_results().to_parquet(results / "results.parquet")
    out = tmp_path / "report"
    build_report([results], out, umap=False)
    page_file = out / "report.html"
    text = page_file.read_text()
    assert "<script" not in text
    assert 'src="data:image/png;base64,' in text

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri(), wait_until="load")
    assert problems == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # self-contained

    headers = page.eval_on_selector_all(
        "table", "ts => ts.map(t => Array.from(t.querySelectorAll('th')).map(h => h.textContent))")
    assert any({"term", "weight", "n_seeds", "private/timbre", "shared/pitch", "separation"} <= set(h)
               for h in headers), headers  # the ablation
    assert any({"latent", "timbre", "pitch"} <= set(h) for h in headers)  # the probe table
    assert any({"private/timbre ours", "private/timbre paper", "private/timbre diff"} <= set(h)
               for h in headers)  # ours beside the paper
    assert any({"field", "importance"} <= set(h) for h in headers)  # fANOVA
    assert len(headers) == text.count("<table>") == len(list((out / "tables").glob("*.csv")))
    assert page.locator("td", has_text="0.310 ± 0.010").count() >= 1  # same figures as report.md

    images = page.eval_on_selector_all("img", "is => is.map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) == len(list((out / "figures").glob("*.png"))) >= 5
    assert all(complete and width > 0 for _, complete, width in images), images
    assert any(alt.startswith("Parallel coordinates") for alt, _, _ in images)

    shot = tmp_path / "report_html.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MARL_SCREENSHOT_DIR"):
        keep = Path(os.environ["MARL_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)


def _known_results(n=48, seed=0) -> pd.DataFrame:
    """Validation separation depends on gamma alone (log-spaced, 0 included, as Optuna's
    `gamma_log10` gives); latent_dim and lr are noise."""
    rng = np.random.default_rng(seed)
    gamma = np.where(rng.random(n) < 0.2, 0.0, 10 ** rng.uniform(-3.5, 0.3, n))
    df = pd.DataFrame({"trial": [f"t{i}" for i in range(n)], "status": "ok",
                       "config/gamma": gamma, "config/latent_dim": rng.choice([4, 8, 16], n),
                       "config/lr": rng.uniform(1e-4, 1e-3, n), "config/seed": np.arange(n)})
    df[names.SELECTION] = 0.1 * np.log10(np.maximum(gamma, 1e-4)) + 0.002 * rng.standard_normal(n)
    return df


def test_importance_goes_to_the_field_the_score_depends_on():
    df = _known_results()
    table, why = importance.importance_table(df)
    assert why == "" and table.attrs["n_trials"] == len(df)
    by = table.set_index("field")
    assert set(by.index) == {"gamma", "latent_dim", "lr"}  # seed is not a swept field
    assert by.loc["gamma", "importance"] > 0.9 and by.loc["gamma", "scale"] == "log10"
    assert by["importance"].sum() == pytest.approx(1.0)
    again, _ = importance.importance_table(df)
    pd.testing.assert_frame_equal(table, again)  # seeded: the same estimate every time

    # a grid: the score follows one categorical field, the other is noise
    grid = pd.DataFrame([{"status": "ok", "config/loss": loss, "config/beta": beta, "config/seed": s,
                          names.SELECTION: {"a": 0.1, "b": 0.5, "c": 0.2}[loss] + 0.001 * s}
                         for loss in "abc" for beta in (0.0, 1.0, 4.0) for s in range(2)])
    by = importance.importance_table(grid)[0].set_index("field")
    assert by.loc["loss", "importance"] > 0.9 and by.loc["loss", "scale"] == "categorical"


def test_importance_says_why_it_has_no_estimate():
    df = _known_results()
    table, why = importance.importance_table(df.drop(columns=["config/latent_dim", "config/lr"]))
    assert table.empty and why == "fewer than 2 swept fields vary among the 48 finished trials (gamma)"
    table, why = importance.importance_table(df.iloc[:3])
    assert table.empty and why == "3 finished trials, fewer than 4"
    table, why = importance.importance_table(df.assign(status="error"))
    assert table.empty and why == "fewer than 2 swept fields vary among the 0 finished trials (none)"


def test_probe_accuracy_figures_draw_chance(monkeypatch, tmp_path):
    """Dashed lines at the recorded chance rates (timbre 1/4, pitch 1/21 in fake_results)."""
    from matplotlib.axes import Axes

    drawn = []
    for name in ("axhline", "axvline"):
        original = getattr(Axes, name)
        monkeypatch.setattr(Axes, name, lambda self, v=0, *a, _f=original, **k:
                            (drawn.append(v), _f(self, v, *a, **k))[1])
    df = fake_results()
    figures.ablation_bars(tables.ablation_table(df), tmp_path / "bars", figures.chance_levels(df))
    assert drawn.count(pytest.approx(1 / 4)) == 3 and drawn.count(pytest.approx(1 / 21)) == 3  # each panel
    drawn.clear()
    figures.pareto_front(df, tmp_path / "pareto")
    assert drawn == [pytest.approx(1 / 4), pytest.approx(1 / 21)]
