"""``sfi doctor``: what SemFi (or rife) needs, checked (the checks live in ``sfi_cli.doctor``)."""

from __future__ import annotations

import json
import sys

import click

from sfi_cli.commands import Context, cli
from sfi_cli.config.options import keyed_option


@cli.command()
@keyed_option("engines.semfi.model_dir")
@keyed_option("engines.semfi.lora")
@keyed_option("engines.semfi.device")
@keyed_option("engines.semfi.backend")
@keyed_option("engines.semfi.attention")
@keyed_option("engines.semfi.cache_dir")
@click.option("--engine", "engine", type=click.Choice(["semfi", "rife"]), default="semfi", show_default=True,
              help="The engine whose needs are checked.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON on stdout.")
@click.pass_obj
def doctor(obj: Context, engine: str, as_json: bool) -> None:
    """Check what SemFi needs (packages, GPU, model files, LoRA keys, backends and their engine cache, ffmpeg), or with --engine rife what
    rife needs (torch, its weights, read and checked, the device); exit 1 if it cannot run."""
    from sfi_cli.doctor import as_dicts, report, run_checks

    config = obj.config
    checks = run_checks(config.engine_settings().get(engine, {}), config["ffmpeg"], engine)
    click.echo(json.dumps(as_dicts(checks), indent=2) if as_json else report(checks, engine))
    if any(check.status == "fail" for check in checks):
        sys.exit(1)
