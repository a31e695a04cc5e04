"""``sfi doctor``: what SemFi needs, checked (the checks live in ``sfi_cli.doctor``)."""

from __future__ import annotations

import json
import sys

import click

from sfi_cli.commands import Context, cli
from sfi_cli.config.options import keyed_option


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
