"""Benchmark: `sfi fill` (crossfade engine) against a plain ffmpeg re-encode, and its peak memory.

Makes 1080p clips of 10 s and 60 s with a hard cut every 3 s and a tone on the audio,
then for each runs, in this one process's lifetime:
  - a plain ffmpeg re-encode with the same video settings sfi uses (libx264, CRF 18,
    preset medium, AAC audio), and
  - `sfi fill --engine crossfade --seconds 0.5` (detection, transitions, splice), in the
    default insert mode (the target) and, for comparison, in replace mode (same frame count
    as the source, so what remains is sfi's own overhead),
and prints wall times, their ratio (target <= 1.35x) and the peak memory of the sfi
process and of its largest child (ffmpeg) for both lengths (target: flat).

It also prints CPU seconds (all processes) and the floor that sfi's design sets: detection and
the transitions alone (`--only transitions`) plus re-encoding what sfi delivers. That work
cannot be left out, so on a machine whose cores x264 already keeps busy, its CPU over the plain
re-encode's is about the lowest ratio any run can reach.

Usage: .venv/bin/python benchmarks/bench_fill.py [--keep DIR] [--repeat N] [--short]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sfi_cli.media.ffmpeg import find_ffmpeg

RATE = 24
SIZE = "1920x1080"
SHOT_SECONDS = 5  # a typical shot length of edited footage
# Each shot comes from a different generator: hard cuts between unrelated, moving pictures
# (no noise-like generators: a dissolve of two noise fields is far harder to encode than real footage).
SOURCES = ["testsrc2", "gradients", "mandelbrot", "testsrc", "gradients=seed=7:speed=0.03"]

# Runs `sfi` in a child process and reports its own peak memory and its largest child's (ffmpeg).
MEASURED_SFI = """
import json, resource, sys, time
from sfi_cli.commands import main
started = time.monotonic()
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code or 0
own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "seconds": time.monotonic() - started,
                  "cpu": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
                  "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}), file=sys.stderr)
"""


def make_clip(path: Path, seconds: int, ffmpeg: str) -> None:
    shots = seconds // SHOT_SECONDS
    inputs = []
    for index in range(shots):
        name = SOURCES[index % len(SOURCES)]
        source = f"{name}{':' if '=' in name else '='}size={SIZE}:rate={RATE}"
        hue = f",hue=h={index * 47}" if index >= len(SOURCES) else ""
        inputs.append(f"{source},trim=duration={SHOT_SECONDS},format=yuv420p{hue}[v{index}]")
    graph = ";".join(inputs) + ";" + "".join(f"[v{i}]" for i in range(shots)) + f"concat=n={shots}:v=1:a=0[v]"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-filter_complex", graph,
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                    "-c:a", "aac", "-shortest", str(path)], check=True)


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def reencode(source: Path, out: Path, ffmpeg: str) -> tuple[float, float]:
    """Wall and CPU seconds of a plain ffmpeg re-encode with sfi's video settings: the baseline, and (run
    on sfi's own output) what encoding its longer, dissolve-heavy frames costs by itself."""
    started, cpu = time.monotonic(), children_cpu()
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(source), "-c:v", "libx264", "-crf", "18",
                    "-preset", "medium", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "256k", str(out)], check=True)
    return time.monotonic() - started, children_cpu() - cpu


def sfi_fill(source: Path, out: Path, work: Path, mode: str = "insert", *only: str) -> dict:
    shutil.rmtree(work, ignore_errors=True)  # nothing may come from an earlier run's cache
    run = subprocess.run([sys.executable, "-c", MEASURED_SFI, "fill", str(source), "-o", str(out), "--engine",
                          "crossfade", "--seconds", "0.5", "--mode", mode, "--work-dir", str(work), "--quiet", "--force",
                          "--json", *only], capture_output=True, text=True)
    measured = json.loads(run.stderr.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise SystemExit(f"sfi fill failed: {run.stderr}")
    summary = json.loads(run.stdout)
    return {**measured, "detection": summary["detection_seconds"], **summary.get("pass_seconds", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Keep the clips and outputs in this folder.")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Time each run this many times and keep the fastest (steadier on a busy machine).")
    parser.add_argument("--short", action="store_true", help="The 10 s clip only (no memory comparison).")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="sfi-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for seconds in (10,) if args.short else (10, 60):
        clip = folder / f"cuts-{seconds}s-1080p.mp4"
        if not clip.exists():
            print(f"making {clip.name} ...", flush=True)
            make_clip(clip, seconds, ffmpeg)
        plains, fills, replaces = [], [], []
        for _ in range(args.repeat):  # interleaved: a machine that slows down mid-run weighs on all alike
            plains.append(reencode(clip, folder / f"plain-{seconds}s.mp4", ffmpeg))
            fills.append(sfi_fill(clip, folder / f"filled-{seconds}s.mp4", folder / f"work-{seconds}s"))
            replaces.append(sfi_fill(clip, folder / f"replaced-{seconds}s.mp4", folder / f"work-{seconds}s", "replace"))
        plain, plain_cpu = min(plains)
        filled = min(fills, key=lambda run: run["seconds"])
        replaced = min(replaces, key=lambda run: run["seconds"])
        same_frames, same_cpu = min(reencode(folder / f"filled-{seconds}s.mp4", folder / f"again-{seconds}s.mp4", ffmpeg)
                                    for _ in range(args.repeat))
        alone = min((sfi_fill(clip, folder / f"filled-{seconds}s.mp4", folder / f"work-{seconds}s", "insert", "--only",
                              "transitions") for _ in range(args.repeat)), key=lambda run: run["cpu"])
        floor = alone["cpu"] + same_cpu
        results[seconds] = (plain, filled)
        print(f"{seconds:>3} s clip ({seconds * RATE} frames, {seconds // SHOT_SECONDS - 1} cuts): "
              f"plain ffmpeg re-encode {plain:6.1f} s | sfi fill (crossfade) {filled['seconds']:6.1f} s | "
              f"ratio {filled['seconds'] / plain:.2f}x (target <= 1.35x)", flush=True)
        print(f"      replace mode (no frames added) {replaced['seconds']:6.1f} s: ratio {replaced['seconds'] / plain:.2f}x",
              flush=True)
        print(f"      re-encoding sfi's own output (its frames, no detection or generation) takes {same_frames:6.1f} s: "
              f"sfi's own overhead is {filled['seconds'] / same_frames:.2f}x of encoding what it delivers | "
              f"peak memory: sfi {filled['self_mib']:.0f} MiB, largest ffmpeg child {filled['children_mib']:.0f} MiB",
              flush=True)
        print(f"      where the time goes (insert): detection {filled['detection']:.1f} s, then transitions "
              f"{filled['transitions']:.1f} s beside the splice's {filled['splice']:.1f} s", flush=True)
        print(f"      CPU seconds: plain {plain_cpu:.0f} | sfi fill {filled['cpu']:.0f} ({filled['cpu'] / plain_cpu:.2f}x) | "
              f"the design's floor {floor:.0f} ({floor / plain_cpu:.2f}x) = detection and transitions alone "
              f"{alone['cpu']:.0f} + encoding what sfi delivers {same_cpu:.0f}", flush=True)
    if args.short:
        return
    short, long = results[10][1], results[60][1]
    print(f"peak memory 60 s vs 10 s: sfi process {long['self_mib'] / short['self_mib']:.2f}x, "
          f"ffmpeg children {long['children_mib'] / short['children_mib']:.2f}x (target: flat, ~1.0x)")
    print(f"files in {folder}")


if __name__ == "__main__":
    main()
