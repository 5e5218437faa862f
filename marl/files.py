"""Small file helpers shared by the command lines (no torch, no Ray)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from marl.errors import UserError


def check_writable(path: Path, field: str) -> None:
    """Fail early (before any work) if `path` cannot be created or written as a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{field}: {path} exists and is not a folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{field}: cannot create {path}: {ancestor} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        raise UserError(f"{field}: cannot write to {ancestor}: {err.strerror or err}") from None


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errnos a full disk or quota raises


class DiskFull(UserError):
    """A write that a full disk or quota stopped; the file's previous version is intact."""


def replace_atomically(target: Path, write) -> None:
    """Call write(tmp_path), then rename over target: a crash never leaves half a file, and a
    full disk leaves the previous file as it was (and says so)."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise DiskFull(f"disk full while writing {target}; the previous version, if any, is "
                            "unchanged: free space and run the command again") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def hold_lock(path: Path, what: str):
    """Take an exclusive lock on `path` for as long as the returned lock lives (filelock, as the
    data cache's); if another process holds it, a UserError naming `what`."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{what} is running now (lock {path}); wait for it to finish, or use --name") from None
    return lock


def write_json(path: Path, obj) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))
