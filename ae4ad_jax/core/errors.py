"""The one exception type for user mistakes, and how command lines report it.

Command lines print its message as one paragraph, without a traceback, and
exit with status 2. Everything else is a bug and keeps its traceback. A run that
stopped at a signal, or lost a process, exits with REQUEUE_STATUS.
"""

import sys

# sysexits.h's EX_TEMPFAIL ("a temporary failure; the user is invited to retry"): a run
# saved where it stood and asks its launcher to start the same command again.
REQUEUE_STATUS = 75


class UserError(Exception):
    """Bad input from the user: a config value, a file, a folder, a checkpoint."""


def exit_on_user_error(fn, *args, **kwargs):
    """Runs `fn`; a UserError becomes `error: message` on stderr and exit status 2."""
    try:
        return fn(*args, **kwargs)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def renamed_command(old: str, new: str) -> None:
    """Stops a command line that uses an entry point's old name, naming the new one; the
    arguments carry over as they are."""
    print(f"error: `python -m {old}` is now `python -m {new}` (same arguments).",
          file=sys.stderr)
    sys.exit(2)
