"""The final ffmpeg run: encode the timeline's frames and lay the source's sound, subtitles
and metadata back around them.

Frames arrive already in the output's pixel format (footage decoded straight to it,
generated frames converted with the source's matrix), so untouched footage never
takes a detour through RGB.

This is the only module that imports ffmpeg-python (unmaintained since 2019: keep it
here). Raw frames arrive on stdin at the output rate; audio tracks are rebuilt from
sample-exact pieces of the sources (or copied untouched when the timeline plays a
source's sound start to end); subtitles are copied, retimed past inserted
transitions; colour tags, rotation, start timecode and global metadata follow the
primary source.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from sfi_cli.ffmpeg import VideoWriter, ffmpeg_path
from sfi_cli.plan import AudioTrack, Plan

FADE_SECONDS = 0.01  # sound fades this fast into and out of inserted silence, so cuts do not click


def video_options(plan: Plan) -> dict[str, object]:
    """Encoder options for the plan's codec, quality and pixel format."""
    if plan.codec == "prores":
        profile = 4 if plan.pix_fmt.startswith("yuv444") else plan.quality
        return {"c:v": "prores_ks", "profile:v": profile, "vendor": "apl0", "pix_fmt": plan.pix_fmt}
    options: dict[str, object] = {"crf": plan.quality, "preset": plan.preset, "pix_fmt": plan.pix_fmt}
    if plan.codec == "h265":
        options.update({"c:v": "libx265", "tag:v": "hvc1", "x265-params": "log-level=error"})
    else:
        options["c:v"] = "libx264"
    if plan.output.suffix.lower() == ".mp4":
        options["movflags"] = "+faststart"
    return options


def _tagged(stream, plan: Plan):
    """Frames tagged with the primary source's colour description (range always: it is known)."""
    color = plan.primary.info.color if plan.primary else None
    tags = {"range": plan.color_range}
    if color:
        tags.update({k: v for k, v in (("color_primaries", color.primaries), ("color_trc", color.trc),
                                       ("colorspace", color.space)) if v})
    return stream.filter("setparams", **tags)


def _audio(ffmpeg_lib, track: AudioTrack, inputs: dict) -> object:
    """One output audio stream from its pieces: sample-exact trims of sources and silences, joined."""
    parts = []
    pieces = [p for p in track.pieces if p.samples > 0]
    silences = sum(1 for p in pieces if p.source is None)
    if silences:
        # One silence source split into as many branches as there are silent pieces
        # (ffmpeg-python would merge identical sources into one node otherwise).
        silence = ffmpeg_lib.input(f"anullsrc=r={track.sample_rate}:cl={track.layout}", f="lavfi")
        if silences > 1:
            split = silence.filter_multi_output("asplit", silences)
            branches = iter([split.stream(i) for i in range(silences)])
        else:
            branches = iter([silence])
    for index, piece in enumerate(pieces):
        if piece.source is None:
            parts.append(next(branches).filter("atrim", end_sample=piece.samples))
            continue
        part = (inputs[piece.source][f"a:{piece.track}"]
                .filter("atrim", start_sample=piece.start_sample, end_sample=piece.start_sample + piece.samples)
                .filter("asetpts", "PTS-STARTPTS")
                .filter("aformat", sample_rates=track.sample_rate, channel_layouts=track.layout)
                .filter("apad", whole_len=piece.samples))
        fade = min(round(FADE_SECONDS * track.sample_rate), piece.samples // 2)
        if fade and index > 0 and pieces[index - 1].source is None:
            part = part.filter("afade", t="in", start_sample=0, nb_samples=fade)
        if fade and index + 1 < len(pieces) and pieces[index + 1].source is None:
            part = part.filter("afade", t="out", start_sample=piece.samples - fade, nb_samples=fade)
        parts.append(part)
    return parts[0] if len(parts) == 1 else ffmpeg_lib.concat(*parts, v=0, a=1)


def subtitle_retiming(shifts: list[tuple[Fraction, Fraction]]) -> str | None:
    """A ``setts`` filter moving each subtitle later by the transitions inserted before it (no commas:
    ffmpeg splits bitstream filter lists on them)."""
    if not shifts:
        return None
    terms = "".join(f"+(1+sgn(TS*TB-{float(at) - 0.0005:.6f}))/2*{float(by):.6f}/TB" for at, by in shifts)
    return f"setts=ts=TS{terms}"


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
    inputs = {key: ffmpeg_lib.input(ffmpeg_path(source.path)) for key, source in plan.sources.items() if source.info}
    for index, track in enumerate(plan.audio):
        if track.copy_from:
            source, number = track.copy_from
            streams.append(inputs[source][f"a:{number}"])
            options[f"c:a:{index}"] = "copy"
        else:
            streams.append(_audio(ffmpeg_lib, track, inputs))
            options[f"c:a:{index}"] = track.codec
            if track.codec == "aac":
                options[f"b:a:{index}"] = "256k"
        if track.language:
            options[f"metadata:s:a:{index}"] = f"language={track.language}"
    retime = subtitle_retiming(plan.subtitle_shifts)
    for index, subtitle in enumerate(plan.subtitles):
        streams.append(inputs[plan.primary.key][f"s:{subtitle.index}"])
        options[f"c:s:{index}"] = "copy" if subtitle.codec == "mov_text" else "mov_text"
        if retime:
            options[f"bsf:s:{index}"] = retime
        if subtitle.language:
            options[f"metadata:s:s:{index}"] = f"language={subtitle.language}"
    if plan.primary and plan.primary.info.timecode:
        options["timecode"] = plan.primary.info.timecode
    args = ffmpeg_lib.output(*streams, ffmpeg_path(partial), **options).get_args()
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


class SpliceWriter(VideoWriter):
    """A ``VideoWriter`` whose ffmpeg also muxes the plan's audio, subtitles and metadata."""

    def __init__(self, plan: Plan, *, ffmpeg: str, results=None) -> None:
        self.plan = plan
        super().__init__(plan.output, plan.size, plan.rate, ffmpeg=ffmpeg, crf=plan.quality, preset=plan.preset,
                         pix_fmt=plan.pix_fmt, results=results)

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        return splice_command(self.plan, self.partial, ffmpeg)
