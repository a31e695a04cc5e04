"""The one exception type that reaches the user as a single line."""


class SfiError(Exception):
    """Bad input or a failed step the user can act on.

    The message is one line: what is wrong and what to do about it. The CLI
    prints it without a traceback and exits non-zero.
    """

    exit_code = 1
