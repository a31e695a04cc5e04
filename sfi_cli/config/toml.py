"""Reading TOML files so that every complaint names the file, the line and the key.

``tomllib`` reports syntax errors with a position but forgets where each value came
from; ``key_line`` finds it again from the text, for schema errors.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from sfi_cli.errors import SfiError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def read_toml(path: Path, what: str = "config") -> tuple[dict[str, Any], str]:
    """Parse a TOML file, turning every failure into one line naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SfiError(f"{what} file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SfiError(f"cannot read {what} file '{path}': {error}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        raise SfiError(f"{path}: TOML syntax error: {error}; fix the {what} file") from None


def _split_key(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r"""("[^"]*"|'[^']*'|[^.]+)""", dotted)]


def key_line(text: str, key_path: tuple[str | int, ...]) -> int | None:
    """The 1-based line where ``key_path`` (e.g. ("output", "fps") or ("shot", 2, "path")) is set.

    Integer parts index arrays of tables (``[[shot]]``), and a sub-table such as
    ``[shot.transition]`` belongs to the ``[[shot]]`` above it; None if the key cannot be found.
    """
    names = [part for part in key_path if isinstance(part, str)]
    table: list[str] = []
    array_counts: dict[str, int] = {}
    table_index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            if line.lstrip().startswith("[["):
                joined = ".".join(table)
                array_counts[joined] = array_counts.get(joined, -1) + 1
            table_index = array_counts.get(table[0], 0)
            if table == names and _index_matches(key_path, table_index):
                return number
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            full = table + _split_key(assignment.group(1))
            if names[: len(full)] == full and _index_matches(key_path, table_index):
                return number
    return None


def _index_matches(key_path: tuple[str | int, ...], table_index: int) -> bool:
    indices = [part for part in key_path if isinstance(part, int)]
    return not indices or indices[0] == table_index


def where(path: Path, text: str, key_path: tuple[str | int, ...]) -> str:
    """``file:line`` (or just ``file``) for error messages about ``key_path``."""
    line = key_line(text, key_path)
    return f"{path}:{line}" if line else str(path)


def dotted(key_path: tuple[str | int, ...]) -> str:
    """Show a key path the way a user writes it: ``shot[2].path``."""
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def unicode_text(text: str) -> str:
    """``text`` as valid Unicode: bytes that were not UTF-8 (lone surrogates, as Python decodes them
    from the command line or a file name) become U+FFFD, so it can be written to TOML, JSON or a model."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that stand for no byte
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def toml_string(value: str) -> str:
    """A TOML basic string that reads back as ``value`` (control characters escaped, invalid bytes as U+FFFD)."""
    return '"' + "".join(map(_escaped, unicode_text(value))) + '"'


def toml_comment(text: str) -> str:
    """One ``#`` comment line showing ``text`` (TOML comments take no control characters or line breaks)."""
    return "# " + "".join(_escaped(c) if c not in '"\\' else c for c in unicode_text(text))
