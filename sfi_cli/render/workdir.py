"""The work folder: finished gaps kept for resume, and the run's manifest.

Each gap's frames are stored under a key made of the sfi version, the engine's name with
all its settings (and a fingerprint of each file a setting names), the gap's own parameters (count, prompt, seed) and the identity of its
two boundary frames: a content fingerprint of each source, the frame number and every
reader setting that shapes the frame (size, fit, rate, pixel formats, colours, pixel
aspect, padding). So the key is known from the plan alone: the splice (pass 2) finds
the gaps without decoding a boundary frame or building an engine. A gap folder is
written under a temporary name and renamed when complete, so a killed run leaves
either a whole gap or none; a re-run makes only the rest. Changing one transition's
prompt regenerates that gap alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from sfi_cli import __version__
from sfi_cli.errors import SfiError
from sfi_cli.media.ffmpeg import VideoWriter, decode_frames, ffmpeg_path
from sfi_cli.media.formats import rgb_format_of
from sfi_cli.media.publish import Publication, make_folder, remove_stale, write_text

if TYPE_CHECKING:
    import numpy as np

    from sfi_cli.timeline.model import Gap, Plan

# Bit-exact RGB, stored fast: lossless H.264 (about 10x quicker than PNG at 1080p) for 8 bits;
# FFV1 for 16-bit RGB (libx264rgb has 8 bits only).
LOSSLESS_ARGS = {"rgb24": ["-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast"],
                 "rgb48le": ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "gbrp16le"]}

FINGERPRINT_CHUNK = 1 << 20  # bytes hashed at the start, middle and end of a source


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """The file's size and a hash of three slices of its content (a video is never read whole for this)."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as file:
        for offset in sorted({0, max(0, size // 2 - FINGERPRINT_CHUNK // 2), max(0, size - FINGERPRINT_CHUNK)}):
            file.seek(offset)
            digest.update(file.read(FINGERPRINT_CHUNK))
    return digest.hexdigest()


def source_fingerprint(path: Path) -> str:
    """A content fingerprint of a source file (memoised while the file is unchanged)."""
    try:
        stat = os.stat(path)
        return _fingerprint(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError as error:
        raise SfiError(f"cannot read '{path}': {error.strerror or error}") from None


def _text(value: Any) -> Any:
    return f"{value.numerator}/{value.denominator}" if isinstance(value, Fraction) else value


def boundary_identity(plan: Plan, side: tuple[str, int]) -> dict[str, Any]:
    """What decides one boundary frame's pixels as the engines get it: the source's content, the frame
    number and every setting of the reader that makes it."""
    key, index = side
    source = plan.sources[key]
    info = source.info
    primary = plan.primary.info.color if plan.primary and plan.primary.info else None
    return {
        "source": source_fingerprint(source.path), "kind": source.kind, "frame": index,
        "size": list(plan.size), "fit": plan.fit, "rate": _text(plan.rate), "pix_fmt": plan.pix_fmt,
        "rgb_pix_fmt": plan.rgb_pix_fmt, "matrix": plan.matrix, "range": plan.color_range, "sar": _text(plan.sar),
        "pad": list(plan.pad), "keep_rotation": plan.keep_rotation,
        "source_colour": [info.color.space, info.color_range] if info else None,
        "primary_colour": [primary.space, primary.range] if primary else None,
        **({"native_frames": True} if plan.native_frames else {}),
    }


def gap_params(gap: Gap) -> dict[str, Any]:
    """The gap's own settings that change its frames (a retimed chunk's: the times of its frames too)."""
    return {"count": gap.count, "prompt": gap.prompt, "negative_prompt": gap.negative_prompt, "seed": gap.seed,
            **({"times": [list(place) for place in gap.times]} if gap.times else {}),
            **({"shots": gap.shot_places()} if gap.shots else {})}


def gap_key(engine: str, settings: dict[str, Any], params: dict[str, Any], boundaries: Iterable[dict[str, Any]]) -> str:
    """A hex digest that changes whenever anything that shapes the gap's frames changes: the sfi version,
    the engine and all its settings, the gap's parameters and its two boundary frames' identities."""
    text = json.dumps({"sfi": __version__, "engine": engine, "settings": settings, "gap": params,
                       "boundaries": list(boundaries)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def settings_identity(settings: dict[str, Any]) -> dict[str, Any]:
    """An engine's settings, with a content fingerprint of each file one names (e.g. SemFi's LoRA), so a
    replaced checkpoint at the same path makes new gaps; found without building (or importing) the engine."""
    files = {}
    for name, value in sorted(settings.items()):
        if isinstance(value, str) and value and Path(value).expanduser().is_file():
            files[name] = source_fingerprint(Path(value).expanduser())
    return {**settings, **({"files": files} if files else {})}


def plan_gap_key(plan: Plan, gap: Gap) -> str:
    """The key of one of ``plan``'s gaps, from the plan alone (its engines' identities are part of it)."""
    return gap_key(gap.engine, engine_identity(plan.engine_identities[gap.engine]), gap_params(gap),
                   (boundary_identity(plan, side) for side in (gap.before, gap.after)))


def engine_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """An ``Engine.identity`` with the files its settings name fingerprinted (theirs and its helpers')."""
    return {**identity, "settings": settings_identity(identity["settings"]),
            **({"uses": [engine_identity(used) for used in identity["uses"]]} if "uses" in identity else {})}


class LosslessWriter(VideoWriter):
    """RGB frames into the work folder's bit-exact copy."""

    def command(self, ffmpeg: str, *, crf: int, preset: str) -> list[str]:
        return [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", self.pix_fmt,
                "-s", f"{self.width}x{self.height}", "-framerate", "25", "-i", "pipe:0",
                *LOSSLESS_ARGS[self.pix_fmt], ffmpeg_path(self.partial)]


class GapCache:
    """Finished gaps in ``root/gaps/<key>/``: ``frames.mkv`` (lossless) and ``gap.json``."""

    def __init__(self, root: Path, ffmpeg: str, *, tidy: bool = True) -> None:
        """``tidy``: remove what killed runs left (the driver does; a worker storing one gap need not)."""
        self.root = Path(root)
        self.ffmpeg = ffmpeg
        self.gaps = self.root / "gaps"
        make_folder(self.gaps, "the work folder")
        if tidy:
            remove_stale(self.gaps)  # gaps half-made by killed runs

    def folder(self, key: str) -> Path:
        return self.gaps / key

    def has(self, key: str) -> bool:
        return (self.folder(key) / "gap.json").is_file()

    def store(self, key: str, frames: Iterable[np.ndarray], meta: dict[str, Any],
              notes: dict[str, Any] | None = None) -> int:
        """Store ``frames`` (RGB, taken one at a time from a generator) under ``key``; returns how many.
        ``notes`` (the engine's, filled while the frames are made) are read once the last frame is in.

        The gap folder appears under its name only when the last frame is written, so an error or
        a signal leaves no partial gap.
        """
        import itertools

        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise SfiError(f"no frames to store for gap {key}")
        height, width = first.shape[:2]
        with Publication() as results:
            staging = results.stage(self.folder(key), folder=True)
            with LosslessWriter(staging / "frames.mkv", (width, height), Fraction(25), ffmpeg=self.ffmpeg,
                                pix_fmt=rgb_format_of(first)) as writer:
                for frame in itertools.chain([first], frames):
                    writer.write(frame)
            (staging / "gap.json").write_text(json.dumps(
                {**meta, "notes": notes or {}, "frames": writer.frames_written, "width": width, "height": height},
                indent=2, default=str))
            shutil.rmtree(self.folder(key), ignore_errors=True)  # a damaged or concurrent copy of this gap: replaced
        return writer.frames_written

    def notes(self, key: str) -> dict[str, Any]:
        """What the engine that made a stored gap said about it (``Engine.notes``, e.g. SemFi's expert), for the manifest."""
        return json.loads((self.folder(key) / "gap.json").read_text()).get("notes", {})

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
    """The manifest sits beside the output: ``out.mp4`` -> ``out.sfi.json``, ``frames/`` -> ``frames.sfi.json``,
    ``shots/name_%06d.png`` -> ``shots/name.sfi.json``."""
    import re

    stem = re.sub(r"[_.-]*%0?\d*d[_.-]*", "", output.stem) or "frames"
    return output.with_name(f"{stem}.sfi.json")


def manifest_refusal(output: Path) -> str | None:
    """Why ``output``'s manifest may not be written where it goes, if it may not: the file there is not an sfi
    manifest (the user's own), or it is the manifest of another result (``out.mov`` beside ``out.mkv``) still there."""
    path = manifest_path(output)
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(path.read_text())
        name, _ = record["output"], record["sfi"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return (f"'{path}' is where the manifest of '{output}' goes, but it is not an sfi manifest; sfi replaces only "
                f"its own: move that file or choose another output name")
    owner = output.with_name(Path(str(name)).name)  # the manifest is written beside its output
    if owner.name != output.name and owner.exists():
        return (f"'{path}' is the manifest of another result, '{owner}', which a manifest for '{output}' would replace; "
                f"choose another output name (or delete '{owner}' first)")
    return None
