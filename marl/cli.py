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


def field_comments(cls) -> dict[str, str]:
    """Each dataclass field's comment in its class's source (`name: type = default  # comment`,
    with the comment lines just above it), so that a command line's --help says what the code
    says (CleanRL's habit; tyro does the same)."""
    import inspect
    import re

    out, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:\s*[^=]+=.*?(?:#\s*(.*))?$", stripped)
        if match and not stripped.startswith(("def ", "return ")):
            text = " ".join(a for a in above if not a.startswith("---")) + " " + (match.group(2) or "")
            out[match.group(1)] = " ".join(text.split())
        above = []
    return out
