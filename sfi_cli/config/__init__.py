"""Settings from ``sfi.toml``, checked against one schema.

Lookup: ``--config PATH``, else ``./sfi.toml``, else ``sfi.toml`` in the user config
folder; the first that exists is used. Command-line flags override file values.
Every key is declared once in ``sfi_cli.config.schema.SCHEMA``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfi_cli.config.schema import SCHEMA, check_value, expected
from sfi_cli.config.toml import dotted, read_toml, where
from sfi_cli.errors import SfiError

CONFIG_NAME = "sfi.toml"


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("sfi")) / CONFIG_NAME


def find_config(explicit: Path | None) -> Path | None:
    """The config file to read, or None when there is none anywhere.

    Anything at a lookup path counts as "there" (a folder or an unreadable file is then
    reported by ``read_toml``), so a config the user meant is never skipped in silence.
    """
    if explicit is not None:
        return Path(explicit)
    try:
        candidates = (Path.cwd() / CONFIG_NAME, user_config_path())
    except OSError as error:  # e.g. the current folder was deleted
        raise SfiError(f"cannot look for {CONFIG_NAME} in the current folder: {error.strerror}; "
                       f"cd into an existing folder or pass --config") from None
    for candidate in candidates:
        try:
            if candidate.exists():  # a path through a regular file (NotADirectoryError) means "not there"
                return candidate
        except OSError as error:
            raise SfiError(f"cannot look for config file '{candidate}': {error.strerror}; "
                           f"fix that folder's permissions or pass --config") from None
    return None


@dataclass
class Config:
    """Validated settings by dotted key, plus where they came from."""

    values: dict[str, Any] = field(default_factory=lambda: {k: key.default for k, key in SCHEMA.items()})
    source: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def override(self, **flags: Any) -> None:
        """Apply command-line values (dotted keys with ``__`` for ``.``); None means not given.

        Each value is checked against the same schema as the file, so a bad flag is one
        line naming the flag and its key before any work.
        """
        for name, value in flags.items():
            if value is None:
                continue
            dotted_name = name.replace("__", ".")
            key = SCHEMA[dotted_name]
            problem = check_value(key, value)
            if problem:
                given = f"{key.flag} (config '{dotted_name}')" if key.flag else f"'{dotted_name}'"
                raise SfiError(f"{given} must be {expected(key)}, {problem}")
            self.values[dotted_name] = value

    def section(self, prefix: str) -> dict[str, Any]:
        """All keys under ``prefix.`` with the prefix removed, e.g. one engine's settings."""
        start = prefix + "."
        return {k[len(start):]: v for k, v in self.values.items() if k.startswith(start)}

    def engine_settings(self) -> dict[str, dict[str, Any]]:
        """Settings per engine name, as ``engines.load_engine`` takes them."""
        result: dict[str, dict[str, Any]] = {}
        for key, value in self.section("engines").items():
            engine, _, name = key.partition(".")
            result.setdefault(engine, {})[name] = value
        return result


def _flatten(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    items: list[tuple[tuple[str, ...], Any]] = []
    for name, value in table.items():
        path = prefix + (name,)
        if isinstance(value, dict) and ".".join(path) not in SCHEMA:
            items += _flatten(value, path)
        else:
            items.append((path, value))
    return items


def load_config(explicit: Path | None = None) -> Config:
    """Read and validate the config file (if any) over the defaults."""
    config = Config()
    path = find_config(explicit)
    if path is None:
        return config
    data, text = read_toml(path, "config")
    for key_path, value in _flatten(data):
        name = ".".join(key_path)
        key = SCHEMA.get(name)
        if key is None:
            raise SfiError(f"{where(path, text, key_path)}: unknown key '{dotted(key_path)}'; see sfi.toml.example for the keys")
        problem = check_value(key, value)
        if problem:
            raise SfiError(f"{where(path, text, key_path)}: '{name}' must be {expected(key)}, {problem}")
        config.values[name] = value
    config.source = path
    return config
