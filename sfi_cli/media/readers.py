"""Frames of the timeline's media by frame number, at the output's size, rate and pixel format.

A ``VideoReader`` keeps one ffmpeg decoder open and reads forward, so a run of
ranges in order (the usual case: shot after shot of one video) costs one decode of
the file; a range that lies behind, or far ahead, starts a new decoder seeked to it.
Frame ``i`` is the ``i``-th decoded frame in presentation order: the same numbering
the cut detector uses. A clip whose rate differs from the output's (or varies) is
read through ffmpeg's ``fps`` filter, so frame ``i`` is the one shown at ``i / rate``.
"""

from __future__ import annotations

import bisect

from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sfi_cli.errors import SfiError
from sfi_cli.media.ffmpeg import CAN_MOVE_FRAMES, VideoWriter, convert_frames, decode_frames
from sfi_cli.media.formats import RGB_DTYPES, at_depth, pad_frame
from sfi_cli.media.probe import MediaInfo


def fit_filter(source: tuple[int, int], size: tuple[int, int], fit: str, flags: str = "lanczos") -> str | None:
    """ffmpeg filters bringing ``source`` (w, h) to ``size`` by the fit policy, or None when sizes match."""
    if source == size:
        return None
    width, height = size
    if fit == "stretch":
        return f"scale={width}:{height}:flags={flags}"
    if fit == "cover":
        return f"scale={width}:{height}:force_original_aspect_ratio=increase:flags={flags},crop={width}:{height}"
    return (f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags={flags},"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")


def seconds_arg(value: Fraction) -> str:
    return f"{float(value):.6f}"


class VideoReader:
    """Frames of one video by number, at ``size`` and ``rate``, in raw layout ``pix_fmt``.

    ``color_filter`` converts the clip's colours to the output's when they differ; ``sar`` is the output's
    pixel aspect (a clip with other pixels is fitted by its display aspect); ``pad`` the columns and rows
    repeated at the right/bottom edge to reach ``size`` (footage is padded, never resampled, to an even size);
    ``scale_flags`` picks ffmpeg's scaler (lanczos for pictures, area for analysis);
    ``decoder_args`` are extra ffmpeg input options (e.g. faster, inexact decoding for analysis);
    ``native``: frame ``i`` is the ``i``-th frame the file shows, whatever ``rate`` (``sfi retime`` places
    output frames between them by their own times), read without rate conversion.
    """

    def __init__(self, info: MediaInfo, *, size: tuple[int, int], fit: str, rate: Fraction, pix_fmt: str,
                 keep_rotation: bool, ffmpeg: str, color_filter: str | None = None, scale_flags: str = "lanczos",
                 decoder_args: Sequence[str] = (), sar: Fraction | None = None, pad: tuple[int, int] = (0, 0),
                 native: bool = False) -> None:
        self.info = info
        self.size = size
        self.rate = info.rate if native else rate
        self.pix_fmt = pix_fmt
        self.ffmpeg = ffmpeg
        self.conform = not native and (info.vfr or info.rate != rate)
        # A variable-rate file's own frames have no place by number: it is read from its start, never seeked.
        self.unseekable = native and info.vfr
        self.keep_rotation = keep_rotation
        self.decoder_args = list(decoder_args)
        stored = (info.width, info.height) if keep_rotation else info.display_size
        source_sar = info.display_sar(keep_rotation)
        aspect_filter = None
        if sar is not None and source_sar != sar:  # into the output's pixel shape first
            stored = (max(1, round(stored[0] * source_sar / sar)), stored[1])
            aspect_filter = f"scale={stored[0]}:{stored[1]}:flags={scale_flags},setsar=1"
        self.picture = (size[0] - pad[0], size[1] - pad[1])  # decoded at this size, then padded to ``size``
        self.rate_filter = f"fps={rate.numerator}/{rate.denominator}" if self.conform else None
        self.picture_filters = [f for f in (aspect_filter, fit_filter(stored, self.picture, fit, scale_flags),
                                            color_filter) if f]
        self.video_filter = ",".join(f for f in (self.rate_filter, *self.picture_filters) if f) or None
        self.skip_limit = max(1, round(2 * self.rate))  # without keyframe facts: read on over gaps shorter than ~2 s
        self.seek_cost = max(1, round(self.rate / 2))  # a new decoder costs about as much as reading on this many frames
        self._decoder: Iterator[np.ndarray] | None = None
        self._position = 0
        self._last: np.ndarray | None = None

    def _input_args(self, start: int) -> list[str]:
        """ffmpeg input options that make decoding begin at frame ``start``."""
        args = [*self.decoder_args, *(["-noautorotate"] if self.keep_rotation else [])]
        if start > 0 and not self.unseekable:
            # Exact rate: aim half a frame early, so rounding can never skip frame ``start``.
            offset = Fraction(0) if self.conform else Fraction(1, 2)
            args += ["-ss", seconds_arg(self.info.start_offset + (start - offset) / self.rate)]
        return args

    def _open(self, start: int) -> None:
        self.close()
        self._decoder = decode_frames(self.info.path, self.picture, ffmpeg=self.ffmpeg,
                                      extra_input_args=self._input_args(start), video_filter=self.video_filter,
                                      pix_fmt=self.pix_fmt)
        self._position = 0 if self.unseekable else start
        self._last = None

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames ``start`` .. ``stop - 1``, one at a time.

        The frame handed out last can be asked for again without a new decoder: a
        transition's boundary frame is also the last (or first) frame of the footage beside it.
        """
        if self._last is not None and self._decoder is not None and start == self._position - 1 < stop:
            yield self._last
            start += 1
        if start >= stop:
            return
        if self._decoder is None or not self._reads_on_to(start):
            self._open(start)
        if self._position < start and not self.conform:  # a converted clip may need its last frame held
            self._position += self._decoder.skip(start - self._position)
            self._last = None  # what was skipped never reached Python
        while self._position < stop:
            frame = self._padded(next(self._decoder, None))
            if frame is None:
                frame = self._ran_out(stop)
            else:
                self._last = frame
            self._position += 1
            if self._position > start:
                yield frame

    def _reads_on_to(self, start: int) -> bool:
        """Whether the open decoder should read on to frame ``start`` rather than a new one seek to it: a seek
        decodes from the keyframe at or before ``start``, so it pays only when that keyframe lies well ahead
        of where the decoder is (in long GOPs a seek can cost more decoding than reading on)."""
        if start < self._position:
            return False
        if self.unseekable:
            return True
        if self.conform or not self.info.keyframes:  # frame numbers of a converted clip are not the file's
            return start <= self._position + self.skip_limit
        keyframe = self.info.keyframes[max(0, bisect.bisect_right(self.info.keyframes, start) - 1)]
        return start - self._position <= start - keyframe + self.seek_cost

    def relay(self, start: int, stop: int, writer: VideoWriter) -> None:
        """Frames ``start`` .. ``stop - 1`` into ``writer``: the first and last read as usual (either may be a
        transition's boundary frame), those between moved decoder to encoder without passing through Python."""
        # A converted clip may need its last frame held; a padded one is grown frame by frame.
        if self.conform or self.picture != self.size or not CAN_MOVE_FRAMES or stop - start < 3:
            for frame in self.frames(start, stop):
                writer.write(frame)
            return
        writer.write(self.frame(start))
        wanted = stop - 1 - self._position
        moved = writer.relay(self._decoder, wanted)
        self._position += moved
        self._last = None  # what the decoder handed out last never reached Python
        if moved != wanted:
            self._ran_out(stop)
        writer.write(self.frame(stop - 1))

    def _padded(self, frame: np.ndarray | None) -> np.ndarray | None:
        """A decoded frame grown to ``size`` where the codec needs padding."""
        if frame is None or self.picture == self.size:
            return frame
        return pad_frame(frame, self.pix_fmt, self.picture, self.size)

    def _ran_out(self, stop: int) -> np.ndarray:
        """A converted clip may end a frame or two early: hold its last frame; an exact one may not."""
        if self.conform and self._last is not None and stop - self._position <= 2:
            return self._last
        raise SfiError(f"'{self.info.path}' ended at frame {self._position}, before frame {stop - 1} that the plan needs; "
                       f"the file may be truncated")

    def frame(self, index: int) -> np.ndarray:
        return next(iter(self.frames(index, index + 1)))

    def every_frame(self) -> Iterator[np.ndarray]:
        """All frames from the first to wherever the file really ends."""
        self._open(0)
        for frame in self._decoder:
            self._position += 1
            yield self._padded(frame)

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


class StillReader:
    """An image held for as many frames as asked, fitted to ``size`` and converted to ``pix_fmt`` once.

    ``rgb`` is the picture as the engines get it (``rgb_pix_fmt``: 8 or 16 bits); ``to_output`` is the
    ffmpeg filter from it to ``pix_fmt`` when that is not RGB. ``sar`` and ``pad`` as for ``VideoReader``
    (an image has square pixels).
    """

    def __init__(self, path: Path, *, size: tuple[int, int], fit: str, pix_fmt: str, ffmpeg: str,
                 to_output: str | None = None, rgb_pix_fmt: str = "rgb24", sar: Fraction = Fraction(1),
                 pad: tuple[int, int] = (0, 0)) -> None:
        from PIL import Image

        from sfi_cli.media.images import load_image, resize_to

        image = load_image(path)
        if sar != 1:  # square pixels into the output's pixel shape, so the picture keeps its display aspect
            height, width = image.shape[:2]
            image = np.asarray(Image.fromarray(image).resize((max(1, round(width / sar)), height), Image.Resampling.LANCZOS))
        picture = resize_to(image, (size[0] - pad[0], size[1] - pad[1]), fit)
        self.rgb = at_depth(np.pad(picture, ((0, pad[1]), (0, pad[0]), (0, 0)), mode="edge"), RGB_DTYPES[rgb_pix_fmt])
        self.raw = self.rgb
        if pix_fmt not in RGB_DTYPES:
            self.raw = next(convert_frames([self.rgb], size, pix_fmt=pix_fmt, video_filter=to_output, ffmpeg=ffmpeg,
                                           from_pix_fmt=rgb_pix_fmt))

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for _ in range(start, stop):
            yield self.raw

    def frame(self, index: int) -> np.ndarray:
        return self.raw

    def relay(self, start: int, stop: int, writer: VideoWriter) -> None:
        for frame in self.frames(start, stop):
            writer.write(frame)

    def close(self) -> None:
        pass
