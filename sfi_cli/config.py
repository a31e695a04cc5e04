"""Settings from ``sfi.toml``, checked against one schema.

Lookup: ``--config PATH``, else ``./sfi.toml``, else ``sfi.toml`` in the user config
folder; the first that exists is used. Command-line flags override file values.
Every key is declared once in ``SCHEMA`` with its type, default and meaning;
``sfi.toml.example`` documents the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfi_cli.errors import SfiError
from sfi_cli.tomlfile import dotted, read_toml, where

CONFIG_NAME = "sfi.toml"


@dataclass(frozen=True)
class Key:
    """One setting: accepted TOML types, default, allowed values if it is a choice, lowest number if numeric."""

    types: tuple[type, ...]
    default: Any
    choices: tuple[Any, ...] = ()
    minimum: float | None = None


SCHEMA: dict[str, Key] = {
    "ffmpeg": Key((str,), ""),
    "engine": Key((str,), "auto"),
    "output.fps": Key((int, float, str), 24),
    "output.crf": Key((int,), 18, minimum=0),
    "output.preset": Key((str,), "medium"),
    "output.fit": Key((str,), "cover", ("cover", "contain", "stretch")),
    "work_dir": Key((str,), ""),
    "detect.detector": Key((str,), "adaptive", ("adaptive", "content", "hash", "threshold")),
    "detect.threshold": Key((int, float), 0, minimum=0),
    "detect.min_scene_len": Key((int, float, str), 15),
    "detect.downscale": Key((int,), 0, minimum=0),
    "fill.seconds": Key((int, float), 1.0, minimum=0),
    "fill.mode": Key((str,), "insert", ("insert", "replace")),
    "fill.audio": Key((str,), "crossfade", ("crossfade", "silence")),
    "engines.flow.flow_width": Key((int,), 480, minimum=16),
    "engines.flow.min_confidence": Key((int, float), 0.35, minimum=0),
    "engines.semfi.model_dir": Key((str,), ""),
    "engines.semfi.lora": Key((str,), ""),
    "engines.semfi.device": Key((str,), "cuda"),
    "engines.semfi.dtype": Key((str,), "auto", ("auto", "bfloat16", "float16", "float32")),
    "engines.semfi.memory_mode": Key((str,), "auto", ("auto", "full", "offload", "stream")),
    "engines.semfi.area": Key((str, int), "480p"),
    "engines.semfi.steps": Key((int,), 50, minimum=1),
    "engines.semfi.cfg": Key((int, float), 5.0, minimum=0),
    "engines.semfi.shift": Key((int, float), 5.0, minimum=0),
    "engines.semfi.negative_prompt": Key((str,), ""),
}


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("sfi")) / CONFIG_NAME


def find_config(explicit: Path | None) -> Path | None:
    """The config file to read, or None when there is none anywhere."""
    if explicit is not None:
        return Path(explicit)
    for candidate in (Path.cwd() / CONFIG_NAME, user_config_path()):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Config:
    """Validated settings by dotted key, plus where they came from."""

    values: dict[str, Any] = field(default_factory=lambda: {k: key.default for k, key in SCHEMA.items()})
    source: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def override(self, **flags: Any) -> None:
        """Apply command-line values (dotted keys with ``__`` for ``.``); None means not given."""
        for name, value in flags.items():
            if value is not None:
                self.values[name.replace("__", ".")] = value

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


def check_value(key: Key, value: Any) -> str | None:
    """Why ``value`` does not fit ``key``, or None if it does."""
    if isinstance(value, bool) and bool not in key.types:
        return "got true/false"
    if not isinstance(value, key.types):
        return f"got {type(value).__name__}"
    if key.choices and value not in key.choices:
        return f"got '{value}'"
    if key.minimum is not None and isinstance(value, (int, float)) and value < key.minimum:
        return f"got {value}"
    return None


def expected(key: Key) -> str:
    if key.choices:
        return "one of " + ", ".join(map(str, key.choices))
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    kinds = " or ".join(names.get(t, t.__name__) for t in key.types)
    return kinds if key.minimum is None else f"{kinds} of at least {key.minimum:g}"


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
