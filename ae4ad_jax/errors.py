"""The one exception type for user mistakes.

`main` prints its message as one paragraph, without a traceback, and exits
with status 2. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config value, a file, a folder, a checkpoint."""
