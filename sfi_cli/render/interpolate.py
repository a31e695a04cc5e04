"""One gap between two still images: load, fit, generate, write.

This is the library behind ``sfi interpolate``; each step is a plain function so it
can be called and tested on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sfi_cli.errors import SfiError
from sfi_cli.media.images import fit_pair, load_image
from sfi_cli.media.targets import ContactSheet, OutputTarget, check_sheet, check_target, output_files, write_frames
from sfi_cli.progress import Reporter
from sfi_cli.media.publish import Publication, output_lock


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


def sequence(first: np.ndarray, middle: Iterable[np.ndarray], last: np.ndarray, with_ends: bool) -> Iterator[np.ndarray]:
    """The frames to write, in order, with or without the given ends around them."""
    if with_ends:
        yield first
    yield from middle
    if with_ends:
        yield last


def counted(frames: Iterable[np.ndarray], expected: int, engine_name: str) -> Iterator[np.ndarray]:
    """Pass frames through, failing loudly if an engine returns the wrong number."""
    produced = 0
    for frame in frames:
        produced += 1
        if produced > expected:
            break
        yield frame
    if produced != expected:
        raise SfiError(f"engine '{engine_name}' returned {produced} frames instead of {expected}; this is a bug, please report it")


def run_interpolate(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    """Do the whole job and return a summary (what ``--json`` prints)."""
    with output_lock(job.target.path):
        validate(job, job.frames + 2 * job.with_ends)
        return _run(job, ffmpeg=ffmpeg, crf=crf, preset=preset, reporter=reporter)


def _run(job: InterpolateJob, *, ffmpeg: str, crf: int, preset: str, reporter: Reporter) -> dict[str, Any]:
    from engines import load_engine

    started = time.monotonic()
    first, last = fit_pair(load_image(job.first), load_image(job.last), job.size, job.fit)
    engine = load_engine(job.engine, job.engine_settings)
    height, width = first.shape[:2]
    reporter.message(f"{engine.name}: {job.frames} frames between {job.first.name} and {job.last.name} at {width}x{height}")
    if job.target.is_video:
        from sfi_cli.media.formats import codec_pix_fmt, even_padding, padding_warning

        pix_fmt = codec_pix_fmt(job.target.path.suffix.lower())
        pad = even_padding((width, height), pix_fmt)
        if any(pad):
            reporter.message(f"warning: {padding_warning((width, height), pad, pix_fmt)}")
    with reporter.task(f"{engine.name} {job.first.name} -> {job.last.name}", job.frames) as progress:
        middle = engine.generate(first, last, job.frames, prompt=job.prompt, negative_prompt=job.negative_prompt,
                                 seed=job.seed, progress=progress)
        frames = sequence(first, counted(middle, job.frames, engine.name), last, job.with_ends)
        written = write_result(job, frames, ffmpeg=ffmpeg, crf=crf, preset=preset)
    return summary(job, engine=engine.name, written=written, size=(width, height), started=started,
                   include_ends=job.with_ends)


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
