"""``sfi retime``: a whole clip at another frame rate (``--fps``) or slowed down (``--slowmo``), as a plan
like any other, rendered by the same two passes as ``fill``.

Output frame k shows the source at time k / (fps x slowmo); there are round(duration x slowmo x fps) of
them. Where that time falls on a real frame, the frame is copied (footage, relayed untouched); where it
falls between two real frames of one shot, the engine makes the frame at its exact fractional time; where
it falls across a cut (found first by the detect stage), the nearer side's real frame is copied, so no frame
blends two shots; past the last real frame, the last one is held. A variable-rate clip is placed by its
real timestamps (frames numbered as the file shows them: ``Plan.native_frames``).

The made frames are grouped into chunks: a run of at most ``chunk_frames`` real frames of one shot and the
frames made between them form one job (``Gap`` of mode "retime", its ``times`` saying where each frame
lies), kept in the work folder under its key, so a killed run resumes where it stopped and memory holds a
chunk, never the clip. A chunk's frames are spliced as slices between the real frames copied among them.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from sfi_cli.errors import SfiError
from sfi_cli.media.probe import MediaInfo
from sfi_cli.timeline.model import AudioPiece, AudioTrack, Footage, Gap, Generated, Plan, Segment, Shot, Source
from sfi_cli.timeline.timecode import format_rate

CHUNK_BYTES = 48 << 20  # the real frames one chunk's job carries (RGB), at most: memory stays flat at any size


@dataclass
class RetimeRequest:
    video: Path
    output: Path
    fps: Fraction | None  # None: the source's rate
    slowmo: Fraction  # 1: the clip's own speed
    audio: str  # under slow motion: "stretch" (pitch kept) or "drop"
    engine: str = "auto"
    codec: str | None = None  # None: the container's usual one


class SourceTimes:
    """When each real frame of a clip plays (seconds from its first), and which two frames a moment lies
    between: by the exact rate for a constant-rate clip, by its own timestamps for a variable-rate one."""

    def __init__(self, info: MediaInfo, stamps: tuple[Fraction, ...] = ()) -> None:
        self.rate = info.rate
        self.stamps = stamps
        self.count = len(stamps) if stamps else info.frame_count

    @property
    def duration(self) -> Fraction:
        """Until the last frame has been shown: its start plus one frame at the clip's (typical) rate."""
        last = self.stamps[-1] if self.stamps else Fraction(self.count - 1) / self.rate
        return last + 1 / self.rate

    def place(self, moment: Fraction) -> tuple[int, Fraction]:
        """(i, t): ``moment`` lies at t in [0, 1) of the way from real frame i to frame i + 1."""
        if not self.stamps:
            position = moment * self.rate
            index = math.floor(position)
            return index, position - index
        index = max(0, bisect.bisect_right(self.stamps, moment) - 1)
        if index + 1 >= self.count:
            return index, Fraction(0)
        return index, (moment - self.stamps[index]) / (self.stamps[index + 1] - self.stamps[index])

    def frame_at(self, moment: Fraction) -> int:
        """The real frame shown at ``moment`` (cuts found at the clip's nominal rate land on real frames)."""
        if not self.stamps:
            return round(moment * self.rate)
        return min(self.count - 1, bisect.bisect_left(self.stamps, moment - 1 / (2 * self.rate)))


def output_rate(request: RetimeRequest, info: MediaInfo) -> Fraction:
    return request.fps if request.fps is not None else info.rate


def chunk_frames(size: tuple[int, int], deep: bool, rate: Fraction) -> int:
    """Real frames per chunk: as many as ``CHUNK_BYTES`` holds in the engines' RGB, at most about half a
    second's worth (small pictures: jobs enough to share among workers and to resume from), at least two."""
    frame_bytes = size[0] * size[1] * 3 * (2 if deep else 1)
    return max(2, min(CHUNK_BYTES // frame_bytes, round(rate / 2)))


@dataclass
class _Chunk:
    """A chunk being laid out: its real frames ``first`` .. ``last`` and where its made frames go."""

    first: int
    last: int
    times: list[tuple[int, float]]
    output_start: int


def lay_out_retime(times: SourceTimes, cuts: list[int], total: int, step: Fraction, key: str,
                   chunk: int) -> tuple[list[Segment], list[_Chunk]]:
    """Segments for ``total`` output frames, frame k at source time k x ``step``: copies of real frames
    (footage) and slices of the chunks whose frames are made; the chunks in output order."""
    shot_starts = [0, *sorted(cuts)]
    cut_set = set(cuts)
    segments: list[Segment] = []
    chunks: list[_Chunk] = []
    numbers: dict[tuple[int, int], int] = {}  # (shot start, window in it) -> chunk number
    for k in range(total):
        index, t = times.place(k * step)
        if index >= times.count - 1:
            index, t = times.count - 1, Fraction(0)
        if t and index + 1 in cut_set:  # across a cut: the nearer side's real frame
            index, t = (index, Fraction(0)) if t < Fraction(1, 2) else (index + 1, Fraction(0))
        if not t:
            last = segments[-1] if segments else None
            if isinstance(last, Footage) and last.stop == index:
                segments[-1] = Footage(key, last.start, index + 1)
            else:
                segments.append(Footage(key, index, index + 1))
            continue
        shot_start = shot_starts[bisect.bisect_right(shot_starts, index) - 1]
        shot_end = next((cut for cut in shot_starts[1:] if cut > index), times.count)  # first frame past the shot
        window = (index - shot_start) // (chunk - 1)
        first = shot_start + window * (chunk - 1)
        number = numbers.setdefault((shot_start, window), len(numbers))
        if number == len(chunks):
            chunks.append(_Chunk(first, min(first + chunk - 1, shot_end - 1), [], k))
        chunks[number].times.append((index - first, float(t)))
        last = segments[-1] if segments else None
        if isinstance(last, Generated) and last.gap == number:
            segments[-1] = Generated(number, last.frames + 1)
        else:
            segments.append(Generated(number, 1))
    return segments, chunks


def retime_engine(name: str, settings: dict[str, dict[str, Any]]) -> str:
    """The engine that makes the frames: one that makes frames at any times (``auto``: the best of those here)."""
    from engines import engine_class, resolve_name

    resolved = resolve_name(name, settings, any_times=True)
    if not engine_class(resolved).any_times:
        raise SfiError(f"engine '{resolved}' makes only evenly spaced in-betweens, but retiming needs frames at any "
                       f"time; choose --engine flow, rife or crossfade")
    return resolved


def retime_audio(source: Source, total: int, rate: Fraction, slowmo: Fraction, audio: str,
                 suffix: str) -> tuple[AudioTrack, ...]:
    """The clip's sound under the retimed picture, exactly its length: as it is at the clip's own speed (copied
    where the container takes its codec), stretched to the slowed speed with its pitch kept, or none."""
    from sfi_cli.timeline.audio import COPYABLE_AUDIO, REBUILT_AUDIO, sample_at

    if slowmo != 1 and audio == "drop":
        return ()
    tracks = []
    for stream in source.info.audio:
        samples = sample_at(total, stream.sample_rate, rate)
        piece = AudioPiece(source.key, stream.index, sample_at(0, stream.sample_rate, rate, -stream.start_offset),
                           samples, tempo=1 / slowmo)
        copy = slowmo == 1 and stream.codec in COPYABLE_AUDIO[suffix]
        tracks.append(AudioTrack(stream.sample_rate, stream.layout, "copy" if copy else REBUILT_AUDIO[suffix],
                                 stream.language, (piece,), (source.key, stream.index) if copy else None))
    return tuple(tracks)


def retime_plan(request: RetimeRequest, info: MediaInfo, cuts: list[int], *, engine_settings: dict[str, dict[str, Any]],
                crf: int, preset: str) -> Plan:
    """The plan of a retimed clip: every output frame placed (see the module doc), chunks as gaps, the sound."""
    from sfi_cli.media import formats
    from sfi_cli.media.probe import frame_seconds
    from sfi_cli.timeline.layout import output_picture, pictures_only
    from sfi_cli.timeline.recipe import OUTPUT_KEYS, OutputSpec, Recipe, ShotSpec
    from sfi_cli.timeline.subtitles import following_streams

    engine = retime_engine(request.engine, engine_settings)
    codec = formats.output_codec(request.output, request.codec)
    video = Path(request.video).resolve()
    source = Source(str(video), "video", video, info)
    spec = ShotSpec("video", video, None, None, None, 1, None, where=f"'{video}'")
    recipe = Recipe(video, (spec,), OutputSpec(request.output, None, None, OUTPUT_KEYS["fit"].default, codec, None, None,
                                               OUTPUT_KEYS["audio"].default))
    picture = output_picture(recipe, {source.key: source}, codec, info.rate, conformed=False)
    rate = output_rate(request, info)
    times = SourceTimes(info, frame_seconds(video) if info.vfr else ())
    total = round(times.duration * request.slowmo * rate)
    if total < 1:
        raise SfiError(f"retiming '{video.name}' ({float(times.duration):.3f} s) to {format_rate(rate)} fps gives no frame")
    native_cuts = sorted({times.frame_at(Fraction(cut) / info.rate) for cut in cuts} - {0})
    deep = formats.rgb_format(info.bit_depth) != "rgb24"
    segments, chunks = lay_out_retime(times, native_cuts, total, 1 / (rate * request.slowmo), source.key,
                                      chunk_frames(picture.size, deep, info.rate))
    gaps = tuple(Gap(number, len(chunk.times), engine, "", "", 0, "retime", (source.key, chunk.first),
                     (source.key, chunk.last), chunk.output_start,
                     f"frames {chunk.first}-{chunk.last} of {video.name}", tuple(chunk.times))
                 for number, chunk in enumerate(chunks))
    suffix = request.output.suffix.lower()
    whole = Shot(spec, source, 0, info.frame_count)
    streams = pictures_only(source) if codec == "png" else following_streams(source, [whole], rate, suffix, True)
    warnings = list(picture.warnings + streams.warnings)
    subtitles, chapters = streams.subtitles, streams.chapters
    if request.slowmo != 1:
        from dataclasses import replace

        chapters = tuple(replace(c, start=c.start * request.slowmo, end=c.end * request.slowmo) for c in chapters)
    from engines import engine_class

    return Plan(
        output=request.output, codec=codec, pix_fmt=picture.pix_fmt, size=picture.size, rate=rate,
        fit=OUTPUT_KEYS["fit"].default, quality=formats.quality_for(codec, crf), preset=preset, primary=source,
        keep_rotation=picture.keep_rotation, sources={source.key: source}, segments=tuple(segments), gaps=gaps,
        audio=() if codec == "png" else retime_audio(source, total, rate, request.slowmo, request.audio, suffix),
        subtitles=subtitles,
        subtitle_shifts=(), recipe=video, warnings=tuple(warnings), attachments=streams.attachments,
        chapters=chapters, subtitle_scale=request.slowmo, pad=picture.pad, engine_identities={engine: engine_class(engine).identity(engine_settings)},
        native_frames=True,
    )


def retime(request: RetimeRequest, detect_options, options, *, crf: int, preset: str) -> dict[str, Any]:
    """Find the cuts of ``request.video``, then render it retimed (``retime_plan``) through the two passes."""
    from contextlib import nullcontext

    from sfi_cli.media.formats import output_codec
    from sfi_cli.media.probe import probe
    from sfi_cli.media.publish import output_lock
    from sfi_cli.render import check_outputs, render_plan
    from sfi_cli.timeline.fill import detect_video

    video, output = Path(request.video), Path(request.output)
    if request.slowmo < 1:
        raise SfiError(f"--slowmo must be 1 or more (got {float(request.slowmo):g}): 2.5 plays the clip 2.5 times slower")
    with nullcontext() if options.dry_run or "splice" not in options.passes else output_lock(output):
        info = probe(video)
        retime_engine(request.engine, options.engine_settings)  # everything that can be refused, before detection
        output_codec(output, request.codec)
        check_outputs(output, [video], options)  # before the (long) detection pass
        started = time.monotonic()
        info, detection = detect_video(info, detect_options, ffmpeg=options.ffmpeg, reporter=options.reporter)
        detection_seconds = round(time.monotonic() - started, 3)
        plan = retime_plan(request, info, [cut.frame for cut in detection.cuts],
                           engine_settings=options.engine_settings, crf=crf, preset=preset)
        options.manifest_extra = {
            **options.manifest_extra, "input": str(video), "retime": {
                "source_fps": format_rate(info.rate), "fps": format_rate(plan.rate),
                "slowmo": float(request.slowmo), "audio": request.audio if request.slowmo != 1 else "kept"},
            "cuts": [{"number": n, "frame": c.frame, "timecode": c.timecode, "score": c.score}
                     for n, c in enumerate(detection.cuts, start=1)],
            "detector": detection.detector, "detection_seconds": detection_seconds}
        return render_plan(plan, options)
