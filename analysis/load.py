"""Load one or many sweep folders into one DataFrame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from marl.errors import UserError

RESULTS_FILE = "results.parquet"


def _results_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"no such results folder: {path}")
    target = path / RESULTS_FILE
    if not target.exists():
        raise UserError(f"{path} holds no {RESULTS_FILE}: is it a sweep folder "
                        "(<storage>/<name>) whose sweep finished or was resumed to the end?")
    return target


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
    for p in map(Path, paths):
        file = _results_file(p)
        try:
            table = ds.dataset(file, format="parquet").to_table()
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{file} is not a readable Parquet file ({str(err).splitlines()[0][:120]})") from None
        experiment = (file.parent if file.name == RESULTS_FILE else file).name
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
    frames = [pd.read_parquet(Path(p) / EPOCHS_FILE) for p in paths if (Path(p) / EPOCHS_FILE).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial", "epoch"])
