"""``sfi interpolate``: new frames between two images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sfi_cli.commands import Context, cli, option_group
from sfi_cli.commands.timeline import output_codec_setting, output_options
from sfi_cli.config.options import PROMPT, keyed_option


def emit_summary(summary: dict, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(f"wrote {summary['frames_written']} frames to {summary['output']} ({summary['seconds']:.1f}s)")


# SemFi engine settings (each overrides its [engines.semfi] key in sfi.toml); with --raw for interpolate.
semfi_settings = option_group(
    keyed_option("engines.semfi.model_dir"),
    keyed_option("engines.semfi.lora"),
    keyed_option("engines.semfi.device"),
    keyed_option("engines.semfi.dtype"),
    keyed_option("engines.semfi.backend"),
    keyed_option("engines.semfi.attention"),
    keyed_option("engines.semfi.cache_dir"),
    keyed_option("engines.semfi.memory_mode"),
    keyed_option("engines.semfi.area"),
    keyed_option("engines.semfi.steps"),
    keyed_option("engines.semfi.cfg"),
    keyed_option("engines.semfi.shift"),
    keyed_option("engines.semfi.negative_prompt", type=PROMPT),
    keyed_option("engines.semfi.cache_threshold"),
)
semfi_options = option_group(
    semfi_settings,
    click.option("--raw", is_flag=True,
                 help="SemFi only: write every frame the model makes (4k+1, ends included) at its working size, "
                      "untouched, for comparison with the authors' code; --size WxH (multiples of 16) sets that size."),
)


@cli.command()
@click.argument("first", type=click.Path(path_type=Path, dir_okay=True))
@click.argument("last", type=click.Path(path_type=Path, dir_okay=True))
@click.option("-n", "--frames", type=int, required=True, help="Number of NEW frames between FIRST and LAST (1 or more).")
@click.option("-o", "--output", required=True,
              help="out.mp4 or out.mkv (H.264), out.mov (ProRes 422 HQ), a folder, or a PNG pattern like frames/%04d.png.")
@keyed_option("engine")
@click.option("--prompt", type=PROMPT, default="", help="What should happen in between (text-guided engines).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (generative engines).")
@keyed_option("output.fps")
@click.option("--size", default=None, help="Output size WxH (default: FIRST's size; at most 16384 a side, 8192x8192 pixels).")
@keyed_option("output.fit")
@output_options
@click.option("--include-ends/--no-include-ends", default=None,
              help="Put FIRST and LAST around the new frames (default: on for video, off for PNGs).")
@click.option("--sheet", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Also save a contact sheet PNG.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@semfi_options
@click.pass_obj
def interpolate(obj: Context, first: Path, last: Path, frames: int, output: str, prompt: str, seed: int,
                size: str | None, include_ends: bool | None, sheet: Path | None, force: bool, as_json: bool,
                quiet: bool, raw: bool) -> None:
    """Make FRAMES new frames between image FIRST and image LAST."""
    from sfi_cli.media.ffmpeg import parse_rate
    from sfi_cli.media.images import parse_size
    from sfi_cli.render.interpolate import InterpolateJob, run_interpolate
    from sfi_cli.media.targets import parse_target
    from sfi_cli.render.raw import run_raw

    config = obj.config
    job = InterpolateJob(
        first=first, last=last, frames=frames, target=parse_target(output), engine=config["engine"],
        prompt=prompt, seed=seed, size=parse_size(size) if size else None, fit=config["output.fit"],
        include_ends=include_ends, fps=parse_rate(config["output.fps"]), sheet=sheet, force=force,
        engine_settings=config.engine_settings(), codec=output_codec_setting(config),
    )
    run = run_raw if raw else run_interpolate
    summary = run(job, ffmpeg=obj.ffmpeg(), crf=config["output.crf"], preset=config["output.preset"],
                  reporter=obj.reporter(quiet, as_json))
    emit_summary(summary, as_json, quiet)
