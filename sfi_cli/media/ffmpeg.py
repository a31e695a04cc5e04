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
from sfi_cli.media import formats
from sfi_cli.media.formats import RGB_DTYPES
from sfi_cli.media.publish import Publication

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


# What every container's time base holds exactly (mp4 fails below 1/1000 fps; ffmpeg's rationals are 32-bit).
MIN_RATE, MAX_RATE, RATE_TERMS = Fraction(1, 1000), Fraction(100000), 2**31 - 1


def parse_rate(value: str | int | float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 24, 29.97, "30000/1001"."""
    try:
        rate = Fraction(str(value)) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError):
        raise SfiError(f"bad frame rate '{value}': use a number such as 24 or a fraction such as 24000/1001") from None
    if rate <= 0:
        raise SfiError(f"bad frame rate '{value}': it must be greater than 0")
    if not MIN_RATE <= rate <= MAX_RATE or max(rate.numerator, rate.denominator) > RATE_TERMS:
        raise SfiError(f"bad frame rate '{value}': ffmpeg's containers take {MIN_RATE} to {MAX_RATE} fps, "
                       f"as a fraction of whole numbers up to {RATE_TERMS}")
    return rate


def ffmpeg_path(path: Path | str) -> str:
    """``path`` as ffmpeg must be given it: always a plain file (``concat:b.mp4``, ``file:x.mp4`` or
    ``-x.mp4`` name files of that name, never a protocol or an option)."""
    return "file:" + os.path.abspath(path)


PIPE_BYTES = 1 << 20  # bigger pipe buffers: a 1080p frame in 6 syscalls instead of 100


def raw_frame_size(pix_fmt: str, width: int, height: int) -> int:
    """Bytes of one raw frame of ``pix_fmt`` at ``width`` x ``height`` as ffmpeg's rawvideo carries it."""
    if pix_fmt in RGB_DTYPES:
        return width * height * 3 * RGB_DTYPES[pix_fmt].itemsize
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
    RGB frames are encoded in, and tagged with, the standard of their size (BT.709 for HD,
    BT.601 for SD: see ``formats.picture_standard``).

    The file is published by ``close``, or with ``results`` when the caller publishes that
    (together with other files, e.g. a contact sheet that must not fail after the video is out).
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, *, ffmpeg: str,
                 crf: int = 18, preset: str = "medium", pix_fmt: str = "rgb24",
                 results: Publication | None = None) -> None:
        self.path = Path(path)
        self.width, self.height = size
        self.fps = fps
        self.pix_fmt = pix_fmt
        self.frame_bytes = raw_frame_size(pix_fmt, self.width, self.height)
        self.own_results = results is None
        self.results = Publication() if results is None else results
        self.partial = self.stage()
        self.frames_written = 0
        command = self.command(ffmpeg, crf=crf, preset=preset)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        widen_pipe(self.process.stdin)

    def stage(self) -> Path:
        """Where ffmpeg writes: a temporary name of the output that ``results`` publishes."""
        return self.results.stage(self.path)

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        """The ffmpeg command line that reads raw frames on stdin and writes ``self.partial``."""
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        suffix = self.path.suffix.lower()
        codec = formats.CODEC_BY_SUFFIX[suffix]
        pix_fmt = formats.output_pix_fmt(codec)
        colour = (formats.standard_encoding(self.pix_fmt, pix_fmt, (self.width, self.height), ffmpeg)
                  if self.pix_fmt in RGB_DTYPES else [])
        encoder = formats.encoder_options(codec, pix_fmt, formats.quality_for(codec, crf), preset, suffix=suffix)
        return [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{self.width}x{self.height}",
            "-framerate", rate, "-i", "pipe:0",
            *colour, *formats.as_arguments(encoder),
            "-r", rate, ffmpeg_path(self.partial),
        ]

    def write(self, frame: np.ndarray) -> None:
        if self.pix_fmt in RGB_DTYPES:
            dtype = RGB_DTYPES[self.pix_fmt]
            if frame.shape != (self.height, self.width, 3) or frame.dtype != dtype:
                raise ValueError(f"frame {frame.shape} {frame.dtype} does not match {self.width}x{self.height} {dtype} RGB")
        elif frame.nbytes != self.frame_bytes:
            raise ValueError(f"frame of {frame.nbytes} bytes does not match {self.width}x{self.height} {self.pix_fmt}")
        try:
            self.process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            raise SfiError(f"ffmpeg stopped while writing {self.path}: {self._stderr()}") from None
        self.frames_written += 1

    def relay(self, stream: "FrameStream", count: int) -> int:
        """Pass ``count`` frames from a decoder's ``stream`` straight into ffmpeg; returns how many it had."""
        self.process.stdin.flush()  # anything written before must arrive first
        try:
            moved = stream.move_to(self.process.stdin.fileno(), count)
        except BrokenPipeError:
            raise SfiError(f"ffmpeg stopped while writing {self.path}: {self._stderr()}") from None
        self.frames_written += moved
        return moved

    def _stderr(self) -> str:
        self.process.wait()
        text = self.process.stderr.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else f"exit code {self.process.returncode}"

    def close(self) -> None:
        """Finish encoding and move the file to its final name (unless the caller's ``results`` publish it)."""
        self.process.stdin.close()
        if self.process.wait() != 0:
            message = self._stderr()
            self.results.discard()
            raise SfiError(f"ffmpeg failed to write {self.path}: {message}")
        self.process.stderr.close()
        if self.own_results:
            self.results.publish()

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (and whatever else the run staged with it)."""
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.results.discard()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def decode_frames(path: Path, size: tuple[int, int], *, ffmpeg: str,
                  extra_input_args: Sequence[str] = (), video_filter: str | None = None,
                  pix_fmt: str = "rgb24") -> FrameStream:
    """Decode every frame of the first video stream at ``size``, in order, one at a time.

    Frames come out in presentation order, one per decoded frame (no rate conversion
    unless ``video_filter`` asks for it), so frame ``i`` here is frame ``i`` of the file:
    HxWx3 arrays for rgb24/bgr24, flat raw frames for any other ``pix_fmt``.
    """
    width, height = size
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", *extra_input_args, "-i", ffmpeg_path(path),
        "-map", "0:v:0", "-fps_mode", "passthrough", *(["-vf", video_filter] if video_filter else []),
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "pipe:1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    return FrameStream(process, size, pix_fmt, f"ffmpeg could not decode {path}")


def convert_frames(frames: Iterable[np.ndarray], size: tuple[int, int], *, pix_fmt: str, video_filter: str,
                   ffmpeg: str, from_pix_fmt: str = "rgb24", also_write: Sequence[str] = ()) -> Iterator[np.ndarray]:
    """Raw ``from_pix_fmt`` frames turned by ffmpeg's ``video_filter`` into raw ``pix_fmt`` frames, in order, one at a time.

    ``also_write`` is a further ffmpeg output (options, then a path) that the same process
    writes from the unconverted frames, e.g. a lossless copy.
    """
    width, height = size
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", from_pix_fmt,
        "-s", f"{width}x{height}", "-i", "pipe:0", *also_write,
        "-vf", video_filter, "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1",
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
    stream = FrameStream(process, size, pix_fmt, "ffmpeg could not convert frames")
    try:
        yield from stream
    except SfiError:
        feeder.join()
        if failure:  # ffmpeg stopped because the frames ran out with an error: that error is the news
            raise failure[0] from None
        raise
    finally:
        stream.close()
        feeder.join()
    if failure:
        raise failure[0]


class FrameStream:
    """Raw frames from an ffmpeg process's stdout until it ends; one SfiError if ffmpeg fails.

    Iterating gives each frame as an array (HxWx3 for RGB, flat bytes otherwise).
    ``move_to`` instead passes frames on to another pipe inside the kernel (Linux
    ``splice``): footage that is only relayed from a decoder to an encoder never gets
    copied through Python, which at 1080p costs the encoder several percent of its speed.
    """

    def __init__(self, process: subprocess.Popen, size: tuple[int, int], pix_fmt: str, failed: str) -> None:
        self.process, self.failed, self.closed = process, failed, False
        width, height = size
        self.frame_bytes = raw_frame_size(pix_fmt, width, height)
        self.dtype = RGB_DTYPES.get(pix_fmt, np.dtype(np.uint8))
        self.shape = (height, width, 3) if pix_fmt in RGB_DTYPES else (self.frame_bytes,)
        widen_pipe(process.stdout)

    def __iter__(self) -> "FrameStream":
        return self

    def __next__(self) -> np.ndarray:
        buffer = bytearray(self.frame_bytes)
        view, filled = memoryview(buffer), 0
        while filled < self.frame_bytes and not self.closed:
            got = self.process.stdout.readinto(view[filled:])
            if not got:
                break
            filled += got
        if filled < self.frame_bytes:
            self._finish()
            raise StopIteration
        return np.frombuffer(buffer, dtype=self.dtype).reshape(self.shape)

    def move_to(self, sink: int, count: int) -> int:
        """Pass up to ``count`` whole frames on to the pipe ``sink``; returns how many (fewer: the stream ended)."""
        source = self.process.stdout.fileno()
        for moved in range(count):
            left = self.frame_bytes
            while left:
                got = os.splice(source, sink, left)
                if not got:
                    if left != self.frame_bytes:
                        raise SfiError(f"{self.failed}: ffmpeg stopped in the middle of a frame")
                    self._finish()
                    return moved
                left -= got
        return count

    def skip(self, count: int) -> int:
        """Drop up to ``count`` frames unread; returns how many there were. On Linux they go to /dev/null inside
        the kernel: reading on through a long GOP then costs the decoding only, not a copy of every frame."""
        if not CAN_MOVE_FRAMES:
            return sum(1 for _ in zip(range(count), self))
        with open(os.devnull, "wb") as null:
            return self.move_to(null.fileno(), count)

    def _finish(self) -> None:
        """The stream ran out: fine if ffmpeg exited cleanly, else its last words as the error."""
        if self.closed:
            return
        code = self.process.wait()
        message = self.process.stderr.read().decode(errors="replace").strip().splitlines() if code else []
        self.close()
        if code:
            raise SfiError(f"{self.failed}: {message[-1] if message else 'unknown error'}")

    def close(self) -> None:
        """Stop ffmpeg if it is still running and release its pipes."""
        if self.closed:
            return
        self.closed = True
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()

    def __del__(self) -> None:
        self.close()


CAN_MOVE_FRAMES = hasattr(os, "splice")  # Linux: frames relayed pipe to pipe in the kernel
