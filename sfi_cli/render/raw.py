"""``sfi interpolate --raw``: SemFi's own frames, untouched, for comparison with the authors' code.

The model runs the smallest 4k+1 frames that hold the two ends and ``--frames`` new ones,
and all of them are written as they come out: the generated ends included, at the working
size (``--size WxH`` in multiples of 16, else from the area setting), no retiming, no end
restoration, no seam correction. Both images go to the model as they are on disk, each
resized on its own to the working size, as the official script does.
"""

from __future__ import annotations

import time
from typing import Any

from sfi_cli.errors import SfiError
from sfi_cli.media.images import load_image
from sfi_cli.render.interpolate import InterpolateJob, summary, validate, write_result
from sfi_cli.progress import Reporter
from sfi_cli.media.publish import output_lock


def run_raw(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    """Run SemFi once and write every model frame; returns the summary ``--json`` prints."""
    from engines.semfi import SemFiEngine

    with output_lock(job.target.path):
        validate(job, SemFiEngine.model_frames(max(1, job.frames)))  # a bad --frames is refused by validate
        return _run_raw(job, ffmpeg=ffmpeg, crf=crf, preset=preset, reporter=reporter)


def _run_raw(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    from engines import load_engine, resolve_name
    from engines.semfi import SemFiEngine

    if job.size is not None:
        SemFiEngine.check_raw_size(*job.size)
    if job.include_ends:
        raise SfiError("--raw output already holds the model's own end frames; drop --include-ends")
    if resolve_name(job.engine, job.engine_settings) != "semfi":
        raise SfiError("--raw writes SemFi's own frames; use it with --engine semfi (see 'sfi doctor' if semfi cannot run here)")
    engine = load_engine("semfi", job.engine_settings)
    started = time.monotonic()
    first, last = load_image(job.first), load_image(job.last)
    reporter.message(f"semfi --raw: model run for {job.frames} new frames between {job.first.name} and {job.last.name}")
    notes: dict[str, Any] = {}
    with reporter.task(f"semfi raw {job.first.name} -> {job.last.name}", job.frames) as progress:
        frames = engine.generate_raw(first, last, job.frames, job.size, prompt=job.prompt,
                                     negative_prompt=job.negative_prompt, seed=job.seed, progress=progress, notes=notes)
        written = write_result(job, frames, ffmpeg=ffmpeg, crf=crf, preset=preset)
    if notes.get("remark"):
        reporter.message(f"semfi --raw: {notes['remark']}")
    height, width = frames[0].shape[:2]
    return summary(job, engine="semfi", written=written, size=(width, height), started=started,
                   raw=True, model_frames=len(frames), include_ends=True, notes=notes)
