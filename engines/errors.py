"""The errors engines raise for problems a user can act on (standard library only, so the CLI can catch
them without loading numpy or torch)."""

from __future__ import annotations


class EngineError(Exception):
    """Bad settings, missing files or a failed step the user can fix.

    The message is one line (what is wrong and what to do); line breaks in it are joined, so a
    caller can print it as it is. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))


class EngineUnavailable(EngineError):
    """The engine cannot run on this machine (missing GPU, weights, package)."""


class UnknownEngine(EngineError):
    """No engine is registered under the requested name."""
