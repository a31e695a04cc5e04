"""Is everything SemFi needs here? One list of checks, the one answer for every caller.

``SemFiEngine.unavailable_reason`` (hence ``load_engine`` and ``auto``) takes the first failure
of the quick form; ``sfi doctor`` prints the thorough form. Both run the same checks in the
same order (packages, model files, LoRA, device), so they name the same first problem; the
thorough form also reads the architecture and the LoRA's keys from the files and measures GPU
memory, which costs seconds, and the quick form stops at its first failure, so an answer such
as "no model folder" never waits for torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Any, Iterator

from engines.base import Check
from engines.errors import EngineError
from engines.semfi_parts import loading

PACKAGES = ("torch", "torchvision", "diffsynth", "safetensors", "transformers", "tokenizers")
TESTED_DIFFSYNTH = "2.1.12"
INSTALL = "run 'bash scripts/install.sh semfi' (or pip install 'sfi[semfi]')"
DEVICE = re.compile(r"cpu|cuda(:\d+)?")
SLOW_CPU = "device is cpu: fine for tests, far too slow for real work"


def diagnose(settings: dict[str, Any], *, thorough: bool) -> list[Check]:
    """The checks for complete ``[engines.semfi]`` ``settings`` (defaults filled in), in the order to fix them."""
    found: list[Check] = []
    for group in _groups(settings, thorough):
        found += group
        if not thorough and any(check.failed for check in group):
            break
    return found


def _groups(settings: dict[str, Any], thorough: bool) -> Iterator[list[Check]]:
    """The checks in groups, each made only when asked for (later ones may use what earlier ones read)."""
    packages = package_checks()
    yield packages
    if any(check.failed for check in packages):
        return  # nothing below can be read without them
    if thorough:
        loading.go_offline()  # reading headers below must never reach for the network
    files = loading.folder_checks(settings["model_dir"])
    yield files
    layout = None
    if thorough and not any(check.failed for check in files):
        architecture, layout = architecture_check(Path(settings["model_dir"]).expanduser())
        yield [architecture]
    yield [lora_check(str(settings["lora"]), layout, thorough)]
    yield sampling_checks(settings, layout, thorough)
    device, gpu = device_checks(str(settings["device"]), thorough)
    yield device
    yield backend_checks(settings, thorough)
    if layout is not None and gpu is not None:
        yield [memory_check(layout, gpu, settings)]


def package_checks() -> list[Check]:
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


def architecture_check(folder: Path) -> tuple[Check, Any]:
    """The architecture read from the files' headers, and the layout when it is readable."""
    try:
        layout = loading.inspect_folder(folder)
    except EngineError as error:
        return Check("fail", "architecture", str(error), "replace the files named above"), None
    dit = layout.dit
    billions = sum(layout.parameters.values()) / 1e9
    return Check("ok", "architecture", f"DiT dim {dit['dim']}, {dit['num_layers']} blocks, {dit['num_heads']} heads, "
                                       f"ffn {dit['ffn_dim']}; text encoder {layout.text_encoder['num_layers']} layers; "
                                       f"{billions:.2f}B parameters in all"), layout


def lora_check(lora: str, layout, thorough: bool) -> Check:
    """The checkpoint is there; thorough: it reads, and every key maps onto the DiT of ``layout``."""
    from engines.semfi_parts import mol

    if not lora:
        return Check("fail", "LoRA", "not set", "set engines.semfi.lora in sfi.toml (or pass --lora) to semfi.ckpt")
    path = Path(lora).expanduser()
    if not path.is_file():
        return Check("fail", "LoRA", f"'{path}' does not exist",
                     "download semfi.ckpt (Hugging Face oyiya/SemFi) and point engines.semfi.lora (or --lora) at it")
    size = loading.size_text(path.stat().st_size)
    if not thorough:
        return Check("ok", "LoRA", size)
    try:
        state = mol.read_checkpoint(path)
    except EngineError as error:
        return Check("fail", "LoRA", str(error), "download semfi.ckpt again")
    if layout is None:
        return Check("warn", "LoRA", f"{size}, {len(state)} tensors; not matched (model folder unreadable)",
                     "fix the model folder first")
    try:
        loras = mol.map_checkpoint(state, mol.adapted_shapes(layout.dit_shapes, layout.dit["num_layers"]), path)
    except EngineError as error:
        return Check("fail", "LoRA", str(error), "use the semfi.ckpt released for Wan2.1-I2V-14B-720P")
    rank = next(iter(loras.values()))[0].a_weight.shape[0]
    return Check("ok", "LoRA", f"{size}; all {len(state)} keys map: {mol.LORA_COUNT} LoRAs "
                               f"(rank {rank}) on each of {len(loras)} DiT linears")


def sampling_checks(settings: dict[str, Any], layout, thorough: bool) -> list[Check]:
    """Each extra LoRA is there (thorough: every key maps onto the DiT of ``layout``), and the step cache's
    calibration reads; nothing when neither is set."""
    from engines.semfi_parts import extra_lora, stepcache

    try:
        entries = extra_lora.parse_entries(list(settings["extra_loras"]))
    except EngineError as error:
        return [Check("fail", "extra LoRAs", str(error), "fix extra_loras in sfi.toml")]
    checks = []
    for entry in entries:
        item, path = f"extra LoRA {entry.path.name}", entry.path.expanduser()
        if not path.is_file():
            checks.append(Check("fail", item, f"'{path}' does not exist", "fix its path in extra_loras or remove the entry"))
            continue
        detail = f"{loading.size_text(path.stat().st_size)}, strength {entry.strength:g}"
        if thorough and layout is not None:
            try:
                detail += f"; every key maps: {len(extra_lora.load_extra_loras([entry], layout.dit_shapes))} DiT parameters changed"
            except EngineError as error:
                checks.append(Check("fail", item, str(error), "use a LoRA made for Wan2.1-I2V-14B, or remove the entry"))
                continue
        checks.append(Check("ok", item, detail))
    try:
        cache = stepcache.cache_settings(settings["cache_threshold"], settings["cache_max_skips"], settings["cache_calibration"])
    except EngineError as error:
        return checks + [Check("fail", "step cache", str(error), "run 'sfi calibrate' again, or leave cache_calibration empty")]
    if cache is not None:
        curve = cache.curve.source if cache.curve else "the published one for the working size"
        checks.append(Check("ok", "step cache", f"threshold {cache.threshold:g}, at most {cache.max_skips} skips in a row, "
                                                f"curve: {curve}"))
    return checks


def device_checks(device: str, thorough: bool) -> tuple[list[Check], tuple[int, int] | None]:
    """Whether ``device`` can be used, and its (free, total) memory when thorough and it is a GPU.

    Quick: torch is imported for CUDA devices only, and no CUDA context is made."""
    if not DEVICE.fullmatch(device):
        return [Check("fail", "device", f"'{device}' is not cuda, cuda:N or cpu",
                      "set engines.semfi.device (or pass --device) to cuda, cuda:N or cpu")], None
    if device == "cpu" and not thorough:
        return [Check("warn", "device", "cpu", SLOW_CPU)], None
    import torch

    if not torch.cuda.is_available():
        detail = f"no CUDA GPU visible (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})"
        if device == "cpu":
            return [Check("warn", "GPU", detail, SLOW_CPU)], None
        return [Check("fail", "GPU", detail, "SemFi needs an NVIDIA GPU (check the driver with nvidia-smi); "
                                             "--device cpu runs it on the CPU, very slowly")], None
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if device != "cpu" and index >= count:
        return [Check("fail", "device", f"'{device}' does not exist (this machine has {count} CUDA device(s))",
                      "set engines.semfi.device (or pass --device) to cuda or cuda:0")], None
    if not thorough:
        return [Check("ok", "device", device)], None
    checks = []
    for number in range(count):
        free, total = torch.cuda.mem_get_info(number)
        mark = " (used)" if number == index and device != "cpu" else ""
        checks.append(Check("ok", f"cuda:{number}", f"{torch.cuda.get_device_name(number)}, "
                                                   f"{total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free{mark}"))
    return checks, (None if device == "cpu" else torch.cuda.mem_get_info(index))


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used (its quick check), or None if it can."""
    failed = next((check for check in device_checks(device, thorough=False)[0] if check.failed), None)
    return failed.sentence() if failed else None


def memory_check(layout, gpu: tuple[int, int], settings: dict[str, Any]) -> Check:
    """GPU memory each mode needs for this model at the working size, against what is free."""
    from engines.semfi import resolve_dtype_name
    from engines.semfi_parts import memory, rules

    free, _ = gpu
    mode_setting, area = str(settings["memory_mode"]), settings["area"]
    try:
        dtype_name = resolve_dtype_name(str(settings["dtype"]), str(settings["device"]))
        pixels = rules.area_pixels(area)
    except EngineError as error:
        return Check("fail", "settings", str(error), "fix the [engines.semfi] section of sfi.toml")
    if mode_setting not in ("auto", *memory.MEMORY_MODES):
        return Check("fail", "settings", f"memory_mode '{mode_setting}' is not auto, {', '.join(memory.MEMORY_MODES)}",
                     "fix engines.semfi.memory_mode in sfi.toml (or --memory-mode)")
    dtype_bytes = 4 if dtype_name == "float32" else 2
    needs = {mode: memory.gpu_bytes_needed(mode, layout.parameters, dtype_bytes, pixels) for mode in memory.MEMORY_MODES}
    listing = ", ".join(f"{mode} {need / 2**30:.0f}" for mode, need in needs.items())
    chosen = memory.choose_memory_mode(free, layout.parameters, dtype_bytes, pixels)
    detail = f"needs (GiB, {area}, {dtype_name}): {listing}; {free / 2**30:.0f} GiB free -> auto picks '{chosen}'"
    if mode_setting not in ("auto", chosen) and needs[mode_setting] > free:
        return Check("warn", "GPU memory", detail + f", but memory_mode is '{mode_setting}'",
                     f"set engines.semfi.memory_mode to auto or {chosen}")
    if needs["stream"] > free:
        return Check("fail", "GPU memory", detail, "free GPU memory (close other GPU programs) or use a larger GPU")
    return Check("ok", "GPU memory", detail)


def backend_checks(settings: dict[str, Any], thorough: bool) -> list[Check]:
    """The chosen backend and attention kernel can run here (quick); thorough: every backend and kernel, usable
    or why not, and the engine cache (where, how big)."""
    from engines.semfi import resolve_dtype_name
    from engines.semfi_parts.backends import BACKENDS, backend_problem
    from engines.semfi_parts.backends.attention import ATTENTIONS, attention_problem
    from engines.semfi_parts.backends.store import Store, cache_root, describe_entries

    device, chosen, attention = str(settings["device"]), str(settings["backend"]), str(settings["attention"])
    try:
        dtype_name = resolve_dtype_name(str(settings["dtype"]), device)
    except EngineError as error:
        return [Check("fail", "settings", str(error), "fix engines.semfi.dtype in sfi.toml (or --dtype)")]
    problem = backend_problem(chosen, attention, device, dtype_name)
    chosen_check = (Check("fail", "backend", problem, "choose another --backend / --attention, or install what it names")
                    if problem else Check("ok", "backend", f"{chosen}, attention {attention}"))
    if not thorough:
        return [chosen_check]
    checks = [chosen_check]
    for backend in BACKENDS:
        why = backend_problem(backend, "sdpa", device, dtype_name)
        checks.append(Check("ok", f"backend {backend}", f"usable on {device}") if why is None
                      else Check("warn", f"backend {backend}", f"not usable here: {why}"))
    for kernel in ATTENTIONS[1:]:
        why = attention_problem(kernel, device)
        checks.append(Check("ok", f"attention {kernel}", "installed") if why is None
                      else Check("warn", f"attention {kernel}", f"not usable here: {why}"))
    store = Store(cache_root(str(settings["cache_dir"])))
    entries = list(store.entries())
    total = sum(entry.size for entry in entries)
    checks.append(Check("ok", "engine cache", f"{store.root}: {len(entries)} entries, {loading.size_text(total)}"
                        + "".join(f"; {line}" for line in describe_entries(store))))
    return checks
