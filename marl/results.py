"""Tune results → tables: one row per configuration (`results.parquet`) and one per report
(`epochs.parquet`), written atomically to a folder or through pyarrow.fs to a URI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from marl import names, trial
from marl.errors import UserError
from marl.files import replace_atomically
from marl.provenance import KEYS as PROVENANCE, UNKNOWN
from marl.storage import is_local

RESULTS_FILE = "results.parquet"
EPOCHS_FILE = "epochs.parquet"
# every evaluation scalar's prefix (probe, chance, chroma, kl_exact, …), the per-dimension MI lists and losses
METRIC_PREFIXES = tuple(sorted({k.split("/")[0] for k in names.eval_scalars()} | {"mi", "loss"}))
SHARED_NAMES = ("epoch", "node", "device", "restarts", "cpus", "gpus", "threads",
                *names.TRIAL_TIMES, *PROVENANCE)  # reported once per trial, true of every member
METRIC_NAMES = (names.DIVERGED, "diverged_epoch", *SHARED_NAMES)
EPOCH_PREFIXES = tuple(f"{p}/" for p in METRIC_PREFIXES if p != "mi")  # MI lists: the last evaluation's only
EPOCH_NAMES = ("epoch", names.DIVERGED, *names.TRIAL_TIMES)
SUMMARY_COLUMNS = [names.probe("private", "timbre"), names.probe("shared", "timbre"),
                   names.probe("private", "pitch"), names.probe("shared", "pitch"), names.SEPARATION]


def is_uri(storage: str) -> bool:
    return "://" in storage


def filesystem(target: str):
    """(pyarrow filesystem, path) of a URI (s3://, gs://, file://) or a local path."""
    import pyarrow.fs

    if is_uri(target):
        return pyarrow.fs.FileSystem.from_uri(target)
    return pyarrow.fs.LocalFileSystem(), str(Path(target).resolve())


def file_type(target: str):
    """pyarrow's FileType (File, Directory, NotFound) of a local path or a URI."""
    fs, path = filesystem(target)
    return fs.get_file_info(path).type


def exists(target: str) -> bool:
    import pyarrow.fs

    return file_type(target) != pyarrow.fs.FileType.NotFound


def _write(target: str, write_stream, write_local) -> None:
    """Atomically for local paths (temporary file, then rename); via pyarrow.fs for URIs."""
    if is_uri(target):
        fs, path = filesystem(target)
        with fs.open_output_stream(path) as stream:
            write_stream(stream)
        return
    replace_atomically(Path(target), write_local)


def write_parquet(df: pd.DataFrame, target: str) -> None:
    _write(target, lambda stream: df.to_parquet(stream, index=False), lambda tmp: df.to_parquet(tmp, index=False))


def write_text(target: str, text: str) -> None:
    if not is_uri(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    _write(target, lambda stream: stream.write(text.encode()), lambda tmp: tmp.write_text(text))


def read_text(target: str) -> str | None:
    """The text of a local or URI file; None when it is not a file."""
    import pyarrow.fs

    if file_type(target) != pyarrow.fs.FileType.File:
        return None
    fs, path = filesystem(target)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode()


def read_parquet(target: str) -> pd.DataFrame:
    """A local or URI Parquet file."""
    fs, path = filesystem(target)
    with fs.open_input_file(path) as stream:
        return pd.read_parquet(stream)


def members(config: dict) -> list[tuple[str, dict]]:
    """(metric prefix, flat config) of each configuration a trial trained."""
    packed = trial.is_packed(config)
    return [(names.member_prefix(i, packed), m) for i, m in enumerate(trial.members(config))]


def unprefixed(mapping: dict, prefix: str) -> dict:
    """A member's own metrics, without its prefix; shared ones (epoch, node, ...) kept."""
    out = {k: v for k, v in mapping.items() if k in SHARED_NAMES}
    out.update({k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)})
    return out


def trial_status(error, metrics: dict) -> str:
    if error is not None:
        return "error"
    if metrics.get(names.DIVERGED):
        return names.DIVERGED
    evaluated = isinstance(metrics.get(names.SEPARATION), float) and not math.isnan(metrics[names.SEPARATION])
    return "ok" if evaluated else "incomplete"


SCHEMES = {"gcs": "gs"}  # pyarrow filesystem type -> URI scheme, where they differ


def checkpoint_uri(checkpoint) -> str:
    """Where a Tune checkpoint lives: a local path, or a URI (s3://bucket/...) on cluster
    storage, so that a reader elsewhere can open it through pyarrow.fs."""
    kind = checkpoint.filesystem.type_name
    return checkpoint.path if is_local(checkpoint.filesystem) else f"{SCHEMES.get(kind, kind)}://{checkpoint.path}"


PARAMS_FILE = "params.json"  # the config Tune's JSON logger writes into each trial's folder


def trial_config(result) -> dict:
    """The config a trial trained with: its last result's, else the one Tune recorded in the
    trial's folder when it started (a trial that errored before reporting has no result).
    A trial with neither is one line naming it: a row without its configuration is never
    written."""
    if result.config:
        return result.config
    if result.path:
        fs = result.filesystem
        try:
            with fs.open_input_stream(f"{result.path}/{PARAMS_FILE}") as stream:
                recorded = json.loads(stream.read())
        except (OSError, ValueError):
            recorded = None
        if recorded:
            return recorded
    raise UserError(f"trial {Path(result.path or '?').name}: its configuration is recorded neither in its "
                    f"results nor in its {PARAMS_FILE}; results.parquet was not written (the earlier "
                    "results, if any, are untouched)")


def results_frames(grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per configuration (errored trials too) and one row per report."""
    rows, epochs = [], []
    for result in grid:
        trial = Path(result.path).name if result.path else None
        error = None if result.error is None else str(result.error).strip().splitlines()[-1][:500]
        frame = result.metrics_dataframe
        for prefix, config in members(trial_config(result)):
            name = f"{trial}/{prefix.rstrip('/')}" if prefix else trial
            metrics = {k: v for k, v in unprefixed(result.metrics or {}, prefix).items()
                       if k.split("/")[0] in METRIC_PREFIXES or k in METRIC_NAMES}
            checkpoint = checkpoint_uri(result.checkpoint) if result.checkpoint else None
            rows.append({"trial": name, "status": trial_status(result.error, metrics), "error": error,
                         **{f"config/{k}": v for k, v in config.items()},
                         **dict.fromkeys(PROVENANCE, UNKNOWN), **metrics,  # a trial that never reported: unknown
                         "checkpoint": f"{checkpoint}/{prefix}".rstrip("/") if checkpoint else None})
            if frame is not None and len(frame):
                own = pd.DataFrame(unprefixed({c: frame[c] for c in frame.columns}, prefix))
                keep = [c for c in own.columns if c.startswith(EPOCH_PREFIXES) or c in EPOCH_NAMES]
                epochs.append(own[keep].assign(trial=name))
    df = pd.DataFrame(rows)
    ep = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame(columns=["trial", "epoch"])
    if "epoch" in ep:  # a resumed trial may report an epoch again: keep the last report
        ep = ep.drop_duplicates(["trial", "epoch"], keep="last").reset_index(drop=True)
    return df, ep


NOT_A_SETTING = ("seed", "data_seed", "threads")  # config fields that repeat a setting, not make one


def setting_columns(df: pd.DataFrame) -> list[str]:
    """The config columns that make a setting: those that vary, seeds aside."""
    return [c for c in df.columns if c.startswith("config/") and c.removeprefix("config/") not in NOT_A_SETTING
            and df[c].astype(str).nunique() > 1]


def setting_labels(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's setting, its values of `columns`, as one label ("0.1, 0, gamma")."""
    return df[columns].astype(str).agg(", ".join, axis=1) if columns else pd.Series("", index=df.index)


def summary_table(df: pd.DataFrame) -> str:
    """The paper's table: one row per setting (the config fields that vary, seeds aside), the
    MLP probes' test accuracies as mean ± std over its finished seeds, and `n` = finished/all."""
    varying = setting_columns(df)
    keys = setting_labels(df, varying)
    metrics = [c for c in SUMMARY_COLUMNS if c in df.columns]
    rows = []
    for _, group in df.groupby(keys, sort=False):
        ok = group[group["status"] == "ok"]
        row = {c.replace("config/", ""): group[c].iloc[0] for c in varying}
        row["n"] = f"{len(ok)}/{len(group)}"
        for c in metrics:
            values = pd.to_numeric(ok[c], errors="coerce").dropna()
            spread = f" ± {values.std():.3f}" if len(values) > 1 else ""
            row[c.replace(names.probe_prefix(), "")] = f"{values.mean():.3f}{spread}" if len(values) else "-"
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.to_string(index=False, float_format=lambda v: f"{v:g}")
