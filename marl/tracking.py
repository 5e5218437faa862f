"""Opt-in MLflow tracking of a sweep (`python -m marl.sweep --log mlflow`).

Every configuration is its own MLflow run, a packed trial's members included, named after its
trial and member. Runs that differ only in their seed share the tag `marl.group` (MLflow's
"group by" puts a setting's seeds together). Params are the configuration's fields; metrics
are every finite number a report carries, at step = epoch. The tracking store defaults to a
SQLite file in the sweep's folder (MLflow 3 keeps plain-folder stores in maintenance mode).

TensorBoard needs nothing of this: Ray Tune writes each trial's events into its folder
(`tensorboard --logdir <storage>/<name>`), packed members under their `m<i>/` prefix.
"""

from __future__ import annotations

import json
import math

from ray.tune import Callback

from marl.errors import UserError
from marl.results import METRIC_NAMES, METRIC_PREFIXES, NOT_A_SETTING, members, unprefixed

GROUP_TAG = "marl.group"  # the configuration minus its seed
MEMBER_TAG = "marl.member"  # <trial>/<member>: finds a run again when a sweep is resumed


def mlflow_client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise UserError("--log mlflow: MLflow is not installed; pip install -e '.[mlflow]'") from None
    return MlflowClient(tracking_uri=uri)


def group_of(config: dict) -> str:
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in NOT_A_SETTING}, sort_keys=True, default=str)


def member_metrics(result: dict, prefix: str) -> dict[str, float]:
    """A member's finite numeric metrics in one report, unprefixed, and the trial's own
    (epoch, times): what results.parquet keeps of a report, minus NaNs and lists."""
    return {k: float(v) for k, v in unprefixed(result, prefix).items()
            if (k.split("/")[0] in METRIC_PREFIXES or k in METRIC_NAMES)
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class MlflowRuns(Callback):
    """Logs each configuration of each trial to its own MLflow run, as results arrive."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment_name = uri, experiment
        self.client = None
        self.runs: dict[str, str] = {}  # <trial>/<member> -> run id

    def setup(self, **info):
        self.client = mlflow_client(self.uri)
        found = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment_name)

    def run_ids(self, trial) -> list[tuple[str, str]]:
        """(metric prefix, run id) of each configuration of a trial; runs made on first sight
        (or found again by tag, after a resume)."""
        from mlflow.entities import Param

        out = []
        for prefix, config in members(trial.config):
            key = f"{trial.trial_id}/{prefix}".rstrip("/")
            if key not in self.runs:
                found = self.client.search_runs([self.experiment_id], f"tags.`{MEMBER_TAG}` = '{key}'", max_results=1)
                if found:
                    self.runs[key] = found[0].info.run_id
                else:
                    run = self.client.create_run(self.experiment_id, run_name=key,
                                                 tags={GROUP_TAG: group_of(config), MEMBER_TAG: key})
                    self.runs[key] = run.info.run_id
                    params = [Param(k, str(v)[:500]) for k, v in sorted(config.items())]
                    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                        self.client.log_batch(run.info.run_id, params=params[start:start + 100])
            out.append((prefix, self.runs[key]))
        return out

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric

        step = int(result.get("epoch", result.get("training_iteration", 0)))
        for prefix, run_id in self.run_ids(trial):
            metrics = [Metric(k, v, 0, step) for k, v in member_metrics(result, prefix).items()]
            for start in range(0, len(metrics), 1000):  # MLflow's batch limit
                self.client.log_batch(run_id, metrics=metrics[start:start + 1000])

    def on_trial_complete(self, iteration, trials, trial, **info):
        for _, run_id in self.run_ids(trial):
            self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        for _, run_id in self.run_ids(trial):
            self.client.set_terminated(run_id, "FAILED")
