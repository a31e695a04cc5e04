"""``sfi doctor``: is everything SemFi needs here, and if not, the one thing to do about it.

Checks, in order: Python packages, torch and the GPU, every file of the model folder, the
architecture read from it, GPU memory per mode, the LoRA checkpoint's keys, ffmpeg.
Each check is ok, warn (works, but note this) or FAIL (SemFi will not run) with a fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sfi_cli.errors import SfiError

PACKAGES = ("torch", "torchvision", "diffsynth", "safetensors", "transformers", "tokenizers")
TESTED_DIFFSYNTH = "2.1.12"
INSTALL = "run 'bash scripts/install.sh semfi' (or pip install 'sfi[semfi]')"


@dataclass
class Check:
    status: str  # "ok", "warn" or "fail"
    item: str
    detail: str
    fix: str = ""


def size_text(num_bytes: int) -> str:
    if num_bytes < 100_000:
        return f"{num_bytes} bytes"
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.1f} MB"


def check_packages() -> list[Check]:
    checks = []
    for name in PACKAGES:
        if importlib.util.find_spec(name) is None:
            checks.append(Check("fail", name, "not installed", INSTALL))
            continue
        version = importlib.metadata.version(name)
        if name == "diffsynth" and version != TESTED_DIFFSYNTH:
            checks.append(Check("warn", name, f"{version} (sfi is tested with {TESTED_DIFFSYNTH})",
                                f"pip install diffsynth=={TESTED_DIFFSYNTH}"))
        else:
            checks.append(Check("ok", name, version))
    return checks


def check_gpu(device: str) -> tuple[list[Check], tuple[int, int] | None]:
    """torch/CUDA state and the (free, total) memory of ``device`` when it is a usable GPU."""
    import torch

    cuda = torch.version.cuda or "none"
    if not torch.cuda.is_available():
        status = "warn" if device == "cpu" else "fail"
        return [Check(status, "GPU", f"no CUDA GPU visible (torch {torch.__version__}, built for CUDA {cuda})",
                      "SemFi needs an NVIDIA GPU (see docs/semfi.md for sizes); check the driver with nvidia-smi"
                      if status == "fail" else "device is cpu: fine for tests, far too slow for real work")], None
    checks = []
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    for number in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(number)
        mark = " (used)" if number == index and device.startswith("cuda") else ""
        checks.append(Check("ok", f"cuda:{number}", f"{torch.cuda.get_device_name(number)}, "
                                                    f"{total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free{mark}"))
    if device.startswith("cuda") and index >= torch.cuda.device_count():
        checks.append(Check("fail", "device", f"'{device}' does not exist", "set engines.semfi.device to cuda or cuda:0"))
        return checks, None
    if not device.startswith("cuda"):
        return checks, None
    return checks, torch.cuda.mem_get_info(index)


def check_folder(model_dir: str) -> tuple[list[Check], Any]:
    """Every file of the model folder, then the architecture read from it (the layout, if readable)."""
    from engines.semfi_parts import loading

    if not model_dir:
        return [Check("fail", "model folder", "not set",
                      "set engines.semfi.model_dir in sfi.toml (or pass --model-dir) to the Wan2.1-I2V-14B-720P folder")], None
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        return [Check("fail", "model folder", f"'{folder}' does not exist", f"{loading.DOWNLOAD_HINT}, or fix model_dir")], None
    checks = []
    shards = loading.dit_shards(folder) if (folder / loading.DIT_INDEX).is_file() else []
    present = [p for p in shards if p.is_file()]
    if shards and len(present) == len(shards):
        checks.append(Check("ok", "DiT", f"{len(shards)} shards + index, {size_text(sum(p.stat().st_size for p in shards))}"))
    elif shards:
        missing = ", ".join(p.name for p in shards if not p.is_file())
        checks.append(Check("fail", "DiT", f"shards missing: {missing}", f"download the missing shard(s) into '{folder}'"))
    elif (folder / loading.DIT_SINGLE).is_file():
        checks.append(Check("ok", "DiT", f"{loading.DIT_SINGLE}, {size_text((folder / loading.DIT_SINGLE).stat().st_size)}"))
    else:
        checks.append(Check("fail", "DiT", f"{loading.DIT_INDEX} missing", loading.DOWNLOAD_HINT))
    for name in (loading.CONFIG, loading.TEXT_ENCODER, loading.IMAGE_ENCODER, loading.VAE):
        path = folder / name
        if path.is_file():
            checks.append(Check("ok", name, size_text(path.stat().st_size)))
        else:
            checks.append(Check("fail", name, "missing", f"download {name} into '{folder}'"))
    tokenizer = folder / loading.TOKENIZER
    files = sorted(p.name for p in tokenizer.iterdir()) if tokenizer.is_dir() else []
    if any(n in files for n in ("tokenizer.json", "spiece.model")):
        checks.append(Check("ok", f"{loading.TOKENIZER}/", ", ".join(files)))
    else:
        checks.append(Check("fail", f"{loading.TOKENIZER}/", "missing or empty", f"download the google/umt5-xxl folder into '{folder}'"))
    if any(c.status == "fail" for c in checks):
        return checks, None
    try:
        layout = loading.inspect_folder(folder)
    except SfiError as error:
        return checks + [Check("fail", "architecture", str(error), "replace the files named above")], None
    dit = layout.dit
    billions = sum(layout.parameters.values()) / 1e9
    checks.append(Check("ok", "architecture", f"DiT dim {dit['dim']}, {dit['num_layers']} blocks, {dit['num_heads']} heads, "
                                              f"ffn {dit['ffn_dim']}; text encoder {layout.text_encoder['num_layers']} layers; "
                                              f"{billions:.2f}B parameters in all"))
    return checks, layout


def check_memory(layout, gpu: tuple[int, int], dtype_name: str, area, mode_setting: str) -> list[Check]:
    from engines.semfi_parts import memory, rules

    free, total = gpu
    dtype_bytes = 4 if dtype_name == "float32" else 2
    pixels = rules.area_pixels(area)
    needs = {mode: memory.gpu_bytes_needed(mode, layout.parameters, dtype_bytes, pixels) for mode in memory.MEMORY_MODES}
    listing = ", ".join(f"{mode} {need / 2**30:.0f}" for mode, need in needs.items())
    chosen = memory.choose_memory_mode(free, layout.parameters, dtype_bytes, pixels)
    detail = f"needs (GiB, {area}, {dtype_name}): {listing}; {free / 2**30:.0f} GiB free -> auto picks '{chosen}'"
    if mode_setting not in ("auto", chosen) and needs[mode_setting] > free:
        return [Check("warn", "GPU memory", detail + f", but memory_mode is '{mode_setting}'",
                      f"set engines.semfi.memory_mode to auto or {chosen}")]
    if needs["stream"] > free:
        return [Check("fail", "GPU memory", detail, "free GPU memory (close other GPU programs) or use a larger GPU")]
    return [Check("ok", "GPU memory", detail)]


def check_lora(lora: str, layout) -> list[Check]:
    from engines.semfi_parts import mol

    if not lora:
        return [Check("fail", "LoRA", "not set", "set engines.semfi.lora in sfi.toml (or pass --lora) to semfi.ckpt")]
    path = Path(lora).expanduser()
    if not path.is_file():
        return [Check("fail", "LoRA", f"'{path}' does not exist",
                      "download semfi.ckpt (Hugging Face oyiya/SemFi) and point engines.semfi.lora at it")]
    try:
        state = mol.read_checkpoint(path)
    except SfiError as error:
        return [Check("fail", "LoRA", str(error), "download semfi.ckpt again")]
    if layout is None:
        return [Check("warn", "LoRA", f"{size_text(path.stat().st_size)}, {len(state)} tensors; not matched (model folder unreadable)",
                      "fix the model folder first")]
    try:
        loras = mol.map_checkpoint(state, mol.adapted_shapes(layout.dit_shapes, layout.dit["num_layers"]), path)
    except SfiError as error:
        return [Check("fail", "LoRA", str(error), "use the semfi.ckpt released for Wan2.1-I2V-14B-720P")]
    rank = next(iter(loras.values()))[0].a_weight.shape[0]
    return [Check("ok", "LoRA", f"{size_text(path.stat().st_size)}; all {len(state)} keys map: {mol.LORA_COUNT} LoRAs "
                                f"(rank {rank}) on each of {len(loras)} DiT linears")]


def check_ffmpeg(configured: str) -> list[Check]:
    from sfi_cli.media.ffmpeg import find_ffmpeg

    try:
        exe = find_ffmpeg(configured or None)
        answer = subprocess.run([exe, "-version"], capture_output=True, text=True, errors="replace", timeout=30)
    except SfiError as error:
        return [Check("fail", "ffmpeg", str(error), "install ffmpeg or clear the 'ffmpeg' key")]
    except (OSError, subprocess.SubprocessError) as error:
        return [Check("fail", "ffmpeg", f"cannot run it ({error})", "install a working ffmpeg or clear the 'ffmpeg' key")]
    version = next(iter(answer.stdout.splitlines()), "")
    if answer.returncode != 0 or not version.startswith("ffmpeg version"):
        return [Check("fail", "ffmpeg", f"{exe} is not ffmpeg ('-version' gave exit {answer.returncode}: "
                                        f"'{version or 'no output'}')", "install a working ffmpeg or clear the 'ffmpeg' key")]
    return [Check("ok", "ffmpeg", f"{exe} ({version})")]


def run_checks(settings: dict[str, Any], ffmpeg: str) -> list[Check]:
    """Every check for the ``[engines.semfi]`` ``settings`` and the configured ffmpeg."""
    from engines.semfi import DEFAULTS, resolve_dtype_name

    settings = {**DEFAULTS, **settings}
    checks = check_packages()
    if any(c.status == "fail" for c in checks if c.item in ("torch", "diffsynth", "safetensors")):
        return checks + check_ffmpeg(ffmpeg)
    from engines.semfi_parts.loading import go_offline

    go_offline()
    device = str(settings["device"])
    gpu_checks, gpu = check_gpu(device)
    folder_checks, layout = check_folder(str(settings["model_dir"]))
    checks += gpu_checks + folder_checks
    if layout is not None and gpu is not None:
        try:
            checks += check_memory(layout, gpu, resolve_dtype_name(str(settings["dtype"]), device),
                                   settings["area"], str(settings["memory_mode"]))
        except SfiError as error:
            checks.append(Check("fail", "settings", str(error), "fix the [engines.semfi] section of sfi.toml"))
    return checks + check_lora(str(settings["lora"]), layout) + check_ffmpeg(ffmpeg)


def report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper() if check.status == 'fail' else check.status:5s} {check.item}: {check.detail}")
        if check.fix:
            lines.append(f"      -> {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("SemFi is ready." if not failed else f"{failed} problem(s): SemFi cannot run until they are fixed.")
    return "\n".join(lines)


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
