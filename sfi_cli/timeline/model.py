"""The timeline in editors' words, fixed once laid out: sources, shots, transitions (gaps), the segments
of picture they make, and the audio pieces under them.

Everything here is immutable (frozen dataclasses, tuples): ``timeline.layout.make_plan`` builds a
``Plan`` from a recipe and its media, and the renderer only reads it. Colour and format policy lives
in ``sfi_cli.media.formats``; the properties here only ask it about this plan's primary source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Union

from sfi_cli.media import formats
from sfi_cli.media.probe import Attachment, Chapter, MediaInfo, SubtitleStream
from sfi_cli.timeline.recipe import ShotSpec


@dataclass(frozen=True)
class Source:
    """One media file of the timeline; ``info`` is None for images."""

    key: str
    kind: str  # "image" or "video"
    path: Path
    info: MediaInfo | None = None


@dataclass(frozen=True)
class Shot:
    """A recipe shot with its frame range resolved at the output rate (an image: 0 .. frames held), what the
    replace transitions at its ends take from it, and the length of its transition into the next shot."""

    spec: ShotSpec
    source: Source
    start: int
    stop: int
    head_taken: int = 0
    tail_taken: int = 0
    transition_frames: int = 0  # 0: no transition follows

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def shown(self) -> tuple[int, int]:
        """The frames of it that appear as footage (or a held still): its range less what transitions take."""
        return self.start + self.head_taken, self.stop - self.tail_taken

    @property
    def inserts(self) -> bool:
        """Whether its transition adds new frames (and time) after it, rather than replacing frames."""
        return self.spec.transition is not None and self.spec.transition.mode == "insert"


@dataclass(frozen=True)
class Footage:
    """Frames ``start`` .. ``stop - 1`` of a video, copied."""

    source: str
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Still:
    """An image held for ``frames`` frames."""

    source: str
    frames: int


@dataclass(frozen=True)
class Generated:
    """The place of gap ``gap`` (an index into ``Plan.gaps``) in the picture: all its frames, or the next
    ``frames`` of them (a retimed chunk's made frames lie between the real frames it keeps, so its gap
    appears as several slices, in order)."""

    gap: int
    frames: int


Segment = Union[Footage, Still, Generated]


LAYER_STEP = {"replace": 1.0, "insert": 0.5}  # frames of each shot per new frame of a live dissolve


@dataclass(frozen=True)
class Gap:
    """A transition to make: ``count`` new frames between frame ``before`` of one source and frame ``after``
    of another (or the same, for slow motion).

    A retimed chunk (mode "retime") is made from every real frame ``before`` .. ``after`` of one source:
    ``times`` holds each new frame's place, (j, t): at time t in (0, 1) from frame before + j to the next."""

    index: int
    count: int
    engine: str
    prompt: str
    negative_prompt: str
    seed: int
    mode: str  # "insert", "replace" or "slowmo"
    before: tuple[str, int]  # (source key, frame number)
    after: tuple[str, int]
    output_start: int  # first output frame of the gap
    label: str
    times: tuple[tuple[int, float], ...] = ()  # a retimed chunk's frames (see above); () for a transition
    # For an engine that keeps both shots playing (``Engine.uses_shots``): the real frames (source, first, last)
    # of the outgoing shot up to the cut and of the incoming one from it, ``before`` and ``after`` among them.
    shots: tuple[tuple[str, int, int], tuple[str, int, int]] | None = None

    @property
    def real_frames(self) -> tuple[tuple[str, int], ...]:
        """The source frames its job is made from: the two ends, both shots' frames around the cut, or every
        frame of a retimed chunk."""
        if self.shots:
            return tuple((source, index) for source, first, last in self.shots for index in range(first, last + 1))
        if not self.times:
            return self.before, self.after
        source, first = self.before
        return tuple((source, index) for index in range(first, self.after[1] + 1))

    def shot_places(self) -> dict[str, Any]:
        """Where in its shots' frames (``shots``) each new frame shows them: replace runs both shots on at their
        own speed through the frames it takes; insert plays them on at half speed from ``before`` and into
        ``after`` (a place past a shot's last frame continues its motion: ``engines.base.ShotFrames``)."""
        (_, out_first, out_last), (_, in_first, _) = self.shots
        step = LAYER_STEP[self.mode]
        outgoing, incoming = self.before[1] - out_first, self.after[1] - in_first
        return {"outgoing": out_last - out_first + 1,
                "outgoing_at": [outgoing + step * (j + 1) for j in range(self.count)],
                "incoming_at": [incoming - step * (self.count - j) for j in range(self.count)],
                "ends": [outgoing, out_last - out_first + 1 + incoming]}


@dataclass(frozen=True)
class AudioPiece:
    """``samples`` samples of audio track ``track`` of ``source`` from ``start_sample``; silence when source is None."""

    source: str | None
    track: int
    start_sample: int  # may be negative, or run past the track's end: those samples are silence
    samples: int
    overlap: int = 0  # samples at its start that are crossfaded with the end of the piece before it
    # The source's sound played at this speed, pitch kept (a slowed clip's: 0.4 for 2.5 times slower):
    # ``samples`` output samples are made from ``samples * tempo`` source samples.
    tempo: Fraction = Fraction(1)


@dataclass(frozen=True)
class AudioTrack:
    """One output audio stream: its format and the pieces that make it, in order (its length is the pieces'
    samples less their overlaps)."""

    sample_rate: int
    layout: str
    codec: str
    language: str | None
    pieces: tuple[AudioPiece, ...]
    copy_from: tuple[str, int] | None = None  # (source key, track) when the source track is kept as it is


@dataclass(frozen=True)
class Streams:
    """What follows the picture from the primary source besides sound: subtitles (retimed by ``shifts``,
    (source time, seconds inserted there)), attachments and chapters, and what could not follow."""

    subtitles: tuple[SubtitleStream, ...] = ()
    shifts: tuple[tuple[Fraction, Fraction], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    chapters: tuple[Chapter, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    output: Path
    codec: str
    pix_fmt: str  # the output's; footage is decoded straight to it, generated frames converted to it
    size: tuple[int, int]
    rate: Fraction
    fit: str
    quality: int
    preset: str
    primary: Source | None  # metadata (colour, rotation, timecode, subtitles) come from here
    keep_rotation: bool
    sources: Mapping[str, Source]
    segments: tuple[Segment, ...]
    gaps: tuple[Gap, ...]
    audio: tuple[AudioTrack, ...]
    subtitles: tuple[SubtitleStream, ...]
    subtitle_shifts: tuple[tuple[Fraction, Fraction], ...]  # (source time, seconds inserted there)
    recipe: Path
    warnings: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()  # of the primary source, copied (.mkv only)
    chapters: tuple[Chapter, ...] = ()  # of the primary source, moved past inserted transitions
    pad: tuple[int, int] = (0, 0)  # columns, rows repeated at the right/bottom edge to make ``size`` even
    engine_identities: Mapping[str, Any] = field(default_factory=dict)  # by engine name: ``Engine.identity``
    # Footage numbered by each source's own frames as decoded (``sfi retime``: output frames fall between
    # them), not by the output's rate.
    native_frames: bool = False
    subtitle_scale: Fraction = Fraction(1)  # subtitle times and durations multiplied by it (``sfi retime --slowmo``)

    @property
    def sar(self) -> Fraction:
        """The output's sample aspect ratio: the first video's as shown, else square."""
        return self.primary.info.display_sar(self.keep_rotation) if self.primary else Fraction(1)

    @property
    def color_range(self) -> str:
        """"tv" or "pc": the primary source's range (full range for yuvj formats), tv without one."""
        return self.primary.info.color_range if self.primary else "tv"

    @property
    def matrix(self) -> str:
        """The YUV matrix: the primary source's (BT.601, what ffmpeg assumes, when untagged); for stills
        alone, the standard of the picture's size (BT.709 for HD)."""
        if self.primary is None:
            return formats.picture_standard(*self.size)
        return self.primary.info.matrix

    @property
    def rgb_pix_fmt(self) -> str:
        """The engines' RGB: 16-bit when the primary source has more than 8 bits, else 8-bit."""
        return formats.rgb_format(self.primary.info.bit_depth if self.primary else 8)

    def rgb_to_output(self, ffmpeg: str) -> str:
        """ffmpeg filters turning the engines' RGB into the output's YUV with its matrix and range."""
        return formats.rgb_to_yuv(self.rgb_pix_fmt, self.matrix, self.color_range, self.pix_fmt, ffmpeg)

    def output_to_rgb(self, ffmpeg: str) -> str:
        """The way back: the output's YUV read with its matrix and range into the engines' RGB."""
        return formats.yuv_to_rgb(self.matrix, self.color_range, self.rgb_pix_fmt, ffmpeg)

    @property
    def total_frames(self) -> int:
        return sum(segment.frames for segment in self.segments)

    @property
    def generated_frames(self) -> int:
        return sum(gap.count for gap in self.gaps)
