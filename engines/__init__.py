"""Frame generators behind one small interface.

Every engine turns two RGB frames into ``count`` in-between frames. Engines are
looked up by name and imported only when used, so that ``sfi --help`` never pays
for torch, diffsynth or OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

from engines.base import Engine, EngineUnavailable, UnknownEngine

# name -> "module:Class"; the module is imported on first use only.
REGISTRY: dict[str, str] = {
    "flow": "engines.flow:FlowEngine",
    "crossfade": "engines.crossfade:CrossfadeEngine",
    "semfi": "engines.semfi:SemFiEngine",
}

# ``auto`` tries these in order and takes the first that can run here.
AUTO_ORDER = ("semfi", "flow", "crossfade")


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class registered as ``name``."""
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY) + ["auto"])
        raise UnknownEngine(f"unknown engine '{name}' (choose one of: {known})")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def resolve_name(name: str, settings: dict[str, dict[str, Any]] | None = None) -> str:
    """Turn ``auto`` into the best engine that can run on this machine."""
    if name != "auto":
        engine_class(name)  # raises UnknownEngine for an unknown name
        return name
    settings = settings or {}
    for candidate in AUTO_ORDER:
        cls, own = engine_class(candidate), settings.get(candidate, {})
        if cls.suits_auto(own) and cls.unavailable_reason(own) is None:
            return candidate
    return "crossfade"


def load_engine(name: str, settings: dict[str, dict[str, Any]] | None = None) -> Engine:
    """Build the engine ``name`` (or the ``auto`` choice) with its own settings section."""
    settings = settings or {}
    resolved = resolve_name(name, settings)
    cls = engine_class(resolved)
    reason = cls.unavailable_reason(settings.get(resolved, {}))
    if reason is not None:
        raise EngineUnavailable(f"engine '{resolved}' cannot run here: {reason}")
    return cls(**settings.get(resolved, {}))


__all__ = ["Engine", "EngineUnavailable", "UnknownEngine", "REGISTRY", "engine_class", "load_engine", "resolve_name"]
