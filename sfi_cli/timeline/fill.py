"""``sfi detect`` and ``sfi fill``: cuts found in a video become a recipe, and the recipe is rendered.

``cut_recipe`` builds the ``Recipe`` straight from the cuts; ``detect --recipe`` writes it for the
editor (``recipe_text``), and ``fill`` renders it, keeping the same text in the work folder for the
editor to adjust.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from sfi_cli.timeline.cuts import Cut, Detection, detect_cuts
from sfi_cli.errors import SfiError
from sfi_cli.media.probe import MediaInfo, probe
from sfi_cli.progress import Reporter
from sfi_cli.media.publish import make_folder, output_lock, refuse_inputs, write_text
from sfi_cli.timeline.recipe import OUTPUT_KEYS, OutputSpec, Recipe, ShotSpec, TransitionSpec, check_recipe_path, located, recipe_text
from sfi_cli.render import RenderOptions, check_outputs, render_plan, work_dir_for
from sfi_cli.timeline.timecode import Position, format_rate, parse_position


@dataclass
class DetectOptions:
    """The ``detect.*`` settings (defaults and choices in the config schema)."""

    detector: str
    threshold: float | None  # None: the detector's own default
    min_scene_len: str | int | float  # a position: frames, "0.5s", ...
    downscale: int  # 0: automatic
    fade_cuts: bool = False  # the edge of a fade to or from black counts too


def detect_video(info: MediaInfo, options: DetectOptions, *, ffmpeg: str, reporter: Reporter) -> tuple[MediaInfo, Detection]:
    """Find the cuts of the probed video ``info``, with progress; returns it with its true frame count."""
    video = info.path
    min_len = parse_position(options.min_scene_len).to_frames(info.rate)
    for warning in ([f"'{video.name}' has a variable frame rate: frame numbers refer to it converted to a constant "
                     f"{format_rate(info.rate)} fps"] if info.vfr else []):
        reporter.message(f"warning: {warning}")
    with reporter.task(f"finding cuts in {video.name} ({options.detector})", info.frame_count) as progress:
        detection = detect_cuts(info, detector=options.detector, threshold=options.threshold, min_scene_len=min_len,
                                downscale=options.downscale, ffmpeg=ffmpeg, fade_cuts=options.fade_cuts,
                                progress=progress)
    if detection.fades:
        frames = ", ".join(str(cut.frame) for cut in detection.fades)
        reporter.message(f"{len(detection.fades)} fade{'s' * (len(detection.fades) != 1)} in from or out to black left "
                         f"out (not cuts to fill), at frame {frames}; pass --fade-cuts to count them")
    return info.with_frame_count(detection.frames), detection


def transition_frames(info: MediaInfo, seconds: float | None, frames: int | None) -> int:
    """The length of each transition in frames at the video's rate; zero is refused."""
    count = frames if frames is not None else round(Fraction(str(seconds)) * info.rate)
    if count < 1:
        given = f"--frames {frames}" if frames is not None else f"--seconds {seconds}"
        raise SfiError(f"zero-length transition: {given} is {count} frames at {format_rate(info.rate)} fps; "
                       f"ask for at least 1 frame")
    return count


def recipe_header(info: MediaInfo, detection: Detection, command: str) -> str:
    return (f"Recipe written by `{command}` for {info.path.name}: {info.frame_count} frames at {format_rate(info.rate)} fps,\n"
            f"{len(detection.cuts)} cuts found by the {detection.detector} detector (threshold {detection.threshold}).\n"
            f"Fill in each transition's prompt, then: sfi render THIS_FILE")


def cut_notes(cuts: list[Cut], numbers: list[int] | None = None) -> list[str]:
    """One comment per transition: the cut it is at (numbered as ``sfi detect`` lists them) and the detector's score."""
    return [f"cut {number} at frame {cut.frame} ({cut.timecode})" + ("" if cut.score is None else f", score {cut.score}")
            for number, cut in zip(numbers or range(1, len(cuts) + 1), cuts)]


def parse_cut_selection(text: str) -> list[tuple[int, int]]:
    """``--cuts 1,3-5`` as inclusive number ranges (empty: every cut); refused in one line before any work."""
    ranges = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        first, dash, last = part.partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            low = high = 0
        if not 1 <= low <= high:
            raise SfiError(f"--cuts {text}: '{part}' is not a cut number or range; give numbers as sfi detect lists "
                           f"them, e.g. --cuts 1,3-5")
        ranges.append((low, high))
    return ranges


def select_cuts(cuts: list[Cut], ranges: list[tuple[int, int]], min_score: float) -> list[int]:
    """The numbers (from 1, as ``sfi detect`` lists them) of the cuts to fill: those in ``ranges`` (all when
    empty) scoring at least ``min_score`` (a cut its detector gives no score is kept)."""
    beyond = [high for _, high in ranges if high > len(cuts)]
    if beyond:
        raise SfiError(f"--cuts names cut {max(beyond)}, but {len(cuts)} cut{'s' * (len(cuts) != 1)} were found; "
                       f"see them numbered with: sfi detect VIDEO")
    return [number for number, cut in enumerate(cuts, start=1)
            if (not ranges or any(low <= number <= high for low, high in ranges))
            and (cut.score is None or cut.score >= min_score)]


def cut_recipe(recipe: Path, video: Path, cuts: list[Cut], frame_count: int, *, frames: int, mode: str, output: Path,
               audio: str, prompt: str = "", negative_prompt: str = "", seed: int = 0,
               engine: str | None = None, codec: str | None = None) -> Recipe:
    """The recipe (to be kept at ``recipe``) joining the shots of ``video`` between ``cuts`` with one transition
    of ``frames`` frames per cut."""
    transition = TransitionSpec(Position(str(frames), frames=frames), prompt, negative_prompt, engine, seed, mode,
                                where="", audio=audio)
    bounds = [0, *(cut.frame for cut in cuts), frame_count]
    shots = tuple(ShotSpec("video", video, parse_position(start), parse_position(stop), None, 1,
                           transition if number < len(cuts) else None, where="")
                  for number, (start, stop) in enumerate(zip(bounds, bounds[1:])))
    return Recipe(recipe, shots, OutputSpec(output, None, None, OUTPUT_KEYS["fit"].default, codec, None, None,
                                            OUTPUT_KEYS["audio"].default))


@dataclass
class FillRequest:
    video: Path
    output: Path
    seconds: float | None
    frames: int | None
    mode: str
    audio: str  # under inserted transitions: "crossfade" or "silence"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    engine: str = "auto"
    copy_if_no_cuts: bool = False
    codec: str | None = None  # None: the container's usual one
    cuts: str = ""  # which cuts to fill, "1,3-5" as sfi detect numbers them; empty: all
    min_score: float = 0.0  # fill only cuts scoring at least this
    preview_handles: int | None = None  # a proxy of the transitions with this many frames either side


def fill(request: FillRequest, detect_options: DetectOptions, options: RenderOptions, *, default_fps: Fraction,
         crf: int, preset: str) -> dict[str, Any]:
    """Detect the cuts of ``request.video`` and render it with a transition at each one."""
    video, output = Path(request.video), Path(request.output)
    # Transitions alone write only into the work folder (farm nodes share it): no output lock, as in render.
    with nullcontext() if options.dry_run or "splice" not in options.passes else output_lock(output):
        return _fill(video, output, request, detect_options, options, default_fps=default_fps, crf=crf, preset=preset)


def _fill(video: Path, output: Path, request: FillRequest, detect_options: DetectOptions, options: RenderOptions, *,
          default_fps: Fraction, crf: int, preset: str) -> dict[str, Any]:
    from sfi_cli.media.formats import output_codec
    from sfi_cli.timeline.layout import make_plan

    info = probe(video)
    frames = transition_frames(info, request.seconds, request.frames)
    wanted = parse_cut_selection(request.cuts)
    if not math.isfinite(request.min_score):
        raise SfiError(f"--min-score must be a finite number (got {request.min_score})")
    # Everything about the output is checked before the (long) detection pass.
    output_codec(output, request.codec)
    check_outputs(output, [video], options)
    for path in (video.resolve(), output.resolve()):
        check_recipe_path(path)
    detection_started = time.monotonic()
    info, detection = detect_video(info, detect_options, ffmpeg=options.ffmpeg, reporter=options.reporter)
    detection_seconds = round(time.monotonic() - detection_started, 3)
    numbers = select_cuts(detection.cuts, wanted, request.min_score)
    cuts = [{"number": n, "frame": c.frame, "timecode": c.timecode, "seconds": round(c.seconds, 6), "score": c.score,
             "filled": n in numbers} for n, c in enumerate(detection.cuts, start=1)]
    if not numbers and not request.copy_if_no_cuts:
        found = (f"none of the {len(detection.cuts)} cuts found in {video.name} is chosen by --cuts/--min-score"
                 if detection.cuts else f"no cuts found in {video.name}")
        options.reporter.message(f"{found}: nothing to fill, nothing written "
                                 f"(pass --copy-if-no-cuts to write a re-encoded copy anyway)")
        return {"output": None, "cuts": cuts, "frames_written": 0, "dry_run": options.dry_run}
    filled = [detection.cuts[n - 1] for n in numbers]  # a cut left out stays a plain cut: its shots run on as one
    # The recipe is kept (dry run too) so the editor can adjust it and `sfi render` it; errors point into it.
    recipe_file = make_folder(work_dir_for(output, options.work_dir), "the work folder") / f"{output.stem}.recipe.toml"
    refuse_inputs([recipe_file], [video], "recipe")
    recipe = cut_recipe(recipe_file, video.resolve(), filled, info.frame_count, frames=frames,
                        mode=request.mode, output=output.resolve(), prompt=request.prompt,
                        negative_prompt=request.negative_prompt, seed=request.seed, engine=request.engine,
                        audio=request.audio, codec=request.codec)
    text = recipe_text(recipe, header=recipe_header(info, detection, "sfi fill"), notes=cut_notes(filled, numbers))
    write_text(recipe_file, text)
    recipe = located(recipe, text)
    make = partial(make_plan, engine=request.engine, engine_settings=options.engine_settings, default_fps=default_fps,
                   crf=crf, preset=preset, output=output, probed={video.resolve(): info})
    if request.preview_handles is None:
        plan = make(recipe)
    else:
        from sfi_cli.timeline.preview import preview_plan

        plan = preview_plan(recipe, make, request.preview_handles)
    options.manifest_extra = {**options.manifest_extra, "input": str(video), "mode": request.mode,
                              "transition_frames": frames, "detector": detection.detector, "cuts": cuts,
                              "detection_seconds": detection_seconds}
    return render_plan(plan, options)
