"""Tune's storage for a local folder, made crash-safe: each file appears whole or not at all.

Ray Tune writes a sweep's state (`experiment_state-*.json`, the searcher's state, `tuner.pkl`)
in a staging folder and copies it into the storage folder in a background thread, about every
0.1 s here; a local copy writes the file in place. A driver killed mid-copy leaves half a file,
and a resume then cannot read it: Tune logs "Failed to restore the run state" and starts a
*new* experiment with an empty configuration (docs/reliability.md). Object stores (s3://,
gs://) publish an object only once it is complete, so only local folders need this: each file
written here goes to a hidden partial file beside it and is renamed into place when closed.

One more rule for the experiment state: Tune rewrites the staging copy in place while the
previous copy may still be reading it, so a copy can read half a file without any kill. An
experiment state is therefore published only if it parses; otherwise the previous one stays
(the next copy, a moment later, brings the whole new one).

Whole per file, not per folder (a checkpoint folder can still lack files, which
`marl.trainable.restore_state` handles), and against killed processes, not power loss (no
fsync). The handler's import path is pickled into `tuner.pkl` and each trial's state: moving
or renaming it makes existing sweeps unresumable.
"""

from __future__ import annotations

import fnmatch
import json
import os
import uuid
from pathlib import Path

import pyarrow
import pyarrow.fs

TYPE_NAME = "marl-atomic-local"
PARTIAL = ".partial-"  # in the name of a file still being written (removed by a resume)
EXPERIMENT_STATE = "experiment_state-*.json"  # Tune's own name for its experiment state


def partial_path(path: str) -> str:
    target = Path(path)
    return str(target.with_name(f".{target.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"))


class _AtomicWriter:
    """A file object that writes to a partial file and renames it over `path` on close; after
    a failed write (a full disk) close removes the partial file and leaves `path` as it was."""

    def __init__(self, path: str):
        self.path, self.tmp = path, partial_path(path)
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
        self.closed = self.failed = False

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError:
            self.failed = True
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError:
            self.failed = True
            raise

    def tell(self) -> int:
        return self.file.tell()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.file.close()  # a full disk often shows only here, when the buffer is written
        except OSError:
            os.unlink(self.tmp)
            raise
        if self.failed:
            os.unlink(self.tmp)
        else:
            publish(self.tmp, self.path)


def publish(tmp: str, path: str) -> None:
    """Rename a complete partial file over `path`; an experiment state that does not parse
    was copied while Tune rewrote it, and is dropped so that the previous one stays."""
    if fnmatch.fnmatch(Path(path).name, EXPERIMENT_STATE):
        try:
            json.loads(Path(tmp).read_bytes())
        except ValueError:
            os.unlink(tmp)
            return
    os.replace(tmp, path)


class AtomicLocalHandler(pyarrow.fs.FileSystemHandler):
    """pyarrow's LocalFileSystem, except that output streams and copies are atomic."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other):
        return isinstance(other, AtomicLocalHandler)

    def __reduce__(self):
        return AtomicLocalHandler, ()

    def get_type_name(self):
        return TYPE_NAME

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        tmp = partial_path(dest)
        self.local.copy_file(src, tmp)
        publish(tmp, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_AtomicWriter(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


def atomic_local_filesystem() -> pyarrow.fs.FileSystem:
    return pyarrow.fs.PyFileSystem(AtomicLocalHandler())


def is_local(filesystem) -> bool:
    """Whether a pyarrow filesystem (a checkpoint's, say) is this machine's disk."""
    return filesystem.type_name in ("local", f"py::{TYPE_NAME}")


def remove_partial_files(folder: Path) -> int:
    """Delete the partial files a killed driver left under `folder`; how many there were."""
    leftovers = [p for p in Path(folder).rglob(f".*{PARTIAL}*") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)
