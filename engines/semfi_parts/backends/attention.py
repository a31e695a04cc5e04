"""The attention kernel of our DiT forward: SDPA, FlashAttention-3 or SageAttention.

All three take (batch, heads, tokens, head_dim). SDPA is torch's own (flash / memory-efficient /
cuDNN kernels on a GPU, plain maths on a CPU) and the only one an exported graph holds; the other
two are CUDA kernels from their own packages, for the eager and compile backends, used only when
asked for and importable (``attention_problem`` says why not, in one line).
"""

from __future__ import annotations

import importlib.util

ATTENTIONS = ("sdpa", "flash3", "sage")
MODULES = {"flash3": "flash_attn_interface", "sage": "sageattention"}
INSTALL = {"flash3": "build FlashAttention-3 (the 'hopper' folder of Dao-AILab/flash-attention) for this torch",
           "sage": "pip install sageattention (a CUDA GPU and Triton needed)"}


def attention_problem(name: str, device: str) -> str | None:
    """Why attention ``name`` cannot run on ``device`` here, or None when it can."""
    if name not in ATTENTIONS:
        return f"attention must be one of {', '.join(ATTENTIONS)}, got '{name}'"
    if name == "sdpa":
        return None
    if importlib.util.find_spec(MODULES[name]) is None:
        return f"attention '{name}' needs the {MODULES[name]} package, which is not installed: {INSTALL[name]}, or use sdpa"
    if not device.startswith("cuda"):
        return f"attention '{name}' is a CUDA kernel and the device is '{device}'; use sdpa there"
    return None


def sdpa(q, k, v):
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v)


def flash3(q, k, v):
    """FlashAttention-3 (Hopper) works on (batch, tokens, heads, head_dim)."""
    from flash_attn_interface import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return (out[0] if isinstance(out, tuple) else out).transpose(1, 2)


def sage(q, k, v):
    from sageattention import sageattn

    return sageattn(q, k, v, tensor_layout="HND")


def attention_function(name: str):
    """The kernel called ``name`` (checked by the engine with ``attention_problem`` before models load)."""
    return {"sdpa": sdpa, "flash3": flash3, "sage": sage}[name]
