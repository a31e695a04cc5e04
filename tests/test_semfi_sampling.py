"""SemFi's fast sampling on the tiny Wan folder: the step cache (off is exactly the uncached loop, on skips the
passes its plan names and says so), its curves and calibration, extra LoRAs merged by the formula through expert
switches, key formats and refusals, and the schedules a distillation LoRA needs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engines.errors import EngineError
from engines.semfi import SemFiEngine
from engines.semfi_parts import extra_lora, loading, mol, rules, stepcache
from engines.semfi_parts.schedule import shifted_timesteps
from tiny_wan import ENGINE_SETTINGS, gradient_pair, tiny_engine

SIZE = (32, 48)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return tiny_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def pair():
    return gradient_pair(48, 32)


def sharing(engine, **settings) -> SemFiEngine:
    """An engine with other sampling settings on the shared engine's loaded models (they do not depend on them)."""
    other = SemFiEngine(model_dir=str(engine.model_dir), lora=str(engine.lora), **{**ENGINE_SETTINGS, **settings})
    other._runtime = engine.runtime()
    return other


class Passes:
    """Records every DiT pass a run makes (``observe``)."""

    def __init__(self):
        self.made = []

    def __call__(self, step, branch, output):
        self.made.append((step, branch))


def test_skip_rule_worked_by_hand():
    """MagCache's rule: the first fifth always runs; then skip while the summed |1 - ratio product| < threshold
    and at most max_skips in a row; any pass that runs starts the sums again."""
    ratios = [1, 0.9, 0.95, 0.99, 0.99, 0.5, 0.99, 0.99, 0.99, 0.99]
    assert stepcache.skip_plan(ratios, 0.2, 2) == (True, True, False, False, True, True, False, False, True, False)
    assert stepcache.skip_plan(ratios, 0.0, 2) == (True,) * 10
    assert stepcache.skip_plan([1.0, 1.0], 1.0, 9) == (True, False)  # at least the first pass runs


def test_a_curve_carries_over_to_other_schedules():
    fine = shifted_timesteps(40, 5.0)
    ratios = [1.0] + [0.99 - 0.002 * i for i in range(39)]
    curve = stepcache.Curve.from_ratios("test", fine, {"positive": ratios})
    assert np.allclose(curve.ratios("positive", fine), ratios)
    coarse = fine[::2]  # a step of the coarse schedule spans two of the fine one
    assert np.allclose(curve.ratios("positive", coarse)[1:], [ratios[i] * ratios[i + 1] for i in range(1, 39, 2)])


def test_the_published_curve_is_the_nearest_working_size():
    assert stepcache.published_curve(832 * 480).source.startswith("published 480p")
    assert stepcache.published_curve(1280 * 720).source.startswith("published 720p")
    assert stepcache.published_curve(1024).source.startswith("published 480p")
    curve = stepcache.published_curve(1280 * 720)
    assert len(curve.timesteps) == 40 and curve.timesteps[0] == pytest.approx(1000 * 5 * 0.999 / (1 + 4 * 0.999))  # UniPC from sigma 0.999, shift 5
    assert curve.ratios("negative", curve.timesteps)[-1] == pytest.approx(0.86768)


def capture_latents(monkeypatch, sampler):
    """The latents each run hands the VAE decoder."""
    seen = []
    decode = sampler.pipe.vae.decode

    def recording(latents, **kwargs):
        seen.append(latents.clone())
        return decode(latents, **kwargs)

    monkeypatch.setattr(sampler.pipe.vae, "decode", recording)
    return seen


def test_cache_threshold_zero_is_bit_identical_to_the_uncached_loop(engine, pair, monkeypatch):
    """The loop as it was before the cache (diffsynth's scheduler stepping, both passes every step), by hand."""
    from diffsynth.diffusion import FlowMatchScheduler
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    sampler, mixture = engine.runtime()
    off = sharing(engine, cache_threshold=0, cache_max_skips=1, cache_calibration="/nowhere.json")
    assert off.cache is None and off.cache_plan(SIZE) is None
    seen = capture_latents(monkeypatch, sampler)
    notes = {}
    got = off.generate_raw(*pair, 7, SIZE, prompt="a fox", seed=5, notes=notes)
    assert notes == {}  # nothing skipped, nothing to say
    frames = rules.model_frame_count(7)
    first, last = (rules.to_model_pixels(resized(image)) for image in pair)
    with torch.no_grad():
        context, negative = sampler.encode_text("a fox"), sampler.encode_text("")
        clip, y = sampler.encode_clip(first, last), sampler.encode_guidance(first, last, frames)
        latents = sampler.pipe.generate_noise((1, 16, 3, SIZE[1] // 8, SIZE[0] // 8), seed=5, rand_device="cpu")
        scheduler = FlowMatchScheduler("Wan")
        scheduler.set_timesteps(ENGINE_SETTINGS["steps"], denoising_strength=1.0, shift=5.0)
        for timestep in scheduler.timesteps:
            inputs = dict(dit=sampler.pipe.dit, latents=latents, timestep=timestep[None].to(sampler.dtype),
                          clip_feature=clip, y=y)
            positive, unguided = model_fn_wan_video(context=context, **inputs), model_fn_wan_video(context=negative, **inputs)
            latents = scheduler.step(unguided + ENGINE_SETTINGS["cfg"] * (positive - unguided), timestep, latents)
    assert torch.equal(seen[-1], latents)
    assert len(got) == frames


def resized(image):
    from PIL import Image

    from engines.semfi_parts.delivery import resize

    return resize(image, SIZE, Image.Resampling.BICUBIC)


def test_a_positive_threshold_skips_the_planned_passes_and_says_so(engine, pair):
    cached = sharing(engine, steps=10, cache_threshold=0.3, cache_max_skips=2)
    plan = cached.cache_plan(SIZE)
    expected = [(s, b) for s in range(10) for b in stepcache.BRANCHES if plan.runs_pass(b, s)]
    runs = []
    for _ in range(2):
        passes, notes = Passes(), {}
        runs.append(cached.generate_raw(*pair, 7, SIZE, seed=2, notes=notes, observe=passes))
        assert passes.made == expected  # exactly the passes the plan names, in order
        assert notes["semfi_cache"]["skipped"] == 20 - len(expected) == plan.skipped > 0
        assert notes["remark"] == f"step cache skipped {plan.skipped} of 20 DiT passes"
    assert all(np.array_equal(a, b) for a, b in zip(*runs))  # deterministic
    uncached = sharing(engine, steps=10).generate_raw(*pair, 7, SIZE, seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], uncached))  # the skipped passes were reused


def test_cfg_1_makes_one_pass_per_step_and_a_timestep_list_sets_the_steps(engine, pair):
    passes, done = Passes(), []
    distilled = sharing(engine, cfg=1, timesteps=[1000, 937.5, 833.3333, 625])
    distilled.generate_raw(*pair, 3, SIZE, observe=passes, progress=lambda d, t: done.append((d, t)))
    assert passes.made == [(step, "positive") for step in range(4)]
    assert done[-1] == (6, 6) and distilled.steps == 4
    with pytest.raises(EngineError, match="strictly decreasing"):
        SemFiEngine(timesteps=[500, 900])


def test_the_cache_key_holds_the_cache_settings_when_it_is_on(tmp_path):
    calibration = tmp_path / "c.json"
    calibration.write_text(json.dumps({"format": stepcache.FORMAT, "timesteps": [1000, 500],
                                       "ratios": {"positive": [1.0, 0.9]}}))
    on = SemFiEngine(cache_threshold=0.2).cache_key()
    assert SemFiEngine(cache_threshold=0.2, cache_max_skips=3).cache_key() != on
    with_file = SemFiEngine(cache_threshold=0.2, cache_calibration=str(calibration)).cache_key()
    assert with_file != on
    calibration.write_text(calibration.read_text().replace("0.9", "0.8"))  # same path, new content
    assert SemFiEngine(cache_threshold=0.2, cache_calibration=str(calibration)).cache_key() != with_file
    assert SemFiEngine(cache_threshold=0).cache_key() == SemFiEngine().cache_key()


@pytest.mark.parametrize("content,message", [
    ("{", "cannot read cache calibration"),
    ('{"format": "other"}', "is not an 'sfi-semfi-step-cache' file"),
    (json.dumps({"format": stepcache.FORMAT, "timesteps": [500, 900], "ratios": {}}), "decreasing"),
    (json.dumps({"format": stepcache.FORMAT, "timesteps": [900, 500], "ratios": {"positive": [1, -1]}}), "positive numbers"),
])
def test_a_bad_calibration_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(EngineError, match=message):
        SemFiEngine(cache_threshold=0.1, cache_calibration=str(path))
    with pytest.raises(EngineError, match="does not exist"):
        SemFiEngine(cache_threshold=0.1, cache_calibration=str(tmp_path / "none.json"))


def test_the_recorder_averages_magnitude_ratios():
    recorder = stepcache.MagnitudeRecorder()
    base = torch.randn(1, 16, 2, 3, 4)
    for scale in (2.0, 4.0):  # two runs: step 1 is 2x then 4x step 0 at every position
        recorder.start([1000, 500])
        recorder(0, "positive", base)
        recorder(1, "positive", base * scale)
    record = recorder.record()
    assert record["ratios"]["positive"] == [1.0, 3.0] and record["runs"] == 2
    assert stepcache.calibration_problem(record) is None


# Extra LoRAs -------------------------------------------------------------------------------------------------

RANK = 4


def low_rank(generator, out_features, in_features, rank=RANK):
    return (torch.randn(out_features, rank, generator=generator) * 0.05,
            torch.randn(rank, in_features, generator=generator) * in_features ** -0.5)


@pytest.fixture(scope="module")
def extra_files(tmp_path_factory):
    """A kohya file (with alpha) and a PEFT file (diffusers module names, a bias difference), and the formula's parts."""
    folder = tmp_path_factory.mktemp("extra")
    generator = torch.Generator().manual_seed(3)
    up_q, down_q = low_rank(generator, 64, 64)
    up_img, down_img = low_rank(generator, 64, 64)
    kohya = {"lora_unet_blocks_0_self_attn_q.lora_up.weight": up_q, "lora_unet_blocks_0_self_attn_q.lora_down.weight": down_q,
             "lora_unet_blocks_0_self_attn_q.alpha": torch.tensor(2.0),
             "lora_unet_blocks_1_cross_attn_k_img.lora_up.weight": up_img,
             "lora_unet_blocks_1_cross_attn_k_img.lora_down.weight": down_img}
    save_file(kohya, str(folder / "kohya.safetensors"))
    up_ffn, down_ffn = low_rank(generator, 128, 64)
    up_o, down_o = low_rank(generator, 64, 64)
    norm_bias = torch.randn(64, generator=generator) * 0.1
    peft = {"diffusion_model.blocks.1.ffn.net.0.proj.lora_B.weight": up_ffn,
            "diffusion_model.blocks.1.ffn.net.0.proj.lora_A.weight": down_ffn,
            "diffusion_model.blocks.0.attn1.to_out.0.lora_B.weight": up_o,
            "diffusion_model.blocks.0.attn1.to_out.0.lora_A.weight": down_o,
            "diffusion_model.blocks.0.norm2.diff_b": norm_bias}
    torch.save(peft, folder / "peft.pt")
    # parameter -> (strength * scale, B, A) or (strength, difference)
    formula = {"blocks.0.self_attn.q.weight": (0.5 * 2.0 / RANK, up_q, down_q),
               "blocks.1.cross_attn.k_img.weight": (0.5, up_img, down_img),
               "blocks.1.ffn.0.weight": (-1.5, up_ffn, down_ffn),
               "blocks.0.self_attn.o.weight": (-1.5, up_o, down_o),
               "blocks.0.norm3.bias": (-1.5, norm_bias)}
    return folder, formula


@pytest.fixture(scope="module")
def extra_engine(wan, extra_files):
    folder, _ = extra_files
    return SemFiEngine(model_dir=str(wan.model_dir), lora=str(wan.lora), **ENGINE_SETTINGS,
                       extra_loras=[{"path": str(folder / "kohya.safetensors"), "strength": 0.5},
                                    {"path": str(folder / "peft.pt"), "strength": -1.5}])


@pytest.fixture(scope="module")
def pristine(wan):
    """The DiT's weights as stored, and SemFi's LoRAs by adapted linear."""
    layout = loading.inspect_folder(wan.model_dir)
    loras = mol.map_checkpoint(mol.read_checkpoint(wan.lora), mol.adapted_shapes(layout.dit_shapes, 2), wan.lora)
    return mol.ShardReader(layout.dit_files), loras


def expected_parameter(pristine, name, formula, expert):
    """W + strength * scale * B A (+ the MoL's universal and expert deltas where SemFi adapts the layer), float32."""
    reader, loras = pristine
    parts = formula[name]
    value = reader(name).float() + (parts[0] * parts[1] if len(parts) == 2 else parts[0] * (parts[1] @ parts[2]))
    linear, kind = name.rsplit(".", 1)
    if linear in loras:
        position = 0 if kind == "weight" else 1
        value = value + loras[linear][0].deltas("cpu")[position] + loras[linear][expert].deltas("cpu")[position]
    return value


def test_extra_loras_merge_to_the_formula_through_expert_switches(pristine, extra_engine, extra_files):
    _, formula = extra_files
    _, mixture = extra_engine.runtime()
    first = {}
    for expert in (2, 5, 2):
        mixture.activate(expert)
        for name in formula:
            value = mixture.parameter(name).detach().clone()
            assert torch.allclose(value, expected_parameter(pristine, name, formula, expert), atol=1e-6), (name, expert)
            if expert == 2:
                assert name not in first or torch.equal(first[name], value), name  # back to expert 2: bit for bit
                first[name] = value


def test_an_extra_lora_changes_the_frames_and_the_key(engine, extra_engine, pair, extra_files):
    folder, _ = extra_files
    with_extra = extra_engine.generate_raw(*pair, 3, SIZE, seed=1)
    plain = engine.generate_raw(*pair, 3, SIZE, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(with_extra, plain))
    digests = [e.runtime()[0].denoiser.source.lora_digest for e in (engine, extra_engine)]
    assert digests[0] != digests[1]  # an exported graph holds the extra LoRAs' weights: its key names them
    key = extra_engine.cache_key()["extra_loras"]
    assert [entry["strength"] for entry in key] == [0.5, -1.5] and all(len(entry["sha256"]) == 64 for entry in key)
    assert SemFiEngine(extra_loras=[{"path": str(folder / "kohya.safetensors"), "strength": 0.4}]).cache_key() != \
        SemFiEngine(extra_loras=[{"path": str(folder / "kohya.safetensors"), "strength": 0.5}]).cache_key()


@pytest.mark.parametrize("keys,message", [
    ({"diffusion_model.blocks.7.self_attn.q.lora_A.weight": (RANK, 64), "diffusion_model.blocks.7.self_attn.q.lora_B.weight": (64, RANK)},
     "the DiT has no module 'blocks.7.self_attn.q'"),
    ({"blocks.0.self_attn.q.lora_A.weight": (RANK, 64)}, "must come in pairs"),
    ({"blocks.0.ffn.0.lora_A.weight": (RANK, 64), "blocks.0.ffn.0.lora_B.weight": (64, RANK)}, "does not make blocks.0.ffn.0's weight (128, 64)"),
    ({"blocks.0.self_attn.q.lora_magnitude": (64,)}, "not a LoRA key"),
    ({"blocks.0.norm3.diff_b": (32,)}, "shape (32,), the DiT's blocks.0.norm3.bias is (64,)"),
])
def test_keys_that_do_not_fit_are_refused_with_a_summary(wan, keys, message):
    shapes = loading.inspect_folder(wan.model_dir).dit_shapes
    state = {"blocks.1.self_attn.k.lora_A.weight": torch.zeros(RANK, 64), "blocks.1.self_attn.k.lora_B.weight": torch.zeros(64, RANK),
             **{key: torch.zeros(shape) for key, shape in keys.items()}}
    with pytest.raises(EngineError) as error:
        extra_lora.map_lora(state, shapes, extra_lora.ExtraLoRA(wan.lora, 1.0))
    text = str(error.value)
    assert message in text and "does not fit this DiT" in text and f"of {len(state)} keys map" in text, text


def test_extra_lora_files_are_read_safely(wan, tmp_path):
    import pickle

    class Trap:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "trap.pt"
    path.write_bytes(pickle.dumps({"blocks.0.self_attn.q.lora_A.weight": Trap()}))
    shapes = loading.inspect_folder(wan.model_dir).dit_shapes
    with pytest.raises(EngineError, match="cannot read extra LoRA"):
        extra_lora.load_extra_loras([extra_lora.ExtraLoRA(path, 1.0)], shapes)
    with pytest.raises(EngineError, match="does not exist"):
        extra_lora.load_extra_loras([extra_lora.ExtraLoRA(tmp_path / "none.safetensors", 1.0)], shapes)


@pytest.mark.parametrize("value,message", [
    ([{"strength": 1.0}], "entry 1 has no path"), ([{"path": "a", "scale": 2}], "unknown key 'scale'"),
    ([{"path": "a", "strength": math.inf}], "strength inf"), (["a.safetensors"], "entry 1 is a str"),
])
def test_bad_extra_lora_entries_are_one_line(sfi, tmp_path, value, message):
    with pytest.raises(EngineError, match=message):
        SemFiEngine(extra_loras=value)
    config = tmp_path / "sfi.toml"
    entries = ", ".join("{ " + ", ".join(f"{k} = {json.dumps(v) if v != math.inf else 'inf'}" for k, v in e.items()) + " }"
                        if isinstance(e, dict) else json.dumps(e) for e in value)
    config.write_text(f"[engines.semfi]\nextra_loras = [{entries}]\n")
    result = sfi("--config", config, "doctor")
    assert result.code == 1 and message in result.stderr and "sfi.toml:2: 'engines.semfi.extra_loras' must be" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# sfi calibrate -----------------------------------------------------------------------------------------------

def test_calibrate_writes_a_curve_the_cache_then_uses(sfi, wan, tmp_path):
    from PIL import Image

    first, last = gradient_pair(48, 32)
    Image.fromarray(first).save(tmp_path / "a.png")
    Image.fromarray(last).save(tmp_path / "b.png")
    flags = ["--model-dir", wan.model_dir, "--lora", wan.lora, "--device", "cpu", "--area", "1024", "--steps", "4"]
    out = tmp_path / "curve.json"
    result = sfi("calibrate", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "b.png", tmp_path / "a.png",
                 "-n", 3, "-o", out, *flags)
    assert result.code == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["runs"] == 2 and len(record["timesteps"]) == 4 and set(record["ratios"]) == {"positive", "negative"}
    assert all(len(v) == 4 and v[0] == 1.0 and all(r > 0 for r in v) for v in record["ratios"].values())
    again = sfi("calibrate", tmp_path / "a.png", tmp_path / "b.png", "-o", out, *flags)
    assert again.code == 1 and "pass --force" in again.stderr
    odd = sfi("calibrate", tmp_path / "a.png", "-o", tmp_path / "x.json", *flags)
    assert odd.code == 1 and "in pairs" in odd.stderr

    config = tmp_path / "sfi.toml"
    config.write_text(f'[engines.semfi]\ncache_calibration = "{out}"\n')
    made = sfi("--config", config, "interpolate", tmp_path / "a.png", tmp_path / "b.png", "-n", 3, "-o", tmp_path / "gap",
               "--engine", "semfi", "--cache-threshold", "10", *flags)
    assert made.code == 0, made.stderr
    assert "step cache skipped 6 of 8 DiT passes" in made.stderr  # the first step runs, 3 skips in a row per branch
    raw = sfi("--config", config, "interpolate", tmp_path / "a.png", tmp_path / "b.png", "-n", 3, "-o", tmp_path / "raw",
              "--engine", "semfi", "--raw", "--json", "--cache-threshold", "10", *flags)
    assert raw.code == 0, raw.stderr
    assert json.loads(raw.stdout)["notes"]["semfi_cache"] == {"skipped": 6, "passes": 8, "threshold": 10.0,
                                                               "curve": "calibrated (curve.json)"}


def test_calibrate_never_writes_over_the_model_files_it_reads(sfi, wan, tmp_path):
    """-o naming the LoRA or a file of the model folder is refused like any input, even with --force (copies here:
    the refusal comes before the model is read, and the session's model stays whole whatever happens)."""
    import shutil

    from PIL import Image

    Image.fromarray(gradient_pair(48, 32)[0]).save(tmp_path / "a.png")
    (tmp_path / "model").mkdir()
    files = [Path(shutil.copy(wan.lora, tmp_path / "semfi.ckpt")),
             Path(shutil.copy(wan.model_dir / "config.json", tmp_path / "model" / "config.json"))]
    before = [file.read_bytes() for file in files]
    for output in files:
        result = sfi("calibrate", tmp_path / "a.png", tmp_path / "a.png", "-n", 3, "-o", output, "--force",
                     "--model-dir", tmp_path / "model", "--lora", files[0], "--device", "cpu")
        assert result.code == 1 and "is also an input" in result.stderr, result.stderr
    assert [file.read_bytes() for file in files] == before


def test_doctor_checks_the_extra_loras_and_the_cache(wan, extra_files, tmp_path):
    folder, _ = extra_files
    settings = dict(model_dir=str(wan.model_dir), lora=str(wan.lora), device="cpu", cache_threshold=0.1,
                    extra_loras=[{"path": str(folder / "kohya.safetensors")}, {"path": str(tmp_path / "gone.safetensors")}])
    checks = {check.item: check for check in SemFiEngine.diagnose(settings, thorough=True)}
    assert checks["extra LoRA kohya.safetensors"].status == "ok"
    assert "every key maps: 2 DiT parameters changed" in checks["extra LoRA kohya.safetensors"].detail
    assert checks["extra LoRA gone.safetensors"].status == "fail"
    assert checks["step cache"].status == "ok" and "published" in checks["step cache"].detail
    assert "step cache" not in {c.item for c in SemFiEngine.diagnose({**settings, "cache_threshold": 0}, thorough=False)}
