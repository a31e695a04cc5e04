"""SemFi: Wan2.1-I2V-14B with a Mixture-of-LoRA for semantic frame interpolation.

One engine instance loads the models once (on first use) and reuses them for every gap.
Per gap: the model runs the smallest 4k+1 frame count that holds the ends plus the
requested in-betweens, with the universal LoRA and the expert for that count merged into
the DiT; the result is brought back to exactly the requested frames at the source size
(``semfi_parts.delivery``). ``generate_raw`` returns the model's frames untouched, for
comparison with the authors' code. torch and diffsynth are imported only when needed.

Settings (the ``[engines.semfi]`` section of sfi.toml):
model_dir, lora: the Wan2.1-I2V-14B-720P folder and semfi.ckpt; device: cuda, cuda:N or
cpu; dtype: auto (bfloat16 on CUDA, float32 on CPU), bfloat16, float16 or float32; steps,
cfg, shift: sampler (official: 50, 5.0, 5.0); negative_prompt: used when a gap has none;
area: working size, 480p, 720p or a pixel count; memory_mode: auto, full, offload, stream.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from engines.base import Engine, ProgressCallback
from sfi_cli.errors import SfiError

DEFAULTS: dict[str, Any] = {
    "model_dir": "",
    "lora": "",
    "device": "cuda",
    "dtype": "auto",
    "steps": 50,
    "cfg": 5.0,
    "shift": 5.0,
    "negative_prompt": "",
    "area": "480p",
    "memory_mode": "auto",
}
DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}


def resolve_dtype_name(dtype: str, device: str) -> str:
    """torch dtype name for a ``dtype`` setting: auto means bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise SfiError(f"dtype must be auto, bfloat16, float16 or float32, got '{dtype}'")
    return DTYPES[dtype]


def cuda_problem(device: str) -> str | None:
    """Why ``device`` cannot be used (None if it can). Imports torch only for CUDA devices."""
    if device == "cpu":
        return None
    if not device.startswith("cuda"):
        return f"device must be cuda, cuda:N or cpu, got '{device}'"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is available; SemFi needs an NVIDIA GPU (--device cpu runs it on the CPU, very slowly)"
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"device '{device}' does not exist (this machine has {torch.cuda.device_count()} CUDA device(s))"
    return None


def build_runtime(layout, loras, device: str, dtype, memory_mode: str, vram_limit: float | None = None):
    """Load the models of ``layout`` in ``memory_mode`` and wrap them: (sampler, Mixture-of-LoRA)."""
    from engines.semfi_parts import loading, memory, mol
    from engines.semfi_parts.sampler import Sampler

    models = loading.load_models(layout, device, dtype, memory.vram_config(memory_mode, device, dtype), vram_limit)
    mixture = mol.MixtureOfLoRA(models.dit, loras, mol.ShardReader(layout.dit_files), device)
    return Sampler(models, device, dtype), mixture


class SemFiEngine(Engine):
    name: ClassVar[str] = "semfi"

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise SfiError(f"unknown semfi setting(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
        merged = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
        super().__init__(**merged)
        self.model_dir = Path(merged["model_dir"]).expanduser()
        self.lora = Path(merged["lora"]).expanduser()
        self.device = str(merged["device"])
        self.dtype_name = resolve_dtype_name(str(merged["dtype"]), self.device)
        self.steps, self.cfg, self.shift = int(merged["steps"]), float(merged["cfg"]), float(merged["shift"])
        if self.steps < 1 or self.shift <= 0:
            raise SfiError(f"steps must be 1 or more and shift above 0 (got steps {self.steps}, shift {self.shift})")
        self.negative_prompt = str(merged["negative_prompt"])
        self.area = merged["area"]
        self.memory_mode_setting = str(merged["memory_mode"])
        self.memory_mode: str | None = None  # the mode in use, once loaded
        self._runtime = None

    @classmethod
    def unavailable_reason(cls, settings: dict[str, Any]) -> str | None:
        from engines.semfi_parts.loading import folder_problems

        for package in ("torch", "diffsynth", "safetensors"):
            if importlib.util.find_spec(package) is None:
                return f"the Python package '{package}' is missing; install sfi with the semfi extra (pip install 'sfi[semfi]')"
        model_dir = settings.get("model_dir") or ""
        if not model_dir:
            return "no model folder set; put Wan2.1-I2V-14B-720P somewhere and set engines.semfi.model_dir in sfi.toml or pass --model-dir"
        problems = folder_problems(Path(model_dir).expanduser())
        if problems:
            return f"{'; '.join(problems)} (in '{model_dir}'); see 'sfi doctor'"
        lora = settings.get("lora") or ""
        if not lora:
            return "no LoRA checkpoint set; set engines.semfi.lora in sfi.toml to semfi.ckpt or pass --lora"
        if not Path(lora).expanduser().is_file():
            return f"LoRA checkpoint '{lora}' does not exist; put semfi.ckpt there or pass --lora"
        return cuda_problem(str(settings.get("device", DEFAULTS["device"])))

    @classmethod
    def suits_auto(cls, settings: dict[str, Any]) -> bool:
        """A 14B model on the CPU takes hours per gap: auto picks SemFi only for a CUDA device."""
        return str(settings.get("device", DEFAULTS["device"])).startswith("cuda")

    def cache_key(self) -> dict[str, Any]:
        lora = self.lora.resolve()
        stat = lora.stat() if lora.is_file() else None
        return {
            "engine": self.name,
            "model_dir": str(self.model_dir.resolve()),
            "lora": str(lora),
            "lora_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
            "device_type": "cuda" if self.device.startswith("cuda") else self.device,
            "dtype": self.dtype_name,
            "steps": self.steps,
            "cfg": self.cfg,
            "shift": self.shift,
            "negative_prompt": self.negative_prompt,
            "area": self.area,
        }

    def runtime(self):
        """The loaded models, sampler and Mixture-of-LoRA (loaded on first call, then reused)."""
        if self._runtime is None:
            self._runtime = self._load()
        return self._runtime

    def _load(self):
        from engines.semfi_parts import loading, memory, mol, rules

        loading.go_offline()
        problem = cuda_problem(self.device)
        if problem:
            raise SfiError(problem)
        import torch

        layout = loading.inspect_folder(self.model_dir)
        shapes = mol.adapted_shapes(layout.dit_shapes, layout.dit["num_layers"])
        loras = mol.map_checkpoint(mol.read_checkpoint(self.lora), shapes, self.lora)  # refuse a bad LoRA before loading
        dtype = getattr(torch, self.dtype_name)
        free, total = torch.cuda.mem_get_info(torch.device(self.device)) if self.device.startswith("cuda") else (None, None)
        pixels = rules.area_pixels(self.area)
        self.memory_mode = memory.resolve_memory_mode(self.memory_mode_setting, self.device, free, layout.parameters,
                                                      dtype.itemsize, pixels)
        limit = memory.stream_vram_limit(total, pixels) if self.memory_mode == "stream" else None
        return build_runtime(layout, loras, self.device, dtype, self.memory_mode, limit)

    def _run(self, first: np.ndarray, last: np.ndarray, frames: int, size: tuple[int, int], *, prompt: str,
             negative_prompt: str, seed: int, progress: ProgressCallback | None) -> list[np.ndarray]:
        """``frames`` model frames at working ``size``; each end is resized there on its own (bicubic)."""
        from engines.semfi_parts import rules
        from engines.semfi_parts.delivery import resize
        from engines.semfi_parts.sampler import Request
        from PIL import Image

        from sfi_cli.media.formats import at_depth

        sampler, mixture = self.runtime()
        mixture.activate(rules.expert_index(frames))
        ends = [rules.to_model_pixels(resize(at_depth(image, np.uint8), size, Image.Resampling.BICUBIC))
                for image in (first, last)]  # the model works in 8 bits; delivery brings its frames back to the ends' depth
        request = Request(ends[0], ends[1], frames, prompt, negative_prompt or self.negative_prompt, seed,
                          self.steps, self.cfg, self.shift)
        return sampler.run(request, progress)

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None) -> Iterator[np.ndarray]:
        from engines.semfi_parts import rules
        from engines.semfi_parts.delivery import deliver

        frames = rules.model_frame_count(count)
        size = rules.working_size(first.shape[1], first.shape[0], self.area)
        model_frames = self._run(first, last, frames, size, prompt=prompt, negative_prompt=negative_prompt,
                                 seed=seed, progress=progress)
        return deliver(model_frames, first, last, count)

    def generate_raw(self, first: np.ndarray, last: np.ndarray, count: int, size: tuple[int, int] | None = None, *,
                     prompt: str = "", negative_prompt: str = "", seed: int = 0,
                     progress: ProgressCallback | None = None) -> list[np.ndarray]:
        """Every frame the model makes for ``count`` in-betweens (4k+1 of them, ends included) at the
        working size, untouched: no retiming, no end restoration, no seam correction. ``size``
        (width, height), multiples of 16, sets the working size; by default it comes from
        ``first``'s shape and the area setting. ``first`` and ``last`` may differ in size."""
        from engines.semfi_parts import rules

        if size is None:
            size = rules.working_size(first.shape[1], first.shape[0], self.area)
        rules.check_working_size(*size)
        return self._run(first, last, rules.model_frame_count(count), size, prompt=prompt,
                         negative_prompt=negative_prompt, seed=seed, progress=progress)
