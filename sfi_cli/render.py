"""Running a plan: one pass that streams the timeline and makes each gap as it reaches it.

``splice`` decodes footage range by range and holds stills, straight into the output's
pixel format, through one ffmpeg that also lays in the sound, subtitles and metadata.
At a gap it hands the frame it just wrote and the first frame of what follows (as RGB)
to ``GapMaker``, which keys them and reads the gap from the work folder, or has the
engine make it and stores it there while it goes on into the output. So boundary
frames cost no decoding pass of their own, and a new gap is never decoded back. Nothing is held in memory beyond
a frame or one gap; the output appears under its name only when complete.
``fill`` is detection, then a recipe, then the same render.
"""

from __future__ import annotations

import os
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfi_cli import __version__, formats
from sfi_cli.errors import SfiError
from sfi_cli.output import ContactSheet, OutputTarget, check_sheet, check_target
from sfi_cli.plan import Footage, Gap, Generated, Plan, describe, semfi_expert
from sfi_cli.progress import Reporter
from sfi_cli.publish import Publication, output_lock, refuse_inputs, require_writable_folder
from sfi_cli.timecode import format_rate
from sfi_cli.workdir import GapCache, gap_key, manifest_owner, manifest_path, write_json

if TYPE_CHECKING:
    from typing import Iterator

    import numpy as np

WORK_DIR_NAME = ".sfi-work"
RELAY_CHUNK = 48  # footage frames passed on between progress updates


@dataclass
class RenderOptions:
    """How to run a plan, beyond what the plan itself says."""

    ffmpeg: str
    engine_settings: dict[str, dict[str, Any]]
    reporter: Reporter
    work_dir: Path | None = None  # None: .sfi-work beside the output
    sheet: Path | None = None
    force: bool = False
    dry_run: bool = False
    manifest_extra: dict[str, Any] = field(default_factory=dict)


def work_dir_for(output: Path, configured: Path | None) -> Path:
    return configured if configured is not None else output.parent / WORK_DIR_NAME


def check_outputs(output: Path, inputs: list[Path], options: RenderOptions) -> None:
    """Before any work: no file the run writes may be an input, every folder it writes to must be writable,
    and nothing is overwritten unasked."""
    check_target(OutputTarget(output, "video"), options.force, 1, inputs)
    refuse_inputs([manifest_path(output)], inputs)
    owner = manifest_owner(output)
    if owner is not None:
        raise SfiError(f"'{manifest_path(output)}' is the manifest of another result, '{owner}', which a manifest for "
                       f"'{output}' would replace; choose another output name (or delete '{owner}' first)")
    if options.sheet is not None:
        check_sheet(options.sheet, options.force, inputs, [output, manifest_path(output)])
    work_dir = work_dir_for(output, options.work_dir)
    written = [output, manifest_path(output), *([options.sheet] if options.sheet is not None else [])]
    for file in written:  # a work folder made there would stand where a result must go
        if Path(os.path.realpath(file)) in (Path(os.path.realpath(work_dir)), *Path(os.path.realpath(work_dir)).parents):
            raise SfiError(f"work folder '{work_dir}' would be made at or inside '{file}', which this run writes; "
                           f"choose another --work-dir")
    existing = next(folder for folder in (work_dir, *work_dir.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise SfiError(f"work folder '{work_dir}' lies inside the file '{existing}'; choose another --work-dir")
    require_writable_folder(existing, "the work folder")


def _reader(plan: Plan, key: str, ffmpeg: str):
    """A reader of one source in the output's pixel format and colours."""
    from sfi_cli.sources import StillReader, VideoReader

    source = plan.sources[key]
    if source.info is None:
        return StillReader(source.path, size=plan.size, fit=plan.fit, pix_fmt=plan.pix_fmt, ffmpeg=ffmpeg,
                           rgb_pix_fmt=plan.rgb_pix_fmt, to_output=plan.rgb_to_output(ffmpeg), sar=plan.sar, pad=plan.pad)
    color_filter = None
    primary = plan.primary.info.color if plan.primary else None
    if (source.info.color.space, source.info.color.range) != (primary.space, primary.range):
        color_filter = formats.yuv_to_yuv((source.info.color.space or formats.UNTAGGED_MATRIX, source.info.color_range),
                                          (plan.matrix, plan.color_range), ffmpeg)
    return VideoReader(source.info, size=plan.size, fit=plan.fit, rate=plan.rate, pix_fmt=plan.pix_fmt,
                       keep_rotation=plan.keep_rotation, ffmpeg=ffmpeg, color_filter=color_filter, sar=plan.sar,
                       pad=plan.pad)


class _Readers(dict):
    """One reader per source, opened on first use and all closed together."""

    def __init__(self, plan: Plan, ffmpeg: str) -> None:
        super().__init__()
        self.plan, self.ffmpeg = plan, ffmpeg

    def __missing__(self, key: str):
        self[key] = reader = _reader(self.plan, key, self.ffmpeg)
        return reader

    def close(self) -> None:
        for reader in self.values():
            reader.close()


class GapMaker:
    """Each gap's frames in the output's pixel format: read from the work folder when an earlier run
    stored them under the same key, else made by the gap's engine and stored while they are handed on.

    Engines are loaded up front, so a missing model fails before anything is encoded. Frames
    stream from the engine through the store into the output one at a time, so a gap of any
    length runs in the memory of a few frames.
    ``records`` collects one manifest entry per gap; ``sheet`` (optional) gets every gap's RGB frames.
    """

    def __init__(self, plan: Plan, cache: GapCache, options: RenderOptions, sheet: ContactSheet | None = None) -> None:
        from engines import load_engine

        self.plan, self.cache, self.reporter, self.sheet = plan, cache, options.reporter, sheet
        self.engines = {name: load_engine(name, options.engine_settings) for name in dict.fromkeys(g.engine for g in plan.gaps)}
        self.records: list[dict[str, Any]] = []

    def frames(self, gap: Gap, first: np.ndarray, last: np.ndarray) -> Iterator[np.ndarray]:
        """The gap's frames between RGB ``first`` and ``last``; its record is added once the last has passed."""
        started = time.monotonic()
        engine = self.engines[gap.engine]
        params = {"count": gap.count, "prompt": gap.prompt, "negative_prompt": gap.negative_prompt, "seed": gap.seed}
        key = gap_key(engine.cache_key(), params, first, last)
        title = f"gap {gap.index + 1}/{len(self.plan.gaps)} ({gap.label}, {gap.count} frames, {engine.name})"
        cached = self.cache.has(key)
        to_output = {"pix_fmt": self.plan.pix_fmt, "video_filter": self.plan.rgb_to_output(self.cache.ffmpeg)}
        if cached:
            self.reporter.message(f"{title}: already in the work folder, skipped")
            if self.sheet:
                for frame in self.cache.frames(key):
                    self.sheet.add(frame)
            yield from self.cache.frames(key, **to_output)
        else:
            from sfi_cli.interpolate import counted

            with self.reporter.task(title, gap.count) as progress:
                rgb = counted(engine.generate(first, last, gap.count, prompt=gap.prompt,
                                              negative_prompt=gap.negative_prompt, seed=gap.seed, progress=progress),
                              gap.count, engine.name)
                yield from self.cache.store(key, map(self.sheet.add, rgb) if self.sheet else rgb,
                                            {"engine": engine.cache_key(), **params, "label": gap.label}, **to_output)
        self.records.append({
            "index": gap.index + 1, "label": gap.label, "mode": gap.mode, "engine": engine.name,
            "frames": gap.count, "output_start": gap.output_start, "prompt": gap.prompt,
            "negative_prompt": gap.negative_prompt, "seed": gap.seed, "key": key, "cached": cached,
            "seconds": round(time.monotonic() - started, 3),
            **({"semfi_expert": semfi_expert(gap.count)[1]} if engine.name == "semfi" else {}),
        })


def boundary_frames(gap: Gap, readers: _Readers, plan: Plan, ffmpeg: str) -> tuple[np.ndarray, np.ndarray]:
    """A gap's two boundary frames as the engines' RGB (16-bit for deep footage), from the splice's own
    readers (no extra decoding pass): the frame just written before the gap, and the first frame of what follows it."""
    from sfi_cli.ffmpeg import convert_frames
    from sfi_cli.sources import StillReader

    rgb: dict[int, np.ndarray] = {}
    raw: dict[int, np.ndarray] = {}
    for side, (key, index) in enumerate((gap.before, gap.after)):
        reader = readers[key]
        if isinstance(reader, StillReader):
            rgb[side] = reader.rgb  # the image itself, not its round trip through YUV
        else:
            raw[side] = reader.frame(index)
    if raw:
        converted = convert_frames(raw.values(), plan.size, from_pix_fmt=plan.pix_fmt, pix_fmt=plan.rgb_pix_fmt,
                                   video_filter=plan.output_to_rgb(ffmpeg), ffmpeg=ffmpeg)
        rgb.update(zip(raw, converted))
    return rgb[0], rgb[1]


def splice(plan: Plan, gaps: GapMaker, options: RenderOptions) -> int:
    """Stream the whole timeline into the output file, making each gap as the stream reaches it;
    returns the frames written."""
    from sfi_cli.splice import SpliceWriter

    readers = _Readers(plan, options.ffmpeg)
    total = plan.total_frames
    try:
        with options.reporter.task(f"splicing {total} frames into {plan.output.name}", total) as progress, \
                Publication() as results:  # the output and its contact sheet, published together
            with SpliceWriter(plan, ffmpeg=options.ffmpeg, results=results) as writer:
                for segment in plan.segments:
                    if isinstance(segment, Generated):
                        gap = plan.gaps[segment.gap]
                        # closed at once on any error or signal, so a gap half-stored is removed, not left behind
                        with closing(gaps.frames(gap, *boundary_frames(gap, readers, plan, options.ffmpeg))) as frames:
                            for frame in frames:
                                writer.write(frame)
                        progress(writer.frames_written, total)
                        continue
                    start, stop = (segment.start, segment.stop) if isinstance(segment, Footage) else (0, segment.frames)
                    for chunk in range(start, stop, RELAY_CHUNK):
                        readers[segment.source].relay(chunk, min(chunk + RELAY_CHUNK, stop), writer)
                        progress(writer.frames_written, total)
                if writer.frames_written != total:
                    raise SfiError(f"wrote {writer.frames_written} frames instead of the planned {total}; this is a bug")
                if gaps.sheet and gaps.sheet.thumbnails:
                    gaps.sheet.save(options.sheet, results)
                elif gaps.sheet:
                    options.reporter.message("no transitions, so no contact sheet was written")
    finally:
        readers.close()
    return total


def render_plan(plan: Plan, options: RenderOptions) -> dict[str, Any]:
    """Run ``plan`` (or with ``dry_run`` only describe it) and return the summary ``--json`` prints."""
    with nullcontext() if options.dry_run else output_lock(plan.output):
        check_outputs(plan.output, [*(s.path for s in plan.sources.values()), plan.recipe], options)
        for warning in plan.warnings:
            options.reporter.message(f"warning: {warning}")
        if options.dry_run:
            return {"dry_run": True, "plan": describe(plan), **_plan_summary(plan), **options.manifest_extra}
        return _render(plan, options)


def _render(plan: Plan, options: RenderOptions) -> dict[str, Any]:
    started = time.monotonic()
    work_dir = work_dir_for(plan.output, options.work_dir)
    gaps = GapMaker(plan, GapCache(work_dir, options.ffmpeg), options, ContactSheet() if options.sheet else None)
    written = splice(plan, gaps, options)
    summary = {
        **_plan_summary(plan),
        "frames_written": written,
        "gaps": gaps.records,
        "gaps_cached": sum(g["cached"] for g in gaps.records),
        "work_dir": str(work_dir),
        "sheet": str(options.sheet) if options.sheet else None,
        "manifest": str(manifest_path(plan.output)),
        "seconds": round(time.monotonic() - started, 3),
        **options.manifest_extra,
    }
    write_json(manifest_path(plan.output), {
        "sfi": __version__, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **summary, "sources": [_source_facts(s) for s in plan.sources.values()],
    })
    return summary


def _plan_summary(plan: Plan) -> dict[str, Any]:
    return {
        "output": str(plan.output),
        "recipe": str(plan.recipe),
        "frames": plan.total_frames,
        "generated_frames": plan.generated_frames,
        "gap_count": len(plan.gaps),
        "fps": f"{plan.rate.numerator}/{plan.rate.denominator}",
        "width": plan.size[0],
        "height": plan.size[1],
        "codec": plan.codec,
        "pix_fmt": plan.pix_fmt,
        "audio_tracks": [{"codec": t.codec, "sample_rate": t.sample_rate, "layout": t.layout,
                          "copied": t.copy_from is not None} for t in plan.audio],
        "subtitle_tracks": len(plan.subtitles),
        "attachments": [a.filename for a in plan.attachments],
        "chapters": len(plan.chapters),
        "warnings": plan.warnings,
    }


def _source_facts(source) -> dict[str, Any]:
    facts: dict[str, Any] = {"path": str(source.path), "kind": source.kind}
    if source.info:
        info = source.info
        facts.update({"frames": info.frame_count, "fps": format_rate(info.rate), "vfr": info.vfr,
                      "size": f"{info.width}x{info.height}", "sar": f"{info.sar.numerator}:{info.sar.denominator}",
                      "field_order": info.field_order, "pix_fmt": info.pix_fmt, "rotation": info.rotation,
                      "timecode": info.timecode, "audio_tracks": len(info.audio), "subtitle_tracks": len(info.subtitles),
                      "attachments": len(info.attachments), "chapters": len(info.chapters)})
    return facts
