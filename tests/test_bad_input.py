"""Bad input beyond the per-CLI tests: cluster files and analysis inputs.

Every kind must give one line on stderr, exit code 2, no traceback, and overwrite nothing.
"""

import pytest

from tests.conftest import in_process, run_module
from tests.test_analysis import fake_results

cli = in_process  # one exit-code test per command line runs it in its own interpreter (test_shipped_*)


def assert_clean_error(proc, needle):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_shipped_cluster_file_is_valid(tmp_path):
    proc = run_module("marl.check_cluster", "cluster.yaml")
    assert proc.returncode == 0 and "valid" in proc.stdout
    assert_clean_error(run_module("marl.check_cluster", tmp_path / "nope.yaml"), "cannot read")


@pytest.mark.parametrize("text,needle", [
    ("a: [b\n", "not valid YAML"),
    ("- just a list\n", "mapping"),
    ("cluster_name: x\nprovider: {type: aws, region: us-west-2}\nmax_workers: 2\n"
     "available_node_types: {head: {resources: {}, node_config: {}, min_workers: 3, max_workers: 1}}\n"
     "head_node_type: head\n", "invalid cluster config"),
    ("cluster_name: x\nprovider: {type: aws, region: us-west-2}\nmax_wokers: 2\n"
     "available_node_types: {head: {resources: {}, node_config: {}}}\nhead_node_type: head\n",
     "invalid cluster config"),
])
def test_invalid_cluster_files(tmp_path, text, needle):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    assert_clean_error(cli("marl.check_cluster", str(path)), needle)


def test_missing_cluster_file(tmp_path):
    assert_clean_error(cli("marl.check_cluster", str(tmp_path / "nope.yaml")), "cannot read")


def test_experiments_with_conflicting_column_types(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    fake_results().to_parquet(a / "results.parquet")
    fake_results().assign(**{"config/latent_dim": "eight"}).to_parquet(b / "results.parquet")
    assert_clean_error(cli("analysis.report", str(a), str(b), "--out", str(tmp_path / "o")),
                       "incompatible columns")
    assert not (tmp_path / "o").exists()


def test_results_with_no_finished_trial(tmp_path):
    d = tmp_path / "all_failed"
    d.mkdir()
    fake_results().assign(status="error").to_parquet(d / "results.parquet")
    assert_clean_error(cli("analysis.report", str(d), "--out", str(tmp_path / "o")), "finished")


def test_truncated_parquet(tmp_path):
    d = tmp_path / "partial"
    d.mkdir()
    fake_results().to_parquet(d / "results.parquet")
    data = (d / "results.parquet").read_bytes()
    (d / "results.parquet").write_bytes(data[: len(data) // 2])
    assert_clean_error(cli("analysis.report", str(d), "--out", str(tmp_path / "o")), "Parquet")


@pytest.mark.parametrize("select,needle", [("nonsense", "--select"), ("latent=3", "latent")])
def test_bad_select(tmp_path, select, needle):
    d = tmp_path / "exp"
    d.mkdir()
    fake_results().to_parquet(d / "results.parquet")
    assert_clean_error(cli("analysis.report", str(d), "--out", str(tmp_path / "o"), "--select", select),
                       needle)


def test_report_does_not_overwrite_a_file_with_its_folder(tmp_path):
    d = tmp_path / "exp"
    d.mkdir()
    fake_results().to_parquet(d / "results.parquet")
    target = tmp_path / "report.md"
    target.write_text("keep me")
    assert_clean_error(cli("analysis.report", str(d), "--out", str(target)), "not a folder")
    assert target.read_text() == "keep me"
