"""Running engines on the material of one evaluation and measuring what they made.

Two kinds of material:
- a pair of images: each engine makes ``frames`` in-betweens; there is no truth to compare with, so
  the scores are those that need none (ends, seams, flicker, smoothness, motion, time);
- a video with ``held_out`` K: across the clip, every (K+1)-th real frame is kept and the K real frames
  between two kept ones are made again by each engine from those two, so every made frame has its real
  counterpart (PSNR, SSIM) besides the other scores; the real frames are scored alike for reference.
  Scene cuts are found first (as ``sfi detect`` finds them) and a window over a cut is left out: no
  engine should bridge two shots there, so its scores would measure nothing but the cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sfi_cli.errors import SfiError
from sfi_cli.evaluate import metrics

MOTION_WIDTH = 320  # optical flow for the dynamic degree is measured this wide at most (magnitudes scaled back)
STRIP_FRAMES = 9  # frames per row of the report's strips, ends included


@dataclass
class Window:
    """Two given frames, and (video mode) the real frames between them, by frame number."""

    first: np.ndarray
    last: np.ndarray
    start: int = 0
    truth: list[np.ndarray] = field(default_factory=list)


@dataclass
class Material:
    mode: str  # "pair" or "video"
    source: str
    count: int  # in-betweens per window
    windows: list[Window]
    cuts: list[int] = field(default_factory=list)  # video: the cuts found (first frame of each new shot)
    over_cuts: int = 0  # video: windows left out because a cut falls inside them

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.windows[0].first.shape[:2]
        return width, height


def pair_material(first: Path, last: Path, count: int) -> Material:
    """Two images (the second brought to the first's size as ``sfi interpolate`` does) and the count."""
    from sfi_cli.media.images import load_image, resize_to

    if count < 1:
        raise SfiError(f"--frames must be 1 or more, got {count}")
    a = load_image(first)
    b = resize_to(load_image(last), (a.shape[1], a.shape[0]))
    return Material("pair", f"{first} -> {last}", count, [Window(a, b)])


def video_material(video: Path, held_out: int, max_gaps: int, ffmpeg: str, detect, reporter) -> Material:
    """Up to ``max_gaps`` windows of ``held_out`` real frames between kept ones, evenly spread over the clip,
    none over a cut (``detect``: the ``detect.*`` settings, ``DetectOptions``)."""
    from sfi_cli.errors import require_input_file
    from sfi_cli.media.ffmpeg import decode_frames
    from sfi_cli.media.probe import probe
    from sfi_cli.timeline.fill import detect_video

    if held_out < 1 or max_gaps < 1:
        raise SfiError(f"--held-out and --gaps must be 1 or more, got {held_out} and {max_gaps}")
    info = probe(require_input_file(video, "a video"))
    step = held_out + 1
    if not range(0, info.frame_count - step, step):
        raise SfiError(f"'{video}' has {info.frame_count} frames: too few to hold out {held_out} between two "
                       f"kept ones; use a smaller --held-out or a longer clip")
    info, detection = detect_video(info, detect, ffmpeg=ffmpeg, reporter=reporter)
    cuts = [cut.frame for cut in detection.cuts]
    every = list(range(0, info.frame_count - step, step))
    starts = [start for start in every if not any(start < cut <= start + step for cut in cuts)]
    over_cuts = len(every) - len(starts)
    if not starts:
        raise SfiError(f"every window of {held_out} held-out frame(s) in '{video}' has a cut inside; "
                       f"use a smaller --held-out or a clip with longer shots")
    if len(starts) > max_gaps:
        starts = [starts[round(i * (len(starts) - 1) / (max_gaps - 1))] for i in range(max_gaps)] if max_gaps > 1 \
            else starts[:1]
    wanted = {start + offset: start for start in starts for offset in range(step + 1)}
    frames: dict[int, np.ndarray] = {}
    stream = decode_frames(video, info.display_size, ffmpeg=ffmpeg)
    try:
        for index, frame in enumerate(stream):
            if index in wanted:
                frames[index] = frame
            if index >= max(wanted):
                break
    finally:
        stream.close()  # the frames after the last window are not decoded
    windows = [Window(frames[s], frames[s + step], s, [frames[s + i] for i in range(1, step)])
               for s in starts if s + step in frames]
    return Material("video", str(video), held_out, windows, cuts, over_cuts)


def flow_magnitudes(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Optical-flow magnitude (pixels at the frames' own size) of each consecutive pair, DIS at most
    ``MOTION_WIDTH`` wide."""
    import cv2

    from engines.flow import flow_size, grey8

    size = flow_size(frames[0].shape, MOTION_WIDTH)
    factor = frames[0].shape[1] / size[0]
    greys = [grey8(cv2.resize(f, size, interpolation=cv2.INTER_AREA)) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return [np.linalg.norm(dis.calc(a, b, None), axis=-1) * factor for a, b in zip(greys, greys[1:])]


def sequence_scores(windows: list[tuple[np.ndarray, list[np.ndarray], np.ndarray]],
                    between: Callable[[np.ndarray, np.ndarray], np.ndarray] | None) -> dict[str, Any]:
    """Scores that need no truth, over runs (given first, made frames, given last); no smoothness without
    ``between``."""
    runs = [[first, *made, last] for first, made, last in windows]
    seams = [metrics.seam_jump(first, made, last) for first, made, last in windows]
    smooth = [metrics.smoothness(run, between) if between else None for run in runs]
    steps = [step for run in runs for step in metrics.frame_steps(run)]
    return {
        "end_psnr": [float(np.mean([metrics.psnr(made[0], first) for first, made, _ in windows])),
                     float(np.mean([metrics.psnr(made[-1], last) for _, made, last in windows]))],
        "end_ssim": [float(np.mean([metrics.ssim(made[0], first) for first, made, _ in windows])),
                     float(np.mean([metrics.ssim(made[-1], last) for _, made, last in windows]))],
        "seam_jump": None if None in seams else float(np.mean(seams)),
        "flicker": float(np.mean(steps)),
        "flicker_steps": steps,
        "smoothness": None if None in smooth else float(np.mean(smooth)),
        "dynamic_degree": metrics.dynamic_degree([m for run in runs for m in flow_magnitudes(run)]),
    }


def reference_name(settings: dict[str, dict[str, Any]]) -> str:
    """The engine that re-makes frames for the smoothness score: rife where it can run, else flow."""
    from engines import engine_class

    return "rife" if engine_class("rife").unavailable_reason(settings.get("rife", {})) is None else "flow"


def smooth_between(engine) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: engine.between(a, b, 0.5)


def evaluate(material: Material, engine_names: list[str], settings: dict[str, dict[str, Any]],
             progress: Callable[[str], None] = lambda _: None,
             learned=None) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Every engine's scores on ``material`` (JSON-ready), and the frames of its first window for the strips;
    ``learned`` (``learned.LearnedWeights``) adds the LPIPS, FID and CLIP scores it has files for."""
    from engines import load_engine, require_available

    for name in engine_names:
        require_available(name, settings)  # every engine refused up front, before any is run
    scorer = None
    if learned is not None and learned.any():
        from sfi_cli.evaluate.learned import LearnedScorer

        scorer = LearnedScorer(learned)  # a bad weight file is refused before any engine runs
    engines = {name: load_engine(name, settings) for name in engine_names}
    reference = reference_name(settings)
    reference_engine = engines.get(reference) or load_engine(reference, settings)
    results: dict[str, Any] = {}
    strips: dict[str, list[np.ndarray]] = {}
    for name, engine in engines.items():
        made, seconds, fallbacks = [], 0.0, []
        for number, window in enumerate(material.windows):
            progress(f"{name}: gap {number + 1}/{len(material.windows)}")
            started = time.perf_counter()
            notes: dict[str, Any] = {}
            made.append(list(engine.generate(window.first, window.last, material.count, notes=notes)))
            seconds += time.perf_counter() - started
            if notes.get("fallback"):
                fallbacks.append(f"gap {number + 1}: {notes['fallback']}: {notes['fallback_reason']}")
        # With one in-between, re-making it from its neighbours is what the reference engine did: no score for it.
        between = None if material.count == 1 and name == reference else smooth_between(reference_engine)
        scores = sequence_scores([(w.first, m, w.last) for w, m in zip(material.windows, made)], between)
        scores["seconds_per_frame"] = seconds / (material.count * len(material.windows))
        scores["fallbacks"] = fallbacks
        if material.mode == "video":
            scores.update(truth_scores(material, made))
        if scorer is not None:
            truth = [w.truth for w in material.windows] if material.mode == "video" else None
            scores.update(scorer.scores([(w.first, m, w.last) for w, m in zip(material.windows, made)], truth))
        results[name] = scores
        strips[name] = made[0]
    summary = {"mode": material.mode, "source": material.source, "size": list(material.size),
               "in_betweens": material.count, "gaps": len(material.windows), "smoothness_engine": reference,
               "engines": results}
    if material.mode == "video":
        summary["gap_starts"] = [w.start for w in material.windows]
        summary["cuts"], summary["gaps_over_cuts_left_out"] = material.cuts, material.over_cuts
        summary["real"] = sequence_scores([(w.first, w.truth, w.last) for w in material.windows],
                                          smooth_between(reference_engine))
        strips["real"] = material.windows[0].truth
    return summary, strips


def truth_scores(material: Material, made: list[list[np.ndarray]]) -> dict[str, Any]:
    """PSNR and SSIM of every made frame against the real one it stands for (with its frame number)."""
    pairs = [(window.start + i + 1, frame, real) for window, frames in zip(material.windows, made)
             for i, (frame, real) in enumerate(zip(frames, window.truth))]
    psnrs = [metrics.psnr(frame, real) for _, frame, real in pairs]
    ssims = [metrics.ssim(frame, real) for _, frame, real in pairs]
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "per_frame": {"frame": [n for n, _, _ in pairs], "psnr": psnrs, "ssim": ssims}}
