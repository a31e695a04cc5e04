"""``sfi detect``, ``sfi render`` and ``sfi fill``: cuts, recipes and timelines."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from sfi_cli.commands import Context, cli, option_group
from sfi_cli.config.options import PROMPT, keyed_option
from sfi_cli.errors import SfiError


# Options shared by ``detect`` and ``fill`` for choosing and tuning the cut detector.
detector_options = option_group(
    keyed_option("detect.detector"),
    keyed_option("detect.threshold"),
    keyed_option("detect.min_scene_len"),
    keyed_option("detect.fade_cuts"),
    keyed_option("detect.downscale"),
)


# Transition length and mode, shared by ``detect --recipe`` and ``fill``.
length_options = option_group(
    keyed_option("fill.seconds"),
    click.option("--frames", type=int, default=None, help="Transition length in frames (instead of --seconds)."),
    keyed_option("fill.mode"),
    keyed_option("fill.audio"),
)


# The output's encoding, shared by every command that writes video (recipe values give way to them).
output_options = option_group(
    keyed_option("output.codec"),
    keyed_option("output.crf"),
    keyed_option("output.preset"),
)


def output_codec_setting(config) -> str | None:
    """The codec a command was asked for, None for the container's usual one."""
    return None if config["output.codec"] == "auto" else config["output.codec"]


def output_flags(config) -> dict:
    """The ``OutputSpec`` fields set by this command's flags (recipe values hold where no flag is given)."""
    fields = {"output.codec": ("codec", output_codec_setting(config)), "output.crf": ("quality", config["output.crf"]),
              "output.preset": ("preset", config["output.preset"])}
    return dict(value for key, value in fields.items() if key in config.flags)


# How a plan is run: options shared by ``render``, ``fill`` and ``retime``.
run_options = option_group(
    output_options,
    keyed_option("engine", note="for render it replaces every engine the recipe names"),
    click.option("--dry-run", is_flag=True, help="Print the plan (gaps, frame counts, expert, engine); generate nothing."),
    click.option("--sheet", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Also save a contact sheet PNG of all generated frames."),
    keyed_option("work_dir", type=click.Path(file_okay=False)),
    keyed_option("render.workers"),
    keyed_option("render.devices"),
    keyed_option("render.executor"),
    keyed_option("render.attempts"),
    keyed_option("farm.address"),
    keyed_option("farm.storage"),
    click.option("--only", type=click.Choice(["transitions", "splice"]), default=None,
                 help="Run one pass alone: make the missing transitions into the work folder, or splice from it."),
    click.option("--force", is_flag=True, help="Overwrite an existing output."),
    click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout."),
    click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
)


# Options shared by ``render`` and ``fill``: how a plan is run, and what an editor takes from it.
render_options = option_group(
    run_options,
    click.option("--preview", is_flag=True, help="A proxy for checking the transitions: half size, a fast encode, only "
                                                 "each transition with --handles frames either side, no sound."),
    click.option("--timeline", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Also write the result as an NLE timeline: .otio, .xml (FCP 7: Premiere, Resolve) or .edl "
                      "(CMX 3600); transition clips go in <name>-transitions/ beside it."),
    click.option("--transitions-only", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Make only the transitions, each as its own ProRes clip with handles, into this folder."),
    keyed_option("timeline.handles"),
    keyed_option("timeline.media"),
)


def detect_settings(config):
    from sfi_cli.timeline.fill import DetectOptions

    return DetectOptions(detector=config["detect.detector"], threshold=config["detect.threshold"] or None,
                         min_scene_len=config["detect.min_scene_len"], downscale=config["detect.downscale"],
                         fade_cuts=config["detect.fade_cuts"])


def timeline_options(obj: Context, config, *, quiet: bool, as_json: bool, sheet, force: bool, dry_run: bool,
                     only: str | None, timeline: Path | None = None, transitions_only: Path | None = None):
    from sfi_cli.render import PASSES, RenderOptions

    work_dir = Path(config["work_dir"]).expanduser() if config["work_dir"] else None
    devices = parse_devices(config["render.devices"])
    workers = config["render.workers"]
    if config["render.executor"] == "ray" and not dry_run:
        from sfi_cli.render.farm import require_ray

        require_ray()  # before any work: a missing Ray is one line, not a failure after detection
    if devices and config["render.executor"] == "ray":
        raise SfiError("--devices is for the local executor; on Ray each worker of a GPU engine is given a GPU of its "
                       "own (drop --devices, see docs/farm.md)")
    if devices and "render.workers" in config.flags and workers != len(devices):
        raise SfiError(f"--workers {workers} and --devices ({len(devices)} devices) disagree: the local executor runs "
                       f"one worker per device; give one of them")
    passes = (only,) if only else PASSES
    extras = editor_extras(timeline, transitions_only, handles=config["timeline.handles"], media=config["timeline.media"],
                           force=force, only=only,
                           sheet=sheet)
    if transitions_only is not None:
        passes = ("transitions",)
        # No output is written: the work folder goes beside the clips' folder unless one is named.
        work_dir = work_dir or transitions_only.parent / ".sfi-work"
    return RenderOptions(ffmpeg=obj.ffmpeg(), engine_settings=config.engine_settings(),
                         reporter=obj.reporter(quiet, as_json), work_dir=work_dir, sheet=sheet, force=force,
                         dry_run=dry_run, workers=workers, passes=passes, extras=extras,
                         manifest_extra={"timeline": str(timeline)} if timeline else {}, devices=devices,
                         executor=config["render.executor"], attempts=config["render.attempts"],
                         farm=config.section("farm"))


def parse_devices(text: str) -> tuple[str, ...]:
    """``cuda:0,cuda:1`` as a tuple; a device named another way is one line."""
    import re

    devices = tuple(device.strip() for device in text.split(",") if device.strip())
    for device in devices:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise SfiError(f"--devices (config 'render.devices'): '{device}' is not a device; give cpu, cuda or cuda:N, "
                           f"comma-separated (e.g. cuda:0,cuda:1)")
    return devices


def editor_extras(timeline: Path | None, transitions_only: Path | None, *, handles: int, media: str, force: bool,
                  only: str | None, sheet: Path | None) -> tuple:
    """What ``--timeline`` / ``--transitions-only`` add to a render, checked before any work."""
    if timeline is None and transitions_only is None:
        return ()
    from sfi_cli.render.nle_export import TimelineExport, TransitionClips

    if transitions_only is not None:
        if timeline is not None or only or sheet:
            raise SfiError("--transitions-only makes the transitions alone: it takes no --timeline, --only or --sheet")
        return (TransitionClips(transitions_only, handles=handles, force=force, media=media),)
    if only == "transitions":
        raise SfiError("--timeline describes the finished output, so it needs the splice: drop --only transitions "
                       "(or use --transitions-only DIR for the transitions alone)")
    return (TimelineExport(timeline, handles=handles, force=force, media=media),)


def anchor_output(output: Path | None, transitions_only: Path | None) -> Path | None:
    """The plan's output: the one given, or for --transitions-only (which writes none) a name in its folder
    that only fixes the clips' codec."""
    return output if output is not None or transitions_only is None else transitions_only / "transitions.mov"


def emit_timeline(summary: dict, as_json: bool, quiet: bool) -> None:
    if as_json:  # the dry run's plan as data only, not as the lines shown on a terminal
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "plan_lines"}, indent=2))
    elif summary.get("dry_run"):
        click.echo("\n".join(summary["plan_lines"]))
    elif not quiet and summary.get("transition_clips") is not None:
        click.echo(f"wrote {len(summary['transition_clips'])} transition clips with handles to "
                   f"{Path(summary['transition_clips'][0]).parent if summary['transition_clips'] else '-'} "
                   f"({summary['seconds']:.1f}s; transitions kept in {summary['work_dir']})")
    elif not quiet and summary.get("passes") == ["transitions"]:
        made = summary["gap_count"] - summary["gaps_cached"]
        click.echo(f"made {made} transitions into {summary['work_dir']} ({summary['seconds']:.1f}s; "
                   f"{summary['gaps_cached']} were there already)")
    elif not quiet and summary.get("output"):
        cached = f", {summary['gaps_cached']} of them from the work folder" if summary.get("gaps_cached") else ""
        made = "chunks of made frames" if summary.get("retime") else "transitions"
        click.echo(f"wrote {summary['frames_written']} frames to {summary['output']} ({summary['seconds']:.1f}s; "
                   f"{summary['gap_count']} {made}{cached}); manifest {summary['manifest']}")
        if summary.get("timeline_media"):
            click.echo(f"timeline {summary['timeline']}, transition clips in {summary['timeline_media']}")


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@detector_options
@click.option("--recipe", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write an editable recipe with one transition per cut.")
@length_options
@click.option("--force", is_flag=True, help="Overwrite an existing recipe.")
@click.option("--json", "as_json", is_flag=True, help="Print the cuts as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_obj
def detect(obj: Context, video: Path, recipe: Path | None, frames: int | None, force: bool, as_json: bool,
           quiet: bool) -> None:
    """List the cuts in VIDEO (frame, timecode, score); --recipe writes a recipe to edit and render."""
    import os

    from sfi_cli.timeline.fill import cut_notes, cut_recipe, detect_video, recipe_header, transition_frames
    from sfi_cli.media.formats import CODEC_BY_SUFFIX
    from sfi_cli.media.probe import probe
    from sfi_cli.media.publish import output_lock, refuse_inputs, require_writable_folder, write_text
    from sfi_cli.timeline.recipe import check_recipe_path, recipe_text
    from sfi_cli.timeline.timecode import format_rate

    config = obj.config
    options = detect_settings(config)
    # A second detect writing the same recipe meanwhile would replace this one's unasked: the lock refuses it.
    with output_lock(recipe) if recipe is not None else contextlib.nullcontext():
        if recipe is not None:
            refuse_inputs([recipe], [video], "recipe")
            check_recipe_path(video.resolve())
            require_writable_folder(recipe.parent, "the recipe")
            if os.path.lexists(recipe) and not force:
                raise SfiError(f"recipe '{recipe}' already exists; pass --force to overwrite it")
        info, detection = detect_video(probe(video), options, ffmpeg=obj.ffmpeg(), reporter=obj.reporter(quiet, as_json))
        if recipe is not None:
            length = transition_frames(info, config["fill.seconds"], frames)
            relative = os.path.relpath(video.resolve(), recipe.parent.resolve())
            output = f"{video.stem}-filled{video.suffix if video.suffix.lower() in CODEC_BY_SUFFIX else '.mp4'}"
            cuts_recipe = cut_recipe(recipe, recipe.parent / relative, detection.cuts, info.frame_count, frames=length,
                                     mode=config["fill.mode"], output=recipe.parent / output, audio=config["fill.audio"])
            write_text(recipe, recipe_text(cuts_recipe, header=recipe_header(info, detection, "sfi detect"),
                                           notes=cut_notes(detection.cuts), relative=True))
    cuts = [{"frame": c.frame, "timecode": c.timecode, "seconds": round(c.seconds, 6), "score": c.score}
            for c in detection.cuts]
    if as_json:
        click.echo(json.dumps({"video": str(video), "frames": info.frame_count, "fps": f"{info.rate.numerator}/{info.rate.denominator}",
                               "detector": detection.detector, "threshold": detection.threshold, "cuts": cuts,
                               "fades_left_out": [{"frame": c.frame, "timecode": c.timecode} for c in detection.fades],
                               "recipe": str(recipe) if recipe else None}, indent=2))
        return
    if quiet:
        return
    click.echo(f"{len(cuts)} cuts in {video.name} ({info.frame_count} frames at {format_rate(info.rate)} fps, "
               f"{detection.detector} detector, threshold {detection.threshold})")
    if cuts:
        click.echo(f"{'#':>4}  {'frame':>7}  {'timecode':<12} {'seconds':>9}  {'score':>8}")
    for number, cut in enumerate(cuts, start=1):
        score = "-" if cut["score"] is None else f"{cut['score']:.3f}"
        click.echo(f"{number:>4}  {cut['frame']:>7}  {cut['timecode']:<12} {cut['seconds']:>9.3f}  {score:>8}")
    if recipe is not None:
        click.echo(f"recipe: {recipe} (fill in the prompts, then: sfi render {recipe})")


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output .mp4/.mov/.mkv, or a PNG sequence: a folder or frames/name_%06d.png (default: [output] "
                   "path in the recipe).")
@click.option("--source", "sources", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="For a cut list (.edl/.xml/.otio): the video its clips play (repeat for several, matched by "
                   "file or reel name); default: the media paths in the cut list.")
@render_options
@click.pass_obj
def render(obj: Context, recipe: Path, output: Path | None, sources: tuple[Path, ...], dry_run, preview, sheet, only,
           timeline, transitions_only, force, as_json, quiet) -> None:
    """Render RECIPE: a TOML timeline of shots and transitions, or an NLE cut list (.edl, .xml, .otio) whose
    dissolves become generated transitions of the same length."""
    from functools import partial

    from sfi_cli.media.ffmpeg import parse_rate
    from sfi_cli.timeline.layout import make_plan
    from sfi_cli.timeline.nle_files import is_timeline, load_cut_list
    from sfi_cli.timeline.recipe import load_recipe, with_engine, with_output_settings
    from sfi_cli.render import render_plan

    config = obj.config
    options = timeline_options(obj, config, quiet=quiet, as_json=as_json, sheet=sheet, force=force, dry_run=dry_run,
                               only=only, timeline=timeline, transitions_only=transitions_only)
    output = anchor_output(output, transitions_only)
    probed = {}
    if is_timeline(recipe):
        loaded, warnings, probed = load_cut_list(recipe, [Path(s) for s in sources], output)
        for warning in warnings:
            options.reporter.message(f"warning: {warning}")
    elif sources:
        raise SfiError(f"--source is for cut lists (.edl, .xml, .otio); the recipe '{recipe}' names its own media")
    else:
        loaded = load_recipe(recipe, output)
    loaded = with_output_settings(loaded, **output_flags(config))
    make = partial(make_plan, engine=config["engine"], engine_settings=options.engine_settings,
                   default_fps=parse_rate(config["output.fps"]), crf=config["output.crf"], preset=config["output.preset"],
                   probed=probed)
    loaded = with_engine(loaded, config["engine"]) if "engine" in config.flags else loaded
    if preview:
        from sfi_cli.timeline.preview import preview_plan

        plan = preview_plan(loaded, make, config["timeline.handles"])
    else:
        plan = make(loaded)
    emit_timeline(render_plan(plan, options), as_json, quiet)


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output .mp4 or .mkv (H.264) or .mov (ProRes), or a PNG sequence (a folder, or frames/name_%06d.png); "
                   "never the input itself (not with --transitions-only).")
@length_options
@click.option("--prompt", type=PROMPT, default="", help="What should happen in each transition (text-guided engines).")
@click.option("--negative-prompt", type=PROMPT, default="", help="What should not appear (text-guided engines).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (generative engines).")
@detector_options
@click.option("--cuts", "chosen_cuts", default="", metavar="LIST",
              help="Fill only these cuts, numbered as sfi detect lists them: 1,3-5 (default: all).")
@click.option("--min-score", type=float, default=0.0, show_default=True,
              help="Fill only cuts the detector scored at least this high (see sfi detect's score column).")
@click.option("--copy-if-no-cuts", is_flag=True, help="When no cut is chosen, still write a (re-encoded) copy.")
@render_options
@click.pass_obj
def fill(obj: Context, video: Path, output: Path | None, frames: int | None, prompt: str, negative_prompt: str,
         seed: int, chosen_cuts: str, min_score: float, copy_if_no_cuts: bool, dry_run, preview, sheet, only,
         timeline, transitions_only, force, as_json, quiet) -> None:
    """Find the cuts in VIDEO and put a generated transition at each one."""
    from sfi_cli.media.ffmpeg import parse_rate
    from sfi_cli.timeline.fill import FillRequest, fill as run_fill

    config = obj.config
    detect_options = detect_settings(config)
    if output is None and transitions_only is None:
        raise SfiError("fill needs -o OUTPUT (or --transitions-only DIR for the transitions alone)")
    options = timeline_options(obj, config, quiet=quiet, as_json=as_json, sheet=sheet, force=force, dry_run=dry_run,
                               only=only, timeline=timeline, transitions_only=transitions_only)
    output = anchor_output(output, transitions_only)
    request = FillRequest(video=video, output=output, seconds=config["fill.seconds"], frames=frames,
                          mode=config["fill.mode"], audio=config["fill.audio"], prompt=prompt,
                          negative_prompt=negative_prompt, seed=seed, engine=config["engine"],
                          copy_if_no_cuts=copy_if_no_cuts, codec=output_codec_setting(config), cuts=chosen_cuts,
                          min_score=min_score, preview_handles=config["timeline.handles"] if preview else None)
    summary = run_fill(request, detect_options, options, default_fps=parse_rate(config["output.fps"]),
                       crf=config["output.crf"], preset=config["output.preset"])
    emit_timeline(summary, as_json, quiet)


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output .mp4 or .mkv (H.264) or .mov (ProRes), or a PNG sequence (a folder, or frames/name_%06d.png); "
                   "never the input itself.")
@keyed_option("retime.fps")
@keyed_option("retime.slowmo")
@keyed_option("retime.audio")
@detector_options
@run_options
@click.pass_obj
def retime(obj: Context, video: Path, output: Path, dry_run, sheet, only, force, as_json, quiet) -> None:
    """Convert VIDEO to another frame rate (--fps 60000/1001) or slow it down (--slowmo 2.5): every new frame
    made by the engine at its exact time, never across a cut, the sound kept in sync."""
    from fractions import Fraction

    from sfi_cli.media.ffmpeg import parse_rate
    from sfi_cli.timeline.retime import RetimeRequest, retime as run_retime

    config = obj.config
    fps = parse_rate(config["retime.fps"]) if config["retime.fps"] != "" else None
    slowmo = Fraction(str(config["retime.slowmo"]))
    if fps is None and slowmo == 1:
        raise SfiError("retime needs --fps RATE (e.g. --fps 60000/1001) or --slowmo FACTOR (e.g. --slowmo 2.5)")
    options = timeline_options(obj, config, quiet=quiet, as_json=as_json, sheet=sheet, force=force, dry_run=dry_run,
                               only=only)
    request = RetimeRequest(video=video, output=output, fps=fps, slowmo=slowmo, audio=config["retime.audio"],
                            engine=config["engine"], codec=output_codec_setting(config))
    summary = run_retime(request, detect_settings(config), options, crf=config["output.crf"],
                         preset=config["output.preset"])
    emit_timeline(summary, as_json, quiet)
