"""Experiment tracking around a sweep: TensorBoard events (Ray Tune's, always written) and
opt-in MLflow runs, one per configuration, read back with each tool's own reader."""

import json

import pytest

from marl import names
from marl.tracking import GROUP_TAG, group_of, member_metrics


def test_tensorboards_reader_finds_events_for_each_packed_member(packed_smoke_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, proc = packed_smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = sorted((root / "results" / "smoke").glob("trial_*/events.out.tfevents.*"))
    assert len(events) == 1  # one packed trial
    reader = EventAccumulator(str(events[0]))
    reader.Reload()
    tags = set(reader.Tags()["scalars"])
    for member in ("m0", "m1"):
        loss = f"ray/tune/{member}/{names.loss('recon')}"
        assert loss in tags, sorted(tags)[:20]
        assert [e.step for e in reader.Scalars(loss)] == [1, 2]  # one point per epoch
        assert f"ray/tune/{member}/{names.SELECTION}" in tags


def test_mlflow_holds_one_run_per_configuration_grouped_without_the_seed(packed_smoke_sweep):
    from mlflow import MlflowClient

    root, proc = packed_smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = root / "results" / "smoke" / "mlflow.db"
    assert db.exists() and f"sqlite:///{db}" in proc.stdout  # the sweep says where its runs are
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # the two packed members, each its own run
    assert sorted(float(r.data.params["gamma"]) for r in runs) == [0.0, 0.5]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags[GROUP_TAG] for r in runs}) == 2  # gamma differs: two settings
    for run in runs:
        history = client.get_metric_history(run.info.run_id, names.loss("recon"))
        assert sorted(m.step for m in history) == [1, 2]
        assert 0 <= run.data.metrics[names.probe("shared", "timbre")] <= 1


def test_seeds_of_one_setting_share_a_group_and_nan_or_text_is_not_logged():
    a, b = {"gamma": 0.1, "seed": 0, "lr": 1e-3}, {"gamma": 0.1, "seed": 1, "lr": 1e-3}
    assert group_of(a) == group_of(b) != group_of({**a, "gamma": 0.5})
    assert json.loads(group_of(a)) == {"gamma": 0.1, "lr": 1e-3}
    report = {"epoch": 3, "node": "abc", "m0/loss/recon": 1.5, "m0/probe/test/mlp/shared/pitch": float("nan"),
              "m1/loss/recon": 2.5, "training_iteration": 3, "m0/mi/pitch/shared": [0.1, 0.2]}
    assert member_metrics(report, "m0/") == {"epoch": 3.0, "loss/recon": 1.5}
    assert member_metrics(report, "m1/") == {"epoch": 3.0, "loss/recon": 2.5}


def test_mlflow_uri_without_log_mlflow_is_refused():
    from marl.errors import UserError
    from marl.sweep import parse_args

    with pytest.raises(UserError, match="--log mlflow"):
        parse_args(["--mlflow-uri", "sqlite:///x.db"])
