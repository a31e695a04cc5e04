"""What a video file holds, read with PyAV (there is no ffprobe to lean on).

Everything the splice must keep is found here once: the exact frame rate as a
fraction, the frame count, pixel format and bit depth, colour tags, rotation, start
timecode, audio and subtitle streams, and whether the frame rate is variable (in
which case sfi works at a constant ``rate`` and says so).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from sfi_cli.errors import SfiError, require_input_file

# AVColorRange / AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace values
# (stable in FFmpeg's ABI) as the names ffmpeg's options take.
COLOR_RANGES = {1: "tv", 2: "pc"}
COLOR_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
                   9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "jedec-p22"}
COLOR_TRCS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
              14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
COLOR_SPACES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}

# Rates a variable-rate clip is snapped to when its typical frame rate is this close (relative).
STANDARD_RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                  Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60), Fraction(120)]
SNAP_TOLERANCE = 0.01

# Containers that hold still images rather than video.
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "tiff_pipe", "bmp_pipe", "gif")


@dataclass(frozen=True)
class ColorTags:
    """Colour description of the video; None where the file does not say."""

    range: str | None = None
    primaries: str | None = None
    trc: str | None = None
    space: str | None = None


@dataclass(frozen=True)
class AudioStream:
    index: int  # among the file's audio streams (ffmpeg's a:N)
    codec: str
    sample_rate: int
    channels: int
    layout: str
    language: str | None = None


@dataclass(frozen=True)
class SubtitleStream:
    index: int  # among the file's subtitle streams (ffmpeg's s:N)
    codec: str
    language: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    """Facts about one video file, with frame numbers meaning decoded frames at ``rate``."""

    path: Path
    width: int
    height: int
    rate: Fraction
    frame_count: int
    codec: str
    pix_fmt: str
    bit_depth: int
    chroma: str  # "420", "422", "444" or "gray"
    color: ColorTags
    rotation: int  # display rotation in degrees, counter-clockwise, as ffmpeg's -display_rotation
    timecode: str | None
    start_offset: Fraction  # video start minus file start, seconds (ffmpeg's -ss counts from file start)
    vfr: bool
    audio: tuple[AudioStream, ...] = field(default_factory=tuple)
    subtitles: tuple[SubtitleStream, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> Fraction:
        return self.frame_count / self.rate

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as a player shows them (rotation applied)."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height

    def with_frame_count(self, frame_count: int) -> "MediaInfo":
        return replace(self, frame_count=frame_count)


def probe(path: Path) -> MediaInfo:
    """Read the facts about ``path``; one clear SfiError if it is missing or not a video."""
    import av

    from sfi_cli.ffmpeg import ffmpeg_path

    path = require_input_file(path, "a video")
    try:
        container = av.open(ffmpeg_path(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise SfiError(f"input '{path}' is not a video ffmpeg can read ({error.__class__.__name__})") from None
    with container:
        if container.format.name in IMAGE_FORMATS or not container.streams.video:
            raise SfiError(f"input '{path}' is not a video (no video stream); give a movie file such as .mp4 or .mov")
        stream = container.streams.video[0]
        timestamps = _frame_timestamps(container, stream)
        if len(timestamps) < 2:
            raise SfiError(f"input '{path}' has {len(timestamps)} video frame(s); a video needs at least 2")
        rate, vfr = _frame_rate(stream, timestamps)
        context = stream.codec_context
        video_format = context.format
        rotation, decodable = _first_frame_rotation(container, stream)
        if not decodable:
            raise SfiError(f"input '{path}' has a video stream that cannot be decoded; it may be corrupt")
        start = stream.start_time * stream.time_base if stream.start_time is not None else Fraction(0)
        file_start = Fraction(container.start_time, 1_000_000) if container.start_time is not None else Fraction(0)
        frame_count = len(timestamps) if not vfr else max(1, round((timestamps[-1] - timestamps[0]) * stream.time_base * rate) + 1)
        return MediaInfo(
            path=path,
            width=context.width,
            height=context.height,
            rate=rate,
            frame_count=frame_count,
            codec=context.name,
            pix_fmt=video_format.name,
            bit_depth=max(c.bits for c in video_format.components),
            chroma=_chroma(video_format),
            color=ColorTags(COLOR_RANGES.get(context.color_range), COLOR_PRIMARIES.get(context.color_primaries),
                            COLOR_TRCS.get(context.color_trc), COLOR_SPACES.get(context.colorspace)),
            rotation=rotation,
            timecode=stream.metadata.get("timecode") or container.metadata.get("timecode")
            or next((s.metadata["timecode"] for s in container.streams if "timecode" in s.metadata), None),
            start_offset=max(Fraction(0), start - file_start),
            vfr=vfr,
            audio=tuple(AudioStream(i, s.codec_context.name, s.codec_context.sample_rate, s.codec_context.channels,
                                    s.codec_context.layout.name, s.metadata.get("language"))
                        for i, s in enumerate(container.streams.audio)),
            subtitles=tuple(SubtitleStream(i, s.codec_context.name, s.metadata.get("language"))
                            for i, s in enumerate(container.streams.subtitles)),
        )


def _frame_timestamps(container, stream) -> list[int]:
    """Presentation timestamps of every frame that will be shown, sorted (demuxing reads packets, decodes nothing)."""
    timestamps = []
    for packet in container.demux(stream):
        if packet.size and not packet.is_discard:
            timestamps.append(packet.pts if packet.pts is not None else packet.dts)
    container.seek(0)
    return sorted(t for t in timestamps if t is not None)


def _frame_rate(stream, timestamps: list[int]) -> tuple[Fraction, bool]:
    """The constant rate of the stream, or for variable-rate video the rate sfi converts it to."""
    time_base = stream.time_base
    deltas = [b - a for a, b in zip(timestamps, timestamps[1:])]
    typical = statistics.median(deltas)
    nominal = stream.guessed_rate or stream.average_rate or (1 / (typical * time_base))
    nominal = Fraction(nominal)
    frame_ticks = 1 / (nominal * time_base)
    slack = max(Fraction(3, 2), frame_ticks / 10)  # timestamp rounding is not variable rate
    if all(abs(d - frame_ticks) <= slack for d in deltas):
        return nominal, False
    # The rate the camera mostly ran at (the typical frame duration), snapped to a standard rate.
    typical_rate = 1 / (Fraction(typical) * time_base)
    for standard in STANDARD_RATES:
        if abs(typical_rate / standard - 1) <= SNAP_TOLERANCE:
            return standard, True
    return typical_rate.limit_denominator(1001), True


def _first_frame_rotation(container, stream) -> tuple[int, bool]:
    """Display rotation in degrees from the first frame's display matrix, and whether it decoded."""
    import av

    try:
        frame = next(container.decode(stream), None)
    except av.error.FFmpegError:
        return 0, False
    finally:
        container.seek(0)
    if frame is None:
        return 0, False
    return round(getattr(frame, "rotation", 0) or 0) % 360, True


def _chroma(video_format) -> str:
    """Chroma subsampling as "420", "422", "444", or "gray" for one-plane formats."""
    components = video_format.components
    if len(components) < 3:
        return "gray"
    luma, chroma = components[0], components[1]
    if chroma.width < luma.width:
        return "420" if chroma.height < luma.height else "422"
    return "444"
