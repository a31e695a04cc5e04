"""Classical motion interpolation with OpenCV's DIS optical flow.

For each in-between time t:
1. Flow is measured both ways (first->last and last->first) on a downscaled copy.
2. Each pixel's reliability comes from how well the other frame, warped by the flow,
   matches it: pixels that vanish behind something (occlusions) or flow that is
   simply wrong match badly.
3. Both flow fields are forward-splatted to time t, reliable pixels outweighing
   unreliable ones where they land on the same spot, giving the flow from t back to
   each end. Holes are filled with the linear-motion estimate.
4. Both ends are backward-warped to t at full resolution and blended by temporal
   distance and reliability.
When too little of the picture has trustworthy flow (a cut between unrelated shots,
a flash), the gap falls back to a cross-dissolve instead of smearing pixels around.
"""

from __future__ import annotations

import numpy as np

from engines.base import Engine, ProgressCallback, frame_times
from engines.crossfade import dissolve

# Photometric error (0..255 scale) at which a pixel's weight falls to 1/e.
ERROR_SCALE = 12.0


def _cv2():
    import cv2

    return cv2


def to_gray(frame: np.ndarray, width: int) -> np.ndarray:
    """Gray copy of ``frame`` no wider than ``width`` (flow is measured at this size)."""
    cv2 = _cv2()
    height = max(8, round(frame.shape[0] * width / frame.shape[1]))
    small = frame if frame.shape[1] <= width else cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def backward_warp(image: np.ndarray, flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample ``image`` at p + flow(p) for every pixel p (border pixels repeat)."""
    cv2 = _cv2()
    map_x = grid[0] + flow[..., 0]
    map_y = grid[1] + flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliability(source: np.ndarray, target: np.ndarray, flow: np.ndarray, back_flow: np.ndarray,
                grid: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel weight in (0, 1] of ``flow`` (source->target), and a strict consistent/not mask.

    The weight decays with the colour mismatch between a source pixel and where its flow
    lands in the target; the mask is the forward-backward consistency test.
    """
    landed = backward_warp(target, flow, grid).astype(np.float32)
    error = np.abs(source.astype(np.float32) - landed)
    if error.ndim == 3:
        error = error.mean(axis=2)
    weight = np.exp(-error / ERROR_SCALE)
    returned = backward_warp(back_flow, flow, grid)
    mismatch = np.sum((flow + returned) ** 2, axis=2)
    scale = np.sum(flow**2, axis=2) + np.sum(returned**2, axis=2)
    consistent = mismatch <= 0.01 * scale + 0.5
    return weight.astype(np.float32), consistent


def splat(values: np.ndarray, weight: np.ndarray, x: np.ndarray, y: np.ndarray,
          shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Forward-splat ``values`` (N, C) to float positions (x, y) with bilinear kernels.

    Returns the weighted sums (H, W, C) and the summed weights (H, W).
    """
    height, width = shape
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    indices, weights, rows = [], [], []
    for dx, dy, kernel in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
        indices.append((ys * width + xs)[inside])
        weights.append((kernel * weight)[inside])
        rows.append(values[inside])
    index = np.concatenate(indices)
    kernel_weight = np.concatenate(weights)
    landed = np.concatenate(rows)
    size = height * width
    total = np.bincount(index, weights=kernel_weight, minlength=size)
    sums = np.stack([np.bincount(index, weights=kernel_weight * landed[:, c], minlength=size)
                     for c in range(values.shape[1])], axis=1)
    return sums.reshape(height, width, -1).astype(np.float32), total.reshape(height, width).astype(np.float32)


class MotionField:
    """Both-way flow between two frames, measured once and reused for every time t."""

    def __init__(self, first: np.ndarray, last: np.ndarray, flow_width: int) -> None:
        cv2 = _cv2()
        self.full_shape = first.shape[:2]
        gray_first, gray_last = to_gray(first, flow_width), to_gray(last, flow_width)
        self.shape = gray_first.shape
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.forward = dis.calc(gray_first, gray_last, None)
        self.backward = dis.calc(gray_last, gray_first, None)
        self.grid = pixel_grid(*self.shape)
        small_first = cv2.resize(first, self.shape[::-1], interpolation=cv2.INTER_AREA)
        small_last = cv2.resize(last, self.shape[::-1], interpolation=cv2.INTER_AREA)
        self.weight_forward, consistent_forward = reliability(small_first, small_last, self.forward, self.backward, self.grid)
        self.weight_backward, consistent_backward = reliability(small_last, small_first, self.backward, self.forward, self.grid)
        self.confidence = float((consistent_forward.mean() + consistent_backward.mean()) / 2)

    def flows_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Flow from time t to the first and to the last frame, at flow resolution."""
        height, width = self.shape
        grid_x, grid_y = (g.ravel() for g in self.grid)
        forward = self.forward.reshape(-1, 2)
        backward = self.backward.reshape(-1, 2)
        # A first-frame pixel p sits at p + t*F01 at time t: from there the first frame is
        # -t*F01 away and the last (1-t)*F01. Symmetrically for last-frame pixels.
        from_first = np.concatenate([-t * forward, (1 - t) * forward], axis=1)
        from_last = np.concatenate([t * backward, -(1 - t) * backward], axis=1)
        sums_a, total_a = splat(from_first, (1 - t + 1e-3) * self.weight_forward.ravel(),
                                grid_x + t * forward[:, 0], grid_y + t * forward[:, 1], self.shape)
        sums_b, total_b = splat(from_last, (t + 1e-3) * self.weight_backward.ravel(),
                                grid_x + (1 - t) * backward[:, 0], grid_y + (1 - t) * backward[:, 1], self.shape)
        total = total_a + total_b
        flows = (sums_a + sums_b) / np.maximum(total, 1e-6)[..., None]
        # Where nothing landed, assume straight-line motion through the point.
        linear = np.concatenate([-t * (1 - t) * self.forward + t * t * self.backward,
                                 (1 - t) ** 2 * self.forward - t * (1 - t) * self.backward], axis=2)
        blend = np.clip(total / 0.05, 0, 1)[..., None]
        flows = blend * flows + (1 - blend) * linear
        return flows[..., :2].reshape(height, width, 2), flows[..., 2:].reshape(height, width, 2)

    def upscale(self, flow: np.ndarray) -> np.ndarray:
        """Bring a flow field to full resolution, scaling its vectors with it."""
        cv2 = _cv2()
        height, width = self.full_shape
        if (height, width) == self.shape:
            return flow
        big = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        big[..., 0] *= width / self.shape[1]
        big[..., 1] *= height / self.shape[0]
        return big


class FlowEngine(Engine):
    name = "flow"

    def __init__(self, flow_width: int = 960, min_confidence: float = 0.35, **settings) -> None:
        super().__init__(flow_width=flow_width, min_confidence=min_confidence, **settings)
        self.flow_width = flow_width
        self.min_confidence = min_confidence

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None) -> list[np.ndarray]:
        field = MotionField(first, last, self.flow_width)
        use_flow = field.confidence >= self.min_confidence
        full_grid = pixel_grid(*field.full_shape) if use_flow else None
        frames = []
        for index, t in enumerate(frame_times(count)):
            t = float(t)
            if use_flow:
                frames.append(self._warp_blend(field, first, last, t, full_grid))
            else:
                frames.append(dissolve(first, last, t))
            if progress:
                progress(index + 1, count)
        return frames

    @staticmethod
    def _warp_blend(field: MotionField, first: np.ndarray, last: np.ndarray, t: float,
                    grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        cv2 = _cv2()
        to_first, to_last = field.flows_at(t)
        # Reliability of the pixel each end contributes, looked up where the flow points.
        small_grid = field.grid
        weight_first = backward_warp(field.weight_forward, to_first, small_grid)
        weight_last = backward_warp(field.weight_backward, to_last, small_grid)
        height, width = field.full_shape
        weight_first = cv2.resize(weight_first, (width, height), interpolation=cv2.INTER_LINEAR)
        weight_last = cv2.resize(weight_last, (width, height), interpolation=cv2.INTER_LINEAR)
        warped_first = backward_warp(first, field.upscale(to_first), grid).astype(np.float32)
        warped_last = backward_warp(last, field.upscale(to_last), grid).astype(np.float32)
        w_first = (1 - t) * (weight_first + 1e-3)
        w_last = t * (weight_last + 1e-3)
        mixed = (warped_first * w_first[..., None] + warped_last * w_last[..., None]) / (w_first + w_last)[..., None]
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
