"""Reading a Wan2.1-I2V model folder into diffsynth's Wan model classes.

The folder is the published one (``Wan2.1-I2V-14B-720P``). Every architecture number is
read from the folder itself: the DiT from ``config.json`` cross-checked against tensor
shapes, the text encoder, CLIP and VAE from their tensor shapes. So a folder in the same
layout with other dimensions (the tests' tiny one) loads through exactly this code.
Loading goes through ``diffsynth.core.loader.load_model`` (diffsynth's own path, including
its VRAM management); nothing is looked up by file hash and nothing is ever downloaded.

Importing this module is cheap; torch and diffsynth load inside the functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import Check
from engines.errors import EngineError

CONFIG = "config.json"
DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DIT_SINGLE = "diffusion_pytorch_model.safetensors"
TEXT_ENCODER = "models_t5_umt5-xxl-enc-bf16.pth"
IMAGE_ENCODER = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
VAE = "Wan2.1_VAE.pth"
TOKENIZER = "google/umt5-xxl"

DIT_CLASS = "diffsynth.models.wan_video_dit.WanModel"
TEXT_ENCODER_CLASS = "diffsynth.models.wan_video_text_encoder.WanTextEncoder"
IMAGE_ENCODER_CLASS = "diffsynth.models.wan_video_image_encoder.WanImageEncoder"
VAE_CLASS = "diffsynth.models.wan_video_vae.WanVideoVAE"

CLIP_HEAD_DIM = 80  # ViT-H/14: 1280 wide, 16 heads; the head count is not visible in the weights
DOWNLOAD_HINT = "download Wan2.1-I2V-14B-720P (Hugging Face Wan-AI/Wan2.1-I2V-14B-720P) into that folder"


def go_offline() -> None:
    """Make sure neither diffsynth, modelscope nor huggingface tries the network."""
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                        ("DIFFSYNTH_SKIP_DOWNLOAD", "True"), ("MODELSCOPE_OFFLINE", "1")):
        os.environ[name] = value


@contextlib.contextmanager
def quiet():
    """Drop diffsynth's prints and tqdm bars: stdout belongs to sfi (``--json``) and sfi shows its own progress."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def dit_shards(model_dir: Path) -> list[Path]:
    """The DiT weight files: the shards named in the index, or the single-file form."""
    index = model_dir / DIT_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as error:
            raise EngineError(f"'{index}' is not a valid safetensors index ({error}); {DOWNLOAD_HINT}") from None
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    return [model_dir / DIT_SINGLE]


def size_text(num_bytes: int) -> str:
    """A file size as a person reads it."""
    if num_bytes < 100_000:
        return f"{num_bytes} bytes"
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.1f} MB"


def folder_checks(model_dir: str | Path) -> list[Check]:
    """Every file a Wan2.1-I2V folder needs, one check each (no torch needed); ``model_dir`` "" means not set."""
    if not str(model_dir):
        return [Check("fail", "model folder", "not set",
                      "set engines.semfi.model_dir in sfi.toml (or pass --model-dir) to the Wan2.1-I2V-14B-720P folder")]
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        return [Check("fail", "model folder", f"'{folder}' does not exist", f"{DOWNLOAD_HINT}, or fix model_dir")]
    checks = [_dit_check(folder)]
    for name in (CONFIG, TEXT_ENCODER, IMAGE_ENCODER, VAE):
        path = folder / name
        checks.append(Check("ok", name, size_text(path.stat().st_size)) if path.is_file()
                      else Check("fail", name, "missing", f"download {name} into '{folder}'"))
    tokenizer = folder / TOKENIZER
    files = sorted(p.name for p in tokenizer.iterdir()) if tokenizer.is_dir() else []
    if any(n in files for n in ("tokenizer.json", "spiece.model")):
        checks.append(Check("ok", f"{TOKENIZER}/", ", ".join(files)))
    else:
        checks.append(Check("fail", f"{TOKENIZER}/", "missing or empty", f"download the {TOKENIZER} folder into '{folder}'"))
    return checks


def _dit_check(folder: Path) -> Check:
    if (folder / DIT_INDEX).is_file():
        try:
            shards = dit_shards(folder)
        except EngineError as error:
            return Check("fail", "DiT", str(error), f"download {DIT_INDEX} again")
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            return Check("fail", "DiT", f"shards missing: {', '.join(missing)}", f"download the missing shard(s) into '{folder}'")
        return Check("ok", "DiT", f"{len(shards)} shards + index, {size_text(sum(p.stat().st_size for p in shards))}")
    if (folder / DIT_SINGLE).is_file():
        return Check("ok", "DiT", f"{DIT_SINGLE}, {size_text((folder / DIT_SINGLE).stat().st_size)}")
    return Check("fail", "DiT", f"{DIT_INDEX} missing", DOWNLOAD_HINT)


@dataclass
class WanLayout:
    """A checked model folder: file paths, the architecture of each model and its parameter count."""

    model_dir: Path
    dit_files: list[Path]
    dit: dict[str, Any]
    text_len: int
    text_encoder: dict[str, Any]
    image_encoder: dict[str, Any]
    vae: dict[str, Any]
    parameters: dict[str, int] = field(default_factory=dict)
    dit_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Path:
        return self.model_dir / TOKENIZER


def _safetensors_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise EngineError(f"cannot read DiT shard '{path}' ({error}); the file is damaged or incomplete, {DOWNLOAD_HINT}") from None
    return shapes


def _pth_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a torch checkpoint, memory-mapped (nothing is read into memory)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:  # torch raises many types for damaged or foreign files
        raise EngineError(f"cannot read '{path}' ({type(error).__name__}: {str(error)[:120]}); {DOWNLOAD_HINT}") from None
    if isinstance(state, dict) and len(state) == 1 and isinstance(next(iter(state.values())), dict):
        state = next(iter(state.values()))
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def _require(shapes: dict, keys: list[str], what: str, path: Path) -> None:
    missing = [k for k in keys if k not in shapes]
    if missing:
        raise EngineError(f"'{path}' is not a {what}: it lacks '{missing[0]}'" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                       + f"; {DOWNLOAD_HINT}")


def dit_architecture(model_dir: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Any], int]:
    """WanModel arguments from ``config.json``, each checked against the weights; plus text_len."""
    path = model_dir / CONFIG
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise EngineError(f"'{path}' is not valid JSON ({error}); {DOWNLOAD_HINT}") from None
    if config.get("model_type") != "i2v":
        raise EngineError(f"'{path}' describes a '{config.get('model_type')}' model; SemFi needs the image-to-video model, {DOWNLOAD_HINT}")
    if "img_emb.emb_pos" in shapes:
        raise EngineError(f"'{model_dir}' holds Wan2.1-FLF2V (first-last-frame) weights; SemFi is trained on Wan2.1-I2V, {DOWNLOAD_HINT}")
    _require(shapes, ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight", "head.head.weight",
                      "img_emb.proj.1.weight", "blocks.0.cross_attn.k_img.weight", "blocks.0.ffn.0.weight"],
             "Wan2.1-I2V DiT", model_dir / DIT_INDEX)
    missing_keys = [k for k in ("dim", "ffn_dim", "freq_dim", "in_dim", "num_heads", "num_layers", "out_dim") if k not in config]
    if missing_keys:
        raise EngineError(f"'{path}' lacks {', '.join(missing_keys)}; {DOWNLOAD_HINT}")
    dim, in_dim, pt, ph, pw = shapes["patch_embedding.weight"]
    blocks = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")}
    seen = {
        "dim": dim,
        "in_dim": in_dim,
        "ffn_dim": shapes["blocks.0.ffn.0.weight"][0],
        "freq_dim": shapes["time_embedding.0.weight"][1],
        "out_dim": shapes["head.head.weight"][0] // (pt * ph * pw),
        "num_layers": len(blocks),
    }
    for key, value in seen.items():
        if config[key] != value:
            raise EngineError(f"'{path}' says {key} {config[key]} but the DiT weights have {value}; "
                           f"config and weights come from different models, {DOWNLOAD_HINT}")
    if dim % config["num_heads"]:
        raise EngineError(f"'{path}': dim {dim} is not divisible by num_heads {config['num_heads']}; {DOWNLOAD_HINT}")
    if in_dim != 36:
        raise EngineError(f"the DiT in '{model_dir}' takes {in_dim} input channels, not 36 (16 latent + 4 mask + 16 guidance); {DOWNLOAD_HINT}")
    architecture = dict(seen, text_dim=shapes["text_embedding.0.weight"][1], eps=float(config.get("eps", 1e-6)),
                        num_heads=int(config["num_heads"]), patch_size=(pt, ph, pw), has_image_input=True)
    return architecture, int(config.get("text_len", 512))


def text_encoder_architecture(shapes: dict, path: Path) -> dict[str, Any]:
    """WanTextEncoder (umT5 encoder) arguments from tensor shapes."""
    _require(shapes, ["token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight", "norm.weight"],
             "umT5 text encoder", path)
    shared = "pos_embedding.embedding.weight" in shapes
    position = shapes["pos_embedding.embedding.weight" if shared else "blocks.0.pos_embedding.embedding.weight"]
    vocab, dim = shapes["token_embedding.weight"]
    return dict(vocab=vocab, dim=dim, dim_attn=shapes["blocks.0.attn.q.weight"][0], dim_ffn=shapes["blocks.0.ffn.fc1.weight"][0],
                num_heads=position[1], num_buckets=position[0], shared_pos=shared,
                num_layers=len({k.split(".")[1] for k in shapes if k.startswith("blocks.")}))


def image_encoder_architecture(shapes: dict, path: Path) -> dict[str, Any]:
    """Vision-tower arguments of diffsynth's XLM-RoBERTa CLIP, from tensor shapes."""
    _require(shapes, ["visual.patch_embedding.weight", "visual.pos_embedding", "visual.transformer.0.mlp.0.weight", "visual.head"],
             "open-clip ViT image encoder", path)
    width, _, patch, _ = shapes["visual.patch_embedding.weight"]
    grid = round((shapes["visual.pos_embedding"][1] - 1) ** 0.5)
    if width != 1280 or grid * grid != 256:
        raise EngineError(f"'{path}' yields {grid * grid + 1} tokens of width {width}; the Wan DiT needs 257 x 1280 (ViT-H/14 at 224 px), {DOWNLOAD_HINT}")
    return dict(vision_dim=width, patch_size=patch, image_size=grid * patch, vision_heads=width // CLIP_HEAD_DIM,
                vision_mlp_ratio=shapes["visual.transformer.0.mlp.0.weight"][0] / width,
                vision_layers=len({k.split(".")[2] for k in shapes if k.startswith("visual.transformer.")}),
                embed_dim=shapes["visual.head"][1])


def vae_architecture(shapes: dict, path: Path) -> dict[str, Any]:
    """Wan2.1 VAE width and latent channels, from tensor shapes."""
    _require(shapes, ["encoder.conv1.weight", "conv2.weight", "decoder.conv1.weight"], "Wan2.1 VAE", path)
    z_dim = shapes["conv2.weight"][0]
    if z_dim != 16:
        raise EngineError(f"'{path}' has {z_dim} latent channels, not 16 (is it the Wan2.2 VAE?); {DOWNLOAD_HINT}")
    return dict(dim=shapes["encoder.conv1.weight"][0], z_dim=z_dim)


def inspect_folder(model_dir: Path) -> WanLayout:
    """Check a model folder and read every architecture from it, without loading weights."""
    model_dir = Path(model_dir)
    problems = [f"{check.item} {check.detail}" for check in folder_checks(model_dir) if check.failed]
    if problems:
        raise EngineError(f"model folder '{model_dir}' is incomplete: {'; '.join(problems)}; {DOWNLOAD_HINT} or pass --model-dir")
    files = dit_shards(model_dir)
    dit_shapes = _safetensors_shapes(files)
    dit, text_len = dit_architecture(model_dir, dit_shapes)
    text_shapes = _pth_shapes(model_dir / TEXT_ENCODER)
    text_encoder = text_encoder_architecture(text_shapes, model_dir / TEXT_ENCODER)
    if text_encoder["dim"] != dit["text_dim"]:
        raise EngineError(f"the text encoder is {text_encoder['dim']} wide but the DiT expects {dit['text_dim']}; "
                       f"the files come from different models, {DOWNLOAD_HINT}")
    clip_shapes = _pth_shapes(model_dir / IMAGE_ENCODER)
    vae_shapes = _pth_shapes(model_dir / VAE)

    def count(shapes, keep=lambda k: True):
        total = 0
        for key, shape in shapes.items():
            if keep(key):
                size = 1
                for n in shape:
                    size *= n
                total += size
        return total

    parameters = {"dit": count(dit_shapes), "text_encoder": count(text_shapes),
                  "image_encoder": count(clip_shapes, lambda k: k.startswith("visual.")), "vae": count(vae_shapes)}
    return WanLayout(model_dir, files, dit, text_len, text_encoder,
                     image_encoder_architecture(clip_shapes, model_dir / IMAGE_ENCODER),
                     vae_architecture(vae_shapes, model_dir / VAE), parameters, dit_shapes)


def _model_classes():
    """diffsynth's image encoder and VAE fix their size in the constructor; these take it from the file."""
    import torch
    from diffsynth.models.wan_video_image_encoder import WanImageEncoder, clip_xlm_roberta_vit_h_14
    from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE

    class SizedImageEncoder(WanImageEncoder):
        """diffsynth's WanImageEncoder (same ``encode_image``) built with the vision tower found in the file."""

        def __init__(self, **vision):
            torch.nn.Module.__init__(self)
            self.model, self.transforms = clip_xlm_roberta_vit_h_14(
                pretrained=False, return_transforms=True, return_tokenizer=False, dtype=torch.float32, device="cpu", **vision)

    class SizedVideoVAE(WanVideoVAE):
        """diffsynth's WanVideoVAE (same encode/decode and latent scaling) with the width found in the file."""

        def __init__(self, dim=96, z_dim=16):
            super().__init__(z_dim=z_dim)
            if self.model.dim != dim:
                self.model = VideoVAE_(dim=dim, z_dim=z_dim).eval().requires_grad_(False)

    return SizedImageEncoder, SizedVideoVAE


@dataclass
class WanModels:
    dit: Any
    text_encoder: Any
    image_encoder: Any
    vae: Any
    tokenizer: Any


def load_models(layout: WanLayout, device: str, dtype, vram_config: dict | None = None,
                vram_limit: float | None = None) -> WanModels:
    """Load all four models and the tokenizer with diffsynth's loader.

    ``vram_config`` None loads every model straight onto ``device``; otherwise it is
    diffsynth's VRAM-management config (see ``memory.vram_config``).
    """
    go_offline()
    with quiet():
        from diffsynth.core.loader import load_model
        from diffsynth.models.model_loader import ModelPool
        from diffsynth.models.wan_video_dit import WanModel
        from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer, WanTextEncoder
        from diffsynth.utils.state_dict_converters.wan_video_image_encoder import WanImageEncoderStateDictConverter
        from diffsynth.utils.state_dict_converters.wan_video_vae import WanVideoVAEStateDictConverter

        SizedImageEncoder, SizedVideoVAE = _model_classes()
        pool = ModelPool()

        def load(model_class, class_path, paths, config, converter=None):
            path = [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
            options = {}
            if vram_config is not None:
                options = dict(vram_config=vram_config, vram_limit=vram_limit,
                               module_map=pool.fetch_module_map(class_path, vram_config))
            try:
                return load_model(model_class, path, config, torch_dtype=dtype, device=device,
                                  state_dict_converter=converter, use_disk_map=True, **options)
            except (RuntimeError, KeyError) as error:
                raise EngineError(f"cannot load '{paths[0]}' into the {model_class.__name__} read from its shapes "
                               f"({str(error).splitlines()[0][:160]}); {DOWNLOAD_HINT}") from None

        dit = load(WanModel, DIT_CLASS, layout.dit_files, layout.dit)
        text_encoder = load(WanTextEncoder, TEXT_ENCODER_CLASS, [layout.model_dir / TEXT_ENCODER], layout.text_encoder)
        image_encoder = load(SizedImageEncoder, IMAGE_ENCODER_CLASS, [layout.model_dir / IMAGE_ENCODER], layout.image_encoder,
                             WanImageEncoderStateDictConverter)
        vae = load(SizedVideoVAE, VAE_CLASS, [layout.model_dir / VAE], layout.vae, WanVideoVAEStateDictConverter)
        try:
            tokenizer = HuggingfaceTokenizer(name=str(layout.tokenizer), seq_len=layout.text_len, clean="whitespace",
                                             local_files_only=True)
        except (OSError, ValueError) as error:
            raise EngineError(f"cannot load the tokenizer in '{layout.tokenizer}' ({str(error).splitlines()[0][:160]}); {DOWNLOAD_HINT}") from None
    for model in (dit, text_encoder, image_encoder, vae):
        model.eval().requires_grad_(False)
    return WanModels(dit, text_encoder, image_encoder, vae, tokenizer)
