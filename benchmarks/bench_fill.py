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

Usage: .venv/bin/python benchmarks/bench_fill.py [--keep DIR] [--repeat N] [--short]
"""

from __future__ import annotations

import argparse
import json
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
print(json.dumps({"code": code, "seconds": time.monotonic() - started,
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


def reencode(source: Path, out: Path, ffmpeg: str) -> float:
    """Seconds for a plain ffmpeg re-encode with sfi's video settings: the baseline, and (run on sfi's
    own output) what encoding its longer, dissolve-heavy frames costs by itself."""
    started = time.monotonic()
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(source), "-c:v", "libx264", "-crf", "18",
                    "-preset", "medium", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "256k", str(out)], check=True)
    return time.monotonic() - started


def sfi_fill(source: Path, out: Path, work: Path, mode: str = "insert") -> dict:
    shutil.rmtree(work, ignore_errors=True)  # nothing may come from an earlier run's cache
    run = subprocess.run([sys.executable, "-c", MEASURED_SFI, "fill", str(source), "-o", str(out), "--engine",
                          "crossfade", "--seconds", "0.5", "--mode", mode, "--work-dir", str(work), "--quiet", "--force", "--json"],
                         capture_output=True, text=True)
    measured = json.loads(run.stderr.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise SystemExit(f"sfi fill failed: {run.stderr}")
    summary = json.loads(run.stdout)
    return {**measured, "detection": summary["detection_seconds"], **summary["pass_seconds"]}


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
        plain = min(plains)
        filled = min(fills, key=lambda run: run["seconds"])
        replaced = min(replaces, key=lambda run: run["seconds"])
        same_frames = min(reencode(folder / f"filled-{seconds}s.mp4", folder / f"again-{seconds}s.mp4", ffmpeg)
                          for _ in range(args.repeat))
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
    if args.short:
        return
    short, long = results[10][1], results[60][1]
    print(f"peak memory 60 s vs 10 s: sfi process {long['self_mib'] / short['self_mib']:.2f}x, "
          f"ffmpeg children {long['children_mib'] / short['children_mib']:.2f}x (target: flat, ~1.0x)")
    print(f"files in {folder}")


if __name__ == "__main__":
    main()
