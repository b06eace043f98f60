"""The one error type for user mistakes (bad input, missing files, absent GPU, ...).

Every pixforge CLI turns a `PixforgeError` into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""


class PixforgeError(Exception):
    """A problem with what the user asked for; its message is one sentence naming what and where."""
