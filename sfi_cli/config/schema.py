"""Every setting ``sfi`` knows, declared once: type, default, choices, range, the flag that sets it and its help.

The config file, recipes and command-line options are all checked against ``SCHEMA``; the options'
Click types, choices and help text are made from it (``config.options``), and the modules that act
on a choice take its list from here. ``sfi.toml.example`` lists the same keys with their defaults
(a test checks that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


def timesteps_problem(value: Any) -> str | None:
    from engines.semfi_parts.schedule import timesteps_problem

    return timesteps_problem(value)


def extra_loras_problem(value: Any) -> str | None:
    from engines.semfi_parts.extra_lora import entry_problem

    return entry_problem(value)


def engine_names() -> tuple[str, ...]:
    """The engines a key may name, from the engine registry (imported only when a value is checked)."""
    from engines import REGISTRY

    return ("auto", *sorted(REGISTRY))


def semfi_backends() -> tuple[str, ...]:
    """SemFi's DiT backends, from the engine's package (imported only when a value is checked)."""
    from engines.semfi_parts.backends import BACKENDS

    return BACKENDS


def semfi_attentions() -> tuple[str, ...]:
    from engines.semfi_parts.backends.attention import ATTENTIONS

    return ATTENTIONS


def rife_choices(name: str) -> Callable[[], tuple[Any, ...]]:
    """One of the rife engine's tuples of allowed values (``SCALES``, ``ENSEMBLES``), read when a value is checked."""
    def choices() -> tuple[Any, ...]:
        import engines.rife

        return getattr(engines.rife, name)

    return choices


@dataclass(frozen=True)
class Key:
    """One setting: accepted TOML types, default, allowed values if it is a choice (a tuple, or a function
    giving one when the list lives in a heavy module), numeric range, and the command-line flag that sets it
    with its help text. A list's entries are checked by ``entries`` (why they do not fit, or None), which
    ``shape`` describes."""

    types: tuple[type, ...]
    default: Any
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] = ()
    minimum: float | None = None
    maximum: float | None = None
    flag: str = ""
    help: str = ""
    entries: Callable[[Any], str | None] | None = None
    shape: str = ""

    def allowed(self) -> tuple[Any, ...]:
        return self.choices() if callable(self.choices) else self.choices


# x264's and x265's speed presets, fastest first (both encoders take the same names).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")

SCHEMA: dict[str, Key] = {
    "ffmpeg": Key((str,), ""),
    "engine": Key((str,), "auto", engine_names, flag="--engine",
            help="Engine: auto, flow, rife, crossfade or semfi (auto picks the best one that can run here)"),
    "output.fps": Key((int, float, str), 24, flag="--fps",
            help="Frame rate of video output, e.g. 24 or 24000/1001"),
    "output.codec": Key((str,), "auto", ("auto", "h264", "h265", "prores", "ffv1", "png"), flag="--codec",
            help="Video codec (auto: the container's usual one: .mp4/.mkv H.264, .mov ProRes 422 HQ; ffv1 is lossless, "
                 ".mkv; png: a PNG sequence, -o frames/ or frames/name_%06d.png, what a folder or pattern gets anyway)"),
    "output.crf": Key((int,), 18, minimum=0, maximum=51, flag="--crf",
            help="H.264/H.265 quality, 0-51 (CRF: lower is better and bigger; 18 looks lossless on most footage)"),
    "output.preset": Key((str,), "medium", PRESETS, flag="--preset",
            help="H.264/H.265 speed preset (faster: quicker, bigger files at the same quality)"),
    "output.fit": Key((str,), "cover", ("cover", "contain", "stretch"), flag="--fit",
            help="How an image of another shape is brought to the output size"),
    "work_dir": Key((str,), "", flag="--work-dir",
            help="Where finished transitions are kept for resume (default: .sfi-work beside the output)"),
    "render.workers": Key((int,), 1, minimum=1, flag="--workers",
            help="Processes making transitions at once (1: one after another in this process); with --executor ray, "
                 "CPU workers on the cluster"),
    "render.devices": Key((str,), "", flag="--devices",
            help="Devices of the local workers, one process each, e.g. cuda:0,cuda:1 (each given to its engines)"),
    "render.executor": Key((str,), "local", ("local", "ray"), flag="--executor",
            help="Where transitions are made: local (this machine) or ray (a Ray cluster; docs/farm.md)"),
    "render.attempts": Key((int,), 3, minimum=1, flag="--attempts",
            help="Tries of one transition (a worker that died is restarted) before the run gives up on it"),
    "farm.address": Key((str,), "", flag="--ray-address",
            help="Ray cluster to join, as 'ray start --head' prints it (empty: a Ray instance on this machine)"),
    "farm.storage": Key((str,), "shared", ("shared", "send"), flag="--farm-storage",
            help="shared: the work folder is mounted at the same path on every node; send: results are sent back here"),
    "detect.detector": Key((str,), "adaptive", ("adaptive", "content", "hash", "threshold"), flag="--detector",
            help="Cut detector (PySceneDetect; default adaptive)"),
    "detect.threshold": Key((int, float), 0, minimum=0, flag="--threshold",
            help="Detector threshold, 0 or more (default: the detector's own; lower finds more cuts)"),
    "detect.min_scene_len": Key((int, float, str), "0.5s", flag="--min-scene-len",
            help="Shortest shot: a time (default 0.5s, the same at any frame rate) or frames (15)"),
    "detect.fade_cuts": Key((bool,), False, flag="--fade-cuts/--no-fade-cuts",
            help="Count the edge of a fade in from or out to black as a cut to fill (default: left out; a hard cut to or from black always counts)"),
    "detect.downscale": Key((int,), 0, minimum=0, flag="--downscale",
            help="Analyse at 1/N size; 0 = automatic"),
    "fill.seconds": Key((int, float), 1.0, minimum=0, flag="--seconds",
            help="Transition length in seconds (1.0)"),
    "fill.mode": Key((str,), "insert", ("insert", "replace"), flag="--mode",
            help="insert: add frames at each cut; replace: overwrite frames around it"),
    "fill.audio": Key((str,), "crossfade", ("crossfade", "silence"), flag="--audio",
            help="Sound under an inserted transition: the two sides' sound crossfaded, or silence"),
    "retime.fps": Key((int, float, str), "", flag="--fps",
            help="Frame rate to retime to, any rate up or down, e.g. 60000/1001 or 24 (default: the clip's own)"),
    "retime.slowmo": Key((int, float), 1, minimum=1, flag="--slowmo",
            help="Play the clip this many times slower, any factor from 1 (2.5: two and a half times)"),
    "retime.audio": Key((str,), "stretch", ("stretch", "drop"), flag="--slowmo-audio",
            help="Sound under --slowmo: stretch (slowed with its pitch kept, ffmpeg atempo) or drop"),
    "timeline.media": Key((str,), "prores", ("prores", "png"), flag="--timeline-media",
            help="Media of each transition clip (--timeline, --transitions-only): prores (a .mov) or png (a folder "
                 "of its frames, frame_00001.png ...)"),
    "timeline.handles": Key((int,), 12, minimum=0, flag="--handles",
            help="Real frames either side of each transition clip (--timeline, --transitions-only)"),
    "eval.lpips": Key((str,), "", flag="--lpips",
            help="LPIPS weights (a whole-model .safetensors, or lpips' alex.pth with --lpips-backbone); adds LPIPS scores"),
    "eval.lpips_backbone": Key((str,), "", flag="--lpips-backbone",
            help="torchvision's backbone file for lpips' linear-layer weights (alexnet-owt-7be5be79.pth, ...)"),
    "eval.fid": Key((str,), "", flag="--fid-weights",
            help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth; adds FID (video)"),
    "eval.clip": Key((str,), "", flag="--clip-model",
            help="A local CLIP model folder (transformers save_pretrained); adds CLIP image similarity"),
    "engines.flow.flow_width": Key((int,), 480, minimum=16),
    "engines.flow.min_confidence": Key((int, float), 0.35, minimum=0, maximum=1),
    "engines.rife.weights": Key((str,), ""),
    "engines.rife.device": Key((str,), "auto"),
    "engines.rife.scale": Key((int, float), 1.0, rife_choices("SCALES")),
    "engines.rife.batch": Key((int,), 0, minimum=0),
    "engines.rife.ensemble": Key((int,), 2, rife_choices("ENSEMBLES")),
    "engines.semfi.model_dir": Key((str,), "", flag="--model-dir",
            help="Wan2.1-I2V-14B-720P folder"),
    "engines.semfi.lora": Key((str,), "", flag="--lora",
            help="SemFi LoRA checkpoint semfi.ckpt"),
    "engines.semfi.device": Key((str,), "cuda", flag="--device",
            help="cuda, cuda:N or cpu (very slow)"),
    "engines.semfi.dtype": Key((str,), "auto", ("auto", "bfloat16", "float16", "float32"), flag="--dtype",
            help="Model precision; auto = bfloat16 on CUDA, float32 on CPU"),
    "engines.semfi.backend": Key((str,), "eager", semfi_backends, flag="--backend",
            help="How the SemFi DiT runs: eager (PyTorch), compile (torch.compile), onnx (onnxruntime on the CPU) "
                 "or tensorrt (an engine built by 'sfi compile'); docs/semfi.md"),
    "engines.semfi.attention": Key((str,), "sdpa", semfi_attentions, flag="--attention",
            help="SemFi attention kernel: sdpa, flash3 (FlashAttention-3) or sage (SageAttention), when installed"),
    "engines.semfi.cache_dir": Key((str,), "", flag="--cache-dir",
            help="Where SemFi's ONNX graphs and TensorRT engines are kept (default: the user cache folder, sfi/semfi)"),
    "engines.semfi.memory_mode": Key((str,), "auto", ("auto", "full", "offload", "stream"), flag="--memory-mode",
            help="GPU memory use; auto picks from free GPU memory"),
    "engines.semfi.area": Key((str, int), "480p", flag="--area",
            help="SemFi working size: 480p, 720p or a pixel count"),
    "engines.semfi.steps": Key((int,), 50, minimum=1, flag="--steps",
            help="Denoising steps (50)"),
    "engines.semfi.cfg": Key((int, float), 5.0, minimum=0, flag="--cfg",
            help="Classifier-free guidance scale (5.0)"),
    "engines.semfi.shift": Key((int, float), 5.0, minimum=0, flag="--shift",
            help="Flow-matching sigma shift (5.0)"),
    "engines.semfi.negative_prompt": Key((str,), "", flag="--negative-prompt",
            help="What to avoid"),
    "engines.semfi.timesteps": Key((list,), [], entries=timesteps_problem,
            shape="a list of strictly decreasing numbers above 0 and at most 1000 (empty: from steps and shift)"),
    "engines.semfi.cache_threshold": Key((int, float), 0.0, minimum=0, flag="--cache-threshold",
            help="Step cache: skip DiT passes while the error predicted for reusing the last one stays under this "
                 "(0: off, exactly the uncached frames; 0.12-0.24 typical)"),
    "engines.semfi.cache_max_skips": Key((int,), 4, minimum=1),
    "engines.semfi.cache_calibration": Key((str,), ""),
    "engines.semfi.extra_loras": Key((list,), [], entries=extra_loras_problem,
            shape='a list of tables like { path = "distill.safetensors", strength = 1.0 }'),
}


def check_value(key: Key, value: Any) -> str | None:
    """Why ``value`` does not fit ``key``, or None if it does."""
    if isinstance(value, bool) and bool not in key.types:
        return "got true/false"
    if not isinstance(value, key.types):
        return f"got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"got {value}"
    if key.choices and value not in key.allowed():
        return f"got '{value}'"
    if key.entries is not None:
        return key.entries(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            (key.minimum is not None and value < key.minimum) or (key.maximum is not None and value > key.maximum)):
        return f"got {value}"
    return None


def expected(key: Key) -> str:
    if key.shape:
        return key.shape
    if key.choices:
        return "one of " + ", ".join(map(str, key.allowed()))
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    kinds = " or ".join(names.get(t, t.__name__) for t in key.types)
    if float in key.types:
        kinds = kinds.replace("a number", "a finite number")
    if key.minimum is not None and key.maximum is not None:
        return f"{kinds} from {key.minimum:g} to {key.maximum:g}"
    if key.minimum is not None:
        return f"{kinds} of at least {key.minimum:g}"
    return kinds if key.maximum is None else f"{kinds} of at most {key.maximum:g}"
