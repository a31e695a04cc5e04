"""A tiny random Wan2.1-I2V folder and SemFi checkpoint, written in the published layout.

The files have the real names, formats and key names (seven safetensors DiT shards with
an index and ``config.json``, ``.pth`` text encoder / CLIP / VAE, a ``google/umt5-xxl``
tokenizer folder, ``semfi.ckpt`` with the official LoRA keys) but tiny dimensions, so the
engine's real loading code runs on them in seconds. Everything is generated here, offline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIT = dict(dim=64, ffn_dim=128, freq_dim=256, in_dim=36, num_heads=2, num_layers=2, out_dim=16, text_len=512, eps=1e-6)
TEXT = dict(dim=32, dim_attn=32, dim_ffn=64, num_heads=2, num_layers=2, num_buckets=32)
# The DiT's image projection takes 1280-wide CLIP tokens and cross-attention splits off
# 257 image tokens, so the tiny ViT keeps width 1280 and a 16x16 patch grid (32 px / 2 px).
CLIP = dict(vision_dim=1280, patch_size=2, image_size=32, vision_layers=2, vision_mlp_ratio=0.25, vision_heads=16, embed_dim=32)
VAE_DIM = 8
LORA_RANK = 16
SHARDS = 7
ADAPTED = ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
           "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"]


@dataclass(frozen=True)
class TinyWan:
    model_dir: Path
    lora: Path


def lora_key(block: int, layer: str, index: int, part: str, kind: str) -> str:
    """The official checkpoint key of one LoRA tensor for DiT linear ``layer`` (e.g. ``ffn.0``)."""
    if layer.startswith("ffn."):
        site = f"lora_ffn_{layer[-1]}"
    else:
        attention, projection = layer.split(".")
        site = f"{attention}.lora_{projection}"
    return f"blocks.{block}.{site}.{index}.lora_{part}.{kind}"


def write_tokenizer(folder: Path) -> int:
    """A small Unigram tokenizer saved like google/umt5-xxl (pad 0, eos 1, unk 2); returns its size."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(c, -2.0 - 0.01 * i) for i, c in enumerate("▁abcdefghijklmnopqrstuvwxyz0123456789.,")]
    pieces += [(w, -1.0) for w in ("▁the", "▁a", "▁cat", "▁fox", "▁walks", "▁jumps", "▁into", "▁woman")]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                             special_tokens=[("</s>", 1)])
    wrapped = transformers.T5TokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>",
                                           unk_token="<unk>", extra_ids=0)
    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(folder))
    return len(pieces)


def write_dit(folder: Path, generator) -> dict:
    """Random tiny DiT as seven safetensors shards + index + config.json; returns its state dict."""
    import torch
    from diffsynth.models.wan_video_dit import WanModel
    from safetensors.torch import save_file

    torch.manual_seed(int(generator.integers(1 << 31)))
    model = WanModel(dim=DIT["dim"], in_dim=DIT["in_dim"], ffn_dim=DIT["ffn_dim"], out_dim=DIT["out_dim"],
                     text_dim=TEXT["dim"], freq_dim=DIT["freq_dim"], eps=DIT["eps"], patch_size=(1, 2, 2),
                     num_heads=DIT["num_heads"], num_layers=DIT["num_layers"], has_image_input=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    per_shard = math.ceil(len(names) / SHARDS)
    weight_map = {}
    for shard in range(SHARDS):
        file_name = f"diffusion_pytorch_model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        chunk = names[shard * per_shard:(shard + 1) * per_shard]
        save_file({k: state[k] for k in chunk}, str(folder / file_name), metadata={"format": "pt"})
        weight_map.update({k: file_name for k in chunk})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "i2v",
              **{k: DIT[k] for k in ("dim", "eps", "ffn_dim", "freq_dim", "in_dim", "num_heads", "num_layers", "out_dim", "text_len")}}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return state


def write_components(folder: Path, vocab: int, generator) -> None:
    import torch
    from diffsynth.models.wan_video_image_encoder import XLMRobertaCLIP
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from diffsynth.models.wan_video_vae import VideoVAE_

    torch.manual_seed(int(generator.integers(1 << 31)))
    text = WanTextEncoder(vocab=vocab, shared_pos=False, **TEXT)
    torch.save({k: v.to(torch.bfloat16) for k, v in text.state_dict().items()}, folder / "models_t5_umt5-xxl-enc-bf16.pth")

    clip = XLMRobertaCLIP(**CLIP)
    clip_state = dict(clip.state_dict())
    clip_state["textual.token_embedding.weight"] = torch.zeros(4, 8)  # the real file carries the text tower too
    torch.save(clip_state, folder / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")

    vae = VideoVAE_(dim=VAE_DIM, z_dim=16)
    torch.save(vae.state_dict(), folder / "Wan2.1_VAE.pth")


def random_lora_state(dit_state: dict, generator, rank: int = LORA_RANK, scale: float = 0.5) -> dict:
    """All 7 LoRAs for every adapted linear, in the official key format."""
    import torch

    state = {}
    for block in range(DIT["num_layers"]):
        for layer in ADAPTED:
            out_features, in_features = dit_state[f"blocks.{block}.{layer}.weight"].shape
            for index in range(7):
                def draw(*shape, std):
                    return torch.from_numpy(generator.normal(0.0, std, size=shape).astype(np.float32))
                state[lora_key(block, layer, index, "A", "weight")] = draw(rank, in_features, std=in_features ** -0.5)
                state[lora_key(block, layer, index, "A", "bias")] = draw(rank, std=0.1)
                state[lora_key(block, layer, index, "B", "weight")] = draw(out_features, rank, std=scale * rank ** -0.5)
                state[lora_key(block, layer, index, "B", "bias")] = draw(out_features, std=0.05)
    return state


def write_tiny_wan(root: Path, seed: int = 0) -> TinyWan:
    """Write the whole tiny model folder and checkpoint under ``root``."""
    import torch

    generator = np.random.default_rng(seed)
    model_dir = root / "Wan2.1-I2V-14B-720P"
    model_dir.mkdir(parents=True)
    vocab = write_tokenizer(model_dir / "google" / "umt5-xxl")
    dit_state = write_dit(model_dir, generator)
    write_components(model_dir, vocab, generator)
    lora = root / "ckpts" / "semfi.ckpt"
    lora.parent.mkdir()
    torch.save(random_lora_state(dit_state, generator), lora)
    return TinyWan(model_dir, lora)


_CACHE: dict[str, TinyWan] = {}


def tiny_wan(tmp_path_factory) -> TinyWan:
    """The session's tiny model (written once, shared by every test module)."""
    if "wan" not in _CACHE:
        import torch

        # Tiny tensors gain nothing from intra-op threads, and on a busy machine spinning threads
        # make them many times slower.
        torch.set_num_threads(1)
        _CACHE["wan"] = write_tiny_wan(tmp_path_factory.mktemp("tiny_wan"))
    return _CACHE["wan"]


def gradient_pair(width: int = 48, height: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two smooth, clearly different RGB frames of the same size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    first = np.stack([x / width * 255, y / height * 255, np.full_like(x, 60)], axis=2)
    last = np.stack([np.full_like(x, 200), x / width * 120, y / height * 255], axis=2)
    return first.astype(np.uint8), last.astype(np.uint8)


ENGINE_SETTINGS = dict(device="cpu", steps=2, cfg=5.0, area=1024)


def tiny_engine(tmp_path_factory):
    """One SemFi engine on the tiny model for the whole session (models load once, like in a timeline)."""
    if "engine" not in _CACHE:
        from engines.semfi import SemFiEngine

        wan = tiny_wan(tmp_path_factory)
        _CACHE["engine"] = SemFiEngine(model_dir=str(wan.model_dir), lora=str(wan.lora), **ENGINE_SETTINGS)
    return _CACHE["engine"]
