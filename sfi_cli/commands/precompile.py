"""``sfi compile``: build SemFi's DiT for a backend ahead of time (ONNX graph, TensorRT engine)."""

from __future__ import annotations

import json

import click

from sfi_cli.commands import Context, cli
from sfi_cli.config.options import keyed_option

DEFAULT_SIZE = "1920x1080"
# New frames that make each expert's own model frame count (5, 9, 17, 33, 65, 81 with the two ends).
DEFAULT_FRAMES = (3, 7, 15, 31, 63, 79)


@cli.command("compile")
@click.option("--engine", type=click.Choice(["semfi"]), default="semfi", show_default=True,
              help="The engine to build for (only SemFi has compiled backends).")
@click.option("--size", "sizes", multiple=True, metavar="WxH",
              help=f"Footage size to build for (the working size follows from --area, as in a render); repeat for "
                   f"several, one optimisation profile each (default {DEFAULT_SIZE}).")
@click.option("--frames", "counts", type=click.IntRange(min=1), multiple=True, metavar="N",
              help="New frames per gap to build for (as interpolate's -n); repeat for several; the engine takes every "
                   "count between the fewest and the most (default: each expert's own count, 3 to 79).")
@keyed_option("engines.semfi.backend", note="sfi compile builds for onnx, or for tensorrt (the graph and the engine) "
                                            "when the backend is anything else")
@keyed_option("engines.semfi.model_dir")
@keyed_option("engines.semfi.lora")
@keyed_option("engines.semfi.device")
@keyed_option("engines.semfi.dtype")
@keyed_option("engines.semfi.area")
@keyed_option("engines.semfi.cache_dir")
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON on stdout.")
@click.pass_obj
def compile_command(obj: Context, engine: str, sizes: tuple[str, ...], counts: tuple[int, ...], as_json: bool) -> None:
    """Export SemFi's DiT to ONNX (--backend onnx) and build a TensorRT engine from it (--backend tensorrt), into
    the engine cache, for later runs with that backend to reuse. Building takes minutes on a GPU."""
    from engines import load_engine
    from sfi_cli.media.images import parse_size

    footage = [parse_size(size) for size in sizes or (DEFAULT_SIZE,)]
    settings = obj.config.engine_settings()
    own = settings.setdefault(engine, {})
    if own.get("backend") not in ("onnx", "tensorrt"):
        own["backend"] = "tensorrt"
    built = load_engine(engine, settings).compile(footage, list(counts or DEFAULT_FRAMES))
    click.echo(json.dumps({"built": built}, indent=2) if as_json else "\n".join(built))
