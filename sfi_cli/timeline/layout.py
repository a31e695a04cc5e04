"""From a recipe to exact frame ranges: what is copied, what is generated, what is heard.

``make_plan`` probes the media, fixes the output's rate, size and formats, and lays the timeline
out as segments (footage ranges, held stills, generated gaps) plus, per audio track, pieces of
exactly the same length (``timeline.audio``), and the subtitles and chapters that follow
(``timeline.subtitles``). Every check that needs the media (ranges inside clips, shots long
enough for ``replace`` transitions, lengths above zero) happens here, before any frame is
decoded or generated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from sfi_cli.errors import SfiError
from sfi_cli.media import formats
from sfi_cli.media.images import check_frame_size
from sfi_cli.media.probe import MediaInfo, probe
from sfi_cli.timeline.audio import audio_tracks
from sfi_cli.timeline.model import Footage, Gap, Generated, Plan, Segment, Shot, Source, Still, Streams
from sfi_cli.timeline.recipe import Recipe, ShotSpec, TransitionSpec
from sfi_cli.timeline.subtitles import following_streams
from sfi_cli.timeline.timecode import format_rate, format_timecode


@dataclass(frozen=True)
class Picture:
    """The output's picture: codec, pixel format, size (``pad`` included), rate, and the source it follows."""

    codec: str
    pix_fmt: str
    size: tuple[int, int]
    pad: tuple[int, int]
    rate: Fraction
    primary: Source | None
    keep_rotation: bool
    one_source: bool  # every shot is a range of the primary video
    warnings: tuple[str, ...]


def make_plan(recipe: Recipe, *, engine: str, engine_settings: dict[str, dict[str, Any]], default_fps: Fraction,
              crf: int, preset: str, output: Path | None = None, probed: Mapping[Path, MediaInfo] | None = None) -> Plan:
    """Check the recipe against its media and lay out every output frame and audio sample.

    ``probed`` holds videos already probed (by resolved path), e.g. by cut detection, which also
    knows their true frame count: they are not probed again.
    """
    output = output or recipe.output.path
    if output is None:
        raise SfiError(f"{recipe.path}: no output path: set [output] path in the recipe or pass -o")
    codec = formats.output_codec(output, recipe.output.codec)
    sources = resolve_sources(recipe, probed or {})
    picture = output_picture(recipe, sources, codec, default_fps)
    shots = take_replace_overlaps([resolve_shot(spec, sources[str(spec.path)], picture.rate) for spec in recipe.shots])
    engines = EngineNames(engine, engine_settings)
    segments, gaps = lay_out(shots, picture.rate, engines)
    suffix = output.suffix.lower()
    if codec == "png":
        audio, streams = (), pictures_only(picture.primary)
    else:
        audio = audio_tracks(sources, shots, picture.rate, suffix) if recipe.output.audio == "shots" else ()
        streams = following_streams(picture.primary, shots, picture.rate, suffix, picture.one_source)
    quality = recipe.output.quality if recipe.output.quality is not None else formats.quality_for(codec, crf)
    return Plan(
        output=output, codec=codec, pix_fmt=picture.pix_fmt, size=picture.size, rate=picture.rate,
        fit=recipe.output.fit, quality=quality, preset=recipe.output.preset or preset, primary=picture.primary,
        keep_rotation=picture.keep_rotation, sources=sources, segments=segments, gaps=gaps, audio=audio,
        subtitles=streams.subtitles, subtitle_shifts=streams.shifts, recipe=recipe.path,
        warnings=picture.warnings + streams.warnings, attachments=streams.attachments, chapters=streams.chapters,
        pad=picture.pad, engine_identities=engines.identities(),
    )


def pictures_only(primary: Source | None) -> Streams:
    """What a PNG sequence keeps of its source besides the picture: nothing, said in a warning."""
    info = primary.info if primary else None
    if info is None or not (info.audio or info.subtitles or info.chapters):
        return Streams()
    return Streams(warnings=(f"a PNG sequence holds pictures only: the sound, subtitles and chapters of "
                             f"'{info.path.name}' are left out",))


def resolve_sources(recipe: Recipe, probed: Mapping[Path, MediaInfo]) -> dict[str, Source]:
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


def output_picture(recipe: Recipe, sources: dict[str, Source], codec: str, default_fps: Fraction, *,
                   conformed: bool = True) -> Picture:
    """Rate, size and pixel format of the output: the recipe's where it says, else the first video's (odd
    sizes padded to what the pixel format needs), with a warning for each thing the sources lose (a rate
    conversion only where footage is ``conformed`` to the output's rate, not where it is retimed)."""
    videos = [sources[str(shot.path)] for shot in recipe.shots if shot.kind == "video"]
    primary = videos[0] if videos else None
    info = primary.info if primary else None
    rate = recipe.output.fps or (info.rate if info else default_fps)
    one_source = primary is not None and all(shot.kind == "video" and sources[str(shot.path)] is primary
                                             for shot in recipe.shots)
    keep_rotation = one_source and info.rotation != 0
    size = recipe.output.size or _first_size(recipe.shots[0], sources, keep_rotation)
    check_frame_size(*size, "output size")
    pix_fmt = formats.output_pix_fmt(codec, info)
    pad = formats.even_padding(size, pix_fmt)
    infos = [s.info for s in sources.values() if s.info]
    images = [s.path for s in sources.values() if s.info is None]
    warnings = formats.picture_warnings(size, pad, pix_fmt, codec, info, infos, keep_rotation=keep_rotation,
                                        images=images)
    warnings += [f"'{i.path.name}' has a variable frame rate: converting it to a constant {format_rate(rate)} fps"
                 for i in infos if i.vfr and conformed]
    warnings += [f"'{i.path.name}' runs at {format_rate(i.rate)} fps: converting it to the output's {format_rate(rate)} fps"
                 for i in infos if not i.vfr and i.rate != rate and conformed]
    return Picture(codec, pix_fmt, (size[0] + pad[0], size[1] + pad[1]), pad, rate, primary, keep_rotation, one_source,
                   tuple(warnings))


def _first_size(spec: ShotSpec, sources: dict[str, Source], keep_rotation: bool) -> tuple[int, int]:
    source = sources[str(spec.path)]
    if source.info is not None:
        return (source.info.width, source.info.height) if keep_rotation else source.info.display_size
    from PIL import Image, ImageOps

    with Image.open(spec.path) as image:
        return ImageOps.exif_transpose(image).size


def _frames(spec: ShotSpec, position, what: str, source_rate: Fraction, rate: Fraction) -> int:
    """A shot's position as a frame number at the output ``rate`` (given at its clip's ``source_rate``)."""
    try:
        value = position.to_frames(source_rate)
    except SfiError as error:
        raise SfiError(f"{spec.where}: {what}: {error}") from None
    return value if source_rate == rate else round(Fraction(value) * rate / source_rate)


def resolve_shot(spec: ShotSpec, source: Source, rate: Fraction) -> Shot:
    """The shot's frame range at the output rate, checked against its clip, and its transition's length."""
    length = transition_frames(spec.transition, rate) if spec.transition else 0
    if source.info is None:
        count = _frames(spec, spec.duration, "duration", rate, rate)
        if count < 1:
            raise SfiError(f"{spec.where}: image '{spec.path.name}' must be held for at least 1 frame "
                           f"(duration {spec.duration.text} is {count} frames at {format_rate(rate)} fps)")
        return Shot(spec, source, 0, count, transition_frames=length)
    source_rate = source.info.rate
    total = source.info.frame_count if source_rate == rate else round(source.info.duration * rate)
    start = _frames(spec, spec.start, "in", source_rate, rate) if spec.start else 0
    if spec.stop is not None:
        stop = _frames(spec, spec.stop, "out", source_rate, rate)
    elif spec.duration is not None:
        stop = start + _frames(spec, spec.duration, "duration", source_rate, rate)
    else:
        stop = total
    if start >= total:
        raise SfiError(f"{spec.where}: 'in' ({spec.start.text}) is at or past the end of '{spec.path.name}' ({total} frames)")
    if stop > total:
        raise SfiError(f"{spec.where}: the shot ends at frame {stop}, past the end of '{spec.path.name}' ({total} frames)")
    if stop <= start:
        raise SfiError(f"{spec.where}: the shot is empty: 'out' (frame {stop}) must come after 'in' (frame {start})")
    return Shot(spec, source, start, stop, transition_frames=length)


def transition_frames(spec: TransitionSpec, rate: Fraction) -> int:
    frames = spec.length.to_frames(rate)
    if frames < 1:
        raise SfiError(f"{spec.where}: zero-length transition: {spec.length.text} is {frames} frames at "
                       f"{format_rate(rate)} fps; make it at least 1 frame")
    return frames


def take_replace_overlaps(shots: list[Shot]) -> list[Shot]:
    """Each replace transition takes half its frames from the end of the shot before it and the rest from
    the start of the shot after it; at least one frame of every shot must remain."""
    shots = list(shots)
    for index in range(len(shots) - 1):
        shot = shots[index]
        transition = shot.spec.transition
        if transition is None or transition.mode != "replace":
            continue
        half = shot.transition_frames // 2
        shots[index] = replace(shot, tail_taken=half)
        shots[index + 1] = replace(shots[index + 1], head_taken=shot.transition_frames - half)
        for taker in shots[index:index + 2]:
            if taker.spec.slowmo > 1:
                raise SfiError(f"{transition.where}: a replace transition cannot overlap slow-motion shot "
                               f"({taker.spec.where}); use mode = \"insert\"")
    for number, shot in enumerate(shots, start=1):
        if shot.head_taken + shot.tail_taken >= shot.frames:
            raise SfiError(f"{shot.spec.where}: transition longer than the shot it replaces into: shot {number} has "
                           f"{shot.frames} frames and its replace transitions take {shot.head_taken + shot.tail_taken}; "
                           f"at least 1 frame of the shot must remain")
    return shots


class EngineNames(dict):
    """Engine names as recipes and the config give them ("auto", ...) resolved to the engine that runs,
    each once, on first use (so a timeline without transitions asks no engine anything)."""

    def __init__(self, default: str, settings: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.default, self.settings = default, settings

    def __missing__(self, wanted: str) -> str:
        from engines import resolve_name

        self[wanted] = name = resolve_name(wanted, self.settings)
        return name

    def of(self, spec: TransitionSpec | None) -> str:
        return self[(spec.engine if spec else None) or self.default]

    def identities(self) -> dict[str, dict[str, Any]]:
        """Each engine that runs, by name: what shapes its frames besides the inputs (``Engine.identity``)."""
        from engines import engine_class

        return {name: engine_class(name).identity(self.settings) for name in sorted(set(self.values()))}


class _Timeline:
    """Segments and gaps appended in output order, with the output frame reached so far."""

    def __init__(self, engines: EngineNames) -> None:
        self.engines = engines
        self.segments: list[Segment] = []
        self.gaps: list[Gap] = []
        self.position = 0

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.position += segment.frames

    def add_gap(self, count: int, spec: TransitionSpec | None, mode: str, before: tuple[str, int],
                after: tuple[str, int], label: str, around: tuple[Shot, Shot] | None = None) -> None:
        """A gap; ``around``: the shots a transition joins, whose frames go with it to an engine that keeps them
        playing (``Engine.uses_shots``)."""
        from engines import engine_class

        engine = self.engines.of(spec)
        shots = shot_ranges(*around, before, after) if around and engine_class(engine).uses_shots else None
        gap = Gap(len(self.gaps), count, engine, spec.prompt if spec else "",
                  spec.negative_prompt if spec else "", spec.seed if spec else 0, mode, before, after, self.position,
                  label, shots=shots)
        self.gaps.append(gap)
        self.add(Generated(gap.index, count))


def lay_out(shots: list[Shot], rate: Fraction, engines: EngineNames) -> tuple[tuple[Segment, ...], tuple[Gap, ...]]:
    """The picture in output order: each shot's footage (frame by frame with slow-motion gaps between, for
    ``slowmo``) or held still, then the gap of its transition into the next shot."""
    timeline = _Timeline(engines)
    for index, shot in enumerate(shots):
        first, last = shot.shown
        key = shot.source.key
        if shot.source.kind == "image":
            timeline.add(Still(key, last - first))
        elif shot.spec.slowmo > 1:
            for frame in range(first, last):
                timeline.add(Footage(key, frame, frame + 1))
                if frame + 1 < last:
                    timeline.add_gap(shot.spec.slowmo - 1, None, "slowmo", (key, frame), (key, frame + 1),
                                     f"slow motion x{shot.spec.slowmo}, shot {index + 1}, frames {frame}-{frame + 1}")
        else:
            timeline.add(Footage(key, first, last))
        if shot.spec.transition:
            following = shots[index + 1]
            before = (key, last - 1 if shot.source.kind == "video" else 0)
            after = (following.source.key, following.shown[0] if following.source.kind == "video" else 0)
            timeline.add_gap(shot.transition_frames, shot.spec.transition, shot.spec.transition.mode, before, after,
                             f"shot {index + 1} -> {index + 2} at {format_timecode(timeline.position, rate)}",
                             around=(shot, following))
    return tuple(timeline.segments), tuple(timeline.gaps)


def shot_ranges(outgoing: Shot, incoming: Shot, before: tuple[str, int],
                after: tuple[str, int]) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
    """The real frames of both shots a transition hands its engine (``Gap.shots``): the outgoing shot's from the
    one before ``before`` to its end, the incoming one's from its start to the one after ``after`` (the frames
    a replace transition takes, and each shot's motion into the cut); an image is its one frame."""
    def frames(shot: Shot, first: int, last: int) -> tuple[str, int, int]:
        return (shot.source.key, 0, 0) if shot.source.kind == "image" else (shot.source.key, first, last)

    return (frames(outgoing, max(outgoing.start, before[1] - 1), outgoing.stop - 1),
            frames(incoming, incoming.start, min(incoming.stop - 1, after[1] + 1)))
