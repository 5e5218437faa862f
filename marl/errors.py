"""The one exception a user can cause, and how command lines report it."""

import sys


class UserError(Exception):
    """Bad input from the user: reported as one line and exit code 2, never a traceback."""


def exit_on_user_error(main):
    """Run `main()`; turn a UserError into `error: ...` on stderr and exit code 2."""
    try:
        return main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
