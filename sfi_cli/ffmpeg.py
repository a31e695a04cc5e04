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
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

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


# Frame layouts that come out as HxWx3 arrays; any other ffmpeg pixel format (yuv420p,
# yuv422p10le, ...) travels as a flat uint8 array of one frame's bytes.
RGB_DTYPES: dict[str, type] = {"rgb24": np.uint8, "bgr24": np.uint8}
PIPE_BYTES = 1 << 20  # bigger pipe buffers: a 1080p frame in 6 syscalls instead of 100


def raw_frame_size(pix_fmt: str, width: int, height: int) -> int:
    """Bytes of one raw frame of ``pix_fmt`` at ``width`` x ``height`` as ffmpeg's rawvideo carries it."""
    if pix_fmt in RGB_DTYPES:
        return width * height * 3
    import av

    video_format = av.VideoFormat(pix_fmt, width, height)
    return sum(c.width * c.height * (2 if c.bits > 8 else 1) for c in video_format.components)


def widen_pipe(stream) -> None:
    """Ask the kernel for a bigger pipe buffer (Linux only; harmless to skip elsewhere)."""
    import fcntl

    try:
        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass


class VideoWriter:
    """Streams raw frames into an encoded file, publishing it atomically on success.

    ``pix_fmt`` is the layout of the frames written: RGB arrays, or flat raw frames of
    another format (e.g. yuv420p10le) when the caller already has them in the codec's
    format; subclasses that need a different ffmpeg command override ``command``.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, *, ffmpeg: str,
                 crf: int = 18, preset: str = "medium", pix_fmt: str = "rgb24") -> None:
        self.path = Path(path)
        self.width, self.height = size
        self.fps = fps
        self.pix_fmt = pix_fmt
        self.frame_bytes = raw_frame_size(pix_fmt, self.width, self.height)
        self.partial = temporary_sibling(self.path)
        self.frames_written = 0
        command = self.command(ffmpeg, crf=crf, preset=preset)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        widen_pipe(self.process.stdin)

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        """The ffmpeg command line that reads raw frames on stdin and writes ``self.partial``."""
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        return [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{self.width}x{self.height}",
            "-framerate", rate, "-i", "pipe:0",
            *encoder_args(self.path.suffix.lower(), crf, preset),
            "-r", rate, str(self.partial),
        ]

    def write(self, frame: np.ndarray) -> None:
        if self.pix_fmt in RGB_DTYPES:
            if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frame {frame.shape} {frame.dtype} does not match {self.width}x{self.height} uint8 RGB")
        elif frame.nbytes != self.frame_bytes:
            raise ValueError(f"frame of {frame.nbytes} bytes does not match {self.width}x{self.height} {self.pix_fmt}")
        try:
            self.process.stdin.write(np.ascontiguousarray(frame).data)
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
                  extra_input_args: Sequence[str] = (), video_filter: str | None = None,
                  pix_fmt: str = "rgb24") -> Iterator[np.ndarray]:
    """Decode every frame of the first video stream at ``size``, in order, one at a time.

    Frames come out in presentation order, one per decoded frame (no rate conversion
    unless ``video_filter`` asks for it), so frame ``i`` here is frame ``i`` of the file:
    HxWx3 arrays for rgb24/bgr24, flat raw frames for any other ``pix_fmt``.
    """
    width, height = size
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", *extra_input_args, "-i", str(path),
        "-map", "0:v:0", "-fps_mode", "passthrough", *(["-vf", video_filter] if video_filter else []),
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "pipe:1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield from _read_frames(process, size, pix_fmt, f"ffmpeg could not decode {path}")


def convert_frames(frames: Iterable[np.ndarray], size: tuple[int, int], *, pix_fmt: str, video_filter: str,
                   ffmpeg: str) -> Iterator[np.ndarray]:
    """RGB frames turned by ffmpeg's ``video_filter`` into raw ``pix_fmt`` frames, in order, one at a time."""
    width, height = size
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-i", "pipe:0", "-vf", video_filter, "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1",
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure: list[BaseException] = []

    def feed() -> None:  # a thread of its own, so ffmpeg's buffering can never deadlock the pipes
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            pass
        except BaseException as error:  # handed to the reading side below
            failure.append(error)
            process.kill()
        finally:
            try:
                process.stdin.close()
            except OSError:
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield from _read_frames(process, size, pix_fmt, "ffmpeg could not convert frames")
    except SfiError:
        feeder.join()
        if failure:  # ffmpeg stopped because the frames ran out with an error: that error is the news
            raise failure[0] from None
        raise
    finally:
        feeder.join()
    if failure:
        raise failure[0]


def _read_frames(process: subprocess.Popen, size: tuple[int, int], pix_fmt: str, failed: str) -> Iterator[np.ndarray]:
    """Raw frames from ``process``'s stdout until it ends; one SfiError if ffmpeg fails."""
    width, height = size
    frame_bytes = raw_frame_size(pix_fmt, width, height)
    shape = (height, width, 3) if pix_fmt in RGB_DTYPES else (frame_bytes,)
    widen_pipe(process.stdout)
    finished = False
    try:
        while (chunk := process.stdout.read(frame_bytes)) and len(chunk) == frame_bytes:
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(shape)
        finished = process.wait() == 0
        if not finished:
            message = process.stderr.read().decode(errors="replace").strip().splitlines()
            raise SfiError(f"{failed}: {message[-1] if message else 'unknown error'}")
    finally:
        if not finished:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
