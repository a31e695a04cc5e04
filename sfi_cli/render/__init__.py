"""Running a plan in two passes: make the transitions, then splice.

Pass 1 (``transitions.make_transitions``) makes every gap the work folder does not hold
yet, each an independent job run through an executor (``executors``: serial in this
process, ``workers`` local processes, or Ray actors across a farm: ``farm``). Pass 2 (``splice.splice``) is
I/O only: footage decoded range by range straight into the output's pixel format and
relayed to one ffmpeg that also lays in the sound, subtitles and metadata, the gaps
decoded from the work folder; no engine is built there. Each pass can run alone
(``passes``), so a farm makes the transitions on many machines and splices once. Nothing
is held in memory beyond a frame or a job's two boundary frames; the output appears under
its name only when complete. ``fill`` is detection, then a recipe, then the same render.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sfi_cli import __version__
from sfi_cli.errors import SfiError
from sfi_cli.media.publish import output_lock, refuse_inputs, require_writable_folder
from sfi_cli.media.targets import check_sheet, check_target, output_files, parse_target
from sfi_cli.progress import Reporter
from sfi_cli.render.workdir import GapCache, manifest_path, manifest_refusal, write_json
from sfi_cli.timeline.describe import describe, plan_data
from sfi_cli.timeline.model import Plan
from sfi_cli.timeline.timecode import format_rate

WORK_DIR_NAME = ".sfi-work"
PASSES = ("transitions", "splice")


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
    workers: int = 1  # 1: transitions made one after another in this process
    devices: tuple[str, ...] = ()  # one local worker per device ("cuda:0", "cuda:1"), given to its engines
    executor: str = "local"  # or "ray": pass 1 on a Ray cluster (``farm``)
    farm: dict[str, Any] = field(default_factory=dict)  # the [farm] settings: address, storage
    attempts: int = 3  # tries of one transition before the run gives up on it
    passes: tuple[str, ...] = PASSES  # ("transitions",) or ("splice",) to run one pass alone
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    # More results made from the render (an NLE timeline, transition clips): each is ``check(plan, options)``ed
    # with the outputs, before any work, and ``finish(plan, summary, options)``ed after the passes.
    extras: tuple[Any, ...] = ()


def work_dir_for(output: Path, configured: Path | None) -> Path:
    return configured if configured is not None else output.parent / WORK_DIR_NAME


def check_outputs(output: Path, inputs: list[Path], options: RenderOptions, frames: int = 1) -> None:
    """Before any work: no file the run writes may be an input, every folder it writes to must be writable,
    and nothing is overwritten unasked (a PNG sequence: each of its ``frames`` names). Transitions alone
    write only into the work folder."""
    if "splice" not in options.passes:
        return check_work_dir(work_dir_for(output, options.work_dir))
    target = parse_target(str(output))
    check_target(target, options.force, frames, inputs)
    refuse_inputs([manifest_path(output)], inputs)
    refusal = manifest_refusal(output)
    if refusal is not None:
        raise SfiError(refusal)
    if options.sheet is not None:  # not a frame of a PNG sequence either
        check_sheet(options.sheet, options.force, inputs, [*output_files(target, frames), manifest_path(output)])
    work_dir = work_dir_for(output, options.work_dir)
    written = [output, manifest_path(output), *([options.sheet] if options.sheet is not None else [])]
    for file in written:  # a work folder made there would stand where a result must go
        if Path(os.path.realpath(file)) in (Path(os.path.realpath(work_dir)), *Path(os.path.realpath(work_dir)).parents):
            raise SfiError(f"work folder '{work_dir}' would be made at or inside '{file}', which this run writes; "
                           f"choose another --work-dir")
    check_work_dir(work_dir)


def check_work_dir(work_dir: Path) -> None:
    existing = next(folder for folder in (work_dir, *work_dir.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise SfiError(f"work folder '{work_dir}' lies inside the file '{existing}'; choose another --work-dir")
    require_writable_folder(existing, "the work folder")


def render_plan(plan: Plan, options: RenderOptions) -> dict[str, Any]:
    """Run ``plan``'s passes (or with ``dry_run`` only describe it) and return the summary ``--json`` prints."""
    writes_output = "splice" in options.passes and not options.dry_run
    # Transitions alone write only into the work folder: no output lock, so farm nodes run side by side.
    with output_lock(plan.output) if writes_output else nullcontext():
        check_outputs(plan.output, [*(s.path for s in plan.sources.values()), plan.recipe], options, plan.total_frames)
        for extra in options.extras:
            extra.check(plan, options)
        for warning in plan.warnings:
            options.reporter.message(f"warning: {warning}")
        if options.dry_run:
            from sfi_cli.render.transitions import gap_keys

            return {"dry_run": True, "plan": plan_data(plan, gap_keys(plan)), "plan_lines": describe(plan),
                    **_plan_summary(plan), **options.manifest_extra}
        return _render(plan, options)


def executor_for(options: RenderOptions, plan: Plan | None = None):
    """The executor pass 1 runs on: Ray actors (``farm``) for the ray executor; else serial in this process for
    one worker on at most one device, or that many local processes (one per device when devices are given)."""
    from sfi_cli.render.executors import LocalExecutor, ProcessExecutor

    if options.executor == "ray":
        from sfi_cli.render.farm import RayExecutor, gpu_engines

        if plan is None:
            return RayExecutor(options)
        return RayExecutor(options, work_dir=work_dir_for(plan.output, options.work_dir),
                           gpu_engines=gpu_engines(plan, options.engine_settings))
    if options.workers <= 1 and len(options.devices) <= 1:
        return LocalExecutor(options.devices[0] if options.devices else None)
    return ProcessExecutor(options.workers, devices=options.devices, attempts=options.attempts, reporter=options.reporter)


def _frames_go_back_to_the_os() -> None:
    """Have glibc map each block of 1 MiB or more on its own, so a freed frame's memory returns to the OS.

    Its default threshold rises to the size of the first large block freed; frames of other sizes (RGB,
    YUV, 16-bit) then come from the heap and fragment it, and peak memory creeps up with a timeline's
    gap count. Elsewhere (macOS, musl) the C library's own policy stays."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD, glibc's malloc.h


def _render(plan: Plan, options: RenderOptions) -> dict[str, Any]:
    from sfi_cli.render.splice import splice
    from sfi_cli.render.transitions import gap_keys, make_transitions, stored_record

    _frames_go_back_to_the_os()
    started = time.monotonic()
    work_dir = work_dir_for(plan.output, options.work_dir)
    written = 0
    phases: dict[str, float] = {}  # seconds each pass took (side by side in one run, so they overlap)
    if set(options.passes) == set(PASSES):
        made, written = _both_passes(plan, options, GapCache(work_dir, options.ffmpeg), phases)
    elif "transitions" in options.passes:
        made = make_transitions(plan, options, executor_for(options, plan))
        phases["transitions"] = round(time.monotonic() - started, 3)
    else:
        cache = GapCache(work_dir, options.ffmpeg)
        keys = gap_keys(plan)
        written = splice(plan, cache, keys, options)
        made = [stored_record(cache, key) for key in keys]
        phases["splice"] = round(time.monotonic() - started, 3)
    records = [_gap_record(gap, made[gap.index]) for gap in plan.gaps]
    summary = {
        **_plan_summary(plan),
        "frames_written": 0,
        "gaps": records,
        "gaps_cached": sum(r["cached"] for r in records),
        "work_dir": str(work_dir),
        "sheet": None,
        "manifest": None,
        "passes": list(options.passes),
        "pass_seconds": phases,
        **options.manifest_extra,
    }
    if "splice" not in options.passes:
        return _finish(plan, {**summary, "output": None, "seconds": round(time.monotonic() - started, 3)}, options)
    summary.update({"frames_written": written, "sheet": str(options.sheet) if options.sheet else None,
                    "manifest": str(manifest_path(plan.output)), "seconds": round(time.monotonic() - started, 3)})
    write_json(manifest_path(plan.output), {
        "sfi": __version__, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **summary, "sources": [_source_facts(s) for s in plan.sources.values()],
    })
    return _finish(plan, summary, options)


def _finish(plan: Plan, summary: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
    for extra in options.extras:
        summary = extra.finish(plan, summary, options)
    return summary


class _SpliceStopped(Exception):
    """Pass 1 failed or was stopped: the splice running beside it stops too (and deletes its partial output)."""


def _both_passes(plan: Plan, options: RenderOptions, cache: GapCache,
                 phases: dict[str, float]) -> tuple[list[dict[str, Any]], int]:
    """Pass 1 here, pass 2 in a thread beside it, started at once: the splice relays footage while the
    transitions are made and waits only at a gap not in the work folder yet. Pass 1 uses what the encoder
    leaves idle, and a slow engine's first gap is spliced while the next is made. Either pass failing
    stops both; the output appears only if both finish (finished gaps are kept for a re-run)."""
    import threading

    from sfi_cli.render.splice import splice, splice_task
    from sfi_cli.render.transitions import gap_keys, make_transitions

    keys = gap_keys(plan)
    stop, pass_one_over, splice_over = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def gap_ready(key: str) -> None:
        while not cache.has(key):
            if stop.is_set():
                raise _SpliceStopped()
            if pass_one_over.is_set() and not cache.has(key):
                raise SfiError(f"transition {key} is not in the work folder '{cache.root}' after pass 1; this is a bug")
            pass_one_over.wait(0.05)

    with options.reporter.task(*splice_task(plan)) as task:
        def progress(done: int, total: int) -> None:
            if stop.is_set():
                raise _SpliceStopped()
            task(done, total)

        started = time.monotonic()

        def run_splice() -> None:
            try:
                outcome["written"] = splice(plan, cache, keys, options, gap_ready=gap_ready, progress=progress)
                phases["splice"] = round(time.monotonic() - started, 3)
            except BaseException as error:  # handed to the main thread, which raises it
                outcome["error"] = error
            finally:
                splice_over.set()

        def splice_failed() -> None:  # checked between jobs: a splice that failed stops pass 1 early
            if isinstance(outcome.get("error"), Exception) and not isinstance(outcome["error"], _SpliceStopped):
                raise outcome["error"]

        # Waited for by an event, not Thread.join: a signal interrupting join (Python < 3.13) marks the thread
        # finished, so a second join would return at once and leave the splice's ffmpeg and its file behind.
        threading.Thread(target=run_splice, name="sfi-splice", daemon=True).start()
        try:
            made = make_transitions(plan, options, executor_for(options, plan), between_jobs=splice_failed)
            phases["transitions"] = round(time.monotonic() - started, 3)
            pass_one_over.set()
            splice_over.wait()
        except BaseException:
            stop.set()
            splice_over.wait()
            raise
    if "error" in outcome:
        raise outcome["error"]
    return made, outcome["written"]


def _gap_record(gap, made: dict[str, Any]) -> dict[str, Any]:
    """One gap's manifest entry: what the plan asked for and how pass 1 got it."""
    return {
        "index": gap.index + 1, "label": gap.label, "mode": gap.mode, "engine": gap.engine,
        "frames": gap.count, "output_start": gap.output_start, "prompt": gap.prompt,
        "negative_prompt": gap.negative_prompt, "seed": gap.seed, **made,
    }


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
