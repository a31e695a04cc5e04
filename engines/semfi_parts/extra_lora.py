"""Extra LoRAs merged into the DiT beside SemFi's Mixture-of-LoRA (e.g. a 4-step distillation LoRA of Wan2.1-I2V).

``extra_loras = [{ path = "...", strength = 1.0 }]``. Each LoRA adds to the DiT parameters it names

    W' = W + strength * scale * B A      scale = alpha / rank (1 when the file has no alpha)

and a full difference (``.diff`` for a weight, ``.diff_b`` for a bias, as extracted Wan LoRAs carry for
norms and biases) adds ``strength * diff``. ``mol.MixtureOfLoRA`` folds these in with the expert, from the
pristine weights on every expert switch, so they survive switches exactly.

Key formats understood, after an optional ``diffusion_model.`` / ``model.diffusion_model.`` /
``transformer.`` / ``base_model.model.`` prefix:

- PEFT / ComfyUI: ``<module>.lora_A.weight`` + ``<module>.lora_B.weight`` (``.default`` too), ``<module>.alpha``;
- kohya: ``lora_unet_<module, dots as underscores>.lora_down.weight`` + ``.lora_up.weight`` + ``.alpha``;
- modules named as in Wan's own checkpoints (``blocks.0.self_attn.q``) or as in diffusers (``blocks.0.attn1.to_q``).

Any key that does not map to a DiT parameter of the right shape refuses the file, with a summary.
Importing this module is cheap (the config schema checks entries with ``entry_problem``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EngineError

EXAMPLE = '{ path = "distill.safetensors", strength = 1.0 }'
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "lora_unet_")
# suffix -> (role, parameter kind it changes)
SUFFIXES = {".lora_A.weight": "down", ".lora_A.default.weight": "down", ".lora_down.weight": "down",
            ".lora_B.weight": "up", ".lora_B.default.weight": "up", ".lora_up.weight": "up",
            ".alpha": "alpha", ".diff": "diff", ".diff_b": "diff_b"}
# diffusers' names for Wan's modules (inside a block, then outside)
DIFFUSERS_BLOCK = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
                   "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
                   "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
                   "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
                   "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
                   "attn2.norm_added_k": "cross_attn.norm_k_img", "norm2": "norm3",
                   "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2", "scale_shift_table": "modulation"}
DIFFUSERS_TOP = {"condition_embedder.time_embedder.linear_1": "time_embedding.0",
                 "condition_embedder.time_embedder.linear_2": "time_embedding.2",
                 "condition_embedder.time_proj": "time_projection.1",
                 "condition_embedder.text_embedder.linear_1": "text_embedding.0",
                 "condition_embedder.text_embedder.linear_2": "text_embedding.2",
                 "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
                 "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
                 "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
                 "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
                 "proj_out": "head.head", "scale_shift_table": "head.modulation"}


@dataclass(frozen=True)
class ExtraLoRA:
    """One ``extra_loras`` entry."""

    path: Path
    strength: float

    def key(self) -> dict[str, Any]:
        """What shapes the frames: the file's content digest (the path alone may be replaced) and the strength."""
        path = self.path.expanduser().resolve()
        return {"path": str(path), "strength": self.strength, "sha256": file_digest(path)}


def entry_problem(value: Any) -> str | None:
    """Why an ``extra_loras`` value is not a list of ``{ path, strength }`` tables, or None."""
    if not isinstance(value, (list, tuple)):
        return f"got {type(value).__name__}"
    for number, entry in enumerate(value, start=1):
        if not isinstance(entry, dict):
            return f"entry {number} is a {type(entry).__name__}"
        unknown = sorted(set(entry) - {"path", "strength"})
        if unknown:
            return f"entry {number} has the unknown key '{unknown[0]}'"
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            return f"entry {number} has no path"
        strength = entry.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
            return f"entry {number} has the strength {strength!r}"
    return None


def parse_entries(value: Any) -> list[ExtraLoRA]:
    problem = entry_problem(value)
    if problem:
        raise EngineError(f"extra_loras must be a list of tables like {EXAMPLE}: {problem}")
    return [ExtraLoRA(Path(e["path"]), float(e.get("strength", 1.0))) for e in value]


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> str | None:
    """SHA-256 of the whole file (memoised while it is unchanged); None when it cannot be read (the engine then
    says why when it loads)."""
    try:
        stat = os.stat(path)
        return _digest(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None


@dataclass(frozen=True)
class Delta:
    """What one LoRA adds to one DiT parameter: ``factor * up @ down``, or ``factor * full``."""

    factor: float
    up: Any = None
    down: Any = None
    full: Any = None

    def value(self, device):
        import torch

        if self.full is not None:
            return self.factor * self.full.to(device=device, dtype=torch.float32)
        up, down = (t.to(device=device, dtype=torch.float32) for t in (self.up, self.down))
        return self.factor * (up @ down)


def module_aliases(dit_shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """Every spelling of each DiT module (or bare parameter) name a LoRA file may use -> Wan's own name."""
    names = {key.rsplit(".", 1)[0] for key in dit_shapes if key.endswith((".weight", ".bias"))}
    names |= {key for key in dit_shapes if not key.endswith((".weight", ".bias"))}  # e.g. blocks.0.modulation
    inverse = {own: theirs for theirs, own in DIFFUSERS_TOP.items()}
    inverse_block = {own: theirs for theirs, own in DIFFUSERS_BLOCK.items()}
    aliases = {}
    for name in names:
        spellings = [name]
        parts = name.split(".")
        if parts[0] == "blocks" and ".".join(parts[2:]) in inverse_block:
            spellings.append(".".join(parts[:2] + [inverse_block[".".join(parts[2:])]]))
        elif name in inverse:
            spellings.append(inverse[name])
        for spelling in spellings:
            aliases[spelling] = name
            aliases[spelling.replace(".", "_")] = name
    return aliases


def split_key(key: str) -> tuple[str, str] | None:
    """(module as spelt, role) of a LoRA key, or None when its suffix is none we know."""
    for prefix in PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if key.endswith(suffix):
            return key[:-len(suffix)], SUFFIXES[suffix]
    return None


def map_lora(state: dict, dit_shapes: dict[str, tuple[int, ...]], entry: ExtraLoRA) -> dict[str, list[Delta]]:
    """The deltas of one LoRA file by DiT parameter name; refuse with a summary unless every key maps."""
    import torch

    aliases = module_aliases(dit_shapes)
    groups: dict[str, dict[str, Any]] = {}
    rejected: list[str] = []
    for key, tensor in state.items():
        parts = split_key(key) if isinstance(key, str) else None
        if parts is None:
            rejected.append(f"'{key}' (not a LoRA key)")
        elif parts[0] not in aliases:
            rejected.append(f"'{key}' (the DiT has no module '{parts[0]}')")
        elif not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            rejected.append(f"'{key}' (not a float tensor)")
        else:
            groups.setdefault(aliases[parts[0]], {})[parts[1]] = (key, tensor)
    deltas: dict[str, list[Delta]] = {}
    for module, found in sorted(groups.items()):
        problems = _add_module(module, found, dit_shapes, entry.strength, deltas)
        rejected += problems
    if rejected:
        raise EngineError(
            f"extra LoRA '{entry.path}' does not fit this DiT: {len(state) - len(rejected)} of {len(state)} keys map to "
            f"its parameters, {len(rejected)} do not (first: {', '.join(rejected[:3])}); expected Wan2.1 (14B) LoRA keys "
            f"such as diffusion_model.blocks.0.self_attn.q.lora_A.weight / lora_B.weight, "
            f"lora_unet_blocks_0_self_attn_q.lora_down.weight / lora_up.weight / alpha, or .diff / .diff_b")
    if not deltas:
        raise EngineError(f"extra LoRA '{entry.path}' holds no tensors; remove it from extra_loras or use another file")
    return deltas


def _add_module(module: str, found: dict[str, tuple[str, Any]], dit_shapes, strength: float,
                deltas: dict[str, list[Delta]]) -> list[str]:
    """Add one module's deltas to ``deltas``; returns why its keys do not fit, if they do not."""
    weight = f"{module}.weight" if f"{module}.weight" in dit_shapes else module
    problems = []
    if "up" in found or "down" in found or "alpha" in found:
        if "up" not in found or "down" not in found:
            keys = ", ".join(f"'{key}'" for key, _ in found.values())
            problems.append(f"{keys} (lora_A/down and lora_B/up must come in pairs)")
        else:
            (up_key, up), down = found["up"], found["down"][1]
            expected = tuple(dit_shapes[weight])
            if up.dim() != 2 or down.dim() != 2 or up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != expected:
                problems.append(f"'{up_key}' (B {tuple(up.shape)} times A {tuple(down.shape)} does not make {module}'s "
                                f"weight {expected})")
            else:
                alpha = float(found["alpha"][1]) if "alpha" in found else None
                scale = alpha / down.shape[0] if alpha is not None else 1.0
                deltas.setdefault(weight, []).append(Delta(strength * scale, up=up, down=down))
    for role, target in (("diff", weight), ("diff_b", f"{module}.bias")):
        if role not in found:
            continue
        key, tensor = found[role]
        if target not in dit_shapes or tuple(tensor.shape) != tuple(dit_shapes[target]):
            problems.append(f"'{key}' (shape {tuple(tensor.shape)}, the DiT's {target} is "
                            f"{tuple(dit_shapes[target]) if target in dit_shapes else 'missing'})")
        else:
            deltas.setdefault(target, []).append(Delta(strength, full=tensor))
    return problems


def load_extra_loras(entries: list[ExtraLoRA], dit_shapes: dict[str, tuple[int, ...]]) -> dict[str, list[Delta]]:
    """Every entry read (safely) and mapped: parameter name -> deltas, all files together."""
    from engines.semfi_parts.mol import read_tensors

    merged: dict[str, list[Delta]] = {}
    for entry in entries:
        state = read_tensors(entry.path.expanduser(), "extra LoRA",
                             "use a LoRA saved as .safetensors or as a plain torch state dict")
        for name, deltas in map_lora(state, dit_shapes, entry).items():
            merged.setdefault(name, []).extend(deltas)
    return merged
