"""Every setting ``sfi`` knows, declared once: type, default, choices, range and the flag that sets it.

The config file, recipes and command-line options are all checked against ``SCHEMA``;
``sfi.toml.example`` documents the same keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


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
    "render.workers": Key((int,), 1, minimum=1, flag="--workers"),
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
