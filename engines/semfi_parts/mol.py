"""SemFi's Mixture-of-LoRA, merged into the DiT so a step costs what base Wan costs.

Every adapted linear carries 7 LoRAs (index 0 universal, 1..6 experts). The official code
evaluates all 7 branches on every call and zeroes 5 of them; here the universal LoRA and
the chosen expert are folded into the linear's weight and bias once per expert change:

    W' = W + B0 A0 + Bs As,   b' = b + B0 a0 + b0 + Bs as + bs     (computed in float32)

Switching expert never subtracts the old LoRA (that would accumulate rounding): the new
weights are always merged from the pristine base, re-read from the DiT's safetensors
shards, so a gap's result does not depend on which experts ran before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engines.errors import EngineError

LORA_COUNT = 7
UNIVERSAL = 0  # always on; indices 1..6 are the experts
LORA_SCALE = 1.0  # alpha 16 / rank 16 in the official model
# checkpoint site inside a block -> the DiT linear it adapts
SITES = {f"{attention}.lora_{p}": f"{attention}.{p}" for attention in ("self_attn", "cross_attn") for p in "qkvo"}
SITES.update({"lora_ffn_0": "ffn.0", "lora_ffn_2": "ffn.2"})
KEY = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(s) for s in SITES) + r")\.(\d+)\.lora_([AB])\.(weight|bias)$")
WRAPPERS = ("state_dict", "module", "model", "model_state", "lora", "dit")
PREFIXES = ("module.", "model.", "pipe.dit.", "dit.")
EXPECTED = ("blocks.{i}.{self_attn,cross_attn}.lora_{q,k,v,o}.{j}.lora_{A,B}.{weight,bias} and "
            "blocks.{i}.lora_ffn_{0,2}.{j}.lora_{A,B}.{weight,bias} for every block i and j in 0..6, "
            "lora_A.weight (rank, in), lora_B.weight (out, rank)")
USE_OFFICIAL = "use the semfi.ckpt published by the SemFi authors for Wan2.1-I2V-14B-720P"


def unwrap(state: Any) -> Any:
    """The LoRA tensors of a checkpoint saved plain, wrapped (``state_dict``, ``module``, ...) or with a prefix."""
    while isinstance(state, dict) and not any(isinstance(k, str) and k.startswith("blocks.") for k in state):
        inner = [state[k] for k in WRAPPERS if isinstance(state.get(k), dict)]
        if not inner:
            break
        state = inner[0]
    if isinstance(state, dict):
        for prefix in PREFIXES:
            if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_tensors(path: Path, what: str, advice: str) -> dict:
    """A dict of tensors from a ``.safetensors`` file or a torch file read with weights_only (never a pickle's code);
    ``what`` and ``advice`` name the file and what to do in the one line a bad file gets."""
    import torch

    path = Path(path)
    if not path.is_file():
        problem = "is a folder, not a weights file" if path.is_dir() else "does not exist"
        raise EngineError(f"{what} '{path}' {problem}; {advice}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:  # memory-mapped: tensors are read when a merge needs them
                state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                state = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as error:  # torch / safetensors raise many types for foreign or damaged files
        raise EngineError(f"cannot read {what} '{path}' as plain tensors ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:120]}); {advice}") from None
    state = unwrap(state)
    if not isinstance(state, dict):
        raise EngineError(f"{what} '{path}' holds a {type(state).__name__}, not a dict of tensors; {advice}")
    return state


def read_checkpoint(path: Path) -> dict:
    """Load ``semfi.ckpt`` (torch pickle, read with weights_only) or a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"LoRA checkpoint '{path}' does not exist; put semfi.ckpt there or pass --lora")
    return read_tensors(path, "LoRA checkpoint", USE_OFFICIAL)


@dataclass(frozen=True)
class LoRA:
    """One LoRA: x -> B(A x + a) + b, times LORA_SCALE."""

    a_weight: Any
    a_bias: Any
    b_weight: Any
    b_bias: Any

    def deltas(self, device):
        """What this LoRA adds to the linear's (weight, bias), in float32 on ``device``."""
        import torch

        a_weight, a_bias, b_weight, b_bias = (t.to(device=device, dtype=torch.float32)
                                              for t in (self.a_weight, self.a_bias, self.b_weight, self.b_bias))
        return LORA_SCALE * (b_weight @ a_weight), LORA_SCALE * (b_weight @ a_bias + b_bias)


def adapted_shapes(dit_shapes: dict[str, tuple[int, ...]], num_layers: int) -> dict[str, tuple[int, int]]:
    """(out, in) of every linear SemFi adapts, by DiT module name (e.g. ``blocks.3.ffn.0``), from weight shapes."""
    return {f"blocks.{block}.{layer}": tuple(dit_shapes[f"blocks.{block}.{layer}.weight"])
            for block in range(num_layers) for layer in SITES.values()}


def map_checkpoint(state: dict, shapes: dict[str, tuple[int, int]], path: Path) -> dict[str, list[LoRA]]:
    """Match every checkpoint key to an adapted DiT linear (``shapes``: name -> (out, in));
    refuse with a summary unless every key fits and none is missing."""
    import torch

    num_layers = len({name.split(".")[1] for name in shapes})
    parts: dict[tuple[str, int], dict[str, Any]] = {}
    rejected: list[str] = []
    for key, tensor in state.items():
        match = KEY.match(key) if isinstance(key, str) else None
        if match is None:
            rejected.append(f"'{key}' (not a SemFi LoRA key)")
            continue
        block, site, index, part, kind = match.groups()
        linear = f"blocks.{block}.{SITES[site]}"
        if linear not in shapes:
            rejected.append(f"'{key}' (the DiT has {num_layers} blocks)")
            continue
        if int(index) >= LORA_COUNT:
            rejected.append(f"'{key}' (LoRA index {index}, only 0..{LORA_COUNT - 1} exist)")
            continue
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            rejected.append(f"'{key}' (not a float tensor)")
            continue
        parts.setdefault((linear, int(index)), {})[f"{part}.{kind}"] = tensor
    loras: dict[str, list[LoRA]] = {}
    missing: list[str] = []
    for linear, (out_features, in_features) in shapes.items():
        block, layer = linear.split(".", 2)[1:]
        site = next(s for s, l in SITES.items() if l == layer)
        for index in range(LORA_COUNT):
            found = parts.get((linear, index), {})
            names = ("A.weight", "A.bias", "B.weight", "B.bias")
            absent = [n for n in names if n not in found]
            missing += [f"'blocks.{block}.{site}.{index}.lora_{n}'" for n in absent]
            if absent:
                continue
            rank = found["A.weight"].shape[0]
            expected = {"A.weight": (rank, in_features), "A.bias": (rank,), "B.weight": (out_features, rank), "B.bias": (out_features,)}
            wrong = [n for n in names if tuple(found[n].shape) != expected[n]]
            for n in wrong:
                rejected.append(f"'blocks.{block}.{site}.{index}.lora_{n}' (shape {tuple(found[n].shape)}, expected {expected[n]})")
            if not wrong:
                loras.setdefault(linear, []).append(LoRA(*(found[n] for n in names)))
    if rejected or missing:
        mapped = len(state) - len(rejected)
        summary = [f"LoRA checkpoint '{path}' does not fit this DiT: {mapped} of {len(state)} keys map to its linear layers"]
        if rejected:
            summary.append(f"{len(rejected)} do not (first: {', '.join(rejected[:3])})")
        if missing:
            summary.append(f"{len(missing)} expected keys are missing (first: {', '.join(missing[:3])})")
        summary.append(f"expected {EXPECTED}; {USE_OFFICIAL}")
        raise EngineError("; ".join(summary))
    return loras


class ShardReader:
    """Reads single tensors from the DiT's safetensors shards (the pristine base weights)."""

    def __init__(self, files: list[Path]) -> None:
        from safetensors import safe_open

        self.files = [str(f) for f in files]
        self.where = {}
        for path in self.files:
            with safe_open(path, framework="pt", device="cpu") as handle:
                self.where.update({key: path for key in handle.keys()})

    def __call__(self, key: str):
        from safetensors import safe_open

        with safe_open(self.where[key], framework="pt", device="cpu") as handle:
            return handle.get_tensor(key)


class MixtureOfLoRA:
    """Keeps the DiT's adapted linears merged with the universal LoRA plus one expert, and the extra LoRAs
    (``extra_lora``) merged beside them: ``W' = W + extra + B0 A0 + Bs As``, from the pristine W every time."""

    def __init__(self, dit, loras: dict[str, list[LoRA]], base: Callable[[str], Any], device,
                 extra: dict[str, list] | None = None) -> None:
        self.dit = dit
        self.loras = loras
        self.base = base  # key -> the tensor as stored on disk
        self.device = device  # where the float32 merge is computed
        self.extra = extra or {}  # parameter name -> the extra LoRAs' deltas (``extra_lora.Delta``)
        self.active: int | None = None
        self.pristine = True  # parameters still hold the loaded base weights

    def parameter(self, name: str):
        owner, _, attribute = name.rpartition(".")
        return getattr(self.dit.get_submodule(owner) if owner else self.dit, attribute)

    def merge(self, name: str, param, *deltas) -> None:
        """``param`` = its pristine value + the extra LoRAs' deltas + ``deltas``, summed in float32, cast once."""
        import torch

        if self.pristine:
            base = param.detach()
        else:  # the same conversion the loader applied, so the base is bit-identical
            base = self.base(name).to(param.dtype)
        merged = base.to(device=self.device, dtype=torch.float32, copy=True)
        for delta in self.extra.get(name, ()):
            merged += delta.value(self.device)
        if deltas:
            merged += sum(deltas[1:], deltas[0])
        param.data.copy_(merged.to(param.dtype))

    def activate(self, expert: int) -> bool:
        """Merge LoRA 0 + LoRA ``expert`` (1..6) into the DiT, or LoRA 0 alone for ``UNIVERSAL`` (``merge_universal``);
        returns False when already active."""
        import torch

        if not UNIVERSAL <= expert < LORA_COUNT:
            raise ValueError(f"expert index must be 1..{LORA_COUNT - 1} (or {UNIVERSAL}: the universal LoRA alone), got {expert}")
        if expert == self.active:
            return False
        with torch.no_grad():
            for name, loras in self.loras.items():
                linear = self.dit.get_submodule(name)
                deltas = [loras[index].deltas(self.device) for index in dict.fromkeys((UNIVERSAL, expert))]
                for position, (kind, param) in enumerate((("weight", linear.weight), ("bias", linear.bias))):
                    self.merge(f"{name}.{kind}", param, *(delta[position] for delta in deltas))
            if self.pristine:  # what only the extra LoRAs change no expert touches: merged once
                adapted = {f"{name}.{kind}" for name in self.loras for kind in ("weight", "bias")}
                for name in sorted(set(self.extra) - adapted):
                    self.merge(name, self.parameter(name))
        self.pristine = False
        self.active = expert
        return True

    def merge_universal(self) -> bool:
        """The universal LoRA alone: the weights of a graph that takes the expert as inputs (``backends.dit``)."""
        return self.activate(UNIVERSAL)
