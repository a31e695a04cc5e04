"""The sampler's one call per DiT pass: a denoiser, ``denoiser(latents, timestep, context, clip_feature, y) -> velocity``.

Each backend also owns how an expert is applied (``use_expert``), because that differs:

- eager and compile merge universal + expert into the weights in place (``MixtureOfLoRA.activate``
  copies into the parameters' storage), so the compiled blocks see new values, not new tensors,
  and nothing recompiles on an expert switch;
- onnx and tensorrt run one graph with the universal LoRA merged and the expert's A/B fed as
  inputs, so an expert switch swaps 30 input tensors (milliseconds) and one graph serves all six.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engines.errors import EngineError


def log(text: str) -> None:
    """A line for whoever runs sfi (stderr: stdout carries --json summaries)."""
    print(f"{time.strftime('%H:%M:%S')} semfi: {text}", file=sys.stderr, flush=True)


@dataclass
class DiTSource:
    """What a backend needs to run or export the DiT: the loaded model, its LoRAs and where they came from."""

    dit: Any
    mixture: Any  # MixtureOfLoRA over ``dit``
    model_digest: str
    lora_digest: str
    text_len: int
    device: str
    dtype: Any

    def expert_tensors(self, expert: int) -> dict:
        from engines.semfi_parts.backends.dit import expert_inputs

        return expert_inputs(self.mixture.loras, len(self.dit.blocks), expert, self.dtype, self.device)


class EagerDenoiser:
    """diffsynth's forward (today's path) with sdpa; our forward when another attention kernel is asked for."""

    def __init__(self, source: DiTSource, attention: str, store) -> None:
        self.source, self.store = source, store  # every denoiser keeps both, for ``sfi compile``
        self.module = None
        if attention != "sdpa":
            from engines.semfi_parts.backends.dit import ExportableDiT

            self.module = ExportableDiT(source.dit, attention)

    def use_expert(self, expert: int) -> None:
        self.source.mixture.activate(expert)

    def __call__(self, latents, timestep, context, clip_feature, y):
        if self.module is not None:
            return self.module(latents, timestep, context, clip_feature, y)
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        return model_fn_wan_video(dit=self.source.dit, latents=latents, timestep=timestep, context=context,
                                  clip_feature=clip_feature, y=y)


class CompiledDenoiser(EagerDenoiser):
    """Our forward with every block under ``torch.compile`` (static shapes: one compile per working size and
    frame count, the same code for all blocks; the weights' values may change, as an expert switch does)."""

    RECOMPILE_LIMIT = 64  # working sizes x frame counts one process may meet before torch falls back to eager

    def __init__(self, source: DiTSource, attention: str, store) -> None:
        import torch
        from engines.semfi_parts.backends.dit import ExportableDiT

        self.source, self.store = source, store
        self.module = ExportableDiT(source.dit, attention)
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), self.RECOMPILE_LIMIT))
        for block in self.module.blocks:
            block.compile(dynamic=False)
        self.shapes: set[tuple[int, ...]] = set()

    def __call__(self, latents, timestep, context, clip_feature, y):
        shape = tuple(latents.shape[2:])
        if shape in self.shapes:
            return self.module(latents, timestep, context, clip_feature, y)
        frames, height, width = shape
        log(f"torch.compile of the DiT blocks for {frames} latent frames at {width * 8}x{height * 8} "
            f"(once per working size and frame count; the first pass waits for it)")
        started = time.monotonic()
        velocity = self.module(latents, timestep, context, clip_feature, y)
        self.shapes.add(shape)
        log(f"compiled in {time.monotonic() - started:.0f}s")
        return velocity


def onnx_graph(source: DiTSource, store, *, export: bool = True) -> Path:
    """The cached graph for this model, LoRA and dtype, exported now (and logged) when missing."""
    from engines.semfi_parts.backends import onnx_graph as graphs
    from engines.semfi_parts.backends.dit import ExportableDiT
    from engines.semfi_parts.backends.store import onnx_key

    key = onnx_key(source.model_digest, source.lora_digest, str(source.dtype).removeprefix("torch."))
    found = store.find(key)
    if found is None:
        if not export:
            raise EngineError(f"no exported DiT graph in '{store.root}' for this model and LoRA")
        log(f"exporting the DiT to ONNX into '{store.root}' (once per model, LoRA and dtype)")
        started = time.monotonic()
        source.mixture.merge_universal()
        module = ExportableDiT(source.dit, "sdpa")

        def fill(folder: Path) -> None:
            path = graphs.export_graph(module, source.expert_tensors(1), source.text_len, folder)
            graphs.check_graph(path)

        found = store.write(key, fill)
        log(f"exported in {time.monotonic() - started:.0f}s")
    return found / graphs.GRAPH


def make_denoiser(backend: str, attention: str, source: DiTSource, store) -> Callable:
    """The denoiser for the ``backend`` and ``attention`` settings (checked before the models loaded)."""
    if backend == "eager":
        return EagerDenoiser(source, attention, store)
    if backend == "compile":
        return CompiledDenoiser(source, attention, store)
    if backend == "onnx":
        from engines.semfi_parts.backends.onnx_graph import OnnxDenoiser

        path = onnx_graph(source, store)
        source.mixture.merge_universal()  # only the graph runs, but the torch DiT stays consistent with it
        return OnnxDenoiser(path, source, store)
    if backend == "tensorrt":
        from engines.semfi_parts.backends.tensorrt import TensorRTDenoiser

        return TensorRTDenoiser(source, store)
    raise EngineError(f"unknown backend '{backend}'")
