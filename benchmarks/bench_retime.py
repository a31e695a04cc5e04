"""Retiming a whole clip: ``sfi retime --fps 60 --engine flow`` against ffmpeg's
``minterpolate=fps=60:mi_mode=mci`` on the same clip, in one run.

Usage: .venv/bin/python benchmarks/bench_retime.py [--seconds S] [--keep DIR]

Method: bench_interpolate's synthetic 1080p clip (a camera panning, zooming and rolling over a
detailed still, a card sliding and a disc spinning on top) is rendered at 60 fps; every other frame
is dropped (a 30 fps clip, x264 CRF 14), and both methods bring it back to 60 fps, each writing
lossless FFV1 so only the interpolation is compared. Quality: PSNR (RGB) of every held-back real
frame against the frame each method made in its place (the last one, which sfi holds rather than
extrapolates, left out). Speed: output frames per second of wall time of each whole command (sfi:
probe, cut detection, making the frames, splicing; ffmpeg: decoding, interpolating, encoding).
Both results are printed with their ratio (sfi / minterpolate). A few minutes on 2 cores at the
default 1.5 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_interpolate as material  # noqa: E402  (the synthetic clip, PSNR)

from sfi_cli.media.ffmpeg import decode_frames, find_ffmpeg  # noqa: E402

RATE, HALF = 60, 30
SIZE = material.SIZE


def make_clips(ffmpeg: str, folder: Path, seconds: float) -> tuple[Path, Path]:
    """The 60 fps truth and the 30 fps clip made of its even frames."""
    frames = round(seconds * RATE)
    material.FPS = RATE  # its clip's motion is a function of time: rendered at 60 fps, half the motion per frame
    truth = folder / "truth-60.mp4"
    material.make_clip(ffmpeg, truth, frames)
    half = folder / "half-30.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(truth), "-vf",
                    f"select='not(mod(n\\,2))',setpts=N/({HALF}*TB)", "-r", str(HALF), "-c:v", "libx264", "-crf", "14",
                    "-preset", "veryfast", str(half)], check=True)
    return truth, half


def timed_run(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - started


def held_back_psnr(ffmpeg: str, truth: Path, made: Path) -> tuple[list[float], int]:
    """PSNR of each held-back (odd) real frame against the made frame in its place; and the frames made."""
    scores, count = [], 0
    real = decode_frames(truth, SIZE, ffmpeg=ffmpeg)
    for index, (expected, frame) in enumerate(zip(real, decode_frames(made, SIZE, ffmpeg=ffmpeg))):
        count = index + 1
        if index % 2:
            scores.append(material.psnr(frame, expected))
    real.close()
    return scores[:-1] if scores else scores, count  # the last odd frame lies past the clip's last real frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of the 60 fps truth (default 1.5)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the clips and results in this folder")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="bench-retime-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        truth, half = make_clips(ffmpeg, folder, args.seconds)
        sfi_out, mi_out = folder / "sfi-60.mkv", folder / "minterpolate-60.mkv"
        sfi_seconds = timed_run([sys.executable, "-m", "sfi_cli", "retime", str(half), "-o", str(sfi_out), "--fps",
                                 str(RATE), "--engine", "flow", "--codec", "ffv1", "--force", "-q",
                                 "--work-dir", str(folder / "work")])
        mi_seconds = timed_run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(half), "-vf",
                                f"minterpolate=fps={RATE}:mi_mode=mci", "-c:v", "ffv1", str(mi_out)])
        results = {}
        for name, path, seconds in (("sfi flow", sfi_out, sfi_seconds), ("minterpolate", mi_out, mi_seconds)):
            scores, frames = held_back_psnr(ffmpeg, truth, path)
            results[name] = (frames / seconds, float(np.mean(scores)), len(scores), frames, seconds)
    print(f"\nsfi retime --fps {RATE} vs minterpolate=fps={RATE}:mi_mode=mci, {SIZE[0]}x{SIZE[1]}, "
          f"{args.seconds:g} s: {HALF} -> {RATE} fps, every other real frame held back")
    print(f"{'method':<14}{'frames':>8}{'seconds':>10}{'frames/s':>10}{'PSNR dB':>10}{'scored':>8}")
    for name, (speed, score, scored, frames, seconds) in results.items():
        print(f"{name:<14}{frames:>8}{seconds:>10.1f}{speed:>10.2f}{score:>10.2f}{scored:>8}")
    (sfi_speed, sfi_psnr, *_), (mi_speed, mi_psnr, *_) = results["sfi flow"], results["minterpolate"]
    print(f"ratio sfi / minterpolate: speed {sfi_speed / mi_speed:.2f}x, PSNR {sfi_psnr - mi_psnr:+.2f} dB "
          f"({sfi_psnr / mi_psnr:.3f}x)")


if __name__ == "__main__":
    main()
