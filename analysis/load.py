"""Load one or many sweep folders — local paths or URIs (s3://, gs://, file://) — into one DataFrame."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from marl.errors import UserError
from marl.results import exists, file_type, filesystem, read_parquet

RESULTS_FILE = "results.parquet"


def _results_file(target: str) -> str:
    kind = file_type(target)
    if kind == pafs.FileType.File:
        return target
    if kind == pafs.FileType.NotFound:
        raise UserError(f"no such results folder: {target}")
    file = f"{target.rstrip('/')}/{RESULTS_FILE}"
    if file_type(file) != pafs.FileType.File:
        raise UserError(f"{target} holds no {RESULTS_FILE}: is it a sweep folder "
                        "(<storage>/<name>) whose sweep finished or was resumed to the end?")
    return file


def load_results(paths) -> pd.DataFrame:
    """One row per trial from one or many sweep folders (or results.parquet files).

    Adds an `experiment` column (the folder's name). Columns that only some sweeps have are
    kept and left empty (NaN/None) for the others.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UserError("no results folders given")
    tables = []
    for p in map(str, paths):
        file = _results_file(p)
        try:
            fs, path = filesystem(file)
            table = ds.dataset(path, filesystem=fs, format="parquet").to_table()
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{file} is not a readable Parquet file ({str(err).splitlines()[0][:120]})") from None
        name = PurePosixPath(file.split("://", 1)[-1])
        experiment = (name.parent if name.name == RESULTS_FILE else name).name
        tables.append(table.append_column("experiment", pa.array([experiment] * table.num_rows, pa.string())))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise UserError(f"experiments have incompatible columns: {str(err).splitlines()[0][:160]}") from None
    df = table.to_pandas()
    if df.empty:
        raise UserError(f"no trials in {', '.join(map(str, paths))}")
    return df


EPOCHS_FILE = "epochs.parquet"


def load_epochs(paths) -> pd.DataFrame:
    """Every report of every trial (epochs.parquet) of the sweep folders that have one."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = [f"{str(p).rstrip('/')}/{EPOCHS_FILE}" for p in paths]
    frames = [read_parquet(f) for f in files if exists(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial", "epoch"])
