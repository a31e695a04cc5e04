"""Our own forward of the Wan2.1-I2V DiT, written to be exported (ONNX, TensorRT) and compiled.

It runs diffsynth's ``WanModel`` parameters (shared, not copied) through the same maths as
``model_fn_wan_video``, with three differences a graph compiler needs:

- RoPE is real-valued: cos/sin tables (diffsynth's own float64 tables, rounded once to float32
  when the module is built) rotate even/odd channel pairs; no complex tensors, no float64.
- Attention is one function over (batch, heads, tokens, head_dim): SDPA by default, which the
  ONNX exporter writes as MatMul/Softmax (TensorRT fuses it back), or FlashAttention-3 /
  SageAttention for eager and compiled runs (``attention.py``).
- The float32 islands of Wan's modulation are explicit casts: the time-modulation sum, each
  ``norm(x) * (1 + scale) + shift`` and each gated residual ``x + gate * y`` are computed in
  float32 and cast back to the model's dtype, as the official Wan code does under autocast.
  In a float32 model the casts vanish and the result equals diffsynth's forward.

The Mixture-of-LoRA's expert may come as inputs (``expert`` in ``forward``): the universal LoRA
is merged into the weights (``MixtureOfLoRA.merge_universal``) and each adapted linear adds
``B (A x) + c`` from the expert's stacked rank-r tensors, so one exported graph serves every
expert and an expert switch only swaps input tensors (``expert_inputs``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from engines.semfi_parts.backends.attention import attention_function
from engines.semfi_parts.mol import SITES, UNIVERSAL

# The DiT linears SemFi adapts, in the order their expert tensors are fed (the ONNX inputs' order).
ADAPTED = tuple(SITES.values())


def expert_input_names(sites: tuple[str, ...] = ADAPTED) -> list[str]:
    """Graph input names of the expert tensors: per site ``lora_<site>.{A,B,c}`` (stacked over blocks)."""
    return [f"lora_{site}.{part}" for site in sites for part in ("A", "B", "c")]


def expert_inputs(loras: dict[str, list[Any]], num_layers: int, expert: int, dtype, device) -> dict[str, torch.Tensor]:
    """The expert's LoRA as graph inputs: per adapted site A (blocks, r, in), B (blocks, out, r) and
    c = B a + b (blocks, out), so that ``linear(x) + B (A x) + c`` is the linear with this expert merged.
    Built in float32 and cast once to ``dtype``."""
    if expert == UNIVERSAL:
        raise ValueError("the universal LoRA is merged into the weights; an expert is 1..6")
    tensors = {}
    for site in ADAPTED:
        parts = []
        for block in range(num_layers):
            lora = loras[f"blocks.{block}.{site}"][expert]
            a_weight, a_bias, b_weight, b_bias = (t.to(dtype=torch.float32) for t in
                                                  (lora.a_weight, lora.a_bias, lora.b_weight, lora.b_bias))
            parts.append((a_weight, b_weight, b_weight @ a_bias + b_bias))
        for name, stacked in zip(("A", "B", "c"), zip(*parts)):
            tensors[f"lora_{site}.{name}"] = torch.stack(stacked).to(device=device, dtype=dtype).contiguous()
    return tensors


def rope_tables(dit) -> tuple[torch.Tensor, ...]:
    """(cos, sin) for frames, rows and columns: diffsynth's complex float64 tables as float32 pairs."""
    tables = []
    for axis in dit.freqs:
        tables += [axis.real.to(torch.float32).contiguous(), axis.imag.to(torch.float32).contiguous()]
    return tuple(tables)


def rms(norm, x):
    """Wan's RMSNorm: normalised in float32, cast back, then scaled."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + norm.eps)).to(x.dtype) * norm.weight


def modulate(x, shift, scale):
    """``x * (1 + scale) + shift`` in float32 (Wan's modulation island), cast back to ``x``'s dtype."""
    return (x.float() * (1 + scale) + shift).to(x.dtype)


def gated(x, gate, y):
    """``x + gate * y`` in float32, cast back."""
    return (x.float() + gate * y.float()).to(x.dtype)


def adapted(module, x, lora):
    """``module(x)``, plus the expert's low-rank branch ``B (A x) + c`` when ``lora`` is (A, B, c)."""
    out = module(x)
    if lora is None:
        return out
    a, b, c = lora
    return out + F.linear(F.linear(x, a), b, c)


class WanBlock(torch.nn.Module):
    """One DiT block (diffsynth's ``DiTBlock`` parameters) with our forward. A module of its own so that
    ``torch.compile`` compiles it once and reuses the code for every block (regional compilation)."""

    def __init__(self, block, attention: str) -> None:
        super().__init__()
        self.block = block
        self.attend = attention_function(attention)
        self.num_heads = block.num_heads
        self.head_dim = block.dim // block.num_heads

    def rope(self, x, cos, sin):
        """Rotate channel pairs (2i, 2i+1) by the position's angles, in float32: (b, s, n*d) -> same."""
        pairs = x.float().unflatten(-1, (self.num_heads, self.head_dim // 2, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(2).to(x.dtype)

    def attend_tokens(self, q, k, v):
        """Multi-head attention on (b, s, n*d) tensors."""
        def heads(t):
            return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        return self.attend(heads(q), heads(k), heads(v)).transpose(1, 2).flatten(2)

    def forward(self, x, context, t_mod, cos, sin, expert: dict[str, tuple] | None = None):
        """``expert``: site -> (A, B, c) of this block, or None when the expert is merged into the weights."""
        def lora(site):
            return None if expert is None else expert[site]

        block = self.block
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            block.modulation.float() + t_mod.float()).chunk(6, dim=1)

        attn = block.self_attn
        h = modulate(block.norm1(x), shift_msa, scale_msa)
        q = rms(attn.norm_q, adapted(attn.q, h, lora("self_attn.q")))
        k = rms(attn.norm_k, adapted(attn.k, h, lora("self_attn.k")))
        v = adapted(attn.v, h, lora("self_attn.v"))
        y = self.attend_tokens(self.rope(q, cos, sin), self.rope(k, cos, sin), v)
        x = gated(x, gate_msa, adapted(attn.o, y, lora("self_attn.o")))

        cross = block.cross_attn
        h = block.norm3(x)
        image, text = context[:, :257], context[:, 257:]
        q = rms(cross.norm_q, adapted(cross.q, h, lora("cross_attn.q")))
        k = rms(cross.norm_k, adapted(cross.k, text, lora("cross_attn.k")))
        v = adapted(cross.v, text, lora("cross_attn.v"))
        y = self.attend_tokens(q, k, v)
        y = y + self.attend_tokens(q, rms(cross.norm_k_img, cross.k_img(image)), cross.v_img(image))
        x = x + adapted(cross.o, y, lora("cross_attn.o"))

        h = modulate(block.norm2(x), shift_mlp, scale_mlp)
        h = block.ffn[1](adapted(block.ffn[0], h, lora("ffn.0")))
        return gated(x, gate_mlp, adapted(block.ffn[2], h, lora("ffn.2")))


class ExportableDiT(torch.nn.Module):
    """diffsynth's WanModel weights, our forward: ``(latents, timestep, context, clip_feature, y[, expert]) -> velocity``."""

    def __init__(self, dit, attention: str = "sdpa") -> None:
        super().__init__()
        self.dit = dit
        self.attention = attention
        self.blocks = torch.nn.ModuleList(WanBlock(block, attention) for block in dit.blocks)
        device = dit.patch_embedding.weight.device
        for name, table in zip(("cos_f", "sin_f", "cos_h", "sin_h", "cos_w", "sin_w"), rope_tables(dit)):
            self.register_buffer(name, table.to(device), persistent=False)
        half = dit.freq_dim // 2
        frequencies = torch.pow(10000, -torch.arange(half, dtype=torch.float64).div(half))
        self.register_buffer("time_frequencies", frequencies.to(device=device, dtype=torch.float32), persistent=False)

    def positions(self, f, h, w, device):
        """cos and sin (f*h*w, 1, head_dim/2) of every token's frame, row and column angles."""
        def grid(first, second, third):
            return torch.cat([first[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                              second[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                              third[:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(f * h * w, 1, -1).to(device)

        return grid(self.cos_f, self.cos_h, self.cos_w), grid(self.sin_f, self.sin_h, self.sin_w)

    def embed(self, latents, timestep, context, clip_feature, y):
        """Tokens, time embedding, its modulation and the image+text context, as ``model_fn_wan_video`` makes them
        (the timestep's sinusoid in float32 where diffsynth uses float64)."""
        dit = self.dit
        angles = torch.outer(timestep.float(), self.time_frequencies.to(timestep.device))
        t = dit.time_embedding(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).to(latents.dtype))
        t_mod = dit.time_projection(t).unflatten(1, (6, dit.dim))
        context = torch.cat([dit.img_emb(clip_feature), dit.text_embedding(context)], dim=1)
        x = dit.patch_embedding(torch.cat([latents, y], dim=1))
        return x, t, t_mod, context

    def head(self, x, t, grid):
        """Wan's output head (float32 modulation) and unpatchify to (b, out_dim, f, h, w)."""
        head = self.dit.head
        shift, scale = (head.modulation.float() + t.float().unsqueeze(1)).chunk(2, dim=1)
        x = head.head(modulate(head.norm(x), shift, scale))
        f, h, w = grid
        pf, ph, pw = self.dit.patch_size
        channels = x.shape[-1] // (pf * ph * pw)
        x = x.view(x.shape[0], f, h, w, pf, ph, pw, channels)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], channels, f * pf, h * ph, w * pw)

    def forward(self, latents, timestep, context, clip_feature, y, expert: dict[str, torch.Tensor] | None = None):
        """``expert``: the stacked tensors of ``expert_inputs``, or None when the expert is merged."""
        x, t, t_mod, context = self.embed(latents, timestep, context, clip_feature, y)
        f, h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        cos, sin = self.positions(f, h, w, x.device)
        for index, block in enumerate(self.blocks):
            mine = None if expert is None else {
                site: tuple(expert[f"lora_{site}.{part}"][index] for part in ("A", "B", "c")) for site in ADAPTED}
            x = block(x, context, t_mod, cos, sin, mine)
        return self.head(x, t, (f, h, w))
