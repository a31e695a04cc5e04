"""``sfi eval``: which engine suits this footage, measured (the work is in ``sfi_cli.evaluate``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sfi_cli.commands import Context, cli
from sfi_cli.commands.timeline import detect_settings, detector_options
from sfi_cli.config.options import keyed_option


@cli.command("eval")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=True))
@click.option("--engines", "engine_list", default="flow,rife,crossfade", show_default=True,
              help="Engines to compare, comma-separated (any of those --engine takes but auto).")
@click.option("-n", "--frames", type=int, default=7, show_default=True,
              help="Two images: in-betweens each engine makes.")
@click.option("--held-out", type=int, default=1, show_default=True,
              help="A video: real frames held out between two kept ones, made again by each engine.")
@click.option("--gaps", type=int, default=8, show_default=True,
              help="A video: at most this many held-out gaps, evenly spread over the clip.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a self-contained HTML report (plots, frame strips) here.")
@click.option("--force", is_flag=True, help="Overwrite an existing report.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@detector_options
@keyed_option("eval.lpips")
@keyed_option("eval.lpips_backbone")
@keyed_option("eval.fid")
@keyed_option("eval.clip")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (and --json).")
@click.pass_obj
def evaluate(obj: Context, inputs: tuple[Path, ...], engine_list: str, frames: int, held_out: int, gaps: int,
             report: Path | None, force: bool, as_json: bool, quiet: bool) -> None:
    """Compare engines: INPUTS is two images (A B: in-betweens scored for seams, flicker, smoothness,
    motion, time) or one video (frames held out and made again: PSNR and SSIM against the real ones too;
    windows over a scene cut are left out, the cut found as ``sfi detect`` finds it)."""
    from sfi_cli.errors import SfiError
    from sfi_cli.evaluate.learned import LearnedWeights
    from sfi_cli.evaluate.report import html_report, text_table
    from sfi_cli.evaluate.run import evaluate as run_evaluation
    from sfi_cli.evaluate.run import pair_material, video_material
    from sfi_cli.media.publish import refuse_inputs, require_writable_folder, write_text

    names = [name.strip() for name in engine_list.split(",") if name.strip()]
    if not names or "auto" in names:
        raise SfiError("--engines needs engine names, e.g. flow,rife,crossfade (auto compares nothing)")
    config = obj.config
    if "eval.lpips_backbone" in config.flags and not config["eval.lpips"]:  # it would be ignored in silence
        raise SfiError("--lpips-backbone is the backbone of the --lpips file; give --lpips too (the lpips package's "
                       "weights/v0.1/alex.pth ...), or drop --lpips-backbone")
    learned = LearnedWeights(*(Path(config[key]).expanduser() if config[key] else None
                               for key in ("eval.lpips", "eval.lpips_backbone", "eval.fid", "eval.clip")))
    if report is not None:
        refuse_inputs([report], [*inputs, *learned.files()], "report")  # the weight files are inputs too
        require_writable_folder(report.absolute().parent, "the report")  # refused before any engine runs
        if report.exists() and not force:
            raise SfiError(f"report '{report}' exists; pass --force to overwrite it")
    reporter = obj.reporter(quiet, as_json)
    if len(inputs) == 2:
        material = pair_material(inputs[0], inputs[1], frames)
    elif len(inputs) == 1:
        material = video_material(inputs[0], held_out, gaps, obj.ffmpeg(), detect_settings(config), reporter)
    else:
        raise SfiError(f"give two images or one video, got {len(inputs)} inputs")
    summary, strips = run_evaluation(material, names, config.engine_settings(), reporter.message, learned)
    if report is not None:
        window = material.windows[0]
        write_text(report, html_report(summary, strips, (window.first, window.last)))
        summary["report"] = str(report)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(text_table(summary) + (f"\nreport: {report}" if report else ""))
