"""Cluster storage on real object storage: a sweep, its resume and its report on s3://,
against an S3-compatible server (moto) started on localhost for the test. pyarrow, which Ray
Tune and marl use for every URI, reads the server's address from AWS_ENDPOINT_URL."""

import os

import pandas as pd
import pytest

from tests.conftest import in_process, run_module

BUCKET = "marl-test"


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}/sweeps"
    server.stop()


def cli(module, *args, cwd, timeout=300):
    return run_module(module, *args, cwd=cwd, timeout=timeout, env={**os.environ, "MARL_CACHE": str(cwd / "cache")})


def test_sweep_resume_and_report_on_s3(s3, tmp_path):
    import pyarrow.fs

    from marl.results import read_parquet

    flags = ["--space", "smoke", "--storage", s3, "--num-cpus", "2"]
    first = cli("marl.sweep", *flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "results").exists()  # nothing went to a local folder instead
    df = read_parquet(f"{s3}/smoke/results.parquet")
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    fs, _ = pyarrow.fs.FileSystem.from_uri(s3)
    for checkpoint in df["checkpoint"]:  # recorded as URIs, and holding each member's outputs
        assert checkpoint.startswith(f"s3://{BUCKET}/sweeps/smoke/trial_")
        files = {info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(checkpoint[len("s3://"):]))}
        assert {"model.pt", "metrics.json", "latents.parquet"} <= files

    again = cli("marl.sweep", *flags, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = read_parquet(f"{s3}/smoke/results.parquet")
    assert sorted(resumed["trial"]) == sorted(df["trial"]) and set(resumed["status"]) == {"ok"}
    assert sorted(resumed["config/gamma"]) == [0.0, 0.5]  # the resumed sweep kept its configuration
    key = "probe/test/mlp/shared/timbre"
    assert resumed.sort_values("trial")[key].tolist() == pd.Series(df.sort_values("trial")[key]).tolist()

    report = in_process("analysis.report", f"{s3}/smoke", "--out", str(tmp_path / "report"), "--no-umap")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Probe table" in (tmp_path / "report" / "report.md").read_text()
