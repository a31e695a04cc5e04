"""The CLI's exception for what reaches the user as a single line (engines raise their own
``engines.errors.EngineError``, which the CLI prints the same way)."""

from pathlib import Path


class SfiError(Exception):
    """Bad input or a failed step the user can act on.

    The message is one line: what is wrong and what to do about it. The CLI
    prints it without a traceback and exits non-zero.
    """

    exit_code = 1


def require_input_file(path: Path, kind: str) -> Path:
    """``path`` as a Path if it names an existing file; else the one-line error for a ``kind`` input."""
    path = Path(path)
    if not path.exists():
        raise SfiError(f"input '{path}' does not exist; check the path")
    if path.is_dir():
        raise SfiError(f"input '{path}' is a folder, not {kind} file")
    if not path.is_file():  # a pipe or a device would be read forever, or only once
        raise SfiError(f"input '{path}' is not a regular file (a pipe or a device?); save it as {kind} file first")
    return path
