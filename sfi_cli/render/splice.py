"""The final ffmpeg run: encode the timeline's frames and lay the source's sound, subtitles
and metadata back around them.

Pass 2 of a render: I/O only. Footage is decoded straight to the output's pixel format
(and moved decoder to encoder without passing through Python), transitions are decoded
from the work folder into it with the source's matrix, so untouched footage never takes
a detour through RGB. No engine is built or imported here.

This is the only module that imports ffmpeg-python (unmaintained since 2019: keep it
here). Raw frames arrive on stdin at the output rate; audio tracks are rebuilt from
sample-exact pieces of the sources, joined end to end or crossfaded (or copied untouched
when the timeline plays a source's sound start to end); subtitles are copied, retimed
past inserted transitions, and so are chapters; attachments are copied; colour tags,
rotation, start timecode and global metadata follow the primary source. Every source is
timed from its video's first frame, so each stream keeps its offset from the picture.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sfi_cli.errors import SfiError
from sfi_cli.media import formats
from sfi_cli.media.ffmpeg import VideoWriter, ffmpeg_path
from sfi_cli.media.publish import Publication
from sfi_cli.media.targets import ContactSheet
from sfi_cli.render.footage import Readers
from sfi_cli.render.workdir import GapCache
from sfi_cli.timeline.model import AudioPiece, AudioTrack, Footage, Generated, Plan, Still
from sfi_cli.timeline.subtitles import subtitle_codec

if TYPE_CHECKING:
    from sfi_cli.render import RenderOptions

RELAY_CHUNK = 48  # footage frames passed on between progress updates

FADE_SECONDS = 0.01  # sound fades this fast into and out of inserted silence, so cuts do not click


def video_options(plan: Plan) -> dict[str, object]:
    """Encoder options for the plan's codec, quality and pixel format."""
    info = plan.primary.info if plan.primary else None
    return formats.encoder_options(plan.codec, plan.pix_fmt, plan.quality, plan.preset, suffix=plan.output.suffix.lower(),
                                   hdr=info.hdr if info else None, interlaced=bool(info and info.field_order))


def _tagged(stream, plan: Plan):
    """Frames tagged with the primary source's colour description (range always: it is known), pixel
    aspect and field order."""
    info = plan.primary.info if plan.primary else None
    tags = {"range": plan.color_range}
    if info is None:  # stills only: encoded in their size's standard (``Plan.matrix``), tagged with it
        tags.update(color_primaries=plan.matrix, color_trc=plan.matrix, colorspace=plan.matrix)
    else:
        tags.update({k: v for k, v in (("color_primaries", info.color.primaries), ("color_trc", info.color.trc),
                                       ("colorspace", info.color.space)) if v})
        if info.field_order:
            tags["field_mode"] = "tff" if info.field_order in ("tt", "tb") else "bff"
    # setsar's ``max`` (100 by default) would round 208:207 to 1:1: the pixel aspect is kept exactly
    return stream.filter("setparams", **tags).filter("setsar", sar=f"{plan.sar.numerator}/{plan.sar.denominator}",
                                                     max=2**31 - 1)


def _silences(ffmpeg_lib, tracks: list[AudioTrack]) -> dict[tuple[int, str], object]:
    """Per sample rate and layout, one silence source split into as many branches as the tracks have silent
    pieces (ffmpeg-python would merge identical sources, even of different tracks, into one node otherwise)."""
    counts: dict[tuple[int, str], int] = {}
    for track in tracks:
        key = (track.sample_rate, track.layout)
        counts[key] = counts.get(key, 0) + sum(1 for p in track.pieces if p.source is None and p.samples > 0)
    branches = {}
    for (rate, layout), count in counts.items():
        if count:
            silence = ffmpeg_lib.input(f"anullsrc=r={rate}:cl={layout}", f="lavfi")
            split = silence.filter_multi_output("asplit", count) if count > 1 else None
            branches[(rate, layout)] = iter([split.stream(i) for i in range(count)] if split else [silence])
    return branches


def _audio(ffmpeg_lib, track: AudioTrack, inputs: dict, silences: dict[tuple[int, str], object]) -> object:
    """One output audio stream from its pieces: sample-exact trims of sources and silences, joined end to end
    or, where a piece overlaps the one before, by an equal-power crossfade (room tone does not dip)."""
    pieces = [p for p in track.pieces if p.samples > 0]
    branches = silences.get((track.sample_rate, track.layout))
    runs: list[tuple[int, list]] = []  # (crossfade into it, parts joined end to end)
    for index, piece in enumerate(pieces):
        if piece.source is None:
            part = next(branches).filter("atrim", end_sample=piece.samples)
        else:
            part = _source_piece(inputs[piece.source][f"a:{piece.track}"], piece, track)
            fade = min(round(FADE_SECONDS * track.sample_rate), piece.samples // 2)
            if fade and index > 0 and pieces[index - 1].source is None and not piece.overlap:
                part = part.filter("afade", t="in", start_sample=0, nb_samples=fade)
            if fade and index + 1 < len(pieces) and pieces[index + 1].source is None and not pieces[index + 1].overlap:
                part = part.filter("afade", t="out", start_sample=piece.samples - fade, nb_samples=fade)
        if piece.overlap or not runs:
            runs.append((piece.overlap, [part]))
        else:
            runs[-1][1].append(part)
    joined = None
    for overlap, parts in runs:
        run = parts[0] if len(parts) == 1 else ffmpeg_lib.concat(*parts, v=0, a=1)
        joined = run if joined is None else ffmpeg_lib.filter([joined, run], "acrossfade", ns=overlap,
                                                              c1="qsin", c2="qsin")
    return joined


def _source_piece(stream, piece: AudioPiece, track: AudioTrack):
    """``piece.samples`` samples of a source track from ``piece.start_sample`` (at ``piece.tempo``, pitch kept);
    what lies before the track's first sample or after its last is silence."""
    early = max(0, -piece.start_sample)
    read = round(piece.samples * piece.tempo)
    part = (stream.filter("atrim", start_sample=piece.start_sample + early, end_sample=piece.start_sample + read)
            .filter("asetpts", "PTS-STARTPTS")
            .filter("aformat", sample_rates=track.sample_rate, channel_layouts=track.layout))
    if early:
        part = part.filter("adelay", delays=f"{early}S", all=1)
    if piece.tempo == 1:
        return part.filter("apad", whole_len=piece.samples)
    for factor in atempo_steps(piece.tempo):
        part = part.filter("atempo", f"{factor:.6f}")
    return part.filter("apad", whole_len=piece.samples).filter("atrim", end_sample=piece.samples)


def atempo_steps(tempo: Fraction) -> list[float]:
    """``tempo`` as a chain of ``atempo`` factors, each within 0.5-2 (what every ffmpeg's atempo takes, and
    where it sounds best)."""
    steps, left = [], Fraction(tempo)
    while left < Fraction(1, 2) or left > 2:
        step = Fraction(1, 2) if left < 1 else Fraction(2)
        steps.append(float(step))
        left /= step
    return [*steps, float(left)]


def subtitle_retiming(shifts: list[tuple[Fraction, Fraction]], scale: Fraction = Fraction(1)) -> str | None:
    """A ``setts`` filter that stretches subtitle times and durations by ``scale`` (slow motion) and moves each
    subtitle later by the transitions inserted before it (no commas: ffmpeg splits bitstream filter lists on
    them)."""
    if not shifts and scale == 1:
        return None
    terms = "".join(f"+(1+sgn(TS*TB-{float(at) - 0.0005:.6f}))/2*{float(by):.6f}/TB" for at, by in shifts)
    if scale == 1:
        return f"setts=ts=TS{terms}"
    return f"setts=ts=TS*{float(scale):.9f}{terms}:duration=DURATION*{float(scale):.9f}"


def splice_command(plan: Plan, partial: Path, ffmpeg: str) -> list[str]:
    """The ffmpeg command line: raw frames on stdin, sources as further inputs, ``partial`` out."""
    import ffmpeg as ffmpeg_lib

    width, height = plan.size
    rate = f"{plan.rate.numerator}/{plan.rate.denominator}"
    raw = {"f": "rawvideo", "pix_fmt": plan.pix_fmt, "s": f"{width}x{height}", "framerate": rate}
    if plan.keep_rotation:
        raw.update({"display_rotation:v:0": plan.primary.info.rotation, "noautorotate": None})
    streams = [_tagged(ffmpeg_lib.input("pipe:", **raw).video, plan)]
    options: dict[str, object] = {**video_options(plan), "r": rate}
    if plan.primary and plan.primary.info.field_order:
        options["field_order"] = plan.primary.info.field_order
    # Each source's streams are timed from its video's first frame (ffmpeg counts from the file's start), so
    # copied audio and subtitles keep their relation to the picture.
    inputs = {key: ffmpeg_lib.input(ffmpeg_path(source.path), **({"itsoffset": f"{-float(source.info.start_offset):.6f}"}
                                                         if source.info.start_offset else {}))
              for key, source in plan.sources.items() if source.info}
    silences = _silences(ffmpeg_lib, [track for track in plan.audio if not track.copy_from])
    for index, track in enumerate(plan.audio):
        if track.copy_from:
            source, number = track.copy_from
            streams.append(inputs[source][f"a:{number}"])
            options[f"c:a:{index}"] = "copy"
        else:
            streams.append(_audio(ffmpeg_lib, track, inputs, silences))
            options[f"c:a:{index}"] = track.codec
            if track.codec == "aac":
                options[f"b:a:{index}"] = "256k"
        if track.language:
            options[f"metadata:s:a:{index}"] = f"language={track.language}"
    retime = subtitle_retiming(plan.subtitle_shifts, plan.subtitle_scale)
    for index, subtitle in enumerate(plan.subtitles):
        streams.append(inputs[plan.primary.key][f"s:{subtitle.index}"])
        options[f"c:s:{index}"] = subtitle_codec(plan.output.suffix.lower(), subtitle.codec)
        if retime:
            options[f"bsf:s:{index}"] = retime
        if subtitle.language:
            options[f"metadata:s:s:{index}"] = f"language={subtitle.language}"
    for index, attachment in enumerate(plan.attachments):
        streams.append(inputs[plan.primary.key][f"t:{attachment.index}"])
        options[f"c:t:{index}"] = "copy"
    if plan.primary and plan.primary.info.timecode:
        options["timecode"] = plan.primary.info.timecode
    args = ffmpeg_lib.output(*streams, ffmpeg_path(partial), **options).get_args()
    positions = [i for i, arg in enumerate(args) if arg == "-i"]
    # Chapters only as the plan has them (ffmpeg would copy a source's own, unmoved, by default), read from
    # an ffmetadata text handed over inline.
    if plan.chapters:
        args[positions[-1] + 2:positions[-1] + 2] = ["-f", "ffmetadata", "-i", _chapters_input(plan)]
        args[-1:-1] = ["-map_chapters", str(len(positions))]
    else:
        args[-1:-1] = ["-map_chapters", "-1"]
    if plan.primary:
        # Global metadata (creation time, ...) from the primary source, found by its input number
        # (added as an input of its own when none of its streams is used).
        primary = ffmpeg_path(plan.primary.path)
        positions = [i for i, arg in enumerate(args) if arg == "-i"]
        inputs_in_order = [args[i + 1] for i in positions]
        if primary not in inputs_in_order:
            args[positions[-1] + 2:positions[-1] + 2] = ["-i", primary]
            inputs_in_order.append(primary)
        args[-1:-1] = ["-map_metadata", str(inputs_in_order.index(primary))]
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args]


def _chapters_input(plan: Plan) -> str:
    """The plan's chapters as an ffmetadata document in a data: URL (no file to leave behind)."""
    import base64

    def escaped(text: str) -> str:
        return "".join("\\" + c if c in "=;#\\\n" else c for c in text)

    lines = [";FFMETADATA1"]
    for chapter in plan.chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000000", f"START={round(chapter.start * 1_000_000)}",
                  f"END={round(chapter.end * 1_000_000)}"]
        if chapter.title is not None:
            lines.append(f"title={escaped(chapter.title)}")
    text = "\n".join(lines) + "\n"
    return "data:text/plain;base64," + base64.b64encode(text.encode()).decode()


class SpliceWriter(VideoWriter):
    """A ``VideoWriter`` whose ffmpeg also muxes the plan's audio, subtitles and metadata."""

    def __init__(self, plan: Plan, *, ffmpeg: str, results=None) -> None:
        self.plan = plan
        super().__init__(plan.output, plan.size, plan.rate, ffmpeg=ffmpeg, crf=plan.quality, preset=plan.preset,
                         pix_fmt=plan.pix_fmt, results=results)

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        return splice_command(self.plan, self.partial, ffmpeg)


class PngSequenceWriter(VideoWriter):
    """The timeline's frames as a PNG sequence (the plan's codec ``png``: a folder or a %d pattern): ffmpeg turns
    the raw frames into RGB with the plan's matrix and range (16-bit for deep footage) and writes numbered PNGs
    into a hidden folder; closing lays each under its name as ``targets.place_frames`` does (a new folder
    appears whole, listed in its marker; frames of an earlier sfi result are replaced only with --force)."""

    def __init__(self, plan: Plan, *, ffmpeg: str, results: Publication) -> None:
        from sfi_cli.media.targets import sequence_target

        self.plan, self.target = plan, sequence_target(plan.output)
        super().__init__(plan.output, plan.size, plan.rate, ffmpeg=ffmpeg, pix_fmt=plan.pix_fmt, results=results)

    def stage(self) -> Path:
        from sfi_cli.media.publish import temporary_path

        folder = temporary_path(self.path.parent / f"{self.path.name}-frames")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        width, height = self.plan.size
        to_rgb = self.plan.output_to_rgb(ffmpeg)
        png_pix_fmt = "rgb24" if self.plan.rgb_pix_fmt == "rgb24" else "rgb48be"
        return [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", self.pix_fmt,
                "-s", f"{width}x{height}", "-framerate", f"{self.fps.numerator}/{self.fps.denominator}", "-i", "pipe:0",
                "-vf", f"{to_rgb},format={png_pix_fmt}", "-c:v", "png", "-f", "image2", "-start_number", "0",
                ffmpeg_path(self.partial).replace("%", "%%") + "/%09d.png"]  # a '%' of the path is no pattern

    def close(self) -> None:
        from sfi_cli.media.targets import place_frames

        super().close()

        def put(where) -> int:
            for index in range(self.frames_written):
                os.replace(self.partial / f"{index:09d}.png", where(index))
            return self.frames_written

        place_frames(self.target, put, self.results)
        shutil.rmtree(self.partial, ignore_errors=True)

    def abort(self) -> None:
        super().abort()
        shutil.rmtree(self.partial, ignore_errors=True)


def splice_task(plan: Plan) -> tuple[str, int]:
    """The progress task of pass 2: its description and total."""
    return f"splicing {plan.total_frames} frames into {plan.output.name}", plan.total_frames


def splice(plan: Plan, cache: GapCache, keys: list[str], options: RenderOptions, *, sheet_of_stills: bool = False,
           gap_ready: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None) -> int:
    """Stream the whole timeline into the output file, each gap read from the work folder under its key
    in ``keys``; returns the frames written. The contact sheet shows the generated frames (and the
    held images too with ``sheet_of_stills``, as ``sfi interpolate`` shows its ends).

    Alone, every gap must be in the work folder already. While pass 1 still runs, ``gap_ready(key)`` waits
    for each gap as the splice reaches it (or raises to stop), and ``progress`` is the task opened for it."""
    if gap_ready is None:
        missing = [gap for gap in plan.gaps if not cache.has(keys[gap.index])]
        if missing:
            raise SfiError(f"{len(missing)} of {len(plan.gaps)} transitions are not in the work folder '{cache.root}' "
                           f"(first: {missing[0].label}); run the transitions first (the same command with --only transitions)")
    with options.reporter.task(*splice_task(plan)) if progress is None else nullcontext(progress) as progress:
        return _splice(plan, cache, keys, options, sheet_of_stills, gap_ready or (lambda key: None), progress)


class GapSlices:
    """The gaps' frames from the work folder in the output's pixel format, slice by slice: a gap is opened
    (waited for, and added to the contact sheet) at its first slice and read on by the next ones (a
    retimed chunk's slices lie between the real frames it keeps)."""

    def __init__(self, plan: Plan, cache: GapCache, keys: list[str], to_output: dict, gap_ready, sheet) -> None:
        self.plan, self.cache, self.keys, self.to_output, self.gap_ready, self.sheet = (
            plan, cache, keys, to_output, gap_ready, sheet)
        self.gap: int | None = None
        self.frames = iter(())
        self.left = 0  # frames of the open gap not handed out yet

    def take(self, segment: Generated):
        if segment.gap != self.gap:
            if self.left:
                raise SfiError(f"gap {self.gap + 1} was left with {self.left} frames unspliced; this is a bug")
            key = self.keys[segment.gap]
            self.gap_ready(key)
            self.gap, self.left = segment.gap, self.plan.gaps[segment.gap].count
            self.frames = self.cache.frames(key, **self.to_output)
            if self.sheet:
                for frame in self.cache.frames(key):
                    self.sheet.add(frame)
        if segment.frames > self.left:
            raise SfiError(f"gap {segment.gap + 1} has {self.left} frames left, not the {segment.frames} planned; this is a bug")
        for _ in range(segment.frames):
            yield next(self.frames)
        self.left -= segment.frames
        if not self.left:
            next(self.frames, None)  # read to its end: the work folder's frame count is checked there


def _splice(plan: Plan, cache: GapCache, keys: list[str], options: RenderOptions, sheet_of_stills: bool,
            gap_ready: Callable[[str], None], progress: Callable[[int, int], None]) -> int:
    readers = Readers(plan, options.ffmpeg)
    sheet = ContactSheet() if options.sheet else None
    to_output = {"pix_fmt": plan.pix_fmt, "video_filter": plan.rgb_to_output(options.ffmpeg)}
    total = plan.total_frames
    try:
        with Publication() as results:  # the output and its contact sheet, published together
            writer_class = PngSequenceWriter if plan.codec == "png" else SpliceWriter
            with writer_class(plan, ffmpeg=options.ffmpeg, results=results) as writer:
                slices = GapSlices(plan, cache, keys, to_output, gap_ready, sheet)
                for segment in plan.segments:
                    if isinstance(segment, Generated):
                        for frame in slices.take(segment):
                            writer.write(frame)
                        progress(writer.frames_written, total)
                        continue
                    if sheet and sheet_of_stills and isinstance(segment, Still):
                        for _ in range(segment.frames):
                            sheet.add(readers[segment.source].rgb)
                    start, stop = (segment.start, segment.stop) if isinstance(segment, Footage) else (0, segment.frames)
                    for chunk in range(start, stop, RELAY_CHUNK):
                        readers[segment.source].relay(chunk, min(chunk + RELAY_CHUNK, stop), writer)
                        progress(writer.frames_written, total)
                if writer.frames_written != total:
                    raise SfiError(f"wrote {writer.frames_written} frames instead of the planned {total}; this is a bug")
                if sheet and sheet.thumbnails:
                    sheet.save(options.sheet, results)
                elif sheet:
                    options.reporter.message("no transitions, so no contact sheet was written")
    finally:
        readers.close()
    return total
