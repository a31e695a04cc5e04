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
from sfi_cli.media.formats import SWSCALE_MATRICES, UNTAGGED_MATRIX

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

# Rates a variable-rate clip is snapped to (the nearest) when its typical frame rate is this close (relative).
STANDARD_RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                  Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60), Fraction(120)]
SNAP_TOLERANCE = 0.01

# AVFieldOrder values of interlaced video as ffmpeg's -field_order names them (0 unknown, 1 progressive).
FIELD_ORDERS = {2: "tt", 3: "bb", 4: "tb", 5: "bt"}

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
class HdrMetadata:
    """HDR10 static metadata, in x265's units: ``master_display`` as x265's master-display string,
    ``max_cll`` as "MaxCLL,MaxFALL" (either None where the file has none)."""

    master_display: str | None = None
    max_cll: str | None = None


@dataclass(frozen=True)
class AudioStream:
    index: int  # among the file's audio streams (ffmpeg's a:N)
    codec: str
    sample_rate: int
    channels: int
    layout: str
    language: str | None = None
    start_offset: Fraction = Fraction(0)  # its first decoded sample's time minus the video's start, seconds


@dataclass(frozen=True)
class SubtitleStream:
    index: int  # among the file's subtitle streams (ffmpeg's s:N)
    codec: str
    language: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file carried inside the container (Matroska fonts for ASS subtitles)."""

    index: int  # among the file's attachment streams (ffmpeg's t:N)
    filename: str
    mimetype: str | None = None


@dataclass(frozen=True)
class Chapter:
    """A chapter mark, in seconds from the video's first frame."""

    start: Fraction
    end: Fraction
    title: str | None = None


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
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    chapters: tuple[Chapter, ...] = field(default_factory=tuple)
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio; 1 where the file does not say
    field_order: str | None = None  # "tt", "bb", "tb" or "bt" for interlaced video, None for progressive
    hdr: HdrMetadata | None = None
    keyframes: tuple[int, ...] = ()  # frame numbers where decoding can start (a seek lands on the one before)

    @property
    def color_range(self) -> str:
        """"tv" or "pc": as tagged, full range for yuvj formats, else tv."""
        return self.color.range or ("pc" if self.pix_fmt.startswith("yuvj") else "tv")

    @property
    def matrix(self) -> str:
        """The YUV matrix its pictures are read with: as tagged where ffmpeg's scalers know it, else BT.601
        (what ffmpeg assumes for a video that does not say)."""
        space = self.color.space
        return space if space in SWSCALE_MATRICES else UNTAGGED_MATRIX

    def display_sar(self, keep_rotation: bool) -> Fraction:
        """The pixel aspect as shown: a quarter turn applied (not kept as a display matrix) inverts it."""
        return 1 / self.sar if self.rotation % 180 and not keep_rotation else self.sar

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

    from sfi_cli.media.ffmpeg import ffmpeg_path

    path = require_input_file(path, "a video")
    try:
        container = av.open(ffmpeg_path(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise SfiError(f"input '{path}' is not a video ffmpeg can read ({error.__class__.__name__})") from None
    with container:
        if container.format.name in IMAGE_FORMATS or not container.streams.video:
            raise SfiError(f"input '{path}' is not a video (no video stream); give a movie file such as .mp4 or .mov")
        stream = container.streams.video[0]
        timestamps, keyframes = _frame_timestamps(container, stream)
        if len(timestamps) < 2:
            raise SfiError(f"input '{path}' has {len(timestamps)} video frame(s); a video needs at least 2")
        rate, vfr = _frame_rate(stream, timestamps)
        context = stream.codec_context
        video_format = context.format
        first = _first_frame(container, stream)
        if first is None:
            raise SfiError(f"input '{path}' has a video stream that cannot be decoded; it may be corrupt")
        rotation = round(getattr(first, "rotation", 0) or 0) % 360
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
                                    s.codec_context.layout.name, s.metadata.get("language"),
                                    _stream_start(s, file_start) - start)
                        for i, s in enumerate(container.streams.audio)),
            subtitles=tuple(SubtitleStream(i, s.codec_context.name, s.metadata.get("language"))
                            for i, s in enumerate(container.streams.subtitles)),
            attachments=tuple(Attachment(i, s.metadata.get("filename") or s.name or f"attachment{i}",
                                         s.metadata.get("mimetype") or s.mimetype)
                              for i, s in enumerate(container.streams.attachments)),
            chapters=tuple(Chapter(c["start"] * c["time_base"] - start, c["end"] * c["time_base"] - start,
                                   c["metadata"].get("title")) for c in container.chapters()),
            sar=Fraction(stream.sample_aspect_ratio or context.sample_aspect_ratio or 1),
            field_order=FIELD_ORDERS.get(getattr(context, "field_order", 0)),
            hdr=_hdr_metadata(first),
            keyframes=tuple(keyframes) if not vfr else (),
        )


def frame_seconds(path: Path) -> tuple[Fraction, ...]:
    """When each frame the file shows plays, in seconds from the first: a variable-rate clip's real timing
    (demuxing reads packets, decodes nothing)."""
    import av

    from sfi_cli.media.ffmpeg import ffmpeg_path

    with av.open(ffmpeg_path(path)) as container:
        stream = container.streams.video[0]
        stamps, _ = _frame_timestamps(container, stream)
        time_base = Fraction(stream.time_base)
    return tuple((stamp - stamps[0]) * time_base for stamp in stamps)


def _stream_start(stream, file_start: Fraction) -> Fraction:
    """When a stream's first packet plays (the file's start when the stream does not say); ffmpeg decodes its
    samples from there, so sample k of an audio stream plays at this time plus k / rate."""
    return stream.start_time * stream.time_base if stream.start_time is not None else file_start


def _frame_timestamps(container, stream) -> tuple[list[int], list[int]]:
    """Presentation timestamps of every frame that will be shown, sorted, and the frame numbers of its
    keyframes, where a seek can start decoding (demuxing reads packets, decodes nothing)."""
    timestamps, keys = [], set()
    for packet in container.demux(stream):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if packet.size and not packet.is_discard and stamp is not None:
            timestamps.append(stamp)
            if packet.is_keyframe:
                keys.add(stamp)
    container.seek(0)
    timestamps.sort()
    return timestamps, [number for number, stamp in enumerate(timestamps) if stamp in keys]


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
    nearest = min(STANDARD_RATES, key=lambda standard: abs(typical_rate / standard - 1))
    if abs(typical_rate / nearest - 1) <= SNAP_TOLERANCE:
        return nearest, True
    return typical_rate.limit_denominator(1001), True


def _first_frame(container, stream):
    """The first decoded frame (its display matrix and side data describe the stream), or None."""
    import av

    try:
        return next(container.decode(stream), None)
    except av.error.FFmpegError:
        return None
    finally:
        container.seek(0)


def _hdr_metadata(frame) -> HdrMetadata | None:
    """HDR10 mastering display and content light level from a frame's side data (AVMasteringDisplayMetadata:
    ten AVRationals, then has_primaries and has_luminance; AVContentLightMetadata: MaxCLL, MaxFALL)."""
    import struct

    found = {str(data.type).rsplit(".", 1)[-1]: bytes(data) for data in frame.side_data}
    master = found.get("MASTERING_DISPLAY_METADATA")
    light = found.get("CONTENT_LIGHT_LEVEL")
    display = None
    if master and len(master) >= 88:
        values = struct.unpack("=20i2i", master[:88])
        ratio = [Fraction(n, d) if d else Fraction(0) for n, d in zip(values[0:20:2], values[1:20:2])]
        (rx, ry, gx, gy, bx, by, wx, wy, low, high), (has_primaries, has_luminance) = ratio, values[20:]
        if has_primaries and has_luminance:
            xy = lambda x, y: f"({round(x * 50000)},{round(y * 50000)})"  # noqa: E731 - x265 units of 0.00002
            display = (f"G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}"
                       f"L({round(high * 10000)},{round(low * 10000)})")
    cll = "{},{}".format(*struct.unpack("=2I", light[:8])) if light and len(light) >= 8 else None
    return HdrMetadata(display, cll) if display or cll else None


def _chroma(video_format) -> str:
    """Chroma subsampling as "420", "422", "444", or "gray" for one-plane formats."""
    components = video_format.components
    if len(components) < 3:
        return "gray"
    luma, chroma = components[0], components[1]
    if chroma.width < luma.width:
        return "420" if chroma.height < luma.height else "422"
    return "444"
