"""The plan as ``--dry-run`` shows it: as lines (shots, gaps with frame counts, engine and the engine's own
note, ``Engine.describe``: SemFi's expert, for one), and as data for ``--dry-run --json`` (``plan_data``)."""

from __future__ import annotations

from typing import Any

from sfi_cli.timeline.model import Footage, Gap, Generated, Plan, Still
from sfi_cli.timeline.timecode import format_rate


def describe(plan: Plan) -> list[str]:
    """The plan as lines for ``--dry-run``: shots, gaps with frame counts, engine and its note."""
    width, height = plan.size
    lines = [f"plan: {plan.total_frames} frames ({float(plan.total_frames / plan.rate):.3f} s) at "
             f"{format_rate(plan.rate)} fps, {width}x{height}, {plan.codec} {plan.pix_fmt} -> {plan.output}"]
    if plan.native_frames:
        return [*lines, *_retime_lines(plan)]
    slow: list[Gap] = []
    for index, segment in enumerate(plan.segments):
        if isinstance(segment, Generated) and plan.gaps[segment.gap].mode == "slowmo":
            slow.append(plan.gaps[segment.gap])
            following = plan.segments[index + 2] if index + 2 < len(plan.segments) else None
            if not (isinstance(following, Generated) and plan.gaps[following.gap].mode == "slowmo"):
                lines.append(f"  slowmo   {len(slow)} gaps of {slow[0].count} new frames ({sum(g.count for g in slow)} in all), "
                             f"engine {slow[0].engine}{engine_note(slow[0])}  [{slow[0].label} ... {slow[-1].label.split(', ')[-1]}]")
                slow = []
        elif isinstance(segment, Footage) and segment.frames == 1 and _between_slowmo(plan, index):
            continue
        elif isinstance(segment, Footage):
            name = plan.sources[segment.source].path.name
            lines.append(f"  footage  {name} frames {segment.start}-{segment.stop - 1} ({segment.frames} frames)")
        elif isinstance(segment, Still):
            lines.append(f"  still    {plan.sources[segment.source].path.name} held {segment.frames} frames")
        else:
            gap = plan.gaps[segment.gap]
            lines.append(f"  gap {gap.index + 1:<4} {gap.count} new frames, {gap.mode}, engine {gap.engine}"
                         f"{engine_note(gap)}  [{gap.label}]" + (f" prompt: {gap.prompt!r}" if gap.prompt else ""))
    lines.append(f"{len(plan.gaps)} gaps, {plan.generated_frames} generated frames; audio tracks: {len(plan.audio)}; "
                 f"subtitle tracks: {len(plan.subtitles)}; attachments: {len(plan.attachments)}; "
                 f"chapters: {len(plan.chapters)}")
    return lines


def _retime_lines(plan: Plan) -> list[str]:
    """A retimed clip: how many real frames are copied, and one line per chunk of made frames."""
    copied = sum(segment.frames for segment in plan.segments if isinstance(segment, Footage))
    lines = [f"  footage  {copied} output frames are real frames of {plan.primary.path.name}, copied"]
    lines += [f"  chunk {gap.index + 1:<4} {gap.count} frames made between real frames {gap.before[1]}-{gap.after[1]}, "
              f"engine {gap.engine}" for gap in plan.gaps]
    lines.append(f"{len(plan.gaps)} chunks, {plan.generated_frames} made frames; audio tracks: {len(plan.audio)}; "
                 f"subtitle tracks: {len(plan.subtitles)}; chapters: {len(plan.chapters)}")
    return lines


def _between_slowmo(plan: Plan, index: int) -> bool:
    """A one-frame footage segment that is part of a slow-motion shot (shown as one line)."""
    neighbours = [plan.segments[i] for i in (index - 1, index + 1) if 0 <= i < len(plan.segments)]
    return any(isinstance(n, Generated) and plan.gaps[n.gap].mode == "slowmo" for n in neighbours)


def engine_note(gap: Gap) -> str:
    """", <what the gap's engine says it will do>", or "" when the engine has nothing to add."""
    from engines import engine_class

    note = engine_class(gap.engine).describe(gap.count)
    return f", {note}" if note else ""


def plan_data(plan: Plan, keys: list[str]) -> dict[str, Any]:
    """The plan for programs: every segment in output order, and one object per gap with its frames, times
    (seconds in the output), boundary frames, engine with its notes (``Engine.notes``) and work-folder key."""
    from engines import engine_class

    def seconds(frame: int) -> float:
        return round(float(frame / plan.rate), 6)

    def side(source_frame: tuple[str, int]) -> dict[str, Any]:
        source, frame = source_frame
        return {"source": str(plan.sources[source].path), "frame": frame}

    segments, start = [], 0
    for segment in plan.segments:
        entry: dict[str, Any] = {"output_start": start, "frames": segment.frames}
        if isinstance(segment, Footage):
            entry.update(kind="footage", source=str(plan.sources[segment.source].path), start=segment.start,
                         stop=segment.stop)
        elif isinstance(segment, Still):
            entry.update(kind="still", source=str(plan.sources[segment.source].path))
        else:
            entry.update(kind="gap", gap=segment.gap + 1)
        segments.append(entry)
        start += segment.frames
    gaps = [{"number": gap.index + 1, "label": gap.label, "mode": gap.mode, "engine": gap.engine, "frames": gap.count,
             "output_start": gap.output_start, "output_stop": gap.output_start + gap.count,
             "start_seconds": seconds(gap.output_start), "end_seconds": seconds(gap.output_start + gap.count),
             "before": side(gap.before), "after": side(gap.after), "prompt": gap.prompt,
             "negative_prompt": gap.negative_prompt, "seed": gap.seed, "key": keys[gap.index],
             "notes": engine_class(gap.engine).notes(gap.count)} for gap in plan.gaps]
    return {"segments": segments, "gaps": gaps}
