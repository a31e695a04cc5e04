"""Where finished frames go: a video file, a folder of PNGs, or a printf-style PNG pattern.

Every target is written under a temporary name and published by rename only when it
is complete (``sfi_cli.media.publish``), so an interrupted run never leaves a half-written
result, and an existing result is replaced only with ``--force``. A folder output
holds a small marker listing its frames: ``--force`` into a folder replaces those and
the frames it writes, never any other file; nothing that is an input is ever written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from sfi_cli import __version__
from sfi_cli.errors import SfiError
from sfi_cli.media.ffmpeg import VideoWriter
from sfi_cli.media.formats import CODEC_BY_SUFFIX, at_depth, codec_pix_fmt, even_padding
from sfi_cli.media.publish import Publication, refuse_inputs, require_writable_folder, same_file, writing

VIDEO_SUFFIXES = tuple(CODEC_BY_SUFFIX)  # each with its usual codec: H.264, or ProRes 422 HQ for .mov
MARKER = ".sfi-frames.json"  # in a folder output: the frames sfi wrote there
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


def parse_target(text: str) -> OutputTarget:
    """Classify an output argument by its form (``check_target`` refuses one that names an input)."""
    path = Path(text)
    if os.path.basename(text.rstrip("/" + os.sep)) in ("", ".", ".."):
        raise SfiError(f"output '{text}' names no file or folder of its own; give a new folder (e.g. -o frames/), "
                       f"a video (out.mp4) or a pattern (frames/%04d.png)")
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
    raise SfiError(f"unknown output extension '{path.suffix}': use .mp4, .mkv, .mov, a folder, or a pattern like frames/%04d.png")


def sequence_target(path: Path) -> OutputTarget:
    """A PNG sequence's target: by its %d pattern, else a folder (whatever its name looks like)."""
    return OutputTarget(Path(path), "pattern" if _PATTERN.search(Path(path).name) else "folder")


def earlier_result(folder: Path) -> list[Path]:
    """The files an earlier sfi run wrote into ``folder`` (from its marker), which ``--force`` may replace."""
    try:
        names = json.loads((folder / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    listed = [folder / name for name in names if isinstance(name, str) and name == Path(name).name and name not in (".", "..")]
    return [path for path in listed if not path.is_dir() or path.is_symlink()]  # sfi wrote files; a folder there is the user's


def output_files(target: OutputTarget, count: int) -> list[Path]:
    """Every file writing ``count`` frames to ``target`` creates, replaces or deletes."""
    if target.is_video:
        return [target.path]
    frames = [target.frame_path(index) for index in range(count)]
    if target.kind == "pattern":
        return frames
    return [*frames, target.path / MARKER, *earlier_result(target.path)]


def check_target(target: OutputTarget, force: bool, count: int, inputs: Iterable[Path]) -> None:
    """Before the first frame: the output's folder must be writable, no file it writes may exist without
    --force, and none may be an input (not even with --force)."""
    path, inputs = target.path, list(inputs)
    require_writable_folder(path.parent, "the output")
    if target.is_video and path.is_dir():
        raise SfiError(f"output '{path}' is a folder; give a video file name such as {path / 'out.mp4'}")
    if target.kind == "folder" and os.path.lexists(path):  # lexists: a dangling or looping symlink is a file too
        if not path.is_dir():
            raise SfiError(f"output '{path}' is a file, not a folder; choose another output path")
        require_writable_folder(path, "the output")
    refuse_inputs(output_files(target, count), inputs)
    if force:
        return
    existing = path if target.kind != "pattern" else next((f for f in output_files(target, count) if os.path.lexists(f)), None)
    if existing is not None and os.path.lexists(existing):
        raise SfiError(f"output '{existing}' already exists; pass --force to overwrite it")


def check_sheet(sheet: Path, force: bool, inputs: Iterable[Path], outputs: Iterable[Path] = ()) -> None:
    """Refuse a contact sheet path that is not a PNG, cannot be written, is an input or another output,
    or would overwrite without --force."""
    if sheet.suffix.lower() != ".png":
        raise SfiError(f"contact sheet '{sheet}' must be a .png file")
    if not sheet.parent.is_dir():
        raise SfiError(f"folder for contact sheet '{sheet}' does not exist; create it first")
    require_writable_folder(sheet.parent, "the contact sheet")
    if sheet.is_dir():
        raise SfiError(f"contact sheet '{sheet}' is a folder; give a file name such as {sheet / 'sheet.png'}")
    refuse_inputs([sheet], inputs, "contact sheet")
    if any(same_file(sheet, output) for output in outputs):
        raise SfiError(f"contact sheet '{sheet}' is also a frame of the output; choose another --sheet path")
    if os.path.lexists(sheet) and not force:
        raise SfiError(f"contact sheet '{sheet}' already exists; pass --force to overwrite it")


def even_size(frame: np.ndarray, pix_fmt: str) -> np.ndarray:
    """Pad the dimensions ``pix_fmt`` needs even by repeating the last row/column (never resampled)."""
    pad_x, pad_y = even_padding((frame.shape[1], frame.shape[0]), pix_fmt)
    if not (pad_x or pad_y):
        return frame
    return np.pad(frame, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")


def write_frames(target: OutputTarget, frames: Iterator[np.ndarray], results: Publication, *, fps: Fraction,
                 ffmpeg: str, crf: int, preset: str) -> int:
    """Write all ``frames`` to ``target`` under temporary names that ``results`` publishes; returns how many."""
    if target.is_video:
        return _write_video(target.path, frames, results, fps=fps, ffmpeg=ffmpeg, crf=crf, preset=preset)
    return place_frames(target, lambda where: _write_pngs(frames, where), results)


def place_frames(target: OutputTarget, put: Callable[[Callable[[int], Path]], int], results: Publication) -> int:
    """PNG frames into a folder or pattern ``target`` under temporary names that ``results`` publishes:
    ``put(where)`` writes each frame i it has to ``where(i)`` and returns how many it wrote."""
    if target.kind == "folder" and not target.path.exists():
        # A new folder appears whole: frames go into a hidden folder that is renamed when complete.
        staging = results.stage(target.path, folder=True)
        count = put(lambda index: target.frame_path(index, staging))
        _write_marker(staging / MARKER, count, target)
        return count
    # Into an existing folder (--force) or by a pattern: each frame beside its final name.
    count = put(lambda index: results.stage(target.frame_path(index)))
    if target.kind == "folder":
        _write_marker(results.stage(target.path / MARKER), count, target)
        written = set(output_files(target, count)[:count])
        for old in earlier_result(target.path):  # none is an input: check_target refused that
            if old not in written:
                results.retire(old)
    return count


def _write_video(path: Path, frames: Iterator[np.ndarray], results: Publication, **options) -> int:
    writer = None
    try:
        for frame in frames:
            frame = even_size(frame, codec_pix_fmt(path.suffix.lower()))
            if writer is None:
                writer = VideoWriter(path, (frame.shape[1], frame.shape[0]), results=results, **options)
            writer.write(frame)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise SfiError(f"nothing to write to {path}: no frames were produced")
    writer.close()
    return writer.frames_written


def _write_pngs(frames: Iterator[np.ndarray], where) -> int:
    """Save each frame as PNG at ``where(index)``; returns how many."""
    count = 0
    for count, frame in enumerate(frames, start=1):
        _save_png(frame, where(count - 1))
    return count


def _save_png(frame: np.ndarray, path: Path) -> None:
    with writing(path):
        Image.fromarray(frame).save(path, format="PNG", compress_level=3)


def _write_marker(path: Path, count: int, target: OutputTarget) -> None:
    """The list of frames this output holds, so a later ``--force`` replaces exactly those."""
    names = [target.frame_path(index).name for index in range(count)]
    with writing(path):
        path.write_text(json.dumps({"sfi": __version__, "files": names}) + "\n")


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

    def save(self, path: Path, results: Publication) -> None:
        """Write the sheet under a temporary name that ``results`` publishes (with the output it belongs to)."""
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
        partial = results.stage(path)
        with writing(path):
            sheet.save(partial, format="PNG")
