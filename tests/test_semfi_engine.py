"""The SemFi engine on a tiny random Wan2.1-I2V folder written in the published layout:
loading, conditioning and sampling as the method doc writes them, exact frame counts,
end restoration and seams, experts switching without drift, no network, loading errors."""

from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engines import load_engine, resolve_name
from engines.flow import FlowEngine
from engines.semfi import DEFAULTS, SemFiEngine
from engines.semfi_parts import delivery, loading, rules
from engines.errors import EngineError
from tiny_wan import CLIP, DIT, ENGINE_SETTINGS, TEXT, VAE_DIM, gradient_pair, tiny_engine

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return tiny_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def pair():
    return gradient_pair(48, 32)


def ends_at(size, pair):
    return [rules.to_model_pixels(delivery.resize(image, size, Image.Resampling.BICUBIC)) for image in pair]


def test_architecture_is_read_from_the_folder(wan):
    layout = loading.inspect_folder(wan.model_dir)
    assert {k: layout.dit[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim")} == \
        {k: DIT[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim")}
    assert layout.dit["text_dim"] == TEXT["dim"] and layout.dit["patch_size"] == (1, 2, 2) and layout.text_len == 512
    assert {k: layout.text_encoder[k] for k in TEXT} == TEXT
    assert layout.image_encoder == {k: CLIP[k] for k in layout.image_encoder}
    assert layout.vae == {"dim": VAE_DIM, "z_dim": 16}
    assert len(layout.dit_files) == 7 and all(p.name.endswith("-of-00007.safetensors") for p in layout.dit_files)
    assert layout.parameters["dit"] == sum(int(np.prod(s)) for s in layout.dit_shapes.values())


def test_models_load_in_eval_mode_with_the_files_weights(engine, wan):
    sampler, _ = engine.runtime()
    pipe = sampler.pipe
    assert not any(m.training for m in (pipe.dit, pipe.text_encoder, pipe.image_encoder, pipe.vae))
    from safetensors import safe_open

    key = "blocks.1.cross_attn.k_img.weight"  # not adapted by the LoRA
    shard = next(p for p in loading.inspect_folder(wan.model_dir).dit_files
                 if key in safe_open(str(p), framework="pt").keys())
    with safe_open(str(shard), framework="pt") as handle:
        assert torch.equal(pipe.dit.state_dict()[key], handle.get_tensor(key))


def test_text_is_zeroed_past_the_prompt_tokens(engine):
    sampler, _ = engine.runtime()
    for prompt in ("a fox jumps into the woman", ""):
        ids, mask = sampler.pipe.tokenizer(prompt, return_mask=True, add_special_tokens=True)
        count = int(mask.sum())
        assert ids.shape == (1, 512)
        context = sampler.encode_text(prompt)
        with torch.no_grad():
            raw = sampler.pipe.text_encoder(ids, mask)
        assert torch.count_nonzero(context[0, count:]) == 0
        assert torch.equal(context[0, :count], raw[0, :count]) and torch.count_nonzero(context[0, :count]) > 0
        if prompt == "":
            assert count == 1 and int(ids[0, 0]) == 1  # just the end-of-sequence token


def test_clip_features_of_both_frames_are_summed_after_31_of_32_blocks(engine, pair):
    sampler, _ = engine.runtime()
    visual = sampler.pipe.image_encoder.model.visual
    first, last = ends_at((32, 32), pair)

    def by_hand(image, blocks):
        size = CLIP["image_size"]
        x = F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False) * 0.5 + 0.5
        x = (x - CLIP_MEAN[:, None, None]) / CLIP_STD[:, None, None]
        h = visual.patch_embedding(x).flatten(2).transpose(1, 2)
        h = torch.cat([visual.cls_embedding, h], dim=1) + visual.pos_embedding
        h = visual.pre_norm(h)
        for block in list(visual.transformer)[:blocks]:
            h = block(h)
        return h

    with torch.no_grad():
        got = sampler.encode_clip(first, last)
        expected = by_hand(first, CLIP["vision_layers"] - 1) + by_hand(last, CLIP["vision_layers"] - 1)
        all_blocks = by_hand(first, CLIP["vision_layers"]) + by_hand(last, CLIP["vision_layers"])
    assert got.shape == (1, 257, 1280)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, all_blocks, atol=1e-2)


@pytest.mark.parametrize("frames", [5, 17])
def test_guidance_latents_and_mask(engine, pair, frames):
    sampler, _ = engine.runtime()
    first, last = ends_at((32, 48), pair)
    with torch.no_grad():
        y = sampler.encode_guidance(first, last, frames)
        video = torch.zeros(3, frames, 48, 32)  # frame 0 = first, frame F-1 = last, zeros between
        video[:, 0], video[:, -1] = first, last
        latents = sampler.pipe.vae.encode([video], device="cpu")[0]
    latent_frames = (frames - 1) // 4 + 1
    assert y.shape == (1, 20, latent_frames, 6, 4)
    mask = y[0, :4]
    assert mask[:, 0].unique().tolist() == [1.0] and mask[3, -1].unique().tolist() == [1.0]
    assert torch.count_nonzero(mask[:, 1:-1]) == 0 and torch.count_nonzero(mask[:3, -1]) == 0
    assert torch.equal(y[0, 4:], latents)


def test_raw_run_matches_the_method_written_out(engine, pair):
    """Seeded CPU float32 noise of the official shape, shifted sigmas, CFG with the negative prompt, Euler,
    tiled decode, truncation to uint8: done here by hand with diffsynth's DiT forward."""
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    sampler, mixture = engine.runtime()
    new, seed, prompt, size = 7, 11, "a cat walks", (32, 48)
    frames = rules.model_frame_count(new)
    got = engine.generate_raw(*pair, new, size, prompt=prompt, seed=seed)
    assert mixture.active == 2  # 9 frames -> expert 9
    first, last = ends_at(size, pair)
    with torch.no_grad():
        context, negative = sampler.encode_text(prompt), sampler.encode_text("")
        clip, y = sampler.encode_clip(first, last), sampler.encode_guidance(first, last, frames)
        x = torch.randn((1, 16, (frames - 1) // 4 + 1, size[1] // 8, size[0] // 8),
                        generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
        base = np.linspace(1, 0, ENGINE_SETTINGS["steps"] + 1)[:-1]
        sigmas = list(5 * base / (1 + 4 * base)) + [0.0]
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            kwargs = dict(dit=sampler.pipe.dit, latents=x, timestep=torch.tensor([sigma * 1000], dtype=torch.float32),
                          clip_feature=clip, y=y)
            positive, unguided = model_fn_wan_video(context=context, **kwargs), model_fn_wan_video(context=negative, **kwargs)
            x = x + (unguided + ENGINE_SETTINGS["cfg"] * (positive - unguided)) * (sigma_next - sigma)
        video = sampler.pipe.vae.decode(x, device="cpu", tiled=True, tile_size=(30, 52), tile_stride=(15, 26))[0]
    expected = ((video / 2 + 0.5).clip(0, 1) * 255).numpy().astype(np.uint8).transpose(1, 2, 3, 0)
    assert len(got) == frames and got[0].shape == (48, 32, 3)
    difference = np.abs(np.stack(got).astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01


@pytest.mark.parametrize("new,expert", [(3, 1), (6, 2), (10, 2), (14, 3), (30, 4), (55, 5), (79, 6)])
def test_exact_frame_count_at_source_size(engine, pair, new, expert):
    done = []
    frames = list(engine.generate(*pair, new, prompt="a fox", seed=1, progress=lambda d, t: done.append((d, t))))
    assert len(frames) == new
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert engine.runtime()[1].active == expert
    assert done[-1][0] == done[-1][1] == ENGINE_SETTINGS["steps"] + 2


def mean_colour(frame):
    return frame.reshape(-1, 3).astype(np.float64).mean(axis=0)


def colour_steps(sequence):
    return [float(np.abs(mean_colour(a) - mean_colour(b)).mean()) for a, b in zip(sequence[:-1], sequence[1:])]


@pytest.mark.parametrize("new", [12, 30])
def test_seams_to_the_given_ends_show_no_jump(engine, pair, new):
    first, last = pair
    steps = colour_steps([first, *engine.generate(first, last, new, seed=2), last])
    seams, inside = [steps[0], steps[-1]], steps[1:-1]
    raw = engine.generate_raw(first, last, new, seed=2)
    scaled = [delivery.resize(f, (48, 32)) for f in raw]
    raw_seams = [colour_steps([first, scaled[1]])[0], colour_steps([scaled[-2], last])[0]]
    assert max(seams) <= max(inside), (seams, inside)
    assert all(s < r / 2 for s, r in zip(seams, raw_seams)), (seams, raw_seams)


def test_drift_correction_on_a_known_colour_shift():
    """Model frames that are a clean ramp but 40 levels too red and 20 too dark at both ends."""
    first, last = gradient_pair(64, 48)
    times = np.linspace(0, 1, 17)
    ramp = [((1 - t) * first.astype(np.float32) + t * last.astype(np.float32)) for t in times]
    drifted = [np.clip(f + np.array([40, -20, -20]), 0, 255).astype(np.uint8) for f in ramp]
    out = list(delivery.deliver(drifted, first, last, 15, FlowEngine().between))  # 17 = 15 + 2: no retiming, only the correction
    steps = colour_steps([first] + out + [last])
    assert max(steps) < 2 * float(np.median(steps[1:-1])) + 0.5
    uncorrected = colour_steps([first] + drifted[1:-1] + [last])
    assert uncorrected[0] > 15 and uncorrected[-1] > 15


def test_retimed_frames_move_evenly():
    """A bar moving 2 px per model frame; 12 in-betweens from 17 model frames must move evenly."""
    def bar(x):
        frame = np.zeros((48, 96, 3), dtype=np.uint8)
        frame[:, int(round(x)):int(round(x)) + 12] = (220, 180, 40)
        frame[::6] = 60  # texture for the optical flow
        return frame

    model = [bar(10 + 4 * j) for j in range(17)]
    out = list(delivery.deliver(model, model[0], model[-1], 12, FlowEngine().between))
    centres = [np.nonzero(f[3, :, 0] > 150)[0].mean() for f in out]
    expected = [16 + 64 * (i + 1) / 13 for i in range(12)]
    assert np.allclose(centres, expected, atol=1.0), centres


def test_expert_switches_do_not_change_a_gaps_result(engine, pair, wan):
    before = list(engine.generate(*pair, 3, prompt="a fox", seed=4))
    engine.generate(*pair, 30, prompt="a fox", seed=4)  # another expert in between
    engine.generate(*pair, 79, seed=9)
    after = list(engine.generate(*pair, 3, prompt="a fox", seed=4))
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    fresh = SemFiEngine(model_dir=str(wan.model_dir), lora=str(wan.lora), **ENGINE_SETTINGS)
    assert all(np.array_equal(a, b) for a, b in zip(before, fresh.generate(*pair, 3, prompt="a fox", seed=4)))


def test_seed_and_prompt_change_the_result(engine, pair):
    base = np.stack(engine.generate_raw(*pair, 3, (32, 32), prompt="a fox", seed=5))
    assert np.array_equal(base, np.stack(engine.generate_raw(*pair, 3, (32, 32), prompt="a fox", seed=5)))
    assert not np.array_equal(base, np.stack(engine.generate_raw(*pair, 3, (32, 32), prompt="a fox", seed=6)))
    assert not np.array_equal(base, np.stack(engine.generate_raw(*pair, 3, (32, 32), prompt="a cat", seed=5)))


def test_raw_gives_every_model_frame_at_the_working_size(engine, pair):
    frames = engine.generate_raw(*pair, 12, (48, 32))
    assert len(frames) == 17 and frames[0].shape == (32, 48, 3)
    assert len(engine.generate_raw(*pair, 3)) == 5  # size from the area setting
    small_last = np.asarray(Image.fromarray(pair[1]).resize((24, 16)))
    assert len(engine.generate_raw(pair[0], small_last, 3, (32, 32))) == 5  # ends of different sizes
    with pytest.raises(EngineError, match="multiples of 16"):
        engine.generate_raw(*pair, 3, (40, 32))


def test_nothing_touches_the_network(wan, pair, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFSYNTH_SKIP_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    fresh = SemFiEngine(model_dir=str(wan.model_dir), lora=str(wan.lora), **ENGINE_SETTINGS)
    assert len(list(fresh.generate(*pair, 2, prompt="a cat"))) == 2
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def settings_for(wan, **overrides):
    return {"model_dir": str(wan.model_dir), "lora": str(wan.lora), **overrides}


def test_availability(wan):
    assert SemFiEngine.unavailable_reason(settings_for(wan, device="cpu")) is None
    assert "model_dir" in SemFiEngine.unavailable_reason({})
    assert "--lora" in SemFiEngine.unavailable_reason(settings_for(wan, lora="", device="cpu"))
    assert "does not exist" in SemFiEngine.unavailable_reason(settings_for(wan, model_dir="/nowhere", device="cpu"))
    if not torch.cuda.is_available():
        reason = SemFiEngine.unavailable_reason(settings_for(wan))
        assert "no CUDA GPU" in reason and "--device cpu" in reason
        assert resolve_name("auto", {"semfi": settings_for(wan)}) == "flow"
    assert resolve_name("semfi", {"semfi": settings_for(wan, device="cpu")}) == "semfi"


def test_settings_are_checked():
    with pytest.raises(EngineError, match="unknown semfi setting"):
        SemFiEngine(stepz=3)
    with pytest.raises(EngineError, match="dtype must be"):
        SemFiEngine(dtype="int8")
    with pytest.raises(EngineError, match="steps must be 1 or more"):
        SemFiEngine(steps=0)
    assert SemFiEngine(device="cpu").dtype_name == "float32" and SemFiEngine().dtype_name == "bfloat16"
    with pytest.raises(EngineError, match="area must be"):
        SemFiEngine(area="huge")  # refused when built, before any model loads
    key = SemFiEngine(device="cpu", steps=7).cache_key()
    assert key["engine"] == "semfi" and key["steps"] == 7 and key["dtype"] == "float32"


CHANGED = {"model_dir": "/elsewhere", "lora": "/elsewhere/semfi.ckpt", "device": "cpu", "dtype": "float16", "steps": 49,
           "cfg": 4.5, "shift": 3.0, "negative_prompt": "blur", "area": "720p", "memory_mode": "offload",
           "backend": "onnx", "attention": "sage", "cache_dir": "/scratch",
           "timesteps": [900, 500], "cache_threshold": 0.1, "cache_max_skips": 2, "cache_calibration": "/elsewhere/c.json",
           "extra_loras": [{"path": "/elsewhere/distill.safetensors"}]}
SAME_FRAMES = ("memory_mode", "cache_dir", "cache_max_skips", "cache_calibration")


def test_cache_key_changes_with_every_setting_that_changes_the_frames(monkeypatch):
    assert set(CHANGED) == set(DEFAULTS), "a new setting needs a case here"
    base = SemFiEngine().cache_key()
    assert base == SemFiEngine(**DEFAULTS).cache_key()  # defaults are written into the key
    for name, value in CHANGED.items():
        changed = SemFiEngine(**{name: value}).cache_key() != base
        assert changed == (name not in SAME_FRAMES), name
    assert SemFiEngine(area="480p").cache_key() == SemFiEngine(area=832 * 480).cache_key()  # resolved, not as typed
    assert SemFiEngine(flow=FlowEngine(flow_width=240)).cache_key() != base  # its retiming is part of its output
    monkeypatch.setattr(FlowEngine, "version", FlowEngine.version + 1)
    assert SemFiEngine().cache_key() != base
    monkeypatch.setattr(SemFiEngine, "version", SemFiEngine.version + 1)
    assert SemFiEngine().cache_key()["version"] == SemFiEngine.version


def test_load_engine_hands_semfi_the_configured_flow(wan):
    settings = {"semfi": settings_for(wan, device="cpu"), "flow": {"flow_width": 96, "min_confidence": 0.5}}
    engine = load_engine("semfi", settings)
    assert isinstance(engine.flow, FlowEngine) and engine.flow.flow_width == 96 and engine.flow.min_confidence == 0.5
    assert engine.cache_key()["flow"] == FlowEngine(flow_width=96, min_confidence=0.5).cache_key()


def test_retiming_uses_the_engines_flow(engine, pair):
    """5 new frames from 9 model frames sit at positions 4/3, 8/3, 4, 16/3, 20/3: the whole one is a model frame,
    the others come from ``flow.between``, so a flow that always dissolves and one that never does differ there only."""
    configured = engine.flow
    runs = []
    try:
        for min_confidence in (0.0, 1.01):
            engine.flow = FlowEngine(min_confidence=min_confidence)
            runs.append(list(engine.generate(*pair, 5, seed=3)))
    finally:
        engine.flow = configured
    assert [np.array_equal(a, b) for a, b in zip(*runs)] == [False, False, True, False, False]


def linked_copy(source, target):
    """The tiny folder again, every file a link, so one file can be broken per test."""
    target.mkdir()
    for entry in source.iterdir():
        (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return target


def replace_file(folder, name, data: bytes):
    (folder / name).unlink()
    (folder / name).write_bytes(data)


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    replace_file(folder, "config.json", json.dumps(config).encode())


def flf2v_shard(folder):
    from safetensors.torch import save_file

    save_file({"img_emb.emb_pos": torch.zeros(1, 514, 1280)}, str(folder / "extra.safetensors"))
    index = json.loads((folder / loading.DIT_INDEX).read_text())
    index["weight_map"]["img_emb.emb_pos"] = "extra.safetensors"
    replace_file(folder, loading.DIT_INDEX, json.dumps(index).encode())


BREAKAGES = {
    "missing text encoder": (lambda f: (f / loading.TEXT_ENCODER).unlink(), "models_t5_umt5-xxl-enc-bf16.pth missing"),
    "missing shard": (lambda f: (f / "diffusion_pytorch_model-00003-of-00007.safetensors").unlink(), "DiT shards missing: diffusion_pytorch_model-00003"),
    "missing tokenizer": (lambda f: (f / "google").unlink(), "google/umt5-xxl/ missing or empty"),
    "config disagrees": (lambda f: edit_config(f, dim=128), "says dim 128 but the DiT weights have 64"),
    "text-to-video config": (lambda f: edit_config(f, model_type="t2v"), "image-to-video"),
    "broken config": (lambda f: replace_file(f, "config.json", b"{dim: 5120"), "not valid JSON"),
    "FLF2V weights": (flf2v_shard, "FLF2V"),
    "damaged CLIP": (lambda f: replace_file(f, loading.IMAGE_ENCODER, b"\x00" * 64), "cannot read"),
    "damaged shard": (lambda f: replace_file(f, "diffusion_pytorch_model-00002-of-00007.safetensors", b"\x01" * 64), "damaged or incomplete"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_model_folders_are_refused_clearly(wan, tmp_path, breakage):
    folder = linked_copy(wan.model_dir, tmp_path / "model")
    damage, expected = BREAKAGES[breakage]
    damage(folder)
    with pytest.raises(EngineError) as error:
        SemFiEngine(model_dir=str(folder), lora=str(wan.lora), device="cpu").runtime()
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert "Wan2.1-I2V-14B-720P" in str(error.value)


def test_bad_lora_is_refused_before_loading_models(wan, tmp_path):
    bad = tmp_path / "semfi.ckpt"
    shutil.copy(wan.lora, bad)
    state = torch.load(bad, weights_only=True)
    del state["blocks.0.lora_ffn_0.3.lora_B.bias"]
    torch.save(state, bad)
    engine = SemFiEngine(model_dir=str(wan.model_dir), lora=str(bad), device="cpu")
    with pytest.raises(EngineError, match="1 expected keys are missing"):
        engine.runtime()


def test_memory_modes_give_the_same_frames(wan, monkeypatch, tmp_path):
    """offload and stream load through diffsynth's VRAM management; here its 'GPU' is the CPU, so the two
    calls it makes on torch.<device> are stood in for (the CPU has neither a cache to empty nor a memory gauge).
    An extra LoRA (on an adapted linear, an unadapted one and a norm's bias) merges through the wrapped layers too."""
    from safetensors.torch import save_file

    from engines.semfi import build_runtime
    from engines.semfi_parts import extra_lora, mol
    from engines.semfi_parts.sampler import Request

    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)
    monkeypatch.setattr(torch.cpu, "mem_get_info", lambda device=None: (0, 2 * 2**30), raising=False)
    layout = loading.inspect_folder(wan.model_dir)
    loras = mol.map_checkpoint(mol.read_checkpoint(wan.lora), mol.adapted_shapes(layout.dit_shapes, DIT["num_layers"]), wan.lora)
    first, last = (rules.to_model_pixels(f) for f in gradient_pair(32, 32))
    generator = torch.Generator().manual_seed(0)
    save_file({"blocks.0.self_attn.q.lora_A.weight": torch.randn(4, 64, generator=generator) * 0.1,
               "blocks.0.self_attn.q.lora_B.weight": torch.randn(64, 4, generator=generator) * 0.1,
               "blocks.1.cross_attn.k_img.lora_A.weight": torch.randn(4, 64, generator=generator) * 0.1,
               "blocks.1.cross_attn.k_img.lora_B.weight": torch.randn(64, 4, generator=generator) * 0.1,
               "blocks.0.norm3.diff_b": torch.randn(64, generator=generator) * 0.1}, str(tmp_path / "extra.safetensors"))
    extra = extra_lora.load_extra_loras([extra_lora.ExtraLoRA(tmp_path / "extra.safetensors", 0.5)], layout.dit_shapes)
    results = {}
    for mode, limit in (("full", None), ("offload", None), ("stream", 1.0)):
        sampler, mixture = build_runtime(layout, loras, "cpu", torch.float32, mode, limit, extra=extra)
        assert sampler.pipe.vram_management_enabled == (mode != "full")
        runs = []
        for expert, frames in ((2, 9), (4, 33), (2, 9)):
            mixture.activate(expert)
            runs.append(np.stack(sampler.run(Request(first, last, frames, "a fox", "", 3, 2, 5.0, 5.0))))
        assert np.array_equal(runs[0], runs[2])  # no drift through the wrapped layers either
        results[mode] = runs
    for mode in ("offload", "stream"):
        assert all(np.array_equal(a, b) for a, b in zip(results[mode], results["full"])), mode
