"""What follows the picture from its primary source besides sound: subtitles, attachments (fonts) and
chapters, moved later by the transitions inserted before them.

Subtitles and chapters follow when the timeline is its one video start to end in order (as ``sfi
fill`` makes it); attachments always follow into .mkv. Whatever the output container cannot hold
as it is, is said in a warning.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from sfi_cli.media.probe import Chapter
from sfi_cli.timeline.model import Shot, Source, Streams

TEXT_SUBTITLES = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}  # can become mov_text
STYLED_SUBTITLES = {"ass", "ssa"}  # their styling is lost when they become mov_text


def subtitle_codec(suffix: str, codec: str) -> str | None:
    """What a subtitle track of ``codec`` becomes in a ``suffix`` file: "copy", the codec it is converted to,
    or None when the container cannot carry it (picture subtitles in .mp4/.mov)."""
    if suffix == ".mkv":
        return "srt" if codec == "mov_text" else "copy"  # Matroska takes every kind but mov_text
    if codec not in TEXT_SUBTITLES:
        return None
    return "copy" if codec == "mov_text" else "mov_text"


def following_streams(primary: Source | None, shots: list[Shot], rate: Fraction, suffix: str,
                      one_source: bool) -> Streams:
    """The subtitles, attachments and chapters of ``primary`` that the output keeps, and why others are left out."""
    if primary is None:
        return Streams()
    info = primary.info
    name = info.path.name
    warnings: list[str] = []
    attachments = tuple(info.attachments) if suffix == ".mkv" else ()
    if info.attachments and not attachments:
        warnings.append(f"the {len(info.attachments)} attachment(s) of '{name}' "
                        f"({', '.join(a.filename for a in info.attachments)}) are left out: {suffix} cannot "
                        f"carry attachments; write .mkv to keep them")
    if not info.subtitles and not info.chapters:
        return Streams(attachments=attachments, warnings=tuple(warnings))
    whole = (one_source and all(s.spec.slowmo == 1 for s in shots) and shots[0].start == 0
             and shots[-1].stop == info.frame_count and all(a.stop == b.start for a, b in zip(shots, shots[1:])))
    if not whole:
        kept = " and ".join(what for what, has in (("subtitles", info.subtitles), ("chapters", info.chapters)) if has)
        warnings.append(f"{kept} of '{name}' are left out: they are kept only when the timeline "
                        f"plays that one video start to end in order")
        return Streams(attachments=attachments, warnings=tuple(warnings))
    shifts = inserted_shifts(shots, rate)
    for subtitle in info.subtitles:
        codec = subtitle_codec(suffix, subtitle.codec)
        if codec is None:
            warnings.append(f"subtitle track {subtitle.index} of '{name}' ({subtitle.codec}) is a picture format "
                            f"that {suffix} cannot carry; left out (write .mkv to keep it)")
        elif subtitle.codec in STYLED_SUBTITLES and codec != "copy":
            warnings.append(f"subtitle track {subtitle.index} of '{name}' ({subtitle.codec}) becomes {codec} in "
                            f"{suffix}, which loses its styling (fonts, colours, positions); write .mkv to keep it")
    return Streams(subtitles=tuple(s for s in info.subtitles if subtitle_codec(suffix, s.codec)), shifts=shifts,
                   attachments=attachments, chapters=tuple(retimed(c, shifts) for c in info.chapters),
                   warnings=tuple(warnings))


def inserted_shifts(shots: list[Shot], rate: Fraction) -> tuple[tuple[Fraction, Fraction], ...]:
    """(source time, seconds inserted there) for each inserted transition of a timeline that plays one video
    in order."""
    return tuple((Fraction(shot.stop) / rate, Fraction(shot.transition_frames) / rate) for shot in shots if shot.inserts)


def inserted_before(shifts: tuple[tuple[Fraction, Fraction], ...], time: Fraction) -> Fraction:
    """Seconds of inserted transitions before source ``time`` (one at exactly ``time`` counts: what starts at
    a cut starts after its transition)."""
    return sum((by for at, by in shifts if at <= time), Fraction(0))


def retimed(chapter: Chapter, shifts: tuple[tuple[Fraction, Fraction], ...]) -> Chapter:
    """``chapter`` moved past the transitions inserted before its start and before its end."""
    return replace(chapter, start=chapter.start + inserted_before(shifts, chapter.start),
                   end=chapter.end + inserted_before(shifts, chapter.end))
