"""Classical motion interpolation with OpenCV's DIS optical flow.

Once per gap (shared by all its in-betweens):
1. Dense flow both ways, first->last and last->first, on grey copies at most
   ``flow_width`` pixels wide.
2. Trust in every vector: a vector is believed when the pixel it points to looks like
   its source (photometric check) and the other flow leads back (forward-backward
   check). Pixels covered or uncovered between the frames fail these checks, and so
   does "flow" between unrelated pictures.
Per in-between at time t:
3. Every pixel of both frames is carried ("splatted") to where it sits at time t,
   weighted by its trust. Where a moving object and the background it covers land on
   the same spot, the trusted object outweighs the background, so the object is not
   dragged along with it. This gives, at each pixel of the new frame, the motion
   through it and how much of each frame is visible there.
4. Both frames are warped along that motion at full resolution and blended by temporal
   distance times visibility: near the first frame the first one dominates, and a pixel
   hidden in one frame comes from the other.
Where neither frame can be trusted, the two are simply mixed by temporal distance; when
too little of the picture has consistent flow (a cut between unrelated shots, a flash),
or the picture is too small to measure motion, the whole gap is a cross-dissolve rather
than smeared pixels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator

import numpy as np

from engines.base import Engine, ProgressCallback, frame_times
from engines.crossfade import dissolve

# Grey-level mismatch (0..255) at which a vector's trust falls to 1/e: a few times the
# noise and compression error of ordinary footage, so only real mismatches count.
ERROR_SCALE = 10.0
# Trust kept by a vector that fails the forward-backward check: it may still be right
# (e.g. on a pixel that the other frame does not show), so it is outvoted, not dropped.
INCONSISTENT_TRUST = 0.1
# Weight of the stand-in motion, and of each frame's temporal share, where nothing trusted lands.
FALLBACK_WEIGHT = 1e-3
# Smoothing (in flow pixels) of the splatted motion; also closes one-pixel splat gaps.
SPLAT_SIGMA = 1.0
# Pictures whose shorter side (at flow size) is below this are dissolved: DIS needs at
# least 8x12 pixels, and so small a picture carries no measurable motion anyway.
MIN_FLOW_SIDE = 16


def _cv2():
    """OpenCV, imported on first use so that ``sfi --help`` never loads it."""
    import cv2

    return cv2


def flow_size(shape: tuple[int, ...], flow_width: int) -> tuple[int, int]:
    """(width, height) at which flow is measured: the frame's own size if it is narrow enough."""
    height, width = shape[:2]
    if width <= flow_width:
        return width, height
    return flow_width, max(1, round(height * flow_width / width))


@lru_cache(maxsize=4)
def pixel_grid(width: int, height: int) -> np.ndarray:
    """Every pixel's own (x, y) position, HxWx2 float32: the identity map of ``cv2.remap``.

    Cached (read-only) because every gap of a sequence has the same sizes, and building
    a 1080p grid costs about as much as warping a frame.
    """
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, grid: np.ndarray, flow: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Sample ``image`` at p + scale * flow(p) for every pixel p (edge pixels repeat outward)."""
    cv2 = _cv2()
    positions = cv2.scaleAdd(flow, scale, grid)
    return cv2.remap(image, positions, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def trust(source: np.ndarray, target: np.ndarray, flow: np.ndarray, back_flow: np.ndarray,
          grid: np.ndarray) -> tuple[np.ndarray, float]:
    """Weight in (0, 1] of each vector of ``flow`` (source->target), and the consistent share.

    Photometric: the weight decays with the grey-level mismatch between a source pixel and
    the target pixel its vector lands on. Forward-backward (Sundaram et al. 2010): following
    the flow there and ``back_flow`` back must return near the start, else the weight is cut
    to ``INCONSISTENT_TRUST``. The consistent share says how related the two pictures are.
    """
    cv2 = _cv2()
    error = cv2.absdiff(source, warp(target, grid, flow)).astype(np.float32)
    out_x, out_y = cv2.split(flow)
    back_x, back_y = cv2.split(warp(back_flow, grid, flow))
    mismatch = np.square(out_x + back_x) + np.square(out_y + back_y)
    allowed = 0.01 * (np.square(out_x) + np.square(out_y) + np.square(back_x) + np.square(back_y)) + 0.5
    consistent = mismatch <= allowed
    weight = np.exp(error * (-1.0 / ERROR_SCALE))
    weight[~consistent] *= INCONSISTENT_TRUST
    return weight, np.count_nonzero(consistent) / consistent.size


def splat_values(weight: np.ndarray, motion: np.ndarray) -> list[np.ndarray]:
    """What each pixel carries when splatted: weight, weight * motion x, weight * motion y.

    Flat float64, the form ``np.bincount`` sums; independent of t, so made once per gap.
    """
    weight = weight.ravel().astype(np.float64)
    return [weight, weight * motion[..., 0].ravel(), weight * motion[..., 1].ravel()]


def splat(grid: np.ndarray, flow: np.ndarray, scale: float, values: list[np.ndarray]) -> list[np.ndarray]:
    """Sum each of ``values`` (one number per pixel p) at the pixel nearest to p + scale * flow(p).

    Nearest-pixel sums are one ``bincount`` each; the caller smooths them, which spreads
    each point like a small kernel would at a fraction of the cost. Points that land
    outside the picture go to one extra bin that is dropped.
    """
    cv2 = _cv2()
    height, width = grid.shape[:2]
    landed = np.rint(cv2.scaleAdd(flow, scale, grid)).astype(np.int32)
    x, y = landed[..., 0].ravel(), landed[..., 1].ravel()
    outside = width * height
    index = np.where((x >= 0) & (x < width) & (y >= 0) & (y < height), y * width + x, outside)
    return [np.bincount(index, weights=v, minlength=outside + 1)[:outside].reshape(height, width).astype(np.float32)
            for v in values]


def grey8(frame: np.ndarray) -> np.ndarray:
    """An 8-bit grey copy of an RGB frame (8 or 16 bits): DIS measures motion on 8-bit pictures, which is
    plenty for motion; the pictures themselves are warped at their own depth."""
    cv2 = _cv2()
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return grey if grey.dtype == np.uint8 else cv2.convertScaleAbs(grey, alpha=1 / 257)


def blend(first: np.ndarray, last: np.ndarray, weight_first: np.ndarray, weight_last: np.ndarray) -> np.ndarray:
    """Per-pixel weighted mean of two frames; 16-bit frames are blended in float32 (``cv2.blendLinear``
    takes 8-bit or float pictures only) and rounded back."""
    cv2 = _cv2()
    if first.dtype == np.uint8:
        return cv2.blendLinear(first, last, weight_first, weight_last)
    mixed = cv2.blendLinear(first.astype(np.float32), last.astype(np.float32), weight_first, weight_last)
    return np.clip(np.rint(mixed), 0, np.iinfo(first.dtype).max).astype(first.dtype)


class MotionField:
    """Both-way flow between two frames and the trust in it, measured once per gap."""

    def __init__(self, first: np.ndarray, last: np.ndarray, flow_width: int) -> None:
        cv2 = _cv2()
        self.full_shape = first.shape[:2]
        self.size = flow_size(first.shape, flow_width)
        grey_first, grey_last = (grey8(self._shrink(f)) for f in (first, last))
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        # The preset stops refining at half the size it is given and upsamples. Refining
        # down to the given size instead gets the same detail from half the width, so
        # trust and splatting below work on a quarter of the pixels.
        dis.setFinestScale(0)
        self.forward = dis.calc(grey_first, grey_last, None)
        self.backward = dis.calc(grey_last, grey_first, None)
        self.grid = pixel_grid(*self.size)
        trust_forward, share_forward = trust(grey_first, grey_last, self.forward, self.backward, self.grid)
        trust_backward, share_backward = trust(grey_last, grey_first, self.backward, self.forward, self.grid)
        self.confidence = (share_forward + share_backward) / 2
        # Overall first->last motion: F(p) for a first-frame pixel, -B(q) for a last-frame one.
        self.carried_first = splat_values(trust_forward, self.forward)
        self.carried_last = splat_values(trust_backward, -self.backward)
        self.stand_in = (self.forward - self.backward) * 0.5

    def _shrink(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        if frame.shape[1::-1] == self.size:
            return frame
        return cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)

    def motion_at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At flow resolution, for the frame at time t: the first->last motion through each
        pixel, and how much of the first and of the last frame is visible there.

        A first-frame pixel p sits at p + t*F(p) at time t, a last-frame pixel q at
        q + (1-t)*B(q). Both sets are splatted there weighted by trust, then smoothed
        (normalised convolution). Where nothing trusted lands, the mean of both flows at
        that very pixel stands in.
        """
        cv2 = _cv2()
        seen_first, *moved_first = splat(self.grid, self.forward, t, self.carried_first)
        seen_last, *moved_last = splat(self.grid, self.backward, 1 - t, self.carried_last)
        smooth = lambda image: cv2.GaussianBlur(image, (0, 0), SPLAT_SIGMA)  # noqa: E731
        seen_first, seen_last = smooth(seen_first), smooth(seen_last)
        moved = np.dstack([smooth(a + b) for a, b in zip(moved_first, moved_last)])
        moved = (moved + FALLBACK_WEIGHT * self.stand_in) / (seen_first + seen_last + FALLBACK_WEIGHT)[..., None]
        return moved, seen_first, seen_last

    def to_full(self, image: np.ndarray) -> np.ndarray:
        """A flow-resolution map resized to the frame's size."""
        cv2 = _cv2()
        height, width = self.full_shape
        if (width, height) == self.size:
            return image
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    def full_motion(self, motion: np.ndarray) -> np.ndarray:
        """A flow-resolution motion field at full resolution, its vectors scaled to match."""
        height, width = self.full_shape
        scale = np.array([width / self.size[0], height / self.size[1]], dtype=np.float32)
        return self.to_full(motion * scale)


def in_between(field: MotionField, first: np.ndarray, last: np.ndarray, t: float) -> np.ndarray:
    """The frame at time t: both ends warped along the motion through each pixel, blended
    by temporal distance times how visible each end is there."""
    motion, seen_first, seen_last = field.motion_at(t)
    motion = field.full_motion(motion)
    grid = pixel_grid(first.shape[1], first.shape[0])
    from_first = warp(first, grid, motion, -t)
    from_last = warp(last, grid, motion, 1 - t)
    weight_first = field.to_full((1 - t) * (seen_first + FALLBACK_WEIGHT))
    weight_last = field.to_full(t * (seen_last + FALLBACK_WEIGHT))
    return blend(from_first, from_last, weight_first, weight_last)


class FlowEngine(Engine):
    name = "flow"
    version = 2  # 2: a live dissolve where it finds no motion between the two shots of a transition
    any_times = True
    uses_shots = True

    DEFAULTS = {"flow_width": 480, "min_confidence": 0.35}

    def __init__(self, **settings) -> None:
        super().__init__(**self.key_settings(settings))
        self.flow_width = self.settings["flow_width"]
        self.min_confidence = self.settings["min_confidence"]

    @classmethod
    def key_settings(cls, settings: dict) -> dict:
        """Its settings with the defaults filled in: a gap made before a default changes is not served after."""
        return {**cls.DEFAULTS, **settings}

    def motion(self, first: np.ndarray, last: np.ndarray) -> tuple[MotionField | None, dict[str, Any]]:
        """The gap's motion, or None where a dissolve is the better answer (see module doc), with what was
        measured and, for a dissolve, why."""
        side = min(flow_size(first.shape, self.flow_width))
        if side < MIN_FLOW_SIDE:
            return None, {"fallback": "dissolve",
                          "fallback_reason": f"the picture is {side} px at flow size, below the {MIN_FLOW_SIDE} px "
                                             f"motion can be measured at"}
        field = MotionField(first, last, self.flow_width)
        found = {"confidence": round(field.confidence, 3)}
        if field.confidence >= self.min_confidence:
            return field, found
        return None, {**found, "fallback": "dissolve",
                      "fallback_reason": f"motion confidence {field.confidence:.3f} is below min_confidence "
                                         f"{self.min_confidence} (unrelated pictures, a flash, or too little texture)"}

    def between(self, first: np.ndarray, last: np.ndarray, t: float) -> np.ndarray:
        """The one frame at time ``t`` (0 < t < 1) from ``first`` to ``last``, made as ``generate`` makes each of
        its frames; for callers that need frames at times of their own (SemFi's retiming)."""
        return next(self.generate_at(first, last, [t]))

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None, notes: dict[str, Any] | None = None,
                 shots=None) -> Iterator[np.ndarray]:
        """As ``generate_at`` at even times; where there is no motion between the ends of a transition whose
        shots it is given, a live dissolve of the shots playing on (``engines.dissolve``)."""
        if shots is None or not shots.playing:
            return self.generate_at(first, last, frame_times(count), progress=progress, notes=notes)
        field, found = self.motion(first, last)
        if field is not None:
            return self._along(field, found, first, last, frame_times(count), progress, notes)
        from engines.dissolve import live_dissolve

        if notes is not None:
            notes.update(found, fallback="live dissolve")
        return live_dissolve(first, last, count, shots, self, progress)

    def generate_at(self, first, last, times, *, progress: ProgressCallback | None = None,
                    notes: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
        field, found = self.motion(first, last)  # measured once, shared by every frame between the two
        return self._along(field, found, first, last, times, progress, notes)

    def _along(self, field, found, first, last, times, progress, notes) -> Iterator[np.ndarray]:
        if notes is not None:
            notes.update(found)
        for index, t in enumerate(times):
            frame = frame_at(field, first, last, float(t))
            if progress:
                progress(index + 1, len(times))
            yield frame


def frame_at(field: MotionField | None, first: np.ndarray, last: np.ndarray, t: float) -> np.ndarray:
    """The frame at time t along ``field``, or the dissolve where there is no trustworthy motion."""
    return dissolve(first, last, t) if field is None else in_between(field, first, last, t)
