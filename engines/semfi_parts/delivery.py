"""From the model's 4k+1 frames to exactly the in-betweens an editor asked for.

1. Every model frame is scaled back to the source size.
2. The ends: SemFi's generated first/last frames drift from the given images (the paper's
   end PSNR is ~22 dB), mostly as a colour/brightness shift. The low-frequency part of
   that drift is measured at both ends and removed from every generated frame, fading
   linearly from one end to the other, so the given A and B join the run without a jump;
   model frames 0 and F-1 are then A and B themselves.
3. Retiming: in-between i of N sits at time i/(N+1), i.e. at position i(F-1)/(N+1) on the
   model's frame axis. A whole position is that model frame; a fractional one is made
   from its two neighbouring model frames by the flow engine's ``between`` (built with
   the configured ``[engines.flow]`` settings), so motion timing stays even without ghosting.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from engines.base import at_depth
from engines.semfi_parts.rules import frame_positions

DRIFT_CELL = 32  # the drift correction keeps detail coarser than 1/32 of the frame only


def resize(frame: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """``frame`` at ``size`` (width, height), every frame of a gap scaled the same way."""
    if frame.shape[1::-1] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize(tuple(size), resample))


def low_pass(image: np.ndarray) -> np.ndarray:
    """The coarse (colour / brightness) part of a float HxWxC image."""
    import cv2

    height, width = image.shape[:2]
    coarse = cv2.resize(image, (max(1, width // DRIFT_CELL), max(1, height // DRIFT_CELL)), interpolation=cv2.INTER_AREA)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR).reshape(image.shape)


def end_drift(given: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """How far the generated end frame's colours are from the given one (float32, low-pass)."""
    return low_pass(given.astype(np.float32) - generated.astype(np.float32))


def corrected_frames(model_frames: list[np.ndarray], first: np.ndarray, last: np.ndarray) -> Callable[[int], np.ndarray]:
    """Model frame j scaled to the source size with the ends' drift faded out:
    + (1 - j/(F-1)) d0 + j/(F-1) d1; frames 0 and F-1 are the given images themselves.
    Returned as a cached lookup, so only the frames used are scaled and corrected."""
    count = len(model_frames)
    size = (first.shape[1], first.shape[0])

    def scaled(model_frame: np.ndarray) -> np.ndarray:  # at the ends' size and depth (16 bits for deep footage)
        return at_depth(resize(model_frame, size), first.dtype)

    drift_first = end_drift(first, scaled(model_frames[0]))
    drift_last = end_drift(last, scaled(model_frames[-1]))

    @lru_cache(maxsize=4)
    def frame(index: int) -> np.ndarray:
        if index == 0:
            return first
        if index == count - 1:
            return last
        t = index / (count - 1)
        fixed = scaled(model_frames[index]).astype(np.float32) + (1 - t) * drift_first + t * drift_last
        return np.clip(np.rint(fixed), 0, np.iinfo(first.dtype).max).astype(first.dtype)

    return frame


Between = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""``between(earlier, later, t)``: the frame at fraction t from one frame to the next (``FlowEngine.between``)."""


def deliver(model_frames: list[np.ndarray], first: np.ndarray, last: np.ndarray, count: int,
            between: Between) -> Iterator[np.ndarray]:
    """Exactly ``count`` evenly timed in-betweens at the size of ``first``/``last``, one at a time
    (a long gap is far more frames than the model made); fractional positions are made by ``between``."""
    frame = corrected_frames(model_frames, first, last)
    for position in frame_positions(count, len(model_frames)):
        whole = int(np.floor(position + 1e-9))
        fraction = float(position - whole)
        yield frame(whole) if fraction < 1e-9 else between(frame(whole), frame(whole + 1), fraction)
