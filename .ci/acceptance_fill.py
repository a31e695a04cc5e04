"""Acceptance: `sfi fill` with the flow engine on leaves-cuts-720p.mp4, both modes, checked by probing.

For each mode it checks the frame count (container and decoded), the duration, the exact
frame rate, size, pixel format and the streams against the source and the plan.
Usage: .venv/bin/python .ci/acceptance_fill.py ../shared/data
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av

from acceptance_interpolate import decoded_frames

SFI = str(Path(sys.executable).with_name("sfi"))
SECONDS = 0.5


def facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return {
            "streams": sorted(s.type for s in container.streams if s.type in ("video", "audio", "subtitle")),
            "frames": video.frames,
            "rate": Fraction(video.guessed_rate),
            "duration": Fraction(video.duration) * video.time_base,
            "size": (video.codec_context.width, video.codec_context.height),
            "pix_fmt": video.codec_context.format.name,
            "audio_durations": [float(s.duration * s.time_base) for s in container.streams.audio],
        }


def main(data: Path) -> int:
    source = data / "videos" / "leaves-cuts-720p.mp4"
    before = facts(source)
    failures = []
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("insert", "replace"):
            out = Path(folder) / f"leaves-{mode}.mp4"
            run = subprocess.run([SFI, "fill", str(source), "-o", str(out), "--engine", "flow", "--seconds", str(SECONDS),
                                  "--mode", mode, "--json", "--sheet", str(Path(folder) / f"{mode}.png")],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                failures.append(f"{mode}: sfi fill failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            summary = json.loads(run.stdout)
            cuts = len(summary["cuts"])
            added = summary["generated_frames"] if mode == "insert" else 0
            expected = before["frames"] + added
            after = facts(out)
            checks = {
                "cuts found": (cuts >= 2, f"{cuts} cuts at {[c['frame'] for c in summary['cuts']]}"),
                "frame count": (after["frames"] == expected == summary["frames_written"],
                                f"{after['frames']} (source {before['frames']} + {added} generated)"),
                "decoded frames": (decoded_frames(out) == expected, f"{decoded_frames(out)}"),
                "frame rate": (after["rate"] == before["rate"], f"{after['rate']} (source {before['rate']})"),
                "duration": (abs(after["duration"] - Fraction(expected) / before["rate"]) < Fraction(1, 1000),
                             f"{float(after['duration']):.3f} s for {expected} frames"),
                "size and pixel format": (after["size"] == before["size"] and after["pix_fmt"] == before["pix_fmt"],
                                          f"{after['size']} {after['pix_fmt']}"),
                "streams": (after["streams"] == before["streams"], f"{after['streams']} (source {before['streams']})"),
                "audio in sync": (all(abs(d - float(after["duration"])) <= 1 / float(after["rate"])
                                      for d in after["audio_durations"]), f"{after['audio_durations']}"),
            }
            for name, (ok, detail) in checks.items():
                print(f"  fill --mode {mode}: {name}: {'ok' if ok else 'FAILED'} ({detail})")
                if not ok:
                    failures.append(f"{mode}: {name}: {detail}")
    for failure in failures:
        print(f"acceptance_fill FAILED: {failure}", file=sys.stderr)
    print(f"acceptance_fill: {'FAILED' if failures else 'passed'} on {source.name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")))
