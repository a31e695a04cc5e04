"""NLE timelines as OpenTimelineIO models: a rendered plan becomes one, and one becomes a recipe.

Only the model lives here (OpenTimelineIO's own split: algorithms apart from adapters); files are
read and written in ``timeline.nle_files`` through OTIO's adapter plugins, chosen by extension.

Out: the picture track of a plan as an editor would cut it: each stretch of footage a clip of its
source file (source timecode), each generated transition a clip of its own media file (rendered
beside the timeline, with handles), a slow-motion stretch a clip of sfi's output, and on each
transition clip a marker naming engine, prompt, seed and cache key. The timeline starts at the
primary source's timecode, as the output does.

In: the first video track of a cut list. Each clip becomes a shot of its media file; each dissolve
becomes a ``replace`` transition of the same length over exactly the frames the dissolve covered,
its prompt taken from a marker inside the dissolve (its comment, else its name) or from a
``PROMPT:`` comment of the incoming event, so the rest of the pipeline is a recipe's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sfi_cli.errors import SfiError
from sfi_cli.media.probe import STANDARD_RATES
from sfi_cli.timeline.model import Footage, Generated, Plan, Still
from sfi_cli.timeline.recipe import OUTPUT_KEYS, OutputSpec, Recipe, ShotSpec, TransitionSpec
from sfi_cli.timeline.timecode import Position

if TYPE_CHECKING:
    from sfi_cli.media.probe import MediaInfo

INSTALL_HINT = "bash scripts/install.sh nle (or pip install 'sfi[nle]')"
PROMPT_TAG = "PROMPT:"


def otio():
    """The ``opentimelineio`` module, or one line saying what to install."""
    try:
        import opentimelineio
    except ImportError:
        raise SfiError(f"NLE timelines (.otio, .xml, .edl) need OpenTimelineIO and its FCP XML and CMX 3600 "
                       f"adapters: {INSTALL_HINT}") from None
    return opentimelineio


def exact_rate(rate: float) -> Fraction:
    """An OTIO rate (a float) as the exact fraction it stands for: 23.976... is 24000/1001."""
    for standard in STANDARD_RATES:
        if abs(float(standard) - rate) < 1e-6 * rate:
            return standard
    return Fraction(rate).limit_denominator(1001)


def _time(frames: int | Fraction, rate: Fraction):
    return otio().opentime.RationalTime(float(frames), float(rate))


def _range(start: int | Fraction, frames: int, rate: Fraction):
    return otio().opentime.TimeRange(_time(start, rate), _time(frames, rate))


def timecode_frames(timecode: str | None, rate: Fraction) -> int:
    """Frames of a start timecode (drop-frame with ';') at ``rate``; 0 for none."""
    if not timecode:
        return 0
    return round(otio().opentime.from_timecode(timecode, float(rate)).value)


def timecode_name(frame: int, rate: Fraction) -> str:
    """A timecode as a file name takes it: ``01-00-04-12``."""
    text = otio().opentime.to_timecode(_time(frame, rate), float(rate))
    return text.replace(":", "-").replace(";", "-")


# ---------------------------------------------------------------------------------------------- out


@dataclass(frozen=True)
class TransitionMedia:
    """A generated transition's own media file: ``before`` handle frames, the gap, ``after`` handle frames."""

    gap: int
    path: Path
    before: int
    after: int
    frames: int
    sequence: bool = False  # a folder of PNG frames (frame_00001.png ...), not a movie file

    @property
    def name(self) -> str:
        return self.path.name if self.sequence else self.path.stem


def transition_gaps(plan: Plan) -> list[int]:
    """The gaps an editor sees as transitions (slow-motion gaps are part of their shot)."""
    return [gap.index for gap in plan.gaps if gap.mode != "slowmo"]


def transition_names(plan: Plan) -> dict[int, str]:
    """Each transition's media name: its incoming source's name and timecode at the cut (``clip_10-00-04-12``)."""
    names: dict[int, str] = {}
    for index in transition_gaps(plan):
        key, frame = plan.gaps[index].after
        source = plan.sources[key]
        start = timecode_frames(source.info.timecode, plan.rate) if source.info else 0
        base = f"{source.path.stem}_{timecode_name(start + frame, plan.rate)}"
        name, number = base, 1
        while name in names.values():
            number += 1
            name = f"{base}-{number}"
        names[index] = name
    return names


def handle_segments(plan: Plan, gap: int, handles: int) -> tuple[tuple, int, int]:
    """The segments of a transition's media: up to ``handles`` frames of the picture either side of the gap
    (the footage or still next to it) around the gap itself; with the handles' lengths."""
    position = next(i for i, s in enumerate(plan.segments) if isinstance(s, Generated) and s.gap == gap)
    parts: list = [plan.segments[position]]
    sides = [0, 0]
    for side, neighbour in ((0, position - 1), (1, position + 1)):
        if handles <= 0 or not 0 <= neighbour < len(plan.segments):
            continue
        segment = plan.segments[neighbour]
        if isinstance(segment, Footage):
            take = min(handles, segment.frames)
            segment = (Footage(segment.source, segment.stop - take, segment.stop) if side == 0
                       else Footage(segment.source, segment.start, segment.start + take))
        elif isinstance(segment, Still):
            take = min(handles, segment.frames)
            segment = Still(segment.source, take)
        else:
            continue
        sides[side] = take
        parts.insert(0, segment) if side == 0 else parts.append(segment)
    return tuple(parts), sides[0], sides[1]


def marker_text(record: dict[str, Any]) -> str:
    """One line for a transition's marker (EDLs carry no more): engine, seed, cache key, prompt."""
    prompt = f", prompt: {record['prompt']}" if record.get("prompt") else ""
    return f"sfi {record['engine']}, seed {record['seed']}, key {record.get('key')}{prompt}"


def build_timeline(plan: Plan, records: Sequence[dict[str, Any]], media: dict[int, TransitionMedia], name: str, *,
                   image_sequences: bool = True):
    """The OTIO timeline of a rendered ``plan``: ``records`` are the manifest's gap records, ``media`` each
    transition's own file (by gap index); a PNG clip is an image sequence, or with ``image_sequences`` off
    its first frame."""
    lib = otio()
    schema = lib.schema
    rate = plan.rate
    timeline = schema.Timeline(name=name)
    start = timecode_frames(plan.primary.info.timecode if plan.primary else None, rate)
    timeline.global_start_time = _time(start, rate)
    track = schema.Track(name="V1", kind=schema.TrackKind.Video)
    timeline.tracks.append(track)
    output_reference = schema.ExternalReference(target_url=_url(plan.output),
                                                available_range=_range(start, plan.total_frames, rate))
    slow = _slow_motion_segments(plan)
    position = 0
    run_start = None  # output frame where a run of slow-motion segments began
    for index, segment in enumerate(plan.segments):
        if index in slow:
            run_start = position if run_start is None else run_start
            position += segment.frames
            if index + 1 not in slow:
                track.append(schema.Clip(name=f"{plan.output.stem} slow motion", media_reference=output_reference.clone(),
                                         source_range=_range(start + run_start, position - run_start, rate)))
                run_start = None
            continue
        position += segment.frames
        if isinstance(segment, Generated):
            track.append(_transition_clip(media[segment.gap], records[segment.gap], rate, image_sequences))
        elif isinstance(segment, Footage):
            source = plan.sources[segment.source]
            first = timecode_frames(source.info.timecode, rate)
            length = round(source.info.duration * rate)
            reference = schema.ExternalReference(target_url=_url(source.path), available_range=_range(first, length, rate))
            track.append(schema.Clip(name=source.path.name, media_reference=reference,
                                     source_range=_range(first + segment.start, segment.frames, rate)))
        else:
            source = plan.sources[segment.source]
            reference = schema.ExternalReference(target_url=_url(source.path),
                                                 available_range=_range(0, segment.frames, rate))
            track.append(schema.Clip(name=source.path.name, media_reference=reference,
                                     source_range=_range(0, segment.frames, rate)))
    return timeline


def _transition_clip(media: TransitionMedia, record: dict[str, Any], rate: Fraction, image_sequences: bool):
    schema = otio().schema
    available = _range(0, media.frames, rate)
    if media.sequence and image_sequences:
        reference = schema.ImageSequenceReference(
            target_url_base=_url(media.path) + "/", name_prefix="frame_", name_suffix=".png", start_frame=1,
            frame_step=1, rate=float(rate), frame_zero_padding=5, available_range=available)
    else:
        first = media.path / "frame_00001.png" if media.sequence else media.path
        reference = schema.ExternalReference(target_url=_url(first), available_range=available)
    # Its own reel in an EDL (one cut from the file name would be the same for every transition of a source).
    clip = schema.Clip(name=media.name, media_reference=reference,
                       source_range=_range(media.before, media.frames - media.before - media.after, rate),
                       metadata={"cmx_3600": {"reel": f"SFI{media.gap + 1:03d}"}})
    text = marker_text(record)
    facts = {key: record.get(key) for key in ("engine", "prompt", "negative_prompt", "seed", "key", "mode", "label")}
    # The comment is FCP XML's marker field (Premiere and Resolve show it); EDLs keep the name alone.
    clip.markers.append(schema.Marker(name=text, marked_range=_range(media.before, 0, rate),
                                      color=schema.MarkerColor.GREEN,
                                      metadata={"sfi": facts, "fcp_xml": {"comment": text}}))
    return clip


def _slow_motion_segments(plan: Plan) -> set[int]:
    """Indices of the segments of slow-motion shots: their gaps and the single frames between them."""
    slow = {i for i, s in enumerate(plan.segments) if isinstance(s, Generated) and plan.gaps[s.gap].mode == "slowmo"}
    return slow | {i + step for i in slow for step in (-1, 1) if isinstance(plan.segments[i + step], Footage)}


def _url(path: Path) -> str:
    return Path(os.path.abspath(path)).as_uri()


# ----------------------------------------------------------------------------------------------- in


def first_video_track(timeline, where: str):
    tracks = [track for track in timeline.video_tracks() if track.enabled and len(track)]
    if not tracks:
        raise SfiError(f"{where}: the timeline has no video track with clips; export the cut with its picture track")
    return tracks[0], len(tracks) - 1


def media_path(clip, where: str) -> Path | None:
    """The file a clip's media reference names (a path or file:// URL), None if it names none."""
    reference = clip.media_reference
    url = getattr(reference, "target_url", None) if reference is not None else None
    if not url:
        return None
    if url.startswith("file:"):
        url = otio().url_utils.filepath_from_url(url)
    elif "://" in url:
        raise SfiError(f"{where}: clip '{clip.name}' names media '{url}', which is not a local file; "
                       f"pass --source FILE")
    return Path(url)


def recipe_from_timeline(timeline, path: Path, media_for, *, probe_media, output: Path | None) -> tuple[Recipe, list[str]]:
    """The recipe a cut list stands for, and warnings about what it leaves out.

    ``media_for(clip, where)`` gives the file a clip plays (its own reference, or the ``--source`` given);
    ``probe_media(path)`` its ``MediaInfo`` (file frame 0 is at its start timecode)."""
    lib = otio()
    schema = lib.schema
    track, others = first_video_track(timeline, str(path))
    rate = exact_rate(track.duration().rate if track.duration().rate else timeline.duration().rate)
    warnings = [f"{path.name}: {others} more video track{'s' * (others != 1)} ignored: sfi renders the first "
                f"(V1)"] if others else []
    items = list(track)
    if any(isinstance(item, schema.Transition) for item in items[:1] + items[-1:]):
        raise SfiError(f"{path}: a dissolve at the start or end of the track is a fade from or to black, which sfi "
                       f"does not make; remove it")
    shots: list[dict[str, Any]] = []
    pending: Any = None  # a dissolve waiting for the clip after it
    for number, item in enumerate(items, start=1):
        where = f"{path}: item {number} ('{item.name}')"
        if isinstance(item, schema.Transition):
            if pending is not None or not shots:
                raise SfiError(f"{where}: two transitions in a row; sfi needs a clip between them")
            pending = (item, number)
            continue
        if isinstance(item, schema.Gap):
            raise SfiError(f"{where}: the track has a gap (black) of {item.duration().to_frames()} frames at "
                           f"{_record(track, item)}; close it or fill it with a clip, then export again")
        if not isinstance(item, schema.Clip):
            raise SfiError(f"{where}: a nested sequence or other composition is not supported; flatten it in the NLE")
        if item.effects:
            raise SfiError(f"{where}: clip '{item.name}' has a speed change or effect, which sfi cannot read from a "
                           f"cut list; render it in the NLE or remove the effect")
        file = media_for(item, where)
        info = probe_media(file)
        first = timecode_frames(info.timecode, info.rate)
        reference = item.media_reference
        available = getattr(reference, "available_range", None) if reference is not None else None
        # The media's start as the cut list gives it, unless the clip lies outside that (a reference made
        # without the file's timecode): then the file's own start timecode.
        inside = available is not None and available.contains(item.source_range.start_time)
        media_start = available.start_time if inside else _time(first, info.rate)
        begin = Fraction(item.source_range.start_time.to_seconds()) - Fraction(media_start.to_seconds())
        begin = Fraction(round(begin * info.rate), info.rate)
        if begin < 0:
            raise SfiError(f"{where}: clip '{item.name}' starts at {item.source_range.start_time.to_timecode()}, "
                           f"before its media '{file.name}' begins (timecode {info.timecode or '00:00:00:00'}); "
                           f"export the cut list from media with the same timecode")
        shot = {"path": file, "info": info, "start": begin,
                "frames": round(Fraction(item.source_range.duration.to_seconds()) * rate), "where": where,
                "transition": None, "clip": item}
        if pending is not None:
            transition, at = pending
            shots[-1]["transition"] = _dissolve(transition, track, shots[-1]["clip"], item, rate,
                                                f"{path}: item {at} ('{transition.name}')")
            pending = None
        shots.append(shot)
    specs = [_shot_spec(shot, rate) for shot in _move_cuts(shots, rate)]
    return Recipe(path, tuple(specs), OutputSpec(output, rate, None, OUTPUT_KEYS["fit"].default, None, None, None,
                                                 OUTPUT_KEYS["audio"].default)), warnings


def _record(track, item) -> str:
    return track.range_of_child(item).start_time.to_timecode()


@dataclass(frozen=True)
class _Dissolve:
    before: int  # frames of it before the cut
    after: int
    prompt: str
    where: str


def _dissolve(transition, track, outgoing, incoming, rate: Fraction, where: str) -> _Dissolve:
    before = round(Fraction(transition.in_offset.to_seconds()) * rate)
    after = round(Fraction(transition.out_offset.to_seconds()) * rate)
    if before + after < 1:
        raise SfiError(f"{where}: a dissolve of no length; remove it or give it a length")
    return _Dissolve(before, after, _prompt(transition, track, outgoing, incoming), where)


def _prompt(transition, track, outgoing, incoming) -> str:
    """The text a cut list gives a dissolve: a marker inside it (its comment, else its name), else a
    ``PROMPT:`` comment of the incoming clip (EDL comment lines, FCP XML clip comments). A clip's marker
    is taken in its media's time (OTIO, FCP XML) or in record time (an EDL's LOC), whichever falls inside."""
    cut = track.range_of_child(incoming).start_time
    first, last = cut - transition.in_offset, cut + transition.out_offset
    record_start = -track.source_range.start_time if track.source_range is not None else None
    timeline_level = [track, *([track.parent()] if track.parent() is not None else [])]  # in track time
    for owner in (incoming, outgoing, *timeline_level):
        for marker in owner.markers:
            at = marker.marked_range.start_time
            places = [at] if owner in timeline_level else [owner.transformed_time(at, track)]
            if owner not in timeline_level and record_start is not None:
                places.append(at - record_start)
            if any(first <= place < last for place in places):
                comment = str(marker.metadata.get("fcp_xml", {}).get("comment") or "").strip()
                if comment or marker.name:
                    return comment or marker.name
    xml_comments = incoming.metadata.get("fcp_xml", {}).get("comments")
    comments = [*incoming.metadata.get("cmx_3600", {}).get("comments", []),
                *(xml_comments.values() if hasattr(xml_comments, "values") else [])]
    for comment in comments:
        text = str(comment or "").strip()
        if text.upper().startswith(PROMPT_TAG):
            return text[len(PROMPT_TAG):].strip()
    return ""


def _move_cuts(shots: list[dict[str, Any]], rate: Fraction) -> list[dict[str, Any]]:
    """Move each dissolve's cut so that sfi's replace transition (half before the cut, the rest after) covers
    the very frames the dissolve covered: the same real frames either side of it, the same length."""
    for outgoing, incoming in zip(shots, shots[1:]):
        dissolve = outgoing["transition"]
        if dissolve is None:
            continue
        length = dissolve.before + dissolve.after
        shift = length // 2 - dissolve.before  # frames the cut moves later
        outgoing["frames"] += shift
        incoming["frames"] -= shift
        incoming["start"] += Fraction(shift) / rate
    return shots


def _shot_spec(shot: dict[str, Any], rate: Fraction) -> ShotSpec:
    info: MediaInfo = shot["info"]
    start = round(shot["start"] * info.rate)
    stop = start + round(Fraction(shot["frames"]) / rate * info.rate)
    dissolve: _Dissolve | None = shot["transition"]
    transition = None
    if dissolve is not None:
        length = dissolve.before + dissolve.after
        transition = TransitionSpec(Position(str(length), frames=length), dissolve.prompt, "", None, 0, "replace",
                                    where=dissolve.where, audio="crossfade")
    return ShotSpec("video", shot["path"], Position(str(start), frames=start), Position(str(stop), frames=stop), None, 1,
                    transition, where=shot["where"])
