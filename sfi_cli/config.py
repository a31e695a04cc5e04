"""Settings from ``sfi.toml``, checked against one schema.

Lookup: ``--config PATH``, else ``./sfi.toml``, else ``sfi.toml`` in the user config
folder; the first that exists is used. Command-line flags override file values.
Every key is declared once in ``SCHEMA`` with its type, default and meaning;
``sfi.toml.example`` documents the same keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sfi_cli.errors import SfiError
from sfi_cli.tomlfile import dotted, read_toml, where

CONFIG_NAME = "sfi.toml"


def engine_names() -> tuple[str, ...]:
    """The engines a key may name, from the engine registry (imported only when a value is checked)."""
    from engines import REGISTRY

    return ("auto", *sorted(REGISTRY))


@dataclass(frozen=True)
class Key:
    """One setting: accepted TOML types, default, allowed values if it is a choice (a tuple, or a function
    giving one when the list lives in a heavy module), numeric range, and the command-line flag that sets it."""

    types: tuple[type, ...]
    default: Any
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] = ()
    minimum: float | None = None
    maximum: float | None = None
    flag: str = ""

    def allowed(self) -> tuple[Any, ...]:
        return self.choices() if callable(self.choices) else self.choices


# x264's and x265's speed presets, fastest first (both encoders take the same names).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")

SCHEMA: dict[str, Key] = {
    "ffmpeg": Key((str,), ""),
    "engine": Key((str,), "auto", engine_names, flag="--engine"),
    "output.fps": Key((int, float, str), 24, flag="--fps"),
    "output.crf": Key((int,), 18, minimum=0, maximum=51),
    "output.preset": Key((str,), "medium", PRESETS),
    "output.fit": Key((str,), "cover", ("cover", "contain", "stretch"), flag="--fit"),
    "work_dir": Key((str,), ""),
    "detect.detector": Key((str,), "adaptive", ("adaptive", "content", "hash", "threshold"), flag="--detector"),
    "detect.threshold": Key((int, float), 0, minimum=0, flag="--threshold"),
    "detect.min_scene_len": Key((int, float, str), 15, flag="--min-scene-len"),
    "detect.downscale": Key((int,), 0, minimum=0, flag="--downscale"),
    "fill.seconds": Key((int, float), 1.0, minimum=0, flag="--seconds"),
    "fill.mode": Key((str,), "insert", ("insert", "replace"), flag="--mode"),
    "fill.audio": Key((str,), "crossfade", ("crossfade", "silence"), flag="--audio"),
    "engines.flow.flow_width": Key((int,), 480, minimum=16),
    "engines.flow.min_confidence": Key((int, float), 0.35, minimum=0, maximum=1),
    "engines.semfi.model_dir": Key((str,), "", flag="--model-dir"),
    "engines.semfi.lora": Key((str,), "", flag="--lora"),
    "engines.semfi.device": Key((str,), "cuda", flag="--device"),
    "engines.semfi.dtype": Key((str,), "auto", ("auto", "bfloat16", "float16", "float32"), flag="--dtype"),
    "engines.semfi.memory_mode": Key((str,), "auto", ("auto", "full", "offload", "stream"), flag="--memory-mode"),
    "engines.semfi.area": Key((str, int), "480p", flag="--area"),
    "engines.semfi.steps": Key((int,), 50, minimum=1, flag="--steps"),
    "engines.semfi.cfg": Key((int, float), 5.0, minimum=0, flag="--cfg"),
    "engines.semfi.shift": Key((int, float), 5.0, minimum=0, flag="--shift"),
    "engines.semfi.negative_prompt": Key((str,), "", flag="--negative-prompt"),
}


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


def check_value(key: Key, value: Any) -> str | None:
    """Why ``value`` does not fit ``key``, or None if it does."""
    if isinstance(value, bool) and bool not in key.types:
        return "got true/false"
    if not isinstance(value, key.types):
        return f"got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"got {value}"
    if key.choices and value not in key.allowed():
        return f"got '{value}'"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            (key.minimum is not None and value < key.minimum) or (key.maximum is not None and value > key.maximum)):
        return f"got {value}"
    return None


def expected(key: Key) -> str:
    if key.choices:
        return "one of " + ", ".join(map(str, key.allowed()))
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    kinds = " or ".join(names.get(t, t.__name__) for t in key.types)
    if float in key.types:
        kinds = kinds.replace("a number", "a finite number")
    if key.minimum is not None and key.maximum is not None:
        return f"{kinds} from {key.minimum:g} to {key.maximum:g}"
    if key.minimum is not None:
        return f"{kinds} of at least {key.minimum:g}"
    return kinds if key.maximum is None else f"{kinds} of at most {key.maximum:g}"


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
