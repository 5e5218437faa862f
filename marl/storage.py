"""Tune's storage for a local folder, made crash-safe: every file appears whole or not at all.

Ray Tune writes a sweep's state (`experiment_state-*.json`, the searcher's state, `tuner.pkl`)
in a staging folder and copies it into the storage folder after every result; a local copy
writes the file in place. A driver killed mid-copy leaves half a file, and `Tuner.restore` then
cannot read it: it logs "Failed to restore the run state" and starts a *new* experiment with
an empty configuration (docs/reliability.md). Object stores (s3://, gs://) publish an object
only once it is complete, so only local folders need this: each file Tune writes there goes to
a hidden partial file beside it and is renamed into place when it is closed.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow
import pyarrow.fs

TYPE_NAME = "marl-atomic-local"
PARTIAL = ".partial-"  # in the name of a file still being written (removed by a resume)


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
        self.file.flush()

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
        self.file.close()
        if self.failed:
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, self.path)


class AtomicLocalHandler(pyarrow.fs.FileSystemHandler):
    """pyarrow's LocalFileSystem, except that output streams and copies are atomic."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other):
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other):
        return not self == other

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
        os.replace(tmp, dest)

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
