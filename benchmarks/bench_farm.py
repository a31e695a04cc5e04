"""Benchmark: pass 1 throughput with 2 workers against 1, and what starting Ray costs.

Makes ``--gaps`` transition jobs of ``--frames`` new frames between two unrelated 1080p
pictures (as at a hard cut), then, in this one run, makes them into a fresh work folder
through:
  - 1 local worker process and 2 (``ProcessExecutor``; spawn and engine start included), and
  - 1 Ray actor and 2 (``RayExecutor`` on a Ray instance started here),
for the crossfade and the flow engine, and prints frames/s and the 2-vs-1 ratio of each (on
N free cores the ideal is min(2, N); the encode into the work folder and the driver's own
work share the same cores). Ray's start-up is timed apart: ``ray.init`` of a local instance,
then the first actors ready to take a job.

Usage: .venv/bin/python benchmarks/bench_farm.py [--gaps N] [--frames N] [--engines crossfade,flow]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from sfi_cli.media.ffmpeg import find_ffmpeg
from sfi_cli.progress import Reporter
from sfi_cli.render import RenderOptions
from sfi_cli.render.executors import ProcessExecutor
from sfi_cli.render.transitions import TransitionJob, make_transition

WIDTH, HEIGHT = 1920, 1080


def picture(seed: int) -> np.ndarray:
    """A smooth random colour texture at 1080p (what flow can lock on to, unlike noise)."""
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, size=(HEIGHT // 24, WIDTH // 24, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC))


def jobs(engine: str, gaps: int, frames: int, work: Path, ffmpeg: str) -> list[TransitionJob]:
    first, last = picture(1), np.roll(picture(1), 24, axis=1)  # a pan: flow finds motion, so it does its full work
    return [TransitionJob(name=f"gap {n + 1}/{gaps}", key=f"bench-{engine}-{n}", engine=engine, settings={},
                          params={"count": frames, "prompt": "", "negative_prompt": "", "seed": n}, meta={},
                          work_dir=work, ffmpeg=ffmpeg, frames=(first, last)) for n in range(gaps)]


def timed(executor, job_list) -> float:
    started = time.monotonic()
    made = sum(1 for _ in executor.map(make_transition, job_list))
    assert made == len(job_list)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--engines", default="crossfade,flow")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()

    import ray

    from sfi_cli.render.farm import RayExecutor

    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ray_init = time.monotonic() - started
    reporter = Reporter(quiet=True)
    total = args.gaps * args.frames
    print(f"pass 1: {args.gaps} gaps x {args.frames} new frames at {WIDTH}x{HEIGHT}, frames/s (2 workers vs 1)")
    ray_ready = []
    try:
        for engine in args.engines.split(","):
            for kind in ("local", "ray"):
                rates = {}
                for workers in (1, 2):
                    work = Path(tempfile.mkdtemp(prefix="sfi-bench-farm-"))
                    try:
                        if kind == "local":
                            executor = ProcessExecutor(workers, reporter=reporter)
                        else:
                            options = RenderOptions(ffmpeg=ffmpeg, engine_settings={}, reporter=reporter,
                                                    workers=workers, executor="ray")
                            executor = RayExecutor(options, work_dir=work)
                        seconds = timed(executor, jobs(engine, args.gaps, args.frames, work, ffmpeg))
                        if kind == "ray":
                            ray_ready.append(executor.ready_seconds)
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
                    rates[workers] = total / seconds
                print(f"  {engine:9s} {kind:5s}: 1 worker {rates[1]:6.2f}, 2 workers {rates[2]:6.2f}  "
                      f"ratio {rates[2] / rates[1]:.2f}x")
    finally:
        ray.shutdown()
    print(f"ray start-up: ray.init of a local instance {ray_init:.1f}s; actors ready to take jobs "
          f"{min(ray_ready):.1f}-{max(ray_ready):.1f}s per run (included in the ray rows above)")


if __name__ == "__main__":
    main()
