"""The ``sfi`` command: a thin Click layer over the library in ``sfi_cli``.

Only Click and the standard library are imported at start-up; engines, numpy and
media code load inside the commands, so ``sfi --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from sfi_cli import __version__
from sfi_cli.config import SCHEMA
from sfi_cli.errors import SfiError
from sfi_cli.tomlfile import unicode_text

ENGINE_HELP = "Engine: auto, flow, crossfade or semfi (auto picks the best one that can run here)"


class Prompt(click.ParamType):
    """Free text for an engine: bytes that are not UTF-8 (which Python hands over as lone surrogates)
    become U+FFFD, so the prompt can be stored in recipes, manifests and cache keys as it was used."""

    name = "text"

    def convert(self, value, param, ctx):
        return unicode_text(value) if isinstance(value, str) else value


PROMPT = Prompt()
FLAG_TYPES = {(int,): int, (int, float): float}


def keyed_option(key_name: str, help: str, **extra):
    """The flag that sets config key ``key_name``: its name, type and choices come from the schema, and
    ``Config.override`` checks the value against the same key."""
    key = SCHEMA[key_name]
    kind = click.Choice(key.choices) if isinstance(key.choices, tuple) and key.choices else FLAG_TYPES.get(key.types)
    return click.option(key.flag, type=extra.pop("type", kind), default=None, help=f"{help} [config {key_name}].", **extra)


class Context:
    """What every command needs: the validated config and how to report progress."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from sfi_cli.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def ffmpeg(self) -> str:
        from sfi_cli.ffmpeg import find_ffmpeg

        return find_ffmpeg(self.config["ffmpeg"] or None)

    @staticmethod
    def reporter(quiet: bool, machine_output: bool):
        from sfi_cli.progress import Reporter

        # With --json, stdout carries only the summary: progress goes to stderr as lines.
        return Reporter(quiet=quiet, interactive=False if machine_output else None)


def emit_summary(summary: dict, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(f"wrote {summary['frames_written']} frames to {summary['output']} ({summary['seconds']:.1f}s)")


def semfi_options(command):
    """SemFi engine settings (each overrides its [engines.semfi] key in sfi.toml) and --raw."""
    for option in reversed([
        keyed_option("engines.semfi.model_dir", "Wan2.1-I2V-14B-720P folder"),
        keyed_option("engines.semfi.lora", "SemFi LoRA checkpoint semfi.ckpt"),
        keyed_option("engines.semfi.device", "cuda, cuda:N or cpu (very slow)"),
        keyed_option("engines.semfi.dtype", "Model precision; auto = bfloat16 on CUDA, float32 on CPU"),
        keyed_option("engines.semfi.memory_mode", "GPU memory use; auto picks from free GPU memory"),
        keyed_option("engines.semfi.area", "SemFi working size: 480p, 720p or a pixel count"),
        keyed_option("engines.semfi.steps", "Denoising steps (50)"),
        keyed_option("engines.semfi.cfg", "Classifier-free guidance scale (5.0)"),
        keyed_option("engines.semfi.shift", "Flow-matching sigma shift (5.0)"),
        keyed_option("engines.semfi.negative_prompt", "What to avoid", type=PROMPT),
        click.option("--raw", is_flag=True,
                     help="SemFi only: write every frame the model makes (4k+1, ends included) at its working size, "
                          "untouched, for comparison with the authors' code; --size WxH (multiples of 16) sets that size."),
    ]):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sfi")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: ./sfi.toml, then the user config folder).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Fill the gap between two frames with generated in-between video."""
    ctx.obj = Context(config_path)


@cli.command()
@click.argument("first", type=click.Path(path_type=Path, dir_okay=True))
@click.argument("last", type=click.Path(path_type=Path, dir_okay=True))
@click.option("-n", "--frames", type=int, required=True, help="Number of NEW frames between FIRST and LAST (1 or more).")
@click.option("-o", "--output", required=True,
              help="out.mp4 or out.mkv (H.264), out.mov (ProRes 422 HQ), a folder, or a PNG pattern like frames/%04d.png.")
@keyed_option("engine", ENGINE_HELP)
@click.option("--prompt", type=PROMPT, default="", help="What should happen in between (text-guided engines).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (generative engines).")
@keyed_option("output.fps", "Frame rate of video output, e.g. 24 or 24000/1001")
@click.option("--size", default=None, help="Output size WxH (default: FIRST's size; at most 16384 a side, 8192x8192 pixels).")
@keyed_option("output.fit", "How an image of another shape is brought to the output size")
@click.option("--include-ends/--no-include-ends", default=None,
              help="Put FIRST and LAST around the new frames (default: on for video, off for PNGs).")
@click.option("--sheet", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Also save a contact sheet PNG.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@semfi_options
@click.pass_obj
def interpolate(obj: Context, first: Path, last: Path, frames: int, output: str, engine: str | None, prompt: str,
                seed: int, fps: str | None, size: str | None, fit: str | None, include_ends: bool | None,
                sheet: Path | None, force: bool, as_json: bool, quiet: bool, raw: bool, **semfi) -> None:
    """Make FRAMES new frames between image FIRST and image LAST."""
    from sfi_cli.ffmpeg import parse_rate
    from sfi_cli.images import parse_size
    from sfi_cli.interpolate import InterpolateJob, run_interpolate
    from sfi_cli.output import parse_target
    from sfi_cli.raw import run_raw

    config = obj.config
    config.override(engine=engine, output__fps=fps, output__fit=fit, **{f"engines__semfi__{k}": v for k, v in semfi.items()})
    job = InterpolateJob(
        first=first, last=last, frames=frames, target=parse_target(output, [first, last]), engine=config["engine"],
        prompt=prompt, seed=seed, size=parse_size(size) if size else None, fit=config["output.fit"],
        include_ends=include_ends, fps=parse_rate(config["output.fps"]), sheet=sheet, force=force,
        engine_settings=config.engine_settings(),
    )
    run = run_raw if raw else run_interpolate
    summary = run(job, ffmpeg=obj.ffmpeg(), crf=config["output.crf"], preset=config["output.preset"],
                  reporter=obj.reporter(quiet, as_json))
    emit_summary(summary, as_json, quiet)


def detector_options(command):
    """Options shared by ``detect`` and ``fill`` for choosing and tuning the cut detector."""
    for option in reversed([
        keyed_option("detect.detector", "Cut detector (PySceneDetect; default adaptive)"),
        keyed_option("detect.threshold", "Detector threshold, 0 or more (default: the detector's own; lower finds more cuts)"),
        keyed_option("detect.min_scene_len", "Shortest shot: frames (15) or time (0.5s)"),
        keyed_option("detect.downscale", "Analyse at 1/N size; 0 = automatic"),
    ]):
        command = option(command)
    return command


def length_options(command):
    """Transition length and mode, shared by ``detect --recipe`` and ``fill``."""
    for option in reversed([
        keyed_option("fill.seconds", "Transition length in seconds (1.0)"),
        click.option("--frames", type=int, default=None, help="Transition length in frames (instead of --seconds)."),
        keyed_option("fill.mode", "insert: add frames at each cut; replace: overwrite frames around it"),
        keyed_option("fill.audio", "Sound under an inserted transition: the two sides' sound crossfaded, or silence"),
    ]):
        command = option(command)
    return command


def render_options(command):
    """Options shared by ``render`` and ``fill``."""
    for option in reversed([
        keyed_option("engine", ENGINE_HELP + "; for render it replaces every engine the recipe names"),
        click.option("--dry-run", is_flag=True, help="Print the plan (gaps, frame counts, engine, SemFi expert); generate nothing."),
        click.option("--sheet", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Also save a contact sheet PNG of all generated frames."),
        click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Where finished transitions are kept for resume [config work_dir; default .sfi-work beside the output]."),
        click.option("--force", is_flag=True, help="Overwrite an existing output."),
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
    ]):
        command = option(command)
    return command


def detect_settings(config, detector, threshold, min_scene_len, downscale):
    from sfi_cli.fill import DetectOptions

    config.override(detect__detector=detector, detect__threshold=threshold, detect__min_scene_len=min_scene_len,
                    detect__downscale=downscale)
    return DetectOptions(detector=config["detect.detector"], threshold=config["detect.threshold"] or None,
                         min_scene_len=config["detect.min_scene_len"], downscale=config["detect.downscale"])


def timeline_options(obj: Context, *, quiet: bool, as_json: bool, sheet, work_dir, force: bool, dry_run: bool):
    from sfi_cli.render import RenderOptions

    configured = work_dir or (Path(obj.config["work_dir"]).expanduser() if obj.config["work_dir"] else None)
    return RenderOptions(ffmpeg=obj.ffmpeg(), engine_settings=obj.config.engine_settings(),
                         reporter=obj.reporter(quiet, as_json), work_dir=configured, sheet=sheet, force=force,
                         dry_run=dry_run)


def emit_timeline(summary: dict, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif summary.get("dry_run"):
        click.echo("\n".join(summary["plan"]))
    elif not quiet and summary.get("output"):
        cached = f", {summary['gaps_cached']} of them from the work folder" if summary.get("gaps_cached") else ""
        click.echo(f"wrote {summary['frames_written']} frames to {summary['output']} ({summary['seconds']:.1f}s; "
                   f"{summary['gap_count']} transitions{cached}); manifest {summary['manifest']}")


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
def detect(obj: Context, video: Path, detector, threshold, min_scene_len, downscale, recipe: Path | None,
           seconds, frames, mode, audio, force: bool, as_json: bool, quiet: bool) -> None:
    """List the cuts in VIDEO (frame, timecode, score); --recipe writes a recipe to edit and render."""
    import os

    from sfi_cli.fill import detect_video, recipe_header, transition_frames
    from sfi_cli.probe import probe
    from sfi_cli.publish import output_lock, refuse_inputs, require_writable_folder, write_text
    from sfi_cli.recipe import check_recipe_path, cut_recipe_text
    from sfi_cli.timecode import format_rate

    config = obj.config
    options = detect_settings(config, detector, threshold, min_scene_len, downscale)
    config.override(fill__seconds=seconds, fill__mode=mode, fill__audio=audio)
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
            text = cut_recipe_text(relative, detection.cuts, info.frame_count, frames=length, mode=config["fill.mode"],
                                   output=f"{video.stem}-filled{video.suffix if video.suffix.lower() in ('.mp4', '.mov', '.mkv') else '.mp4'}",
                                   header=recipe_header(info, detection, "sfi detect"), audio=config["fill.audio"])
            write_text(recipe, text)
    cuts = [{"frame": c.frame, "timecode": c.timecode, "seconds": round(c.seconds, 6), "score": c.score}
            for c in detection.cuts]
    if as_json:
        click.echo(json.dumps({"video": str(video), "frames": info.frame_count, "fps": f"{info.rate.numerator}/{info.rate.denominator}",
                               "detector": detection.detector, "threshold": detection.threshold, "cuts": cuts,
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
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Output .mp4/.mov/.mkv (default: [output] path in the recipe).")
@render_options
@click.pass_obj
def render(obj: Context, recipe: Path, output: Path | None, engine, dry_run, sheet, work_dir, force, as_json, quiet) -> None:
    """Render the timeline of shots and transitions described by RECIPE (TOML)."""
    from sfi_cli.ffmpeg import parse_rate
    from sfi_cli.plan import make_plan
    from sfi_cli.recipe import load_recipe, with_engine
    from sfi_cli.render import render_plan

    config = obj.config
    config.override(engine=engine)
    options = timeline_options(obj, quiet=quiet, as_json=as_json, sheet=sheet, work_dir=work_dir, force=force,
                               dry_run=dry_run)
    loaded = load_recipe(recipe, output)
    plan = make_plan(with_engine(loaded, engine) if engine else loaded, engine=config["engine"], engine_settings=options.engine_settings,
                     default_fps=parse_rate(config["output.fps"]), crf=config["output.crf"], preset=config["output.preset"])
    emit_timeline(render_plan(plan, options), as_json, quiet)


@cli.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Output .mp4 or .mkv (H.264) or .mov (ProRes); never the input itself.")
@length_options
@click.option("--prompt", type=PROMPT, default="", help="What should happen in each transition (text-guided engines).")
@click.option("--negative-prompt", type=PROMPT, default="", help="What should not appear (text-guided engines).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (generative engines).")
@detector_options
@click.option("--copy-if-no-cuts", is_flag=True, help="When no cut is found, still write a (re-encoded) copy.")
@render_options
@click.pass_obj
def fill(obj: Context, video: Path, output: Path, seconds, frames, mode, audio, prompt: str, negative_prompt: str, seed: int,
         detector, threshold, min_scene_len, downscale, copy_if_no_cuts: bool, engine, dry_run, sheet, work_dir,
         force, as_json, quiet) -> None:
    """Find the cuts in VIDEO and put a generated transition at each one."""
    from sfi_cli.ffmpeg import parse_rate
    from sfi_cli.fill import FillRequest, fill as run_fill

    config = obj.config
    config.override(engine=engine, fill__seconds=seconds, fill__mode=mode, fill__audio=audio)
    detect_options = detect_settings(config, detector, threshold, min_scene_len, downscale)
    options = timeline_options(obj, quiet=quiet, as_json=as_json, sheet=sheet, work_dir=work_dir, force=force,
                               dry_run=dry_run)
    request = FillRequest(video=video, output=output, seconds=config["fill.seconds"], frames=frames,
                          mode=config["fill.mode"], audio=config["fill.audio"], prompt=prompt,
                          negative_prompt=negative_prompt, seed=seed, engine=config["engine"],
                          copy_if_no_cuts=copy_if_no_cuts)
    summary = run_fill(request, detect_options, options, default_fps=parse_rate(config["output.fps"]),
                       crf=config["output.crf"], preset=config["output.preset"])
    emit_timeline(summary, as_json, quiet)


@cli.command()
@keyed_option("engines.semfi.model_dir", "Wan2.1-I2V-14B-720P folder")
@keyed_option("engines.semfi.lora", "SemFi LoRA checkpoint semfi.ckpt")
@keyed_option("engines.semfi.device", "cuda, cuda:N or cpu")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON on stdout.")
@click.pass_obj
def doctor(obj: Context, model_dir: str | None, lora: str | None, device: str | None, as_json: bool) -> None:
    """Check what SemFi needs (packages, GPU, model files, LoRA keys, ffmpeg); exit 1 if it cannot run."""
    from sfi_cli.doctor import as_dicts, report, run_checks

    config = obj.config
    config.override(engines__semfi__model_dir=model_dir, engines__semfi__lora=lora, engines__semfi__device=device)
    checks = run_checks(config.engine_settings().get("semfi", {}), config["ffmpeg"])
    click.echo(json.dumps(as_dicts(checks), indent=2) if as_json else report(checks))
    if any(check.status == "fail" for check in checks):
        sys.exit(1)


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP, raised where the program is, so every cleanup (``except BaseException``,
    ``finally``) runs; not a KeyboardInterrupt, which Click would turn into an Abort with a blank line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


@contextlib.contextmanager
def signals_as_interrupts():
    """While a command runs, SIGTERM and SIGHUP (a farm stopping a job, a closed terminal) stop it as Ctrl-C
    does: partial output deleted, finished gaps kept, exit 128 + the signal's number. The previous handlers
    come back afterwards."""
    import signal

    def stop(signum, frame):
        for number in wanted:  # cleanup is not interrupted by a second signal
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signum)

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    try:
        previous = {number: signal.signal(number, stop) for number in wanted}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit."""
    try:
        with signals_as_interrupts():
            cli.main(args=argv, prog_name="sfi", standalone_mode=False)
    except Interrupted as stopped:
        click.echo("sfi: interrupted", err=True)
        sys.exit(stopped.exit_code)
    except SfiError as error:
        click.echo(f"sfi: error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        command = f" {error.ctx.info_name}" if getattr(error, "ctx", None) and error.ctx.parent else ""
        click.echo(f"sfi{command}: error: {error.format_message()} (see 'sfi{command} --help')", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("sfi: interrupted", err=True)
        sys.exit(130)
    except OSError as error:  # what sfi's own writers do not name: printing to a full disk (>/dev/full), ...
        where = f" ({error.filename})" if error.filename else ""
        with contextlib.suppress(OSError):
            click.echo(f"sfi: error: cannot write{where}: {error.strerror or error}; choose another path, or check "
                       f"free space and where output is redirected", err=True)
        sys.exit(1)
