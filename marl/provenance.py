"""What produced a result: package versions and the git commit, recorded with every trial.

Metrics drift with library versions (disentanglement_lib#33: MIG and modularity moved with
scikit-learn), so each results row says what computed it.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
PACKAGES = ("torch", "ray", "optuna", "scikit-learn", "marl")
COMMIT = "provenance/git_commit"


def version_key(package: str) -> str:
    return f"provenance/{package}"


KEYS = (*(version_key(p) for p in PACKAGES), COMMIT)


def git_commit(folder: Path) -> str:
    """The commit checked out where marl's code lives, "+dirty" when tracked files changed;
    "unknown" outside a git checkout (an installed wheel, a cluster node without .git)."""
    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout
        return UNKNOWN
    return commit + ("+dirty" if dirty else "") if commit else UNKNOWN


@functools.cache
def provenance() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        try:
            out[version_key(package)] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[version_key(package)] = UNKNOWN
    out[COMMIT] = git_commit(Path(__file__).resolve().parent)
    return out
