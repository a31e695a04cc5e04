"""The ``sfi`` command: a thin Click layer over the library in ``sfi_cli``.

Only Click and the standard library are imported at start-up; engines, numpy and
media code load inside the commands, so ``sfi --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import click

from sfi_cli import __version__
from sfi_cli.errors import SfiError

ENGINE_HELP = "Engine: auto, flow, crossfade or semfi (auto picks the best one that can run here)."


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
              help="out.mp4 (H.264), out.mov (ProRes 422 HQ), a folder, or a PNG pattern like frames/%04d.png.")
@click.option("--engine", default=None, help=ENGINE_HELP)
@click.option("--prompt", default="", help="What should happen in between (text-guided engines).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (generative engines).")
@click.option("--fps", default=None, help="Frame rate of video output, e.g. 24 or 24000/1001 [config output.fps].")
@click.option("--size", default=None, help="Output size WxH (default: FIRST's size).")
@click.option("--fit", type=click.Choice(["cover", "contain", "stretch"]), default=None,
              help="How an image of another shape is brought to the output size [config output.fit].")
@click.option("--include-ends/--no-include-ends", default=None,
              help="Put FIRST and LAST around the new frames (default: on for video, off for PNGs).")
@click.option("--sheet", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Also save a contact sheet PNG.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_obj
def interpolate(obj: Context, first: Path, last: Path, frames: int, output: str, engine: str | None, prompt: str,
                seed: int, fps: str | None, size: str | None, fit: str | None, include_ends: bool | None,
                sheet: Path | None, force: bool, as_json: bool, quiet: bool) -> None:
    """Make FRAMES new frames between image FIRST and image LAST."""
    from sfi_cli.ffmpeg import parse_rate
    from sfi_cli.images import parse_size
    from sfi_cli.interpolate import InterpolateJob, run_interpolate
    from sfi_cli.output import parse_target

    config = obj.config
    config.override(engine=engine, output__fps=fps, output__fit=fit)
    job = InterpolateJob(
        first=first, last=last, frames=frames, target=parse_target(output, [first, last]), engine=config["engine"],
        prompt=prompt, seed=seed, size=parse_size(size) if size else None, fit=config["output.fit"],
        include_ends=include_ends, fps=parse_rate(config["output.fps"]), sheet=sheet, force=force,
        engine_settings=config.engine_settings(),
    )
    summary = run_interpolate(job, ffmpeg=obj.ffmpeg(), crf=config["output.crf"], preset=config["output.preset"],
                              reporter=obj.reporter(quiet, as_json))
    emit_summary(summary, as_json, quiet)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="sfi", standalone_mode=False)
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
