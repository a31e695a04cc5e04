"""Where finished frames go: a video file, a folder of PNGs, or a printf-style PNG pattern.

Every target is written under a temporary name and published by rename only when it
is complete, so an interrupted run never leaves a half-written result, and an
existing result is replaced only with ``--force``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from sfi_cli.errors import SfiError
from sfi_cli.ffmpeg import CODECS, VideoWriter, codec_pix_fmt
from sfi_cli.formats import at_depth

VIDEO_SUFFIXES = tuple(CODECS)
_PATTERN = re.compile(r"%0?\d*d")


@dataclass(frozen=True)
class OutputTarget:
    """A parsed ``-o`` value: ``kind`` is "video", "folder" or "pattern"."""

    path: Path
    kind: str

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    def frame_path(self, index: int, root: Path | None = None) -> Path:
        """Where PNG frame ``index`` (0-based) goes, inside ``root`` if given."""
        if self.kind == "pattern":
            name = self.path.name % (index + 1)
            return (root or self.path.parent) / name
        return (root or self.path) / f"frame_{index + 1:05d}.png"


def parse_target(text: str, inputs: Iterable[Path]) -> OutputTarget:
    """Classify an output argument by its form, refusing one that names an input."""
    path = Path(text)
    for source in inputs:
        if Path(source).resolve() == path.resolve():
            raise SfiError(f"output '{path}' is also an input; choose another output path")
    suffix = path.suffix.lower()
    if _PATTERN.search(path.name):
        if suffix != ".png":
            raise SfiError(f"frame pattern '{text}' must end in .png (e.g. frames/shot_%04d.png)")
        try:
            path.name % 1
        except (TypeError, ValueError):
            raise SfiError(f"frame pattern '{text}' must hold exactly one %d-style number, e.g. shot_%04d.png") from None
        return OutputTarget(path, "pattern")
    if suffix in VIDEO_SUFFIXES:
        return OutputTarget(path, "video")
    if text.endswith(("/", os.sep)) or path.is_dir() or not suffix:
        return OutputTarget(path, "folder")
    raise SfiError(f"unknown output extension '{path.suffix}': use .mp4, .mov, a folder, or a pattern like frames/%04d.png")


def check_target(target: OutputTarget, force: bool) -> None:
    """Refuse outputs that would land in missing folders or overwrite without --force."""
    parent = target.path.parent
    if not parent.is_dir():
        raise SfiError(f"output folder '{parent}' does not exist; create it first or choose another output path")
    if target.kind == "pattern":
        existing = target.frame_path(0)
    else:
        existing = target.path
    if existing.exists() and not force:
        raise SfiError(f"output '{existing}' already exists; pass --force to overwrite it")


def check_sheet(sheet: Path, force: bool) -> None:
    """Refuse a contact sheet path that is not a PNG, has no folder, or would overwrite without --force."""
    if sheet.suffix.lower() != ".png":
        raise SfiError(f"contact sheet '{sheet}' must be a .png file")
    if not sheet.parent.is_dir():
        raise SfiError(f"folder for contact sheet '{sheet}' does not exist; create it first")
    if sheet.exists() and not force:
        raise SfiError(f"contact sheet '{sheet}' already exists; pass --force to overwrite it")


def even_size(frame: np.ndarray, pix_fmt: str) -> np.ndarray:
    """Pad the dimensions ``pix_fmt`` needs even by repeating the last row/column (never resampled)."""
    from sfi_cli.formats import even_padding

    pad_x, pad_y = even_padding((frame.shape[1], frame.shape[0]), pix_fmt)
    if not (pad_x or pad_y):
        return frame
    return np.pad(frame, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")


def write_frames(target: OutputTarget, frames: Iterator[np.ndarray], *, fps: Fraction, ffmpeg: str,
                 crf: int, preset: str) -> int:
    """Write all ``frames`` to ``target``; returns how many were written."""
    if target.is_video:
        return _write_video(target.path, frames, fps=fps, ffmpeg=ffmpeg, crf=crf, preset=preset)
    if target.kind == "folder":
        return _write_folder(target, frames)
    return _write_pattern(target, frames)


def _write_video(path: Path, frames: Iterator[np.ndarray], **options) -> int:
    writer = None
    try:
        for frame in frames:
            frame = even_size(frame, codec_pix_fmt(path.suffix.lower()))
            if writer is None:
                writer = VideoWriter(path, (frame.shape[1], frame.shape[0]), **options)
            writer.write(frame)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise SfiError(f"nothing to write to {path}: no frames were produced")
    writer.close()
    return writer.frames_written


def _save_png(frame: np.ndarray, path: Path) -> None:
    Image.fromarray(frame).save(path, format="PNG", compress_level=3)


def _write_folder(target: OutputTarget, frames: Iterator[np.ndarray]) -> int:
    staging = target.path.with_name(f".{target.path.name}.sfi-partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    count = 0
    try:
        for count, frame in enumerate(frames, start=1):
            _save_png(frame, target.frame_path(count - 1, staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.path.exists():
        shutil.rmtree(target.path)
    os.replace(staging, target.path)
    return count


def _write_pattern(target: OutputTarget, frames: Iterator[np.ndarray]) -> int:
    """Frames go beside their final names as hidden partial files, renamed once all are done."""
    written: list[tuple[Path, Path]] = []
    try:
        for index, frame in enumerate(frames):
            final = target.frame_path(index)
            partial = final.with_name(f".{final.name}.sfi-partial")
            _save_png(frame, partial)
            written.append((partial, final))
    except BaseException:
        for partial, _ in written:
            partial.unlink(missing_ok=True)
        raise
    for partial, final in written:
        os.replace(partial, final)
    return len(written)


MAX_THUMBNAILS = 256  # 32 rows of 8: a sheet stays a few MB however long the result


class ContactSheet:
    """A grid of thumbnails numbered by frame, built while frames stream past, for a quick look at a result.

    At most ``limit`` are kept: when one more arrives, every other thumbnail is dropped and from
    then on only every other frame is taken, so any number of frames gives an even sample of
    between ``limit / 2`` and ``limit`` (every frame when there are no more than ``limit``).
    """

    def __init__(self, columns: int = 8, thumb_width: int = 240, limit: int = MAX_THUMBNAILS) -> None:
        self.columns = columns
        self.thumb_width = thumb_width
        self.limit = limit
        self.thumbnails: list[tuple[int, Image.Image]] = []  # (frame number from 1, thumbnail)
        self.seen = 0
        self.step = 1

    def add(self, frame: np.ndarray) -> np.ndarray:
        self.seen += 1
        if (self.seen - 1) % self.step:
            return frame
        height, width = frame.shape[:2]
        thumb_height = max(1, round(height * self.thumb_width / width))
        thumbnail = Image.fromarray(at_depth(frame, np.uint8)).resize((self.thumb_width, thumb_height),
                                                                      Image.Resampling.BILINEAR)
        self.thumbnails.append((self.seen, thumbnail))
        if len(self.thumbnails) > self.limit:
            self.thumbnails = self.thumbnails[::2]
            self.step *= 2
        return frame

    def save(self, path: Path) -> None:
        from PIL import ImageDraw

        if not self.thumbnails:
            raise SfiError("no frames for a contact sheet")
        thumb_width, thumb_height = self.thumbnails[0][1].size
        columns = min(self.columns, len(self.thumbnails))
        rows = -(-len(self.thumbnails) // columns)
        sheet = Image.new("RGB", (columns * thumb_width, rows * thumb_height), (24, 24, 24))
        draw = ImageDraw.Draw(sheet)
        for index, (number, thumbnail) in enumerate(self.thumbnails):
            x, y = (index % columns) * thumb_width, (index // columns) * thumb_height
            sheet.paste(thumbnail, (x, y))
            draw.text((x + 4, y + 2), str(number), fill=(255, 255, 0))
        partial = path.with_name(f".{path.name}.sfi-partial.png")
        sheet.save(partial, format="PNG")
        os.replace(partial, path)
