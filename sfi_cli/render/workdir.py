"""The work folder: finished gaps kept for resume, and the run's manifest.

Each gap's frames are stored under a key made of the engine with its settings, the
gap's own parameters (count, prompt, seed) and the content of its two boundary
frames. A gap folder is written under a temporary name and renamed when complete,
so a killed run leaves either a whole gap or none; a re-run finds the finished ones
and generates only the rest. Changing one transition's prompt regenerates that gap
alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sfi_cli.errors import SfiError
from sfi_cli.media.ffmpeg import convert_frames, decode_frames, ffmpeg_path
from sfi_cli.media.formats import rgb_format_of
from sfi_cli.media.publish import Publication, make_folder, write_text

# Bit-exact RGB, stored fast: lossless H.264 (about 10x quicker than PNG at 1080p) for 8 bits;
# FFV1 for 16-bit RGB (libx264rgb has 8 bits only).
LOSSLESS_ARGS = {"rgb24": ["-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast"],
                 "rgb48le": ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "gbrp16le"]}


def gap_key(engine_key: dict[str, Any], params: dict[str, Any], first: np.ndarray, last: np.ndarray) -> str:
    """A hex digest that changes whenever anything that shapes the gap's frames changes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"engine": engine_key, "gap": params}, sort_keys=True, default=str).encode())
    for frame in (first, last):
        digest.update(repr((frame.shape, str(frame.dtype))).encode())
        digest.update(np.ascontiguousarray(frame).data)
    return digest.hexdigest()[:32]


class GapCache:
    """Finished gaps in ``root/gaps/<key>/``: ``frames.mkv`` (lossless) and ``gap.json``."""

    def __init__(self, root: Path, ffmpeg: str) -> None:
        self.root = Path(root)
        self.ffmpeg = ffmpeg
        self.gaps = self.root / "gaps"
        make_folder(self.gaps, "the work folder")  # gaps half-made by killed runs go when the next is staged

    def folder(self, key: str) -> Path:
        return self.gaps / key

    def has(self, key: str) -> bool:
        return (self.folder(key) / "gap.json").is_file()

    def store(self, key: str, frames: Iterable[np.ndarray], meta: dict[str, Any], *, pix_fmt: str,
              video_filter: str) -> Iterator[np.ndarray]:
        """Store ``frames`` under ``key`` while handing them on as raw ``pix_fmt`` made by ``video_filter``.

        ``frames`` may be a generator: each is taken as it is made, so a gap of any length needs
        the memory of a few frames. One ffmpeg does both, so a gap made mid-splice is never decoded
        back. The gap is published (all at once) when the last frame has been handed on.
        """
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise SfiError(f"no frames to store for gap {key}")
        height, width = first.shape[:2]
        rgb = rgb_format_of(first)
        taken = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal taken
            for taken, frame in enumerate(itertools.chain([first], frames), start=1):
                yield frame

        with Publication() as results:
            staging = results.stage(self.folder(key), folder=True)
            handed_on = 0
            for handed_on, frame in enumerate(convert_frames(counted(), (width, height), pix_fmt=pix_fmt,
                                                             video_filter=video_filter, ffmpeg=self.ffmpeg,
                                                             from_pix_fmt=rgb,
                                                             also_write=[*LOSSLESS_ARGS[rgb], ffmpeg_path(staging / "frames.mkv")]),
                                              start=1):
                yield frame
            if handed_on != taken:
                raise SfiError(f"ffmpeg handed on {handed_on} of gap {key}'s {taken} frames")
            (staging / "gap.json").write_text(json.dumps(
                {**meta, "frames": taken, "width": width, "height": height}, indent=2, default=str))
            shutil.rmtree(self.folder(key), ignore_errors=True)  # a damaged or concurrent copy of this gap: replaced

    def frames(self, key: str, *, pix_fmt: str = "rgb24", video_filter: str | None = None) -> Iterator[np.ndarray]:
        """The stored frames in order, one at a time: RGB, or raw ``pix_fmt`` made by ``video_filter`` as they are decoded."""
        folder = self.folder(key)
        meta = json.loads((folder / "gap.json").read_text())
        count = 0
        for count, frame in enumerate(decode_frames(folder / "frames.mkv", (meta["width"], meta["height"]),
                                                    ffmpeg=self.ffmpeg, pix_fmt=pix_fmt, video_filter=video_filter),
                                      start=1):
            yield frame
        if count != meta["frames"]:
            raise SfiError(f"work folder gap {key} is damaged ({count} of {meta['frames']} frames); "
                           f"delete '{folder}' and run again")


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def manifest_path(output: Path) -> Path:
    """The manifest sits beside the output: ``out.mp4`` -> ``out.sfi.json``."""
    return output.with_name(f"{output.stem}.sfi.json")


def manifest_owner(output: Path) -> Path | None:
    """The other result (``out.mov`` beside ``out.mkv``) whose manifest ``output``'s would replace, if it is still there."""
    try:
        name = json.loads(manifest_path(output).read_text())["output"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    owner = output.with_name(Path(str(name)).name)  # the manifest is written beside its output
    return owner if owner.name != output.name and owner.exists() else None
