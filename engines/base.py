"""The interface every engine implements."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np

from sfi_cli.errors import SfiError

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while an engine works on one gap."""


class EngineUnavailable(SfiError):
    """The engine cannot run on this machine (missing GPU, weights, package)."""


class UnknownEngine(SfiError):
    """No engine is registered under the requested name."""


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

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    @classmethod
    def unavailable_reason(cls, settings: dict[str, Any]) -> str | None:
        """Why this engine cannot run here with ``settings``, or None if it can."""
        return None

    @classmethod
    def suits_auto(cls, settings: dict[str, Any]) -> bool:
        """Whether ``--engine auto`` may pick this engine with ``settings`` (if it can run)."""
        return True

    def cache_key(self) -> dict[str, Any]:
        """Everything besides the inputs that changes this engine's output."""
        return {"engine": self.name, **self.settings}

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
    ) -> Iterable[np.ndarray]:
        raise NotImplementedError


def frame_times(count: int) -> Iterator[float]:
    """The evenly spaced times in (0, 1) of ``count`` in-between frames, one at a time: a gap of any
    length is made in the memory of one frame (an array of all the times would not be)."""
    return ((index + 1) / (count + 1) for index in range(count))
