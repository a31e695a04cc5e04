"""``sfi interpolate``: one gap between two still images, as a plan like any other.

The plan is still FIRST held one frame, a transition of ``--frames`` frames, still LAST held
one frame (without the ends, only the transition), so it runs through the same two passes
(the transition made in a private work folder, removed afterwards) and, for video, the same
encoder policy as ``sfi render``: one codec table, odd sizes padded by the same rule, colours
encoded and tagged in the picture's standard. PNG folders and patterns are a second sink of
pass 2, written from the transition's stored RGB frames and the images themselves.
InterpolateJob, ``validate``, ``write_result`` and ``summary`` are shared with ``--raw``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sfi_cli.errors import SfiError
from sfi_cli.media.targets import ContactSheet, OutputTarget, check_sheet, check_target, output_files, write_frames
from sfi_cli.progress import Reporter
from sfi_cli.media.publish import Publication, output_lock, temporary_path


@dataclass
class InterpolateJob:
    """Everything ``sfi interpolate`` was asked to do."""

    first: Path
    last: Path
    frames: int
    target: OutputTarget
    engine: str = "auto"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    size: tuple[int, int] | None = None
    fit: str = "cover"
    include_ends: bool | None = None  # None: on for video output, off for PNGs
    fps: Fraction = Fraction(24)
    sheet: Path | None = None
    force: bool = False
    engine_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    codec: str | None = None  # video output: None for the container's usual one

    @property
    def with_ends(self) -> bool:
        return self.target.is_video if self.include_ends is None else self.include_ends

    @property
    def inputs(self) -> list[Path]:
        return [self.first, self.last]


def validate(job: InterpolateJob, count: int) -> None:
    """Check everything that can be checked before any work starts; ``count`` frames will be written."""
    if job.frames < 1:
        raise SfiError(f"--frames must be 1 or more (got {job.frames})")
    check_target(job.target, job.force, count, job.inputs)
    if job.sheet is not None:
        check_sheet(job.sheet, job.force, job.inputs, output_files(job.target, count))


def run_interpolate(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    """Do the whole job and return a summary (what ``--json`` prints)."""
    with output_lock(job.target.path):
        validate(job, job.frames + 2 * job.with_ends)
        return _run(job, ffmpeg=ffmpeg, crf=crf, preset=preset, reporter=reporter)


def interpolate_plan(job: InterpolateJob, *, crf: int, preset: str, output: Path):
    """The timeline of the job: FIRST, the transition, LAST (each image held one frame), into ``output``."""
    from sfi_cli.timeline.layout import make_plan
    from sfi_cli.timeline.recipe import OutputSpec, Recipe, ShotSpec, TransitionSpec
    from sfi_cli.timeline.timecode import Position

    one = Position("1", frames=1)
    transition = TransitionSpec(Position(str(job.frames), frames=job.frames), job.prompt, job.negative_prompt, None,
                                job.seed, "insert", where="--frames", audio="silence")  # the plan has no sound
    shots = (ShotSpec("image", job.first, None, None, one, 1, transition, where=f"'{job.first}'"),
             ShotSpec("image", job.last, None, None, one, 1, None, where=f"'{job.last}'"))
    recipe = Recipe(job.first, shots, OutputSpec(output, job.fps, job.size, job.fit, job.codec if job.target.is_video else None, None,
                                                 None, "none"))
    return make_plan(recipe, engine=job.engine, engine_settings=job.engine_settings, default_fps=job.fps, crf=crf,
                     preset=preset)


def _run(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    import dataclasses
    import shutil

    from sfi_cli.render import RenderOptions, executor_for
    from sfi_cli.render.transitions import check_engines, make_transitions
    from sfi_cli.render.workdir import GapCache
    from sfi_cli.timeline.model import Generated

    started = time.monotonic()
    # A PNG result is planned as a video beside it (the plan's codec is never used): same size rule, same gap.
    output = job.target.path if job.target.is_video else job.target.path.parent / "sfi-interpolate.mp4"
    plan = interpolate_plan(job, crf=crf, preset=preset, output=output)
    if not job.with_ends:
        plan = dataclasses.replace(plan, segments=tuple(s for s in plan.segments if isinstance(s, Generated)))
    gap = plan.gaps[0]
    width, height = plan.size[0] - plan.pad[0], plan.size[1] - plan.pad[1]
    for warning in plan.warnings if job.target.is_video else ():
        reporter.message(f"warning: {warning}")
    check_engines({gap.engine}, job.engine_settings)  # a missing model is one line before anything is said or made
    reporter.message(f"{gap.engine}: {job.frames} frames between {job.first.name} and {job.last.name} at {width}x{height}")
    # The one gap's work folder: private, beside the output under a temporary name (so the next run removes it
    # should this one be killed outright), deleted afterwards.
    work_dir = temporary_path(job.target.path.parent / "sfi-interpolate-work")
    try:
        options = RenderOptions(ffmpeg=ffmpeg, engine_settings=job.engine_settings, reporter=reporter, work_dir=work_dir,
                                sheet=job.sheet)
        key = make_transitions(plan, options, executor_for(options))[0]["key"]
        cache = GapCache(work_dir, ffmpeg)
        if job.target.is_video:
            from sfi_cli.render.splice import splice

            written = splice(plan, cache, [key], options, sheet_of_stills=True)
        else:
            written = _write_pngs(job, plan, cache, key, ffmpeg=ffmpeg, crf=crf, preset=preset)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return summary(job, engine=gap.engine, written=written, size=(width, height), started=started,
                   include_ends=job.with_ends)


def _write_pngs(job: InterpolateJob, plan, cache, key: str, **encoding) -> int:
    """Pass 2 into PNGs: the transition's stored RGB frames, between the images themselves with the ends,
    at the picture's own size (no codec padding)."""
    from sfi_cli.render.footage import plan_reader

    width, height = plan.size[0] - plan.pad[0], plan.size[1] - plan.pad[1]
    ends = [plan_reader(plan, source, encoding["ffmpeg"]).rgb for source in (plan.gaps[0].before[0], plan.gaps[0].after[0])]

    def frames() -> Iterator[np.ndarray]:
        if job.with_ends:
            yield ends[0]
        yield from cache.frames(key)
        if job.with_ends:
            yield ends[1]

    return write_result(job, (frame[:height, :width] for frame in frames()), **encoding)


def write_result(job: InterpolateJob, frames: Iterable[np.ndarray], *, ffmpeg: str, crf: int, preset: str) -> int:
    """Write ``frames`` to the job's target (and contact sheet); returns how many were written.

    Both are published together once both are complete, so a sheet that cannot be written
    stops the run before the output appears."""
    sheet = ContactSheet() if job.sheet else None
    with Publication() as results:
        written = write_frames(job.target, map(sheet.add, frames) if sheet else iter(frames), results, fps=job.fps,
                               ffmpeg=ffmpeg, crf=crf, preset=preset)
        if sheet:
            sheet.save(job.sheet, results)
    return written


def summary(job: InterpolateJob, *, engine: str, written: int, size: tuple[int, int], started: float,
            **extra: Any) -> dict[str, Any]:
    """What ``--json`` prints about a finished job."""
    return {
        "output": str(job.target.path),
        "output_kind": job.target.kind,
        "engine": engine,
        **extra,
        "new_frames": job.frames,
        "frames_written": written,
        "width": size[0],
        "height": size[1],
        "fps": f"{job.fps.numerator}/{job.fps.denominator}",
        "seed": job.seed,
        "sheet": str(job.sheet) if job.sheet else None,
        "seconds": round(time.monotonic() - started, 3),
    }
