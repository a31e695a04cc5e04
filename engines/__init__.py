"""Frame generators behind one small interface (``engines.base.Engine``).

Every engine turns two RGB frames into ``count`` in-between frames. Engines are
looked up by name and imported only when used, so that ``sfi --help`` never pays
for numpy, torch, diffsynth or OpenCV: importing this package loads the standard
library only. Nothing here imports the CLI package; problems the user can fix
are raised as ``EngineError`` (one line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engines.errors import EngineError, EngineUnavailable, UnknownEngine

if TYPE_CHECKING:
    from engines.base import Engine

# name -> "module:Class"; the module is imported on first use only.
REGISTRY: dict[str, str] = {
    "flow": "engines.flow:FlowEngine",
    "crossfade": "engines.crossfade:CrossfadeEngine",
    "semfi": "engines.semfi:SemFiEngine",
    "rife": "engines.rife:RifeEngine",
    "dissolve": "engines.dissolve:DissolveEngine",
}

# ``auto`` tries these in order and takes the first that can run here (and suits it: SemFi and RIFE on a GPU only).
AUTO_ORDER = ("semfi", "rife", "flow", "crossfade")


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class registered as ``name``."""
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY) + ["auto"])
        raise UnknownEngine(f"unknown engine '{name}' (choose one of: {known})")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def auto_choice(settings: dict[str, dict[str, Any]] | None = None, *,
                any_times: bool = False) -> tuple[str, dict[str, str]]:
    """The engine ``auto`` picks here (with ``any_times``: among those that make frames at any times, for
    retiming), and why each engine tried before it was passed over."""
    settings = settings or {}
    passed_over: dict[str, str] = {}
    for candidate in AUTO_ORDER:
        cls, own = engine_class(candidate), settings.get(candidate, {})
        reason = (f"{candidate} makes evenly spaced frames only" if any_times and not cls.any_times
                  else cls.unavailable_reason(own) if cls.suits_auto(own)
                  else f"auto does not pick {candidate} with these settings")
        if reason is None:
            return candidate, passed_over
        passed_over[candidate] = reason
    return "crossfade", passed_over


def resolve_name(name: str, settings: dict[str, dict[str, Any]] | None = None, *, any_times: bool = False) -> str:
    """Turn ``auto`` into the best engine that can run on this machine (``any_times``: see ``auto_choice``)."""
    if name != "auto":
        engine_class(name)  # raises UnknownEngine for an unknown name
        return name
    return auto_choice(settings, any_times=any_times)[0]


def require_available(name: str, settings: dict[str, dict[str, Any]]) -> type[Engine]:
    """The class of engine ``name``, or one line saying why it cannot run here (before anything is made)."""
    cls = engine_class(name)
    reason = cls.unavailable_reason(settings.get(name, {}))
    if reason is not None:
        raise EngineUnavailable(f"engine '{name}' cannot run here: {reason}")
    return cls


def load_engine(name: str, settings: dict[str, dict[str, Any]] | None = None) -> Engine:
    """Build the engine ``name`` (or the ``auto`` choice) with its own settings section; each engine it
    ``uses`` is built the same way from its own section and handed to it (SemFi retimes with ``flow``)."""
    settings = settings or {}
    resolved = resolve_name(name, settings)
    cls = require_available(resolved, settings)
    helpers = {used: load_engine(used, settings) for used in cls.uses}
    return cls(**settings.get(resolved, {}), **helpers)


__all__ = ["EngineError", "EngineUnavailable", "UnknownEngine", "REGISTRY", "AUTO_ORDER", "auto_choice",
           "engine_class", "load_engine", "require_available", "resolve_name"]
