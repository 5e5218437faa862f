"""argparse with one-line errors (exit code 2), shared by every command line."""

import argparse
import sys

from marl.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_key_values(items, flag: str) -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}; a malformed item is a UserError naming the flag."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
