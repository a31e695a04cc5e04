"""Each gap's frames: read from the work folder when an earlier run stored them, else made by the engine.

Today gaps are made inside the splice, from the boundary frames its own readers hold;
``boundary_frames`` takes them from there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sfi_cli.media.targets import ContactSheet
from sfi_cli.render.workdir import GapCache, gap_key
from sfi_cli.timeline.model import Gap, Plan

if TYPE_CHECKING:
    from typing import Iterator

    import numpy as np

    from sfi_cli.render import RenderOptions
    from sfi_cli.render.splice import Readers


class GapMaker:
    """Each gap's frames in the output's pixel format: read from the work folder when an earlier run
    stored them under the same key, else made by the gap's engine and stored while they are handed on.

    Engines are loaded up front, so a missing model fails before anything is encoded. Frames
    stream from the engine through the store into the output one at a time, so a gap of any
    length runs in the memory of a few frames.
    ``records`` collects one manifest entry per gap; ``sheet`` (optional) gets every gap's RGB frames.
    """

    def __init__(self, plan: Plan, cache: GapCache, options: RenderOptions, sheet: ContactSheet | None = None) -> None:
        from engines import load_engine

        self.plan, self.cache, self.reporter, self.sheet = plan, cache, options.reporter, sheet
        self.engines = {name: load_engine(name, options.engine_settings) for name in dict.fromkeys(g.engine for g in plan.gaps)}
        self.records: list[dict[str, Any]] = []

    def frames(self, gap: Gap, first: np.ndarray, last: np.ndarray) -> Iterator[np.ndarray]:
        """The gap's frames between RGB ``first`` and ``last``; its record is added once the last has passed."""
        started = time.monotonic()
        engine = self.engines[gap.engine]
        params = {"count": gap.count, "prompt": gap.prompt, "negative_prompt": gap.negative_prompt, "seed": gap.seed}
        key = gap_key(engine.cache_key(), params, first, last)
        title = f"gap {gap.index + 1}/{len(self.plan.gaps)} ({gap.label}, {gap.count} frames, {engine.name})"
        cached = self.cache.has(key)
        to_output = {"pix_fmt": self.plan.pix_fmt, "video_filter": self.plan.rgb_to_output(self.cache.ffmpeg)}
        if cached:
            self.reporter.message(f"{title}: already in the work folder, skipped")
            if self.sheet:
                for frame in self.cache.frames(key):
                    self.sheet.add(frame)
            yield from self.cache.frames(key, **to_output)
        else:
            from sfi_cli.render.interpolate import counted

            with self.reporter.task(title, gap.count) as progress:
                rgb = counted(engine.generate(first, last, gap.count, prompt=gap.prompt,
                                              negative_prompt=gap.negative_prompt, seed=gap.seed, progress=progress),
                              gap.count, engine.name)
                yield from self.cache.store(key, map(self.sheet.add, rgb) if self.sheet else rgb,
                                            {"engine": engine.cache_key(), **params, "label": gap.label}, **to_output)
        self.records.append({
            "index": gap.index + 1, "label": gap.label, "mode": gap.mode, "engine": engine.name,
            "frames": gap.count, "output_start": gap.output_start, "prompt": gap.prompt,
            "negative_prompt": gap.negative_prompt, "seed": gap.seed, "key": key, "cached": cached,
            "seconds": round(time.monotonic() - started, 3),
            **engine.notes(gap.count),
        })


def boundary_frames(gap: Gap, readers: Readers, plan: Plan, ffmpeg: str) -> tuple[np.ndarray, np.ndarray]:
    """A gap's two boundary frames as the engines' RGB (16-bit for deep footage), from the splice's own
    readers (no extra decoding pass): the frame just written before the gap, and the first frame of what follows it."""
    from sfi_cli.media.ffmpeg import convert_frames
    from sfi_cli.media.readers import StillReader

    rgb: dict[int, np.ndarray] = {}
    raw: dict[int, np.ndarray] = {}
    for side, (key, index) in enumerate((gap.before, gap.after)):
        reader = readers[key]
        if isinstance(reader, StillReader):
            rgb[side] = reader.rgb  # the image itself, not its round trip through YUV
        else:
            raw[side] = reader.frame(index)
    if raw:
        converted = convert_frames(raw.values(), plan.size, from_pix_fmt=plan.pix_fmt, pix_fmt=plan.rgb_pix_fmt,
                                   video_filter=plan.output_to_rgb(ffmpeg), ffmpeg=ffmpeg)
        rgb.update(zip(raw, converted))
    return rgb[0], rgb[1]
