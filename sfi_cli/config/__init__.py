"""Settings from ``sfi.toml``, checked against one schema.

Lookup: ``--config PATH``, else ``./sfi.toml``, else ``sfi.toml`` in the user config
folder; the first that exists is used. Command-line flags are laid over the file's values when
a command reads them (``Config.with_flags``); the config itself never changes.
Every key is declared once in ``sfi_cli.config.schema.SCHEMA``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

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


@dataclass(frozen=True)
class Config:
    """Validated settings by dotted key, where they came from, and which of them a flag set.

    A config is never changed: ``with_flags`` lays command-line values over it as a new one, so the
    file's settings stay as read however many commands or flags look at them.
    """

    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType(defaults()))
    source: Path | None = None
    flags: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # the values flags gave

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def with_flags(self, flags: Mapping[str, Any]) -> Config:
        """These settings with command-line values (by dotted key; None means not given) laid over them.

        Each value is checked against the same schema as the file, so a bad flag is one line naming
        the flag and its key before any work.
        """
        given = {name: value for name, value in flags.items() if value is not None}
        for name, value in given.items():
            key = SCHEMA[name]
            problem = check_value(key, value)
            if problem:
                named = f"{key.flag} (config '{name}')" if key.flag else f"'{name}'"
                raise SfiError(f"{named} must be {expected(key)}, {problem}")
        return replace(self, values=MappingProxyType({**self.values, **given}),
                       flags=MappingProxyType({**self.flags, **given}))

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


def defaults() -> dict[str, Any]:
    return {name: key.default for name, key in SCHEMA.items()}


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
    path = find_config(explicit)
    if path is None:
        return Config()
    values = defaults()
    data, text = read_toml(path, "config")
    for key_path, value in _flatten(data):
        name = ".".join(key_path)
        key = SCHEMA.get(name)
        if key is None:
            raise SfiError(f"{where(path, text, key_path)}: unknown key '{dotted(key_path)}'; see sfi.toml.example for the keys")
        problem = check_value(key, value)
        if problem:
            raise SfiError(f"{where(path, text, key_path)}: '{name}' must be {expected(key)}, {problem}")
        values[name] = value
    return Config(MappingProxyType(values), path)
