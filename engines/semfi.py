"""SemFi: Wan2.1-I2V-14B with a Mixture-of-LoRA for semantic frame interpolation.

One engine instance loads the models once (on first use) and reuses them for every gap.
Per gap: the model runs the smallest 4k+1 frame count that holds the ends plus the
requested in-betweens, with the universal LoRA and the expert for that count merged into
the DiT; the result is brought back to exactly the requested frames at the source size
(``semfi_parts.delivery``), in-betweens at fractional positions made by the flow engine
with the configured ``[engines.flow]`` settings. ``generate_raw`` returns the model's
frames untouched, for comparison with the authors' code. torch and diffsynth are
imported only when needed.

Settings (the ``[engines.semfi]`` section of sfi.toml):
model_dir, lora: the Wan2.1-I2V-14B-720P folder and semfi.ckpt; device: cuda, cuda:N or
cpu; dtype: auto (bfloat16 on CUDA, float32 on CPU), bfloat16, float16 or float32; steps,
cfg, shift: sampler (official: 50, 5.0, 5.0; cfg 1 runs no negative pass); timesteps: an explicit
schedule instead of steps and shift; negative_prompt: used when a gap has none; area: working size,
480p, 720p or a pixel count; memory_mode: auto, full, offload, stream; cache_threshold,
cache_max_skips, cache_calibration: step caching (``semfi_parts.stepcache``; 0 = off); extra_loras:
LoRAs merged beside the Mixture-of-LoRA (``semfi_parts.extra_lora``).
What SemFi needs (packages, files, device) is checked in ``semfi_parts.diagnosis``: the one
answer for availability, ``auto`` and ``sfi doctor``.

backend (eager, compile, onnx, tensorrt), attention (sdpa, flash3, sage) and cache_dir (where
exported graphs and TensorRT engines are kept) choose how each DiT pass runs (``semfi_parts.backends``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from engines.base import Check, Engine, ProgressCallback, at_depth
from engines.errors import EngineError
from engines.flow import FlowEngine
from engines.semfi_parts.backends import BACKENDS
from engines.semfi_parts.backends.attention import ATTENTIONS

DEFAULTS: dict[str, Any] = {
    "model_dir": "",
    "lora": "",
    "device": "cuda",
    "dtype": "auto",
    "backend": "eager",
    "attention": "sdpa",
    "cache_dir": "",
    "steps": 50,
    "cfg": 5.0,
    "shift": 5.0,
    "negative_prompt": "",
    "area": "480p",
    "memory_mode": "auto",
    "timesteps": (),
    "cache_threshold": 0.0,
    "cache_max_skips": 4,
    "cache_calibration": "",
    "extra_loras": (),
}
DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}


def resolve_dtype_name(dtype: str, device: str) -> str:
    """torch dtype name for a ``dtype`` setting: auto means bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise EngineError(f"dtype must be auto, bfloat16, float16 or float32, got '{dtype}'")
    return DTYPES[dtype]


def resolve_timesteps(values) -> tuple[float, ...]:
    """An explicit ``timesteps`` setting checked (empty: the schedule comes from steps and shift)."""
    from engines.semfi_parts.schedule import timesteps_problem

    problem = timesteps_problem(list(values) if isinstance(values, tuple) else values)
    if problem:
        raise EngineError(f"timesteps must be a list of strictly decreasing numbers above 0 and at most 1000 "
                          f"(empty: from steps and shift), {problem}")
    return tuple(float(t) for t in values)


def with_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every missing (or None) one at its default."""
    return {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}


def build_runtime(layout, loras, device: str, dtype, memory_mode: str, vram_limit: float | None = None, *,
                  backend: str = "eager", attention: str = "sdpa", cache_dir: str = "", lora_path: Path | None = None,
                  extra: dict | None = None, extra_keys: list | None = None):
    """Load the models of ``layout`` in ``memory_mode`` and wrap them: (sampler, Mixture-of-LoRA with the
    ``extra`` LoRAs' deltas beside it); the sampler's denoiser runs the DiT through ``backend`` (graphs and
    engines kept under ``cache_dir``, keyed by the extra LoRAs too, ``extra_keys``: their weights are in them)."""
    from engines.semfi_parts import loading, memory, mol
    from engines.semfi_parts.backends import store
    from engines.semfi_parts.backends.denoisers import DiTSource, make_denoiser
    from engines.semfi_parts.sampler import Sampler

    models = loading.load_models(layout, device, dtype, memory.vram_config(memory_mode, device, dtype), vram_limit)
    mixture = mol.MixtureOfLoRA(models.dit, loras, mol.ShardReader(layout.dit_files), device, extra)
    lora_digest = store.lora_digest(lora_path) if lora_path else ""
    if extra_keys:
        lora_digest = store.digest([lora_digest, extra_keys])
    source = DiTSource(models.dit, mixture, store.model_digest(layout.model_dir, layout.dit_files),
                       lora_digest, layout.text_len, device, dtype)
    denoiser = make_denoiser(backend, attention, source, store.Store(store.cache_root(cache_dir)))
    return Sampler(models, device, dtype, denoiser), mixture


class SemFiEngine(Engine):
    name: ClassVar[str] = "semfi"
    uses: ClassVar[tuple[str, ...]] = ("flow",)

    def __init__(self, flow: FlowEngine | None = None, **settings: Any) -> None:
        """``flow`` retimes the model's frames (``engines.load_engine`` passes the configured one)."""
        from engines.semfi_parts import extra_lora, rules, stepcache

        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise EngineError(f"unknown semfi setting(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
        merged = with_defaults(settings)
        super().__init__(**merged)
        self.flow = flow if flow is not None else FlowEngine()
        self.model_dir = Path(merged["model_dir"]).expanduser()
        self.lora = Path(merged["lora"]).expanduser()
        self.device = str(merged["device"])
        self.dtype_name = resolve_dtype_name(str(merged["dtype"]), self.device)
        self.steps, self.cfg, self.shift = int(merged["steps"]), float(merged["cfg"]), float(merged["shift"])
        if self.steps < 1 or self.shift <= 0:
            raise EngineError(f"steps must be 1 or more and shift above 0 (got steps {self.steps}, shift {self.shift})")
        self.timesteps = resolve_timesteps(merged["timesteps"])
        self.steps = len(self.timesteps) or self.steps
        self.cache = stepcache.cache_settings(merged["cache_threshold"], merged["cache_max_skips"], merged["cache_calibration"])
        self.extra_loras = extra_lora.parse_entries(list(merged["extra_loras"]))
        self.negative_prompt = str(merged["negative_prompt"])
        self.area = merged["area"]
        self.area_pixels = rules.area_pixels(self.area)  # a bad area is refused now, not after the models load
        self.memory_mode_setting = str(merged["memory_mode"])
        self.backend, self.attention = str(merged["backend"]), str(merged["attention"])
        self.cache_dir = str(merged["cache_dir"])
        if self.backend not in BACKENDS or self.attention not in ATTENTIONS:
            raise EngineError(f"backend must be one of {', '.join(BACKENDS)} and attention one of {', '.join(ATTENTIONS)} "
                              f"(got backend '{self.backend}', attention '{self.attention}')")
        self.memory_mode: str | None = None  # the mode in use, once loaded
        self._runtime = None

    @classmethod
    def diagnose(cls, settings: dict[str, Any], *, thorough: bool = False) -> list[Check]:
        from engines.semfi_parts.diagnosis import diagnose

        return diagnose(with_defaults(settings), thorough=thorough)

    @classmethod
    def unavailable_reason(cls, settings: dict[str, Any]) -> str | None:
        reason = super().unavailable_reason(settings)
        return reason and f"{reason} ('sfi doctor' checks everything SemFi needs)"

    @classmethod
    def suits_auto(cls, settings: dict[str, Any]) -> bool:
        """A 14B model on the CPU takes hours per gap: auto picks SemFi only for a CUDA device."""
        return str(with_defaults(settings)["device"]).startswith("cuda")

    @classmethod
    def device(cls, settings: dict[str, Any]) -> str:
        return str(with_defaults(settings)["device"])

    @classmethod
    def on_device(cls, settings: dict[str, Any], device: str) -> dict[str, Any]:
        return {**settings, "device": device}

    @classmethod
    def job_group(cls, settings: dict[str, Any], count: int, size: tuple[int, int]) -> tuple:
        """The expert (a LoRA re-merge when it changes) and the working size (new buffers when it changes)."""
        from engines.semfi_parts import rules

        return (rules.expert_frames(cls.model_frames(count)), rules.working_size(*size, with_defaults(settings)["area"]))

    @staticmethod
    def model_frames(count: int) -> int:
        """Frames the model runs (its generated ends included) for ``count`` in-betweens: the smallest 4k+1 that holds them."""
        from engines.semfi_parts import rules

        return rules.model_frame_count(count)

    @staticmethod
    def check_raw_size(width: int, height: int) -> None:
        """Refuse a working size given directly (``generate_raw``'s ``size``) that the model cannot take."""
        from engines.semfi_parts import rules

        rules.check_working_size(width, height)

    @classmethod
    def notes(cls, count: int) -> dict[str, Any]:
        from engines.semfi_parts import rules

        return {"semfi_expert": rules.expert_frames(cls.model_frames(count))}

    @classmethod
    def describe(cls, count: int) -> str:
        return f"expert {cls.notes(count)['semfi_expert']} (model runs {cls.model_frames(count)} frames)"

    @classmethod
    def key_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Every setting resolved (dtype, area in pixels, paths, extra LoRAs by content); memory_mode is left out
        because every mode gives the same frames (tests/test_semfi_engine.py checks it), the device counts by its
        kind only, and the cache settings only when the cache is on (cache_threshold 0 is exactly no cache)."""
        from engines.semfi_parts import extra_lora, rules, stepcache

        merged = with_defaults(settings)
        device = str(merged["device"])
        timesteps = resolve_timesteps(merged["timesteps"])
        cache = stepcache.cache_settings(merged["cache_threshold"], merged["cache_max_skips"], merged["cache_calibration"])
        extras = extra_lora.parse_entries(list(merged["extra_loras"]))
        key = {
            "model_dir": str(Path(merged["model_dir"]).expanduser().resolve()),
            "lora": str(Path(merged["lora"]).expanduser().resolve()),
            "device_type": "cuda" if device.startswith("cuda") else device,
            "dtype": resolve_dtype_name(str(merged["dtype"]), device),
            # cache_dir is left out (it says where graphs are kept); backend and attention count, as their frames
            # agree with eager's closely (tests/test_semfi_backends.py), not bit for bit
            "backend": str(merged["backend"]),
            "attention": str(merged["attention"]),
            "steps": int(merged["steps"]),
            "cfg": float(merged["cfg"]),
            "shift": float(merged["shift"]),
            "negative_prompt": str(merged["negative_prompt"]),
            "area": rules.area_pixels(merged["area"]),
        }
        # Set only when used, so the gaps made before these settings existed keep their keys.
        if timesteps:
            key.update(steps=len(timesteps), shift=None, timesteps=list(timesteps))
        if cache:
            key["cache"] = cache.key()
        if extras:
            key["extra_loras"] = [entry.key() for entry in extras]
        return key

    def cache_key(self) -> dict[str, Any]:
        lora = self.lora.resolve()
        stat = lora.stat() if lora.is_file() else None
        return {**super().cache_key(), "lora_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
                "flow": self.flow.cache_key()}

    def runtime(self):
        """The loaded models, sampler and Mixture-of-LoRA (loaded on first call, then reused)."""
        if self._runtime is None:
            self._runtime = self._load()
        return self._runtime

    def compile(self, sizes: list[tuple[int, int]], counts: list[int]) -> list[str]:
        """Build ahead of time what the backend needs for footage of ``sizes`` with ``counts`` new frames
        (``sfi compile``): the ONNX graph for onnx, and the TensorRT engine as well for tensorrt. Returns what
        was made or found, one line each."""
        from engines.semfi_parts import rules
        from engines.semfi_parts.backends import tensorrt
        from engines.semfi_parts.backends.denoisers import onnx_graph

        if self.backend not in ("onnx", "tensorrt"):
            raise EngineError(f"sfi compile builds for backend onnx or tensorrt, not '{self.backend}' "
                              f"(compile compiles on first use); pass --backend tensorrt or --backend onnx")
        working = [rules.working_size(width, height, self.area) for width, height in sizes]
        sampler, _ = self.runtime()
        source = sampler.denoiser.source
        store = sampler.denoiser.store
        made = [f"ONNX graph: {onnx_graph(source, store).parent}"]
        if self.backend == "tensorrt":
            profiles = tensorrt.profiles_for(working, [rules.model_frame_count(count) for count in counts])
            made.append(f"TensorRT engine ({'; '.join(p.describe() for p in profiles)}): "
                        f"{tensorrt.build(source, store, profiles)}")
        return made

    def _load(self):
        from engines.semfi_parts import extra_lora, loading, memory, mol
        from engines.semfi_parts.diagnosis import device_problem

        from engines.semfi_parts.backends import backend_problem

        loading.go_offline()
        problem = device_problem(self.device) or backend_problem(self.backend, self.attention, self.device, self.dtype_name)
        if problem:
            raise EngineError(problem)
        import torch

        layout = loading.inspect_folder(self.model_dir)
        shapes = mol.adapted_shapes(layout.dit_shapes, layout.dit["num_layers"])
        loras = mol.map_checkpoint(mol.read_checkpoint(self.lora), shapes, self.lora)  # refuse a bad LoRA before loading
        extra = extra_lora.load_extra_loras(self.extra_loras, layout.dit_shapes)
        dtype = getattr(torch, self.dtype_name)
        free, total = torch.cuda.mem_get_info(torch.device(self.device)) if self.device.startswith("cuda") else (None, None)
        self.memory_mode = memory.resolve_memory_mode(self.memory_mode_setting, self.device, free, layout.parameters,
                                                      dtype.itemsize, self.area_pixels)
        if self.backend == "compile" and self.memory_mode != "full":
            raise EngineError(f"backend compile needs the whole DiT on the GPU (memory_mode full) and memory mode "
                              f"'{self.memory_mode}' was chosen; use --backend eager, or free GPU memory")
        limit = memory.stream_vram_limit(total, self.area_pixels) if self.memory_mode == "stream" else None
        return build_runtime(layout, loras, self.device, dtype, self.memory_mode, limit, backend=self.backend,
                             attention=self.attention, cache_dir=self.cache_dir, lora_path=self.lora, extra=extra,
                             extra_keys=[entry.key() for entry in self.extra_loras])

    def cache_plan(self, size: tuple[int, int]):
        """Which DiT passes a run at working ``size`` makes (None: all of them): known before it starts."""
        from engines.semfi_parts.schedule import sigma_schedule
        from engines.semfi_parts.stepcache import BRANCHES

        if self.cache is None:
            return None
        timesteps = sigma_schedule(self.steps, self.shift, self.timesteps)[1].tolist()
        return self.cache.plan(timesteps, BRANCHES[:1] if self.cfg == 1.0 else BRANCHES, size[0] * size[1])

    def _run(self, first: np.ndarray, last: np.ndarray, frames: int, size: tuple[int, int], *, prompt: str,
             negative_prompt: str, seed: int, progress: ProgressCallback | None, notes: dict[str, Any] | None,
             observe=None) -> list[np.ndarray]:
        """``frames`` model frames at working ``size``; each end is resized there on its own (bicubic). ``notes``
        receives what the step cache skipped; ``observe`` sees every DiT pass (``Sampler.run``)."""
        from engines.semfi_parts import rules
        from engines.semfi_parts.delivery import resize
        from engines.semfi_parts.sampler import Request
        from PIL import Image

        sampler, _ = self.runtime()
        sampler.denoiser.use_expert(rules.expert_index(frames))
        ends = [rules.to_model_pixels(resize(at_depth(image, np.uint8), size, Image.Resampling.BICUBIC))
                for image in (first, last)]  # the model works in 8 bits; delivery brings its frames back to the ends' depth
        plan = self.cache_plan(size)
        request = Request(ends[0], ends[1], frames, prompt, negative_prompt or self.negative_prompt, seed,
                          self.steps, self.cfg, self.shift, self.timesteps, plan)
        made = sampler.run(request, progress, observe)
        if plan is not None and notes is not None:
            notes.update(plan.notes())
        return made

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None, notes=None) -> Iterator[np.ndarray]:
        from engines.semfi_parts import rules
        from engines.semfi_parts.delivery import deliver

        frames = rules.model_frame_count(count)
        size = rules.working_size(first.shape[1], first.shape[0], self.area)
        model_frames = self._run(first, last, frames, size, prompt=prompt, negative_prompt=negative_prompt,
                                 seed=seed, progress=progress, notes=notes)
        return deliver(model_frames, first, last, count, self.flow.between)

    def generate_raw(self, first: np.ndarray, last: np.ndarray, count: int, size: tuple[int, int] | None = None, *,
                     prompt: str = "", negative_prompt: str = "", seed: int = 0,
                     progress: ProgressCallback | None = None, notes: dict[str, Any] | None = None,
                     observe=None) -> list[np.ndarray]:
        """Every frame the model makes for ``count`` in-betweens (4k+1 of them, ends included) at the
        working size, untouched: no retiming, no end restoration, no seam correction. ``size``
        (width, height), multiples of 16, sets the working size; by default it comes from
        ``first``'s shape and the area setting. ``first`` and ``last`` may differ in size.
        ``notes`` and ``observe`` as for ``_run``."""
        from engines.semfi_parts import rules

        if size is None:
            size = rules.working_size(first.shape[1], first.shape[0], self.area)
        self.check_raw_size(*size)
        return self._run(first, last, self.model_frames(count), size, prompt=prompt, negative_prompt=negative_prompt,
                         seed=seed, progress=progress, notes=notes, observe=observe)
