"""Finding ffmpeg and streaming frames through it.

Frames never pile up in memory: a ``VideoWriter`` pipes each RGB frame to an
ffmpeg process as it is made, and ``decode_frames`` reads them back one by one.
Every file is written under a temporary name and renamed only when ffmpeg has
finished cleanly, so a killed run never leaves a half-written video behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sfi_cli.errors import SfiError

FFMPEG_ENV = "SFI_FFMPEG"


def find_ffmpeg(configured: str | None = None) -> str:
    """The ffmpeg to run: configured path or $SFI_FFMPEG, else the system's, else the bundled one."""
    wanted = configured or os.environ.get(FFMPEG_ENV)
    if wanted:
        found = shutil.which(wanted)
        if not found:
            raise SfiError(f"configured ffmpeg '{wanted}' was not found or is not executable; fix the 'ffmpeg' key or ${FFMPEG_ENV}")
        return found
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a hard dependency
        raise SfiError("no ffmpeg found: install ffmpeg or the imageio-ffmpeg package") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def parse_rate(value: str | int | float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 24, 29.97, "30000/1001"."""
    try:
        rate = Fraction(str(value)) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError):
        raise SfiError(f"bad frame rate '{value}': use a number such as 24 or a fraction such as 24000/1001") from None
    if rate <= 0:
        raise SfiError(f"bad frame rate '{value}': it must be greater than 0")
    return rate


# Encoder arguments per container; the pixel format is the codec's usual delivery format.
CODECS: dict[str, list[str]] = {
    ".mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    ".mov": ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", "-vendor", "apl0"],
}


def encoder_args(suffix: str, crf: int, preset: str) -> list[str]:
    """ffmpeg output options for a container, with quality settings where the codec has them."""
    args = list(CODECS[suffix])
    if suffix == ".mp4":
        args += ["-crf", str(crf), "-preset", preset]
    return args


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` with the same suffix, so ffmpeg picks the same muxer."""
    return path.with_name(f".{path.stem}.sfi-partial-{os.getpid()}{path.suffix}")


class VideoWriter:
    """Streams RGB frames into an encoded file, publishing it atomically on success."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, *, ffmpeg: str,
                 crf: int = 18, preset: str = "medium") -> None:
        self.path = Path(path)
        self.width, self.height = size
        self.fps = fps
        self.partial = temporary_sibling(self.path)
        self.frames_written = 0
        command = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
            "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0",
            *encoder_args(self.path.suffix.lower(), crf, preset),
            "-r", f"{fps.numerator}/{fps.denominator}", str(self.partial),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} does not match {self.width}x{self.height} uint8 RGB")
        try:
            self.process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise SfiError(f"ffmpeg stopped while writing {self.path}: {self._stderr()}") from None
        self.frames_written += 1

    def _stderr(self) -> str:
        self.process.wait()
        text = self.process.stderr.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else f"exit code {self.process.returncode}"

    def close(self) -> None:
        """Finish encoding and move the file to its final name."""
        self.process.stdin.close()
        if self.process.wait() != 0:
            message = self._stderr()
            self.partial.unlink(missing_ok=True)
            raise SfiError(f"ffmpeg failed to write {self.path}: {message}")
        self.process.stderr.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file."""
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def decode_frames(path: Path, size: tuple[int, int], *, ffmpeg: str,
                  extra_input_args: Sequence[str] = ()) -> Iterator[np.ndarray]:
    """Decode every frame of the first video stream as RGB at ``size``, in order, one at a time."""
    width, height = size
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", *extra_input_args, "-i", str(path),
        "-map", "0:v:0", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "pipe:1",
    ]
    frame_bytes = width * height * 3
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished = False
    try:
        while (chunk := process.stdout.read(frame_bytes)) and len(chunk) == frame_bytes:
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3)
        finished = process.wait() == 0
        if not finished:
            message = process.stderr.read().decode(errors="replace").strip().splitlines()
            raise SfiError(f"ffmpeg could not decode {path}: {message[-1] if message else 'unknown error'}")
    finally:
        if not finished:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
