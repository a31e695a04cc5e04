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
from sfi_cli.images import load_image
from sfi_cli.interpolate import InterpolateJob, validate
from sfi_cli.output import ContactSheet, write_frames
from sfi_cli.progress import Reporter


def run_raw(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    """Run SemFi once and write every model frame; returns the summary ``--json`` prints."""
    from engines import EngineUnavailable, load_engine, resolve_name

    from engines.semfi_parts.rules import check_working_size

    validate(job)
    if job.size is not None:
        check_working_size(*job.size)
    if job.include_ends:
        raise SfiError("--raw output already holds the model's own end frames; drop --include-ends")
    try:
        if resolve_name(job.engine, job.engine_settings) != "semfi":
            raise SfiError("--raw writes SemFi's own frames; use it with --engine semfi (see 'sfi doctor' if semfi cannot run here)")
        engine = load_engine("semfi", job.engine_settings)
    except (KeyError, EngineUnavailable) as error:
        raise SfiError(str(error.args[0]) if error.args else str(error)) from None
    started = time.monotonic()
    first, last = load_image(job.first), load_image(job.last)
    reporter.message(f"semfi --raw: model run for {job.frames} new frames between {job.first.name} and {job.last.name}")
    sheet = ContactSheet() if job.sheet else None
    with reporter.task(f"semfi raw {job.first.name} -> {job.last.name}", job.frames) as progress:
        frames = engine.generate_raw(first, last, job.frames, job.size, prompt=job.prompt,
                                     negative_prompt=job.negative_prompt, seed=job.seed, progress=progress)
        written = write_frames(job.target, map(sheet.add, frames) if sheet else iter(frames), fps=job.fps,
                               ffmpeg=ffmpeg, crf=crf, preset=preset)
    if sheet:
        sheet.save(job.sheet)
    height, width = frames[0].shape[:2]
    return {
        "output": str(job.target.path),
        "output_kind": job.target.kind,
        "engine": "semfi",
        "raw": True,
        "new_frames": job.frames,
        "model_frames": len(frames),
        "frames_written": written,
        "include_ends": True,
        "width": width,
        "height": height,
        "fps": f"{job.fps.numerator}/{job.fps.denominator}",
        "seed": job.seed,
        "sheet": str(job.sheet) if job.sheet else None,
        "seconds": round(time.monotonic() - started, 3),
    }
