"""The DiT as a TensorRT engine, built ahead of time (``sfi compile``) from the exported ONNX graph.

Build: a strongly typed network (the graph's own dtypes decide every layer's precision; no FP16/BF16
builder flags, which TensorRT 11 removed), one optimisation profile per working size (a bucket) whose
latent frames span the frame counts asked for, a persistent timing cache per TensorRT version and GPU
(a rebuild for another size reuses the kernels already timed), and an engine cache keyed by model
digest, LoRA digest, the profiles, TensorRT version, GPU name and sfi version.

Run: TensorRT's Python runtime on torch CUDA tensors: inputs and output are bound by their device
addresses and the engine is enqueued on torch's current stream, so nothing is copied to the host.
The expert's LoRA tensors are inputs like the rest (one engine for all six experts).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EngineError

PLAN = "dit.plan"
INSTALL = "run 'bash scripts/install.sh gpu' (pip install tensorrt) on a machine with an NVIDIA GPU"


def tensorrt_problem(device: str) -> str | None:
    """Why the tensorrt backend cannot run on ``device`` here (what is missing), or None."""
    if not device.startswith("cuda"):
        return f"backend tensorrt runs on an NVIDIA GPU and the device is '{device}'; use --device cuda, or --backend onnx on a CPU"
    if importlib.util.find_spec("tensorrt") is None:
        return f"backend tensorrt needs the tensorrt package, which is not installed: {INSTALL}"
    import torch

    if not torch.cuda.is_available():
        return "backend tensorrt needs a CUDA GPU and torch sees none (check the driver with nvidia-smi)"
    return None


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: a working size and the latent frame counts it takes (min, opt, max)."""

    width: int
    height: int
    frames: tuple[int, int, int]

    def latent_shape(self, channels: int, which: int) -> tuple[int, ...]:
        return (1, channels, self.frames[which], self.height // 8, self.width // 8)

    def holds(self, latent_shape: tuple[int, ...]) -> bool:
        frames, height, width = latent_shape[2:]
        return (height, width) == (self.height // 8, self.width // 8) and self.frames[0] <= frames <= self.frames[2]

    def describe(self) -> str:
        low, _, high = (4 * (f - 1) + 1 for f in self.frames)
        return f"{self.width}x{self.height}, {low}-{high} model frames" if low != high else f"{self.width}x{self.height}, {low} model frames"


def profiles_for(working_sizes: list[tuple[int, int]], model_frames: list[int]) -> list[Profile]:
    """One profile per working size, its latent frames from the fewest to the most asked for, tuned for the most
    (the long runs cost the time)."""
    from engines.semfi_parts.rules import latent_frame_count

    latents = sorted({latent_frame_count(frames) for frames in model_frames})
    return [Profile(width, height, (latents[0], latents[-1], latents[-1])) for width, height in dict.fromkeys(working_sizes)]


def runtime_identity() -> dict[str, str]:
    """TensorRT version and GPU name: an engine runs only where both match its build."""
    import tensorrt
    import torch

    return {"tensorrt": tensorrt.__version__, "gpu": torch.cuda.get_device_name(torch.cuda.current_device())}


def engine_key(onnx_key: dict[str, Any], profiles: list[Profile], identity: dict[str, str]) -> dict[str, Any]:
    """The engine cache key: the graph's key (model, LoRA, dtype, sfi version) + profiles + TensorRT + GPU."""
    return {**onnx_key, "kind": "tensorrt", "profiles": [[p.width, p.height, list(p.frames)] for p in profiles], **identity}


def timing_cache_path(root: Path, identity: dict[str, str]) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{identity['tensorrt']}-{identity['gpu']}").strip("-")
    return Path(root) / f"timing-{slug}.cache"


def build_engine(onnx_path: Path, profiles: list[Profile], folder: Path, timing_cache: Path) -> Path:
    """Parse the graph into a strongly typed network and build the engine into ``folder``."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # the only mode in 11
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse '{onnx_path}': {errors[:300]}")
    config = builder.create_builder_config()
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    channels = {"latents": 16, "y": 20}  # the only inputs whose sizes vary
    for profile in profiles:
        optimisation = builder.create_optimization_profile()
        for name in ("latents", "y"):
            optimisation.set_shape(name, *(profile.latent_shape(channels[name], which) for which in range(3)))
        config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT could not build the DiT engine (see its messages above); free GPU memory or "
                          "build fewer sizes at once")
    plan = Path(folder) / PLAN
    plan.write_bytes(bytes(serialized))
    partial = timing_cache.with_name(timing_cache.name + ".partial")
    partial.write_bytes(bytes(config.get_timing_cache().serialize()))
    partial.replace(timing_cache)
    return plan


def build(source, store, profiles: list[Profile]) -> Path:
    """The engine for ``profiles`` from the cache, or exported (ONNX) and built now; returns its folder."""
    import time

    from engines.semfi_parts.backends.denoisers import log, onnx_graph
    from engines.semfi_parts.backends.store import onnx_key

    identity = runtime_identity()
    key = engine_key(onnx_key(source.model_digest, source.lora_digest, str(source.dtype).removeprefix("torch.")),
                     profiles, identity)
    found = store.find(key)
    if found is not None:
        return found
    graph = onnx_graph(source, store)
    log(f"building the TensorRT engine for {'; '.join(p.describe() for p in profiles)} (TensorRT {identity['tensorrt']}, "
        f"{identity['gpu']}); this takes minutes")
    started = time.monotonic()
    folder = store.write(key, lambda folder: build_engine(graph, profiles, folder, timing_cache_path(store.root, identity)),
                         profiles=[p.describe() for p in profiles])
    log(f"built in {time.monotonic() - started:.0f}s: {folder}")
    return folder


def find_engine(store, graph_key: dict[str, Any], identity: dict[str, str], latent_shape: tuple[int, ...]):
    """(folder, profile index) of the first cached engine built from this graph, TensorRT and GPU whose
    profiles hold ``latent_shape``; None when there is none."""
    wanted = {**graph_key, **identity, "kind": "tensorrt"}
    for entry in store.entries():
        key = entry.meta.get("key", {})
        if any(key.get(name) != value for name, value in wanted.items()):
            continue
        profiles = [Profile(w, h, tuple(f)) for w, h, f in key["profiles"]]
        index = next((i for i, p in enumerate(profiles) if p.holds(latent_shape)), None)
        if index is not None:
            return entry.folder, index
    return None


class TensorRTDenoiser:
    """Runs the engine that holds each pass's shape (built by ``sfi compile``) on torch CUDA tensors."""

    def __init__(self, source, store) -> None:
        from engines.semfi_parts.backends.store import onnx_key

        self.source, self.store = source, store
        self.graph_key = onnx_key(source.model_digest, source.lora_digest, str(source.dtype).removeprefix("torch."))
        self.identity = runtime_identity()
        self.loaded: dict[Path, Any] = {}
        self.expert: dict | None = None

    def use_expert(self, expert: int) -> None:
        self.expert = self.source.expert_tensors(expert)

    def engine_for(self, latent_shape: tuple[int, ...]):
        """(engine, context, profile index) of a cached engine for this model whose profiles hold the shape."""
        found = find_engine(self.store, self.graph_key, self.identity, latent_shape)
        if found is None:
            frames, height, width = latent_shape[2:]
            raise EngineError(f"no TensorRT engine in '{self.store.root}' holds {4 * (frames - 1) + 1} model frames at "
                              f"{width * 8}x{height * 8} for this model, LoRA, TensorRT {self.identity['tensorrt']} and GPU; "
                              f"build one with 'sfi compile --engine semfi --size WxH --frames N' (the footage's size and "
                              f"new frames)")
        folder, index = found
        return (*self.load(folder), index)

    def load(self, folder: Path):
        if folder not in self.loaded:
            import tensorrt as trt

            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine((folder / PLAN).read_bytes())
            if engine is None:
                raise EngineError(f"TensorRT cannot load '{folder / PLAN}'; delete the folder and run 'sfi compile' again")
            self.loaded[folder] = (engine, engine.create_execution_context(), runtime)  # the runtime outlives its engine
            self.release_torch_dit()
        return self.loaded[folder][:2]

    def release_torch_dit(self) -> None:
        """Move the PyTorch DiT (loaded onto the GPU in memory mode full) to CPU RAM: the engine holds its own
        weights, and two copies of a 14B DiT do not fit beside each other on an 80 GB card."""
        import torch

        from engines.semfi_parts.backends.denoisers import log

        dit = self.source.dit
        if getattr(dit, "vram_management_enabled", False) or not next(dit.parameters()).is_cuda:
            return
        dit.to("cpu")
        torch.cuda.empty_cache()
        log("the PyTorch DiT moved to CPU RAM: the TensorRT engine runs every pass")

    def __call__(self, latents, timestep, context, clip_feature, y):
        import tensorrt as trt
        import torch

        from engines.semfi_parts.backends.onnx_graph import INPUTS, OUTPUT

        if self.expert is None:
            raise RuntimeError("use_expert must be called before the first pass")
        engine, execution, profile = self.engine_for(tuple(latents.shape))
        stream = torch.cuda.current_stream(latents.device)
        if execution.active_optimization_profile != profile:
            execution.set_optimization_profile_async(profile, stream.cuda_stream)
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16}
        bound = []  # kept alive until the engine has run
        for name, tensor in {**dict(zip(INPUTS, (latents, timestep, context, clip_feature, y))), **self.expert}.items():
            tensor = tensor.to(device=latents.device, dtype=dtypes[engine.get_tensor_dtype(name)]).contiguous()
            execution.set_input_shape(name, tuple(tensor.shape))
            execution.set_tensor_address(name, tensor.data_ptr())
            bound.append(tensor)
        velocity = torch.empty(tuple(execution.get_tensor_shape(OUTPUT)), dtype=dtypes[engine.get_tensor_dtype(OUTPUT)],
                               device=latents.device)
        execution.set_tensor_address(OUTPUT, velocity.data_ptr())
        if not execution.execute_async_v3(stream.cuda_stream):
            raise EngineError("TensorRT failed to run the DiT engine (see its messages above)")
        return velocity.to(latents.dtype)
