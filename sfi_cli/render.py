"""Running a plan: generate the gaps (or find them in the work folder), then splice.

Two stages in a straight line. ``generate_gaps`` reads each gap's two boundary
frames, keys them, and has the engine make the frames unless the work folder already
holds them. ``splice`` then streams the whole timeline, footage decoded range by
range, stills held, gaps read back from the work folder, through one ffmpeg that
also lays in the sound, subtitles and metadata. Nothing is held in memory beyond a
frame or one gap; the output appears under its name only when complete.
``fill`` is detection, then a recipe, then the same render.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sfi_cli import __version__
from sfi_cli.errors import SfiError
from sfi_cli.output import ContactSheet, OutputTarget, check_sheet, check_target
from sfi_cli.plan import Footage, Plan, Still, describe, semfi_expert
from sfi_cli.progress import Reporter
from sfi_cli.timecode import format_rate
from sfi_cli.workdir import GapCache, gap_key, manifest_path, write_json_atomically

WORK_DIR_NAME = ".sfi-work"
# Boundary frames closer than this are fetched in one decoding pass rather than by seeking
# (a seek decodes from the keyframe before, and keyframes are often this far apart).
PICK_SPAN_SECONDS = 10


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
    """Before any work: the output must not be an input, its folder must exist, and nothing is overwritten unasked."""
    resolved = output.resolve()
    for source in inputs:
        if Path(source).resolve() == resolved:
            raise SfiError(f"output '{output}' is also an input ('{source}'); choose another output path")
    check_target(OutputTarget(output, "video"), options.force)
    if options.sheet is not None:
        check_sheet(options.sheet, options.force)


def _reader(plan: Plan, key: str, pix_fmt: str, ffmpeg: str):
    """A reader of one source in ``pix_fmt``: RGB for the engines, the output's format for the splice."""
    from sfi_cli.sources import StillReader, VideoReader

    source = plan.sources[key]
    if source.info is None:
        return StillReader(source.path, size=plan.size, fit=plan.fit, pix_fmt=pix_fmt, ffmpeg=ffmpeg,
                           to_output=plan.rgb_to_output())
    color_filter = None
    primary = plan.primary.info.color if plan.primary else None
    if pix_fmt == plan.pix_fmt and (source.info.color.space, source.info.color.range) != (primary.space, primary.range):
        color_filter = f"scale=out_color_matrix={plan.matrix}:out_range={plan.color_range}"
    return VideoReader(source.info, size=plan.size, fit=plan.fit, rate=plan.rate, pix_fmt=pix_fmt,
                       keep_rotation=plan.keep_rotation, ffmpeg=ffmpeg, color_filter=color_filter)


class _Readers(dict):
    """One reader per source, opened on first use and all closed together."""

    def __init__(self, plan: Plan, pix_fmt: str, ffmpeg: str) -> None:
        super().__init__()
        self.plan, self.pix_fmt, self.ffmpeg = plan, pix_fmt, ffmpeg

    def __missing__(self, key: str):
        self[key] = reader = _reader(self.plan, key, self.pix_fmt, self.ffmpeg)
        return reader

    def close(self) -> None:
        for reader in self.values():
            reader.close()


def _engine(name: str, settings: dict[str, dict[str, Any]], loaded: dict[str, Any]):
    from engines import load_engine

    if name not in loaded:
        loaded[name] = load_engine(name, settings)
    return loaded[name]


def generate_gaps(plan: Plan, cache: GapCache, options: RenderOptions) -> list[dict[str, Any]]:
    """Make every gap's frames that the work folder does not hold yet; returns one record per gap."""
    reporter = options.reporter
    readers = _boundary_readers(plan, options.ffmpeg)
    engines: dict[str, Any] = {}
    records = []
    try:
        for gap in plan.gaps:
            started = time.monotonic()
            first = readers[gap.before[0]].frame(gap.before[1])
            last = readers[gap.after[0]].frame(gap.after[1])
            engine = _engine(gap.engine, options.engine_settings, engines)
            params = {"count": gap.count, "prompt": gap.prompt, "negative_prompt": gap.negative_prompt, "seed": gap.seed}
            key = gap_key(engine.cache_key(), params, first, last)
            title = f"gap {gap.index + 1}/{len(plan.gaps)} ({gap.label}, {gap.count} frames, {engine.name})"
            cached = cache.has(key)
            if cached:
                reporter.message(f"{title}: already in the work folder, skipped")
            else:
                with reporter.task(title, gap.count) as progress:
                    _generate(engine, gap, first, last, cache, key, params, progress)
            records.append({
                "index": gap.index + 1, "label": gap.label, "mode": gap.mode, "engine": engine.name,
                "frames": gap.count, "output_start": gap.output_start, "prompt": gap.prompt,
                "negative_prompt": gap.negative_prompt, "seed": gap.seed, "key": key, "cached": cached,
                "seconds": round(time.monotonic() - started, 3),
                **({"semfi_expert": semfi_expert(gap.count)[1]} if engine.name == "semfi" else {}),
            })
    finally:
        for reader in readers.values():
            reader.close()
    return records


def _generate(engine, gap, first, last, cache: GapCache, key: str, params: dict[str, Any], progress) -> None:
    """One gap from the engine into the work folder (its own function, so its frames are freed on return)."""
    from sfi_cli.interpolate import counted

    frames = engine.generate(first, last, gap.count, prompt=gap.prompt, negative_prompt=gap.negative_prompt,
                             seed=gap.seed, progress=progress)
    cache.store(key, counted(frames, gap.count, engine.name), {"engine": engine.cache_key(), **params, "label": gap.label})


def _boundary_readers(plan: Plan, ffmpeg: str) -> dict[str, Any]:
    """Per source, what hands out the gaps' boundary frames as RGB: videos fetch them in few passes."""
    from sfi_cli.sources import FramePicker

    wanted: dict[str, list[int]] = {}
    for gap in plan.gaps:
        for key, index in (gap.before, gap.after):
            wanted.setdefault(key, []).append(index)
    readers = {}
    for key, indices in wanted.items():
        reader = _reader(plan, key, "rgb24", ffmpeg)
        if plan.sources[key].info is not None:
            reader = FramePicker(reader, indices, max_jump=round(PICK_SPAN_SECONDS * plan.rate))
        readers[key] = reader
    return readers


def splice(plan: Plan, cache: GapCache, keys: list[str], options: RenderOptions) -> int:
    """Stream the whole timeline into the output file; returns the frames written."""
    from sfi_cli.ffmpeg import convert_frames
    from sfi_cli.splice import SpliceWriter

    readers = _Readers(plan, plan.pix_fmt, options.ffmpeg)
    sheet = ContactSheet() if options.sheet else None
    total = plan.total_frames
    try:
        with options.reporter.task(f"splicing {total} frames into {plan.output.name}", total) as progress:
            with SpliceWriter(plan, ffmpeg=options.ffmpeg) as writer:
                for segment in plan.segments:
                    if isinstance(segment, Footage):
                        frames = readers[segment.source].frames(segment.start, segment.stop)
                    elif isinstance(segment, Still):
                        frames = readers[segment.source].frames(0, segment.frames)
                    else:
                        generated = cache.frames(keys[segment.gap])
                        frames = convert_frames(map(sheet.add, generated) if sheet else generated, plan.size,
                                                pix_fmt=plan.pix_fmt, video_filter=plan.rgb_to_output(),
                                                ffmpeg=options.ffmpeg)
                    for frame in frames:
                        writer.write(frame)
                        if writer.frames_written % 10 == 0 or writer.frames_written == total:
                            progress(writer.frames_written, total)
                if writer.frames_written != total:
                    raise SfiError(f"wrote {writer.frames_written} frames instead of the planned {total}; this is a bug")
    finally:
        readers.close()
    if sheet and options.sheet:
        if sheet.thumbnails:
            sheet.save(options.sheet)
        else:
            options.reporter.message("no transitions, so no contact sheet was written")
    return total


def render_plan(plan: Plan, options: RenderOptions) -> dict[str, Any]:
    """Run ``plan`` (or with ``dry_run`` only describe it) and return the summary ``--json`` prints."""
    check_outputs(plan.output, [*(s.path for s in plan.sources.values()), plan.recipe], options)
    for warning in plan.warnings:
        options.reporter.message(f"warning: {warning}")
    if options.dry_run:
        return {"dry_run": True, "plan": describe(plan), **_plan_summary(plan), **options.manifest_extra}
    started = time.monotonic()
    work_dir = work_dir_for(plan.output, options.work_dir)
    cache = GapCache(work_dir, options.ffmpeg)
    gaps = generate_gaps(plan, cache, options)
    written = splice(plan, cache, [g["key"] for g in gaps], options)
    summary = {
        **_plan_summary(plan),
        "frames_written": written,
        "gaps": gaps,
        "gaps_cached": sum(g["cached"] for g in gaps),
        "work_dir": str(work_dir),
        "sheet": str(options.sheet) if options.sheet else None,
        "manifest": str(manifest_path(plan.output)),
        "seconds": round(time.monotonic() - started, 3),
        **options.manifest_extra,
    }
    write_json_atomically(manifest_path(plan.output), {
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
        "warnings": plan.warnings,
    }


def _source_facts(source) -> dict[str, Any]:
    facts: dict[str, Any] = {"path": str(source.path), "kind": source.kind}
    if source.info:
        info = source.info
        facts.update({"frames": info.frame_count, "fps": format_rate(info.rate), "vfr": info.vfr,
                      "size": f"{info.width}x{info.height}", "pix_fmt": info.pix_fmt, "rotation": info.rotation,
                      "timecode": info.timecode, "audio_tracks": len(info.audio), "subtitle_tracks": len(info.subtitles)})
    return facts
