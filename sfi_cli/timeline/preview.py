"""A proxy of a timeline for checking its transitions quickly: half size, a fast encode (ProRes Proxy for
ProRes), only each transition with ``handles`` frames of footage either side, and no sound.

The proxy is a plan like any other (made by the same ``make_plan`` at half size, then trimmed), so its
transitions are made, kept and resumed in the work folder as usual: at half size, under keys of their own,
they cost a quarter of the pixels and never stand in for the full-size ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from sfi_cli.errors import SfiError
from sfi_cli.timeline.model import Footage, Generated, Plan, Segment, Still
from sfi_cli.timeline.recipe import Recipe, with_output_settings

PREVIEW_PRESET = "ultrafast"
PREVIEW_CRF = 28
PRORES_PROXY = 0


def preview_plan(recipe: Recipe, make: Callable[[Recipe], Plan], handles: int) -> Plan:
    """The proxy of ``recipe``'s plan (``make`` lays a recipe out, with the command's settings)."""
    full = make(recipe)
    if not full.gaps:
        raise SfiError("nothing to preview: the timeline has no transitions (drop --preview to render it)")
    width, height = full.size[0] - full.pad[0], full.size[1] - full.pad[1]
    quality = PRORES_PROXY if full.codec == "prores" else PREVIEW_CRF
    small = make(with_output_settings(recipe, size=(max(2, width // 2), max(2, height // 2)), preset=PREVIEW_PRESET,
                                      quality=quality))
    return transitions_with_handles(small, handles)


def transitions_with_handles(plan: Plan, handles: int) -> Plan:
    """``plan`` cut down to its transitions, each with up to ``handles`` frames of what surrounds it; the
    sound, subtitles, chapters and attachments are left out (they belong to the whole timeline)."""
    kept: list[Segment] = []
    segments = plan.segments
    for index, segment in enumerate(segments):
        if isinstance(segment, Generated):
            kept.append(segment)
            continue
        head = handles if index > 0 and isinstance(segments[index - 1], Generated) else 0
        tail = handles if index + 1 < len(segments) and isinstance(segments[index + 1], Generated) else 0
        if head + tail >= segment.frames:
            kept.append(segment)
            continue
        if head:
            kept.append(_part(segment, 0, head))
        if tail:
            kept.append(_part(segment, segment.frames - tail, segment.frames))
    starts, position = {}, 0
    for segment in kept:
        if isinstance(segment, Generated):
            starts[segment.gap] = position
        position += segment.frames
    gaps = tuple(replace(gap, output_start=starts[gap.index]) for gap in plan.gaps)
    return replace(plan, segments=tuple(kept), gaps=gaps, audio=(), subtitles=(), subtitle_shifts=(), chapters=(),
                   attachments=(), warnings=(*plan.warnings, f"preview: {plan.size[0]}x{plan.size[1]}, only the "
                                                              f"transitions with {handles} frames of handles, no sound"))


def _part(segment: Footage | Still, start: int, stop: int) -> Footage | Still:
    """Frames ``start`` .. ``stop - 1`` of a footage or still segment."""
    if isinstance(segment, Footage):
        return Footage(segment.source, segment.start + start, segment.start + stop)
    return Still(segment.source, stop - start)
