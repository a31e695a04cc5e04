"""A plain dissolve: the baseline every other engine is measured against."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from engines.base import Engine, ProgressCallback, frame_times


def dissolve(first: np.ndarray, last: np.ndarray, t: float) -> np.ndarray:
    """The frame at time ``t`` of a linear cross-dissolve, rounded to the frames' own depth (8 or 16 bits)."""
    import cv2

    # OpenCV's weighted sum: the same values as rint((1 - t) * first + t * last) in float32, ~10x faster
    # than numpy at 1080p (it matters: a fill waits for every transition).
    return cv2.addWeighted(np.ascontiguousarray(first), 1.0 - t, np.ascontiguousarray(last), t, 0.0)


class CrossfadeEngine(Engine):
    name = "crossfade"
    any_times = True

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None, notes=None) -> Iterator[np.ndarray]:
        return self.generate_at(first, last, frame_times(count), progress=progress)

    def generate_at(self, first, last, times, *, progress: ProgressCallback | None = None,
                    notes=None) -> Iterator[np.ndarray]:
        for index, t in enumerate(times):
            frame = dissolve(first, last, float(t))
            if progress:
                progress(index + 1, len(times))
            yield frame
