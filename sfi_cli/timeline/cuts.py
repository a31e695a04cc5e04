"""Finding the cuts in a video with PySceneDetect's detectors.

The detectors are fed frames decoded by ffmpeg with the same numbering the renderer
uses (``sources.VideoReader``: frame ``i`` is the ``i``-th frame shown), downscaled by
ffmpeg as PySceneDetect would. A cut at frame ``c`` means frame ``c`` is the first
frame of the new shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

from sfi_cli.config.schema import SCHEMA
from sfi_cli.errors import SfiError
from sfi_cli.media.probe import MediaInfo
from sfi_cli.timeline.timecode import format_timecode

# Analysis at ~256 px wide does not need the deblocking filter's last bit of exactness: skipping it
# decodes faster. Frame numbering is unaffected (every frame is still decoded and counted).
FAST_DECODING = ("-skip_loop_filter", "all", "-flags2", "fast")
# Average 8-bit level below which a frame counts as black (PySceneDetect's fade threshold). A cut from black
# into a picture still brightening (or into black from one already darkening) is the edge of a fade, not a
# change of shot to fill: the picture FADE_SPAN frames further on is more than twice as bright. A hard cut
# to or from black (the picture at full level at once) stays a cut.
BLACK_LEVEL = 12.0
FADE_SPAN = 5
FADE_SHARE = 0.5
# Each detector's own default threshold (PySceneDetect's); the detector names are the schema's choices.
DEFAULT_THRESHOLDS = {"adaptive": 3.0, "content": 27.0, "hash": 0.395, "threshold": 12.0}


@dataclass(frozen=True)
class Cut:
    """One detected cut: ``frame`` starts the new shot; ``score`` is the detector's metric there."""

    frame: int
    seconds: float
    timecode: str
    score: float | None


@dataclass(frozen=True)
class Detection:
    cuts: list[Cut]
    frames: int  # frames the detector saw (the clip's true frame count at the working rate)
    detector: str
    threshold: float
    fades: list[Cut] = field(default_factory=list)  # cuts to or from black, left out of ``cuts``


def make_detector(name: str, threshold: float, min_scene_len: int) -> tuple[Any, Callable[[Any], str]]:
    """A PySceneDetect detector and a function giving the metric key its score is read from."""
    from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector, ThresholdDetector

    if name == "adaptive":
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_scene_len), lambda d: d.get_metrics()[-1]
    if name == "content":
        return ContentDetector(threshold=threshold, min_scene_len=min_scene_len), lambda d: ContentDetector.FRAME_SCORE_KEY
    if name == "hash":
        return HashDetector(threshold=threshold, min_scene_len=min_scene_len), lambda d: d.get_metrics()[0]
    if name == "threshold":
        return ThresholdDetector(threshold=threshold, min_scene_len=min_scene_len), lambda d: ThresholdDetector.THRESHOLD_VALUE_KEY
    raise SfiError(f"unknown detector '{name}': choose one of {', '.join(SCHEMA['detect.detector'].allowed())}")


def analysis_size(info: MediaInfo, downscale: int) -> tuple[int, int]:
    """The size frames are analysed at: ``downscale`` 0 picks PySceneDetect's automatic factor (~256 px wide)."""
    from scenedetect.scene_manager import compute_downscale_factor

    width, height = info.width, info.height
    factor = compute_downscale_factor(max(width, height)) if downscale == 0 else downscale
    if downscale < 0:
        raise SfiError(f"--downscale must be 0 (automatic) or a whole factor such as 2 (got {downscale})")
    return max(2, round(width / factor)), max(2, round(height / factor))


def fade_edge(brightness: Sequence[float], cut: int) -> bool:
    """Whether the cut at frame ``cut`` is a fade in from black or out to black (see ``BLACK_LEVEL``)."""
    before, after = brightness[cut - 1], brightness[cut]
    if before < BLACK_LEVEL and after < BLACK_LEVEL:
        return True  # black on both sides: noise in the dark, not a change of shot
    if before < BLACK_LEVEL:
        return after < FADE_SHARE * brightness[min(cut + FADE_SPAN, len(brightness) - 1)]
    if after < BLACK_LEVEL:
        return before < FADE_SHARE * brightness[max(cut - 1 - FADE_SPAN, 0)]
    return False


def detect_cuts(info: MediaInfo, *, detector: str = "adaptive", threshold: float | None = None,
                min_scene_len: int = 15, downscale: int = 0, ffmpeg: str, fade_cuts: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Detection:
    """Run one detector over every frame of ``info`` and return the cuts in order. A fade's edge (``fade_edge``)
    is kept apart in ``fades`` unless ``fade_cuts`` (the threshold detector, which looks for fades, keeps
    them all)."""
    from array import array

    from scenedetect import FrameTimecode, StatsManager

    from sfi_cli.media.readers import VideoReader

    if min_scene_len < 1:
        raise SfiError(f"minimum scene length must be at least 1 frame (got {min_scene_len})")
    threshold = DEFAULT_THRESHOLDS[detector] if threshold is None else threshold
    scene_detector, score_key = make_detector(detector, threshold, min_scene_len)
    stats = StatsManager()
    scene_detector.stats_manager = stats
    reader = VideoReader(info, size=analysis_size(info, downscale), fit="stretch", rate=info.rate,
                         pix_fmt="bgr24", keep_rotation=True, ffmpeg=ffmpeg, scale_flags="area",
                         decoder_args=FAST_DECODING)
    found: list[FrameTimecode] = []
    brightness = array("f")  # each frame's average level, to tell a fade's edge from a cut
    count = 0
    try:
        for count, frame in enumerate(reader.every_frame(), start=1):
            brightness.append(frame.mean())
            found += scene_detector.process_frame(FrameTimecode(count - 1, fps=info.rate), frame)
            if progress and count % 25 == 0:
                progress(count, max(count, info.frame_count))
    finally:
        reader.close()
    if count == 0:
        raise SfiError(f"no frames could be decoded from '{info.path}'")
    found += scene_detector.post_process(FrameTimecode(count - 1, fps=info.rate))
    if progress:
        progress(count, count)
    key = score_key(scene_detector)
    frames = sorted({cut.frame_num for cut in found if 0 < cut.frame_num < count})
    cuts, fades = [], []
    for frame in frames:
        score = stats.get_metrics(frame, [key])[0]
        cut = Cut(frame, float(Fraction(frame) / info.rate), format_timecode(frame, info.rate),
                  None if score is None else round(float(score), 3))
        fade = fade_edge(brightness, frame)
        (fades if fade and not fade_cuts and detector != "threshold" else cuts).append(cut)
    return Detection(cuts, count, detector, threshold, fades)
