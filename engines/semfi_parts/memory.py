"""GPU memory modes: what each needs, which one fits, and the diffsynth settings for it.

- ``full``: every model stays on the GPU. Fastest; needs all weights plus activations.
- ``offload``: models live in CPU RAM; diffsynth moves each whole model onto the GPU only
  while it is used (text encoder, CLIP, VAE, then the DiT for all steps). Peak = the DiT
  plus activations; same speed per step, a few seconds of transfers per gap.
- ``stream``: models live in CPU RAM and diffsynth streams the DiT's layers to the GPU as
  they run, keeping as many resident as fit. For cards that cannot hold the DiT; slower.

Sizes come from the parameter counts of the actual files; activation needs are estimates.
"""

from __future__ import annotations

from engines.errors import EngineError

MEMORY_MODES = ("full", "offload", "stream")
GIB = 1024**3
AREA_720P = 1280 * 720
STREAM_RESIDENT = 4 * GIB  # non-block DiT parts, one block in flight and CUDA's own context


def activation_bytes(area_pixels: int) -> int:
    """Estimated peak working memory beside the weights for an 81-frame run at ``area_pixels``
    (DiT block intermediates, float64 RoPE, tiled VAE decode, CUDA context and allocator slack):
    ~10 GiB at 480p, ~18 GiB at 720p. Calibrated so that Wan2.1-14B T2V at 480p with only the DiT
    resident comes to the 40 GB DiffSynth-Studio reports for it."""
    return int(4 * GIB + 14 * GIB * area_pixels / AREA_720P)


def weight_bytes(parameters: dict[str, int], dtype_bytes: int) -> dict[str, int]:
    return {name: count * dtype_bytes for name, count in parameters.items()}


def gpu_bytes_needed(mode: str, parameters: dict[str, int], dtype_bytes: int, area_pixels: int) -> int:
    """GPU memory ``mode`` needs for models with these parameter counts."""
    weights = weight_bytes(parameters, dtype_bytes)
    working = activation_bytes(area_pixels)
    if mode == "full":
        return sum(weights.values()) + working
    if mode == "offload":
        return max(weights.values()) + working
    if mode == "stream":
        return STREAM_RESIDENT + working
    raise ValueError(f"unknown memory mode '{mode}'")


def choose_memory_mode(free_bytes: int, parameters: dict[str, int], dtype_bytes: int, area_pixels: int) -> str:
    """The fastest mode that fits in ``free_bytes`` of GPU memory (``stream`` if none does)."""
    for mode in ("full", "offload"):
        if gpu_bytes_needed(mode, parameters, dtype_bytes, area_pixels) <= free_bytes:
            return mode
    return "stream"


def resolve_memory_mode(setting: str, device: str, free_bytes: int | None, parameters: dict[str, int],
                        dtype_bytes: int, area_pixels: int) -> str:
    """The mode to use for the ``memory_mode`` setting (``auto`` or a mode name) on ``device``."""
    if setting not in ("auto",) + MEMORY_MODES:
        raise EngineError(f"memory mode must be auto, {', '.join(MEMORY_MODES)}; got '{setting}'")
    if not device.startswith("cuda"):
        if setting not in ("auto", "full"):
            raise EngineError(f"memory mode '{setting}' moves models to and from a GPU; on device '{device}' use auto or full")
        return "full"
    if setting == "auto":
        return choose_memory_mode(free_bytes or 0, parameters, dtype_bytes, area_pixels)
    return setting


def vram_config(mode: str, device: str, dtype) -> dict | None:
    """diffsynth's VRAM-management settings for ``mode`` (None: load straight onto ``device``)."""
    if mode == "full":
        return None
    onload = device if mode == "offload" else "cpu"
    return {"offload_dtype": dtype, "offload_device": "cpu", "onload_dtype": dtype, "onload_device": onload,
            "preparing_dtype": dtype, "preparing_device": device, "computation_dtype": dtype, "computation_device": device}


def stream_vram_limit(total_bytes: int, area_pixels: int) -> float:
    """GiB of GPU memory diffsynth may fill with resident layers in ``stream`` mode, leaving room to compute."""
    return max(1.0, (total_bytes - activation_bytes(area_pixels)) / GIB)
