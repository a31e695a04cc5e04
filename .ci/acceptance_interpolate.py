"""Acceptance: `sfi interpolate` on the team's real image pairs, checked by decoding the output.

Usage: .venv/bin/python .ci/acceptance_interpolate.py ../shared/data
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import av

from sfi_cli.media.ffmpeg import find_ffmpeg

SFI = str(Path(sys.executable).with_name("sfi"))


def decoded_frames(path: Path) -> int:
    listing = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
                             check=True, capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines() if line and not line.startswith("#"))


def check(pair: str, data: Path, out_dir: Path, frames: int, suffix: str, size: tuple[int, int]) -> None:
    first, last = data / "pairs" / f"{pair}-first", data / "pairs" / f"{pair}-last"
    first, last = (next(p.parent.glob(p.name + ".*")) for p in (first, last))
    out = out_dir / f"{pair}-{frames}{suffix}"
    subprocess.run([SFI, "interpolate", str(first), str(last), "--frames", str(frames), "-o", str(out), "--quiet"], check=True)
    count = decoded_frames(out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        got_size = (stream.width, stream.height)
    ok = count == frames + 2 and got_size == size
    print(f"{'ok  ' if ok else 'FAIL'} {out.name}: {count} frames (want {frames + 2}), {got_size[0]}x{got_size[1]} (want {size[0]}x{size[1]})")
    if not ok:
        sys.exit(1)


def main() -> None:
    data = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        check("fox", data, out_dir, 12, ".mp4", (360, 448))  # the two fox images differ in size
        check("fox", data, out_dir, 1, ".mov", (360, 448))
        check("bird", data, out_dir, 23, ".mp4", (1024, 1024))


if __name__ == "__main__":
    main()
