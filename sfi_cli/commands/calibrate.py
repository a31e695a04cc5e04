"""``sfi calibrate``: measure this SemFi model's own step-cache curve on a few gaps, for ``cache_calibration``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sfi_cli.commands import Context, cli
from sfi_cli.commands.interpolate import semfi_settings
from sfi_cli.config.options import PROMPT


def model_files(semfi: dict) -> list[Path]:
    """The files a SemFi run reads besides its images (the LoRA, extra LoRAs, the model folder's files): inputs too."""
    folder = Path(semfi["model_dir"]).expanduser() if semfi.get("model_dir") else None
    loras = [semfi.get("lora"), *(entry.get("path") for entry in semfi.get("extra_loras", ()) if isinstance(entry, dict))]
    return ([Path(lora).expanduser() for lora in loras if lora]
            + (sorted(file for file in folder.rglob("*") if file.is_file()) if folder and folder.is_dir() else []))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The calibration file to write (JSON), for [engines.semfi] cache_calibration.")
@click.option("-n", "--frames", type=int, default=31, show_default=True,
              help="New frames per gap (31: a 33-frame run; calibrate at the lengths you render).")
@click.option("--prompt", type=PROMPT, default="", help="Prompt of every gap.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the first gap (then +1 each).")
@click.option("--force", is_flag=True, help="Overwrite an existing calibration file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@semfi_settings
@click.pass_obj
def calibrate(obj: Context, images: tuple[Path, ...], output: Path, frames: int, prompt: str, seed: int, force: bool,
              quiet: bool) -> None:
    """Measure SemFi's own step-cache curve on the gaps between IMAGES, taken in pairs (FIRST LAST ...).

    Each gap runs uncached with the configured schedule; the file holds the mean magnitude ratio of
    consecutive steps' DiT outputs per branch, the curve the step cache (cache_threshold) predicts its
    error with when cache_calibration names the file."""
    from sfi_cli.media.images import load_image
    from sfi_cli.media.publish import output_lock, refuse_inputs, write_text
    from sfi_cli.errors import SfiError

    if len(images) % 2:
        raise SfiError(f"sfi calibrate takes images in pairs (FIRST LAST ...), got {len(images)}; add or drop one")
    if frames < 1:
        raise SfiError(f"--frames must be 1 or more (got {frames})")
    config = obj.config
    semfi = config.engine_settings().get("semfi", {})
    refuse_inputs([output], [*images, *model_files(semfi)], "calibration file")
    if output.exists() and not force:
        raise SfiError(f"calibration file '{output}' exists; pass --force to replace it")
    from engines import load_engine
    from engines.semfi_parts.schedule import sigma_schedule
    from engines.semfi_parts.stepcache import MagnitudeRecorder

    settings = {**config.engine_settings(), "semfi": {**semfi, "cache_threshold": 0.0}}
    reporter = obj.reporter(quiet, False)
    with output_lock(output):
        pairs = [(load_image(images[i]), load_image(images[i + 1])) for i in range(0, len(images), 2)]
        engine = load_engine("semfi", settings)
        recorder = MagnitudeRecorder()
        timesteps = sigma_schedule(engine.steps, engine.shift, engine.timesteps)[1].tolist()
        for number, (first, last) in enumerate(pairs):
            recorder.start(timesteps)
            with reporter.task(f"calibrate gap {number + 1}/{len(pairs)}", frames) as progress:
                engine.generate_raw(first, last, frames, prompt=prompt, seed=seed + number, progress=progress,
                                    observe=recorder)
        record = recorder.record(made_by="sfi calibrate", frames=engine.model_frames(frames), area=engine.area_pixels,
                                 cfg=engine.cfg, steps=engine.steps, shift=None if engine.timesteps else engine.shift,
                                 model_dir=str(engine.model_dir.resolve()), lora=str(engine.lora.resolve()))
        write_text(output, json.dumps(record, indent=1) + "\n")
    reporter.message(f"wrote the step-cache curve of {len(pairs)} gap(s), {engine.steps} steps, to {output}; use it with "
                     f"cache_calibration = \"{output.resolve()}\" and a cache_threshold in [engines.semfi]")
