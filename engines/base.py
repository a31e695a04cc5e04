"""The interface every engine implements, and the small helpers engines share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while an engine works on one gap."""


@dataclass(frozen=True)
class ShotFrames:
    """Real frames of the two shots a transition joins, for an engine that keeps both playing through it
    (``uses_shots``): each shot's frames in time order, and for new frame j where in them it shows each shot
    (``outgoing_at[j]``, ``incoming_at[j]``: a place between two frames lies between them; one past the last
    outgoing frame, or before the first incoming one, continues that shot's motion)."""

    outgoing: Sequence[np.ndarray]
    incoming: Sequence[np.ndarray]
    outgoing_at: Sequence[float]
    incoming_at: Sequence[float]

    @property
    def playing(self) -> bool:
        """Whether either shot has motion to play on (two stills have none: theirs is a plain dissolve)."""
        return len(self.outgoing) > 1 or len(self.incoming) > 1


@dataclass(frozen=True)
class Check:
    """One finding of ``Engine.diagnose``: ``status`` is ok, warn (works, but note this) or fail (the
    engine cannot run); ``item`` is what was checked, ``detail`` what was found, ``fix`` what to do."""

    status: str
    item: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def sentence(self) -> str:
        """The finding as one line, the form an error message takes."""
        return f"{self.item}: {self.detail}" + (f"; {self.fix}" if self.fix else "")


class Engine:
    """Makes in-between frames for one gap.

    ``first`` and ``last`` are HxWx3 RGB arrays of the same size and dtype: uint8, or
    uint16 (full scale 0..65535) for footage deeper than 8 bits, so 10-bit sources keep
    their precision. ``generate`` returns (or yields, so long gaps need not sit in memory)
    exactly ``count`` new frames of that size and dtype, evenly spaced in time strictly
    between the two (frame i sits at t = (i + 1) / (count + 1)); the ends themselves are
    not part of the result.
    """

    name: ClassVar[str] = ""
    # Part of every cache key: raise it with any code change that alters the frames made from the same
    # inputs and settings, so work folders made by the older code are not served after an upgrade.
    version: ClassVar[int] = 1
    # Engines this one builds on: ``engines.load_engine`` builds each with its own configured settings
    # and passes it to this engine's constructor as a keyword of that name.
    uses: ClassVar[tuple[str, ...]] = ()
    # Whether ``generate_at`` makes frames at any times of the caller's (``sfi retime``); an engine that makes
    # only evenly spaced frames (SemFi's model) leaves it False.
    any_times: ClassVar[bool] = False
    # Whether ``generate`` takes ``shots``: the real frames of both shots around a transition (a live dissolve).
    uses_shots: ClassVar[bool] = False

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    @classmethod
    def diagnose(cls, settings: dict[str, Any], *, thorough: bool = False) -> list[Check]:
        """What this engine needs, checked for ``settings``, in the order a user should fix it.

        The quick form answers "can it run here?" on every run (availability, ``auto``), so it asks
        only packages, files and the device; ``thorough`` (``sfi doctor``) may also read weights'
        headers and measure memory. Engines that need nothing beyond sfi's own dependencies say nothing.
        """
        return []

    @classmethod
    def unavailable_reason(cls, settings: dict[str, Any]) -> str | None:
        """Why this engine cannot run here with ``settings`` (its first failed quick check), or None if it can."""
        failed = next((check for check in cls.diagnose(settings) if check.failed), None)
        return failed.sentence() if failed else None

    @classmethod
    def suits_auto(cls, settings: dict[str, Any]) -> bool:
        """Whether ``--engine auto`` may pick this engine with ``settings`` (if it can run)."""
        return True

    @classmethod
    def describe(cls, count: int) -> str:
        """What this engine will do for a gap of ``count`` new frames, as a note for the dry run ("" for nothing)."""
        return ""

    @classmethod
    def notes(cls, count: int) -> dict[str, Any]:
        """The same facts as ``describe``, as values for the run's manifest."""
        return {}

    @classmethod
    def device(cls, settings: dict[str, Any]) -> str:
        """Where this engine computes with ``settings`` ("cpu", "cuda", "cuda:1"): a farm gives each worker of
        an engine on "cuda" a GPU of its own."""
        return "cpu"

    @classmethod
    def on_device(cls, settings: dict[str, Any], device: str) -> dict[str, Any]:
        """``settings`` for a worker that was given ``device`` (``--devices``, a farm node's GPU); an engine
        that computes on the CPU only keeps its own."""
        return settings

    @classmethod
    def job_group(cls, settings: dict[str, Any], count: int, size: tuple[int, int]) -> tuple:
        """What a worker keeps loaded from one gap to the next (SemFi: the expert merged into the DiT and the
        working size), for a gap of ``count`` new frames at ``size`` (width, height): a worker is handed gaps
        of one group in a row, so it reloads less. Engines with nothing to keep return ()."""
        return ()

    @classmethod
    def identity(cls, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What besides the inputs shapes this engine's frames, known without building it: its name, version
        and settings section, and the same of each engine it ``uses`` (a plan records this, so work-folder
        keys need no engine, and an engine upgrade or a helper's new settings make new gaps)."""
        from engines import engine_class

        own = {"engine": cls.name, "version": cls.version, "settings": cls.key_settings(settings.get(cls.name, {}))}
        return {**own, **({"uses": [engine_class(name).identity(settings) for name in cls.uses]} if cls.uses else {})}

    @classmethod
    def key_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings as they shape frames: resolved where two spellings mean the same, without those that
        change nothing in the frames (an engine overrides this when it has such settings)."""
        return dict(settings)

    def cache_key(self) -> dict[str, Any]:
        """Everything besides the inputs that changes this engine's output (recorded with each stored gap)."""
        return {"engine": self.name, "version": self.version, **self.key_settings(self.settings)}

    def generate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        count: int,
        *,
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
        progress: ProgressCallback | None = None,
        notes: dict[str, Any] | None = None,
    ) -> Iterable[np.ndarray]:
        """The ``count`` in-between frames, one at a time. ``notes``, when given, receives what the engine
        found out while making them that an editor should know (a fallback and why): the log line and the
        manifest entry of the gap show it. It is complete once the frames are. An engine with ``uses_shots``
        also takes ``shots=ShotFrames(...)`` where the two ends are frames of shots that play on."""
        raise NotImplementedError

    def generate_at(self, first: np.ndarray, last: np.ndarray, times: Sequence[float], *,
                    progress: ProgressCallback | None = None, notes: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
        """The frames at ``times`` (each strictly between 0 and 1, in any order and spacing) from ``first`` to
        ``last``, one at a time, as ``generate`` makes its evenly spaced ones (``generate`` is this at
        ``frame_times(count)``): what retiming a clip to another rate needs. Only engines with ``any_times``
        have it; ``progress`` and ``notes`` as for ``generate``."""
        raise NotImplementedError(f"engine '{self.name}' makes evenly spaced frames only")


class EvenTimes(Sequence):
    """The evenly spaced times in (0, 1) of ``count`` in-between frames, worked out as they are asked for:
    a gap of any length is made in the memory of one frame (a list of all the times would not be)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        return (index % self.count + 1) / (self.count + 1)


def frame_times(count: int) -> EvenTimes:
    """The times of ``count`` in-betweens as ``Engine.generate`` places them: frame i at (i + 1) / (count + 1)."""
    return EvenTimes(count)


def at_depth(frame: np.ndarray, dtype) -> np.ndarray:
    """An RGB frame as uint8 or uint16 (full scale both: 255 <-> 65535)."""
    dtype = np.dtype(dtype)
    if frame.dtype == dtype:
        return frame
    if dtype == np.uint16:
        return frame.astype(np.uint16) * 257
    return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
