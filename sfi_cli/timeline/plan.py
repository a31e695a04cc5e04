"""From a recipe to exact frame ranges: what is copied, what is generated, what is heard.

``make_plan`` probes the media, fixes the output's rate, size and formats, and lays
the timeline out as a list of segments (footage ranges, held stills, generated
gaps) plus, per audio track, a list of pieces (source ranges or silence, some
crossfaded into the one before) of exactly the same length. Every check that needs the media (ranges inside clips, shots long
enough for ``replace`` transitions, lengths above zero) happens here, before any
frame is decoded or generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from sfi_cli.media import formats
from sfi_cli.errors import SfiError
from sfi_cli.media.images import check_frame_size
from sfi_cli.media.probe import Attachment, AudioStream, Chapter, MediaInfo, SubtitleStream, probe
from sfi_cli.timeline.recipe import Recipe, ShotSpec, TransitionSpec
from sfi_cli.timeline.timecode import format_rate, format_timecode

CODEC_BY_SUFFIX = {".mp4": "h264", ".mov": "prores", ".mkv": "h264"}
TEXT_SUBTITLES = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}  # can become mov_text
STYLED_SUBTITLES = {"ass", "ssa"}  # their styling is lost when they become mov_text
CODEC_SUFFIXES = {"h264": (".mp4", ".mov", ".mkv"), "h265": (".mp4", ".mov", ".mkv"), "prores": (".mov", ".mkv")}
CROSSFADE_SECONDS = 0.2  # the crossfade between the two sides' sound in the middle of an inserted transition


@dataclass(frozen=True)
class Source:
    """One media file of the timeline; ``info`` is None for images."""

    key: str
    kind: str  # "image" or "video"
    path: Path
    info: MediaInfo | None = None


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
    source: str
    frames: int


@dataclass(frozen=True)
class Generated:
    gap: int  # index into Plan.gaps
    frames: int


@dataclass(frozen=True)
class Gap:
    """``count`` new frames between frame ``before`` of one source and frame ``after`` of another."""

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


@dataclass(frozen=True)
class AudioPiece:
    """``samples`` samples of audio track ``track`` of ``source`` from ``start_sample``; silence when source is None."""

    source: str | None
    track: int
    start_sample: int  # may be negative, or run past the track's end: those samples are silence
    samples: int
    overlap: int = 0  # samples at its start that are crossfaded with the end of the piece before it


@dataclass(frozen=True)
class AudioTrack:
    """One output audio stream: its format and the pieces that make it, in order (its length is the pieces'
    samples less their overlaps)."""

    sample_rate: int
    layout: str
    codec: str
    language: str | None
    pieces: list[AudioPiece]
    copy_from: tuple[str, int] | None = None  # (source key, track) when the source track is kept as it is


@dataclass
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
    sources: dict[str, Source]
    segments: list[Footage | Still | Generated]
    gaps: list[Gap]
    audio: list[AudioTrack]
    subtitles: list[SubtitleStream]
    subtitle_shifts: list[tuple[Fraction, Fraction]]  # (source time, seconds inserted there)
    recipe: Path
    warnings: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)  # of the primary source, copied (.mkv only)
    chapters: list[Chapter] = field(default_factory=list)  # of the primary source, moved past inserted transitions
    pad: tuple[int, int] = (0, 0)  # columns, rows repeated at the right/bottom edge to make ``size`` even

    @property
    def sar(self) -> Fraction:
        """The output's sample aspect ratio: the first video's (inverted when its rotation is applied), else square."""
        if self.primary is None:
            return Fraction(1)
        info = self.primary.info
        return 1 / info.sar if info.rotation % 180 and not self.keep_rotation else info.sar

    @property
    def color_range(self) -> str:
        """"tv" or "pc": the primary source's range (full range for yuvj formats), tv without one."""
        return self.primary.info.color_range if self.primary else "tv"

    @property
    def matrix(self) -> str:
        """The YUV matrix: the primary source's, else BT.601 (what ffmpeg assumes untagged)."""
        space = self.primary.info.color.space if self.primary else None
        return space if space in formats.SWSCALE_MATRICES else formats.UNTAGGED_MATRIX

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


@dataclass
class _Shot:
    """A shot with its frame range resolved, and what transitions take from its ends."""

    spec: ShotSpec
    source: Source
    start: int  # at the output rate (video) / 0 (image)
    stop: int
    head_taken: int = 0
    tail_taken: int = 0

    @property
    def frames(self) -> int:
        return self.stop - self.start


def semfi_expert(new_frames: int) -> tuple[int, int]:
    """(frames the SemFi model runs, the expert's trained frame count) for ``new_frames`` in-betweens."""
    from engines.semfi_parts.rules import expert_frames, model_frame_count

    model_frames = model_frame_count(new_frames)
    return model_frames, expert_frames(model_frames)


def output_codec(output: Path, wanted: str | None) -> str:
    """The codec for ``output``: ``wanted`` if the container takes it, else the container's usual one."""
    suffix = output.suffix.lower()
    codec = wanted or CODEC_BY_SUFFIX.get(suffix)
    if codec is None:
        raise SfiError(f"output '{output}' must end in .mp4, .mov or .mkv")
    if suffix not in CODEC_SUFFIXES[codec]:
        raise SfiError(f"codec {codec} cannot be written to '{output.name}': use {' or '.join(CODEC_SUFFIXES[codec])}")
    return codec


def output_pix_fmt(codec: str, source: MediaInfo | None) -> str:
    """The source's pixel format where the codec has it, else the nearest it has (ProRes is always 10-bit 4:2:2/4:4:4)."""
    chroma = source.chroma if source else "420"
    deep = bool(source and source.bit_depth > 8)
    if codec == "prores":
        return "yuv444p10le" if chroma == "444" else "yuv422p10le"
    if chroma == "gray":
        chroma = "420"
    return f"yuv{chroma}p" + ("10le" if deep else "")


def make_plan(recipe: Recipe, *, engine: str, engine_settings: dict[str, dict[str, Any]], default_fps: Fraction,
              crf: int, preset: str, output: Path | None = None, probed: Mapping[Path, MediaInfo] | None = None) -> Plan:
    """Check the recipe against its media and lay out every output frame and audio sample.

    ``probed`` holds videos already probed (by resolved path), e.g. by cut detection, which also
    knows their true frame count: they are not probed again.
    """
    from engines import resolve_name

    output = output or recipe.output.path
    if output is None:
        raise SfiError(f"{recipe.path}: no output path: set [output] path in the recipe or pass -o")
    codec = output_codec(output, recipe.output.codec)
    sources = _sources(recipe, probed or {})
    videos = [sources[str(shot.path)] for shot in recipe.shots if shot.kind == "video"]
    primary = videos[0] if videos else None
    rate = recipe.output.fps or (primary.info.rate if primary else default_fps)
    one_source = primary is not None and all(shot.kind == "video" and sources[str(shot.path)] is primary
                                             for shot in recipe.shots)
    keep_rotation = one_source and primary.info.rotation != 0
    size = recipe.output.size or _first_size(recipe.shots[0], sources, keep_rotation)
    check_frame_size(*size, "output size")
    pix_fmt = output_pix_fmt(codec, primary.info if primary else None)
    pad = formats.even_padding(size, pix_fmt)
    warnings = formats.picture_warnings(size, pad, pix_fmt, codec, primary.info if primary else None,
                                        [s.info for s in sources.values() if s.info])
    size = (size[0] + pad[0], size[1] + pad[1])
    warnings += [f"'{s.path.name}' has a variable frame rate: converting it to a constant {format_rate(rate)} fps"
                 for s in sources.values() if s.info and s.info.vfr]
    warnings += [f"'{s.path.name}' runs at {format_rate(s.info.rate)} fps: converting it to the output's {format_rate(rate)} fps"
                 for s in sources.values() if s.info and not s.info.vfr and s.info.rate != rate]
    shots = [_resolve_shot(spec, sources[str(spec.path)], rate) for spec in recipe.shots]
    engines: dict[str, str] = {}

    def engine_name(name: str | None) -> str:
        wanted = name or engine
        if wanted not in engines:
            engines[wanted] = resolve_name(wanted, engine_settings)
        return engines[wanted]

    lengths = [_transition_frames(shot.spec.transition, rate) if shot.spec.transition else 0 for shot in shots]
    for index, (shot, length) in enumerate(zip(shots, lengths)):
        transition = shot.spec.transition
        if transition is None or transition.mode != "replace":
            continue
        following = shots[index + 1]
        shot.tail_taken, following.head_taken = length // 2, length - length // 2
        for taker in (shot, following):
            if taker.spec.slowmo > 1:
                raise SfiError(f"{transition.where}: a replace transition cannot overlap slow-motion shot "
                               f"({taker.spec.where}); use mode = \"insert\"")
    for number, shot in enumerate(shots, start=1):
        if shot.head_taken + shot.tail_taken >= shot.frames:
            raise SfiError(f"{shot.spec.where}: transition longer than the shot it replaces into: shot {number} has "
                           f"{shot.frames} frames and its replace transitions take {shot.head_taken + shot.tail_taken}; "
                           f"at least 1 frame of the shot must remain")
    segments: list[Footage | Still | Generated] = []
    gaps: list[Gap] = []
    position = 0

    def add(segment) -> None:
        nonlocal position
        segments.append(segment)
        position += segment.frames

    def add_gap(count: int, spec: TransitionSpec | None, mode: str, before, after, label: str) -> None:
        gap = Gap(len(gaps), count, engine_name(spec.engine if spec else None), spec.prompt if spec else "",
                  spec.negative_prompt if spec else "", spec.seed if spec else 0, mode, before, after, position, label)
        gaps.append(gap)
        add(Generated(gap.index, count))

    for index, shot in enumerate(shots):
        first, last = shot.start + shot.head_taken, shot.stop - shot.tail_taken
        key = shot.source.key
        if shot.source.kind == "image":
            add(Still(key, last - first))
        elif shot.spec.slowmo > 1:
            for frame in range(first, last):
                add(Footage(key, frame, frame + 1))
                if frame + 1 < last:
                    add_gap(shot.spec.slowmo - 1, None, "slowmo", (key, frame), (key, frame + 1),
                            f"slow motion x{shot.spec.slowmo}, shot {index + 1}, frames {frame}-{frame + 1}")
        else:
            add(Footage(key, first, last))
        if shot.spec.transition:
            following = shots[index + 1]
            before = (key, last - 1 if shot.source.kind == "video" else 0)
            after = (following.source.key, following.start + following.head_taken if following.source.kind == "video" else 0)
            cut = format_timecode(position, rate)
            add_gap(lengths[index], shot.spec.transition, shot.spec.transition.mode, before, after,
                    f"shot {index + 1} -> {index + 2} at {cut}")
    plan = Plan(
        output=output, codec=codec, pix_fmt=pix_fmt, size=size, rate=rate, fit=recipe.output.fit,
        quality=recipe.output.quality if recipe.output.quality is not None else (3 if codec == "prores" else crf),
        preset=recipe.output.preset or preset, primary=primary, keep_rotation=keep_rotation, sources=sources,
        segments=segments, gaps=gaps, audio=[], subtitles=[], subtitle_shifts=[], recipe=recipe.path, warnings=warnings,
        pad=pad,
    )
    if recipe.output.audio == "shots":
        plan.audio = _audio_tracks(plan, shots, lengths, output.suffix.lower())
    _subtitles(plan, shots, lengths, one_source)
    return plan


def _sources(recipe: Recipe, probed: Mapping[Path, MediaInfo]) -> dict[str, Source]:
    """Every media file once, videos probed unless ``probed`` has them (a missing or unreadable file fails
    here, before any work)."""
    sources: dict[str, Source] = {}
    for shot in recipe.shots:
        key = str(shot.path)
        if key in sources:
            if sources[key].kind != shot.kind:
                raise SfiError(f"{shot.where}: '{shot.path.name}' is used both as an image and as a video")
            continue
        if shot.kind == "video":
            try:
                info = probed.get(shot.path.resolve()) or probe(shot.path)
            except SfiError as error:
                raise SfiError(f"{shot.where}: {error}") from None
            sources[key] = Source(key, "video", shot.path, info)
        else:
            from sfi_cli.media.images import load_image

            try:
                load_image(shot.path)
            except SfiError as error:
                raise SfiError(f"{shot.where}: {error}") from None
            sources[key] = Source(key, "image", shot.path)
    return sources


def _first_size(spec: ShotSpec, sources: dict[str, Source], keep_rotation: bool) -> tuple[int, int]:
    source = sources[str(spec.path)]
    if source.info is not None:
        return (source.info.width, source.info.height) if keep_rotation else source.info.display_size
    from PIL import Image, ImageOps

    with Image.open(spec.path) as image:
        return ImageOps.exif_transpose(image).size


def _resolve_shot(spec: ShotSpec, source: Source, rate: Fraction) -> _Shot:
    """The shot's frame range at the output rate, checked against its clip."""

    def frames(position, what: str) -> int:
        try:
            value = position.to_frames(source_rate)
        except SfiError as error:
            raise SfiError(f"{spec.where}: {what}: {error}") from None
        return value if source_rate == rate else round(Fraction(value) * rate / source_rate)

    if source.info is None:
        source_rate = rate
        count = frames(spec.duration, "duration")
        if count < 1:
            raise SfiError(f"{spec.where}: image '{spec.path.name}' must be held for at least 1 frame "
                           f"(duration {spec.duration.text} is {count} frames at {format_rate(rate)} fps)")
        return _Shot(spec, source, 0, count)
    source_rate = source.info.rate
    total = source.info.frame_count if source_rate == rate else round(source.info.duration * rate)
    start = frames(spec.start, "in") if spec.start else 0
    if spec.stop is not None:
        stop = frames(spec.stop, "out")
    elif spec.duration is not None:
        stop = start + frames(spec.duration, "duration")
    else:
        stop = total
    if start >= total:
        raise SfiError(f"{spec.where}: 'in' ({spec.start.text}) is at or past the end of '{spec.path.name}' ({total} frames)")
    if stop > total:
        raise SfiError(f"{spec.where}: the shot ends at frame {stop}, past the end of '{spec.path.name}' ({total} frames)")
    if stop <= start:
        raise SfiError(f"{spec.where}: the shot is empty: 'out' (frame {stop}) must come after 'in' (frame {start})")
    return _Shot(spec, source, start, stop)


def _transition_frames(spec: TransitionSpec, rate: Fraction) -> int:
    frames = spec.length.to_frames(rate)
    if frames < 1:
        raise SfiError(f"{spec.where}: zero-length transition: {spec.length.text} is {frames} frames at "
                       f"{format_rate(rate)} fps; make it at least 1 frame")
    return frames


def _audio_tracks(plan: Plan, shots: list[_Shot], lengths: list[int], suffix: str) -> list[AudioTrack]:
    """Per audio track: each video shot's own sound over its whole range (replace transitions lie over sound
    that keeps playing), silence under stills and slow motion. Under an inserted transition the outgoing
    shot's sound runs on for the first half and the incoming shot's sound leads in for the second half,
    joined by a short crossfade (``audio = "silence"``: silence there instead). Source samples are placed by
    each audio stream's own start, so a track that starts later (or earlier) than the video keeps that
    relation; sound from before a track's first sample is silence."""
    videos = [s for s in plan.sources.values() if s.info]
    count = max((len(s.info.audio) for s in videos), default=0)
    tracks = []
    for track in range(count):
        model: AudioStream = next(s.info.audio[track] for s in videos if len(s.info.audio) > track)
        rate = model.sample_rate
        pieces: list[AudioPiece] = []
        done = 0  # output frames laid out so far
        lead_in: tuple[int, int] | None = None  # (samples to start early, crossfade) after a crossfaded transition
        for shot, length in zip(shots, lengths):
            frames = shot.frames + (shot.frames - 1) * (shot.spec.slowmo - 1)
            samples = _sample(done + frames, rate, plan.rate) - _sample(done, rate, plan.rate)
            has_track = shot.source.info is not None and len(shot.source.info.audio) > track
            if has_track and shot.spec.slowmo == 1:
                stream = shot.source.info.audio[track]
                piece = AudioPiece(shot.source.key, track, _sample(shot.start, rate, plan.rate, -stream.start_offset), samples)
            else:
                piece = AudioPiece(None, track, 0, samples)
            if lead_in:
                early, overlap = lead_in
                piece = replace(piece, start_sample=piece.start_sample - early, samples=piece.samples + early,
                                overlap=overlap)
                lead_in = None
            pieces.append(piece)
            done += frames
            transition = shot.spec.transition
            if transition and transition.mode == "insert":
                gap = _sample(done + length, rate, plan.rate) - _sample(done, rate, plan.rate)
                if transition.audio == "silence":
                    pieces.append(AudioPiece(None, track, 0, gap))
                else:
                    overlap = min(gap, round(CROSSFADE_SECONDS * rate))
                    run_on = gap // 2 + overlap // 2
                    pieces[-1] = replace(pieces[-1], samples=pieces[-1].samples + run_on)
                    lead_in = (gap + overlap - run_on, overlap)
                done += length
        pieces = [piece if piece.source is None or piece.start_sample + piece.samples > 0
                  else replace(piece, source=None, start_sample=0) for piece in pieces]
        codec = _audio_codec(suffix, plan.sources, pieces)
        whole = (len(pieces) > 0 and all(p.source == pieces[0].source and not p.overlap for p in pieces)
                 and pieces[0].source is not None and _contiguous(plan, pieces, shots))
        copy_from = (pieces[0].source, track) if whole and codec == "copy" else None
        if codec == "copy" and copy_from is None:
            codec = REBUILT_AUDIO[suffix]
        tracks.append(AudioTrack(rate, model.layout, codec, model.language, pieces, copy_from))
    return tracks


def _sample(frame: int, sample_rate: int, rate: Fraction, offset: Fraction = Fraction(0)) -> int:
    return round((offset + Fraction(frame) / rate) * sample_rate)


# Audio codecs each container takes as they are.
COPYABLE_AUDIO = {".mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
                  ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be",
                           "pcm_f32le"},
                  ".mkv": {"aac", "mp3", "mp2", "ac3", "eac3", "dts", "truehd", "opus", "vorbis", "flac", "alac",
                           "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_s16be"}}
# The codec of an audio track that is rebuilt from pieces: AAC where the container is for delivery, PCM in .mov.
REBUILT_AUDIO = {".mp4": "aac", ".mov": "pcm_s24le", ".mkv": "aac"}


def _audio_codec(suffix: str, sources: dict[str, Source], pieces: list[AudioPiece]) -> str:
    used = {sources[p.source].info.audio[p.track].codec for p in pieces if p.source}
    if len(used) == 1 and used <= COPYABLE_AUDIO[suffix]:
        return "copy"
    return REBUILT_AUDIO[suffix]


def _contiguous(plan: Plan, pieces: list[AudioPiece], shots: list[_Shot]) -> bool:
    """True when the pieces play one source's audio from its start to its end without a break or a rate change."""
    source = plan.sources[pieces[0].source]
    if source.info.rate != plan.rate or source.info.vfr:
        return False
    frames = [(s.start, s.stop) for s in shots]
    return (frames[0][0] == 0 and frames[-1][1] == source.info.frame_count
            and all(a[1] == b[0] for a, b in zip(frames, frames[1:])))


def subtitle_codec(suffix: str, codec: str) -> str | None:
    """What a subtitle track of ``codec`` becomes in a ``suffix`` file: "copy", the codec it is converted to,
    or None when the container cannot carry it (picture subtitles in .mp4/.mov)."""
    if suffix == ".mkv":
        return "srt" if codec == "mov_text" else "copy"  # Matroska takes every kind but mov_text
    if codec not in TEXT_SUBTITLES:
        return None
    return "copy" if codec == "mov_text" else "mov_text"


def _subtitles(plan: Plan, shots: list[_Shot], lengths: list[int], one_source: bool) -> None:
    """Subtitles and chapters follow when the timeline is its one video start to end in order (as ``sfi fill``
    makes it), moved later by the transitions inserted before them; attachments (fonts) always follow into
    .mkv. Whatever the output container cannot hold as it is, is said in a warning."""
    if plan.primary is None:
        return
    info = plan.primary.info
    suffix = plan.output.suffix.lower()
    name = info.path.name
    if info.attachments and suffix == ".mkv":
        plan.attachments = list(info.attachments)
    elif info.attachments:
        plan.warnings.append(f"the {len(info.attachments)} attachment(s) of '{name}' "
                             f"({', '.join(a.filename for a in info.attachments)}) are left out: {suffix} cannot "
                             f"carry attachments; write .mkv to keep them")
    if not info.subtitles and not info.chapters:
        return
    whole = (one_source and all(s.spec.slowmo == 1 for s in shots) and shots[0].start == 0
             and shots[-1].stop == info.frame_count and all(a.stop == b.start for a, b in zip(shots, shots[1:])))
    if not whole:
        kept = " and ".join(what for what, has in (("subtitles", info.subtitles), ("chapters", info.chapters)) if has)
        plan.warnings.append(f"{kept} of '{name}' are left out: they are kept only when the timeline "
                             f"plays that one video start to end in order")
        return
    plan.subtitle_shifts = [(Fraction(shot.stop) / plan.rate, Fraction(length) / plan.rate)
                            for shot, length in zip(shots, lengths)
                            if shot.spec.transition and shot.spec.transition.mode == "insert"]
    plan.subtitles = [s for s in info.subtitles if subtitle_codec(suffix, s.codec)]
    for subtitle in info.subtitles:
        codec = subtitle_codec(suffix, subtitle.codec)
        if codec is None:
            plan.warnings.append(f"subtitle track {subtitle.index} of '{name}' ({subtitle.codec}) is a picture format "
                                 f"that {suffix} cannot carry; left out (write .mkv to keep it)")
        elif subtitle.codec in STYLED_SUBTITLES and codec != "copy":
            plan.warnings.append(f"subtitle track {subtitle.index} of '{name}' ({subtitle.codec}) becomes {codec} in "
                                 f"{suffix}, which loses its styling (fonts, colours, positions); write .mkv to keep it")
    plan.chapters = [replace(c, start=c.start + _inserted_before(plan, c.start), end=c.end + _inserted_before(plan, c.end))
                     for c in info.chapters]


def _inserted_before(plan: Plan, time: Fraction) -> Fraction:
    """Seconds of inserted transitions before source ``time`` (one at exactly ``time`` counts: what starts at
    a cut starts after its transition)."""
    return sum((by for at, by in plan.subtitle_shifts if at <= time), Fraction(0))


def describe(plan: Plan) -> list[str]:
    """The plan as lines for ``--dry-run``: shots, gaps with frame counts, engine and SemFi expert."""
    width, height = plan.size
    lines = [f"plan: {plan.total_frames} frames ({float(plan.total_frames / plan.rate):.3f} s) at "
             f"{format_rate(plan.rate)} fps, {width}x{height}, {plan.codec} {plan.pix_fmt} -> {plan.output}"]
    slow: list[Gap] = []
    for index, segment in enumerate(plan.segments):
        if isinstance(segment, Generated) and plan.gaps[segment.gap].mode == "slowmo":
            slow.append(plan.gaps[segment.gap])
            following = plan.segments[index + 2] if index + 2 < len(plan.segments) else None
            if not (isinstance(following, Generated) and plan.gaps[following.gap].mode == "slowmo"):
                lines.append(f"  slowmo   {len(slow)} gaps of {slow[0].count} new frames ({sum(g.count for g in slow)} in all), "
                             f"engine {slow[0].engine}, {expert_text(slow[0])}  [{slow[0].label} ... {slow[-1].label.split(', ')[-1]}]")
                slow = []
        elif isinstance(segment, Footage) and segment.frames == 1 and _between_slowmo(plan, index):
            continue
        elif isinstance(segment, Footage):
            name = plan.sources[segment.source].path.name
            lines.append(f"  footage  {name} frames {segment.start}-{segment.stop - 1} ({segment.frames} frames)")
        elif isinstance(segment, Still):
            lines.append(f"  still    {plan.sources[segment.source].path.name} held {segment.frames} frames")
        else:
            gap = plan.gaps[segment.gap]
            lines.append(f"  gap {gap.index + 1:<4} {gap.count} new frames, {gap.mode}, engine {gap.engine}, "
                         f"{expert_text(gap)}  [{gap.label}]" + (f" prompt: {gap.prompt!r}" if gap.prompt else ""))
    lines.append(f"{len(plan.gaps)} gaps, {plan.generated_frames} generated frames; audio tracks: {len(plan.audio)}; "
                 f"subtitle tracks: {len(plan.subtitles)}; attachments: {len(plan.attachments)}; "
                 f"chapters: {len(plan.chapters)}")
    return lines


def _between_slowmo(plan: Plan, index: int) -> bool:
    """A one-frame footage segment that is part of a slow-motion shot (shown as one line)."""
    neighbours = [plan.segments[i] for i in (index - 1, index + 1) if 0 <= i < len(plan.segments)]
    return any(isinstance(n, Generated) and plan.gaps[n.gap].mode == "slowmo" for n in neighbours)


def expert_text(gap: Gap) -> str:
    if gap.engine != "semfi":
        return "expert -"
    model_frames, expert = semfi_expert(gap.count)
    return f"expert {expert} (model runs {model_frames} frames)"
