"""Frame-quality and video-quality measures as plain numpy functions of RGB uint8 frames (HxWx3).

- ``psnr``/``ssim``: fidelity to a reference frame (SSIM of Wang et al. 2004 on BT.601 luma, 11x11
  Gaussian window of sigma 1.5, over the window positions that fit inside the picture).
- ``flicker``: VBench's temporal flickering, the mean absolute difference of consecutive frames (levels
  0..255); VBench reports it as the score (255 - flicker) / 255.
- ``colour_steps``/``seam_jump``: how far the mean colour moves per step; a run that joins its given
  ends well steps as far at the ends as inside.
- ``smoothness``: VBench's motion smoothness idea, 1 - mean |re-made - original| / 255 for every other
  frame re-made from its neighbours (the re-making is the caller's, as a function).
- ``dynamic_degree``: how much moves, from optical-flow magnitudes (VBench: mean of the largest 5%).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PEAK = 255.0
LUMA = np.array([0.299, 0.587, 0.114])


def psnr(frame: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio over all RGB samples, dB (100 for identical frames)."""
    mse = np.mean((frame.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(PEAK ** 2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    offsets = np.arange(size) - (size - 1) / 2
    weights = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return weights / weights.sum()


def _filtered(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of a 2-D float image by the 1-D ``window`` along both axes."""
    rows = np.lib.stride_tricks.sliding_window_view(image, window.size, axis=1) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, window.size, axis=0) @ window


def ssim(frame: np.ndarray, reference: np.ndarray) -> float:
    """Mean structural similarity of the two frames' luma (1 for identical frames)."""
    x, y = (f.astype(np.float64) @ LUMA for f in (frame, reference))
    window = gaussian_window()
    if min(x.shape) < window.size:
        raise ValueError(f"SSIM needs frames of at least {window.size}x{window.size} pixels")
    mu_x, mu_y = _filtered(x, window), _filtered(y, window)
    var_x = _filtered(x * x, window) - mu_x ** 2
    var_y = _filtered(y * y, window) - mu_y ** 2
    cov = _filtered(x * y, window) - mu_x * mu_y
    c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def frame_steps(frames: Sequence[np.ndarray]) -> list[float]:
    """Mean absolute difference (levels) of each frame from the one before."""
    return [float(np.mean(np.abs(b.astype(np.int16) - a.astype(np.int16)))) for a, b in zip(frames, frames[1:])]


def flicker(frames: Sequence[np.ndarray]) -> float:
    """VBench's temporal flickering: the mean of ``frame_steps`` (0 for a still run)."""
    return float(np.mean(frame_steps(frames)))


def colour_steps(frames: Sequence[np.ndarray]) -> list[float]:
    """How far the mean RGB colour moves (Euclidean, levels) from each frame to the next."""
    means = [f.reshape(-1, f.shape[-1]).mean(axis=0) for f in frames]
    return [float(np.linalg.norm(b - a)) for a, b in zip(means, means[1:])]


def seam_jump(first: np.ndarray, generated: Sequence[np.ndarray], last: np.ndarray) -> float | None:
    """Mean colour step at the two seams (given end to first/last generated frame) minus the mean step
    inside the generated run; None with fewer than two generated frames (there is no inside)."""
    steps = colour_steps([first, *generated, last])
    if len(steps) < 3:
        return None
    return float((steps[0] + steps[-1]) / 2 - np.mean(steps[1:-1]))


def smoothness(frames: Sequence[np.ndarray], between: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float | None:
    """Every other frame (1, 3, ...) of ``frames`` re-made by ``between`` from its two neighbours and
    compared: 1 - mean absolute difference / 255 (1: the motion is as a motion model expects it)."""
    errors = [np.mean(np.abs(between(frames[i - 1], frames[i + 1]).astype(np.int16) - frames[i].astype(np.int16)))
              for i in range(1, len(frames) - 1, 2)]
    return float(1 - np.mean(errors) / PEAK) if errors else None


def dynamic_degree(magnitudes: Sequence[np.ndarray], share: float = 0.05) -> float:
    """Mean over frame pairs of the mean of the largest ``share`` of flow magnitudes (pixels per frame)."""
    tops = []
    for magnitude in magnitudes:
        values = np.sort(magnitude.ravel())
        tops.append(values[-max(1, int(values.size * share)):].mean())
    return float(np.mean(tops))
