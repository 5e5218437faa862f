"""Validate a Ray cluster file offline: `python -m marl.check_cluster [cluster.yaml]`.

Runs Ray's own config validation (no cloud credentials needed); it catches misspelt keys, a
missing head node type, min_workers > max_workers and malformed resources, not instance types
or AMIs. Ray's validators are private functions, which is why ray is pinned in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from marl.cli import ArgumentParser
from marl.errors import UserError, exit_on_user_error


def check(path: Path) -> int:
    """Validate; returns how many REPLACE_ME placeholders are left to fill in."""
    import logging

    import jsonschema
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray").setLevel(logging.WARNING)  # prepare_config logs at INFO

    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: a cluster file must be a mapping")
    try:
        validate_config(prepare_config(config))
    except (jsonschema.ValidationError, ValueError, KeyError, TypeError, AssertionError) as err:
        # Ray's checks: the schema, then prepare_config's own asserts and lookups
        message = " ".join(str(getattr(err, "message", err)).split())[:300] or type(err).__name__
        raise UserError(f"{path}: invalid cluster config: {message}") from None
    return text.count("REPLACE_ME")


def main(argv=None) -> None:
    p = ArgumentParser(prog="python -m marl.check_cluster", description=__doc__.split("\n")[0])
    p.add_argument("path", nargs="?", default="cluster.yaml")
    path = Path(p.parse_args(argv).path)
    left = check(path)
    note = f" ({left} REPLACE_ME values to fill in before `ray up`)" if left else ""
    print(f"{path}: valid{note}")


if __name__ == "__main__":
    exit_on_user_error(main)
