"""SemFi's DiT backends on the tiny model: our exportable forward against diffsynth's, the ONNX graph
(no complex or float64, dynamic sizes) under onnxruntime against eager for two experts, the expert
as LoRA inputs against a fresh merge, torch.compile against eager without recompiling on an expert
switch, the engine cache, the TensorRT profiles and key, and the CLI (--backend onnx, sfi compile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engines.semfi_parts import mol
from engines.semfi_parts.backends import backend_problem, onnx_graph, store, tensorrt
from engines.semfi_parts.backends.dit import ExportableDiT, expert_input_names
from engines.semfi_parts.backends.denoisers import CompiledDenoiser, DiTSource, EagerDenoiser
from engines.semfi_parts.rules import expert_index, latent_frame_count, model_frame_count
from helpers import run_sfi
from tiny_wan import DIT, TEXT, gradient_pair, random_lora_state, tiny_engine


def tiny_dit(disk=None):
    from diffsynth.models.wan_video_dit import WanModel

    dit = WanModel(dim=DIT["dim"], in_dim=36, ffn_dim=DIT["ffn_dim"], out_dim=16, text_dim=TEXT["dim"], freq_dim=256,
                   eps=1e-6, patch_size=(1, 2, 2), num_heads=DIT["num_heads"], num_layers=DIT["num_layers"],
                   has_image_input=True).eval().requires_grad_(False)
    if disk is not None:
        dit.load_state_dict(disk)
    return dit


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(11)
    disk = {k: v.clone() for k, v in tiny_dit().state_dict().items()}
    shapes = mol.adapted_shapes({k: tuple(v.shape) for k, v in disk.items()}, DIT["num_layers"])
    return disk, mol.map_checkpoint(random_lora_state(disk, np.random.default_rng(12)), shapes, "semfi.ckpt")


def source_for(weights) -> DiTSource:
    """A fresh DiT from the pristine weights with its Mixture-of-LoRA, as the engine builds it."""
    disk, loras = weights
    dit = tiny_dit(disk)
    mixture = mol.MixtureOfLoRA(dit, loras, lambda key: disk[key], "cpu")
    return DiTSource(dit, mixture, "model-digest", "lora-digest", 512, "cpu", torch.float32)


def inputs_for(new_frames: int, seed: int = 0, height: int = 4, width: int = 6):
    """DiT inputs for a gap of ``new_frames`` at a latent size of height x width."""
    generator = torch.Generator().manual_seed(seed)
    frames = latent_frame_count(model_frame_count(new_frames))
    latents = torch.randn(1, 16, frames, height, width, generator=generator)
    y = torch.randn(1, 20, frames, height, width, generator=generator)
    return (latents, torch.tensor([731.25]), torch.randn(1, 512, TEXT["dim"], generator=generator),
            torch.randn(1, 257, 1280, generator=generator), y)


def relative(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def eager_velocity(weights, expert, inputs):
    """diffsynth's forward on a DiT freshly merged with universal + ``expert``."""
    source = source_for(weights)
    denoiser = EagerDenoiser(source, "sdpa", None)
    denoiser.use_expert(expert)
    with torch.no_grad():
        return denoiser(*inputs)


def flags(wan, cache, *extra):
    return ["--model-dir", wan.model_dir, "--lora", wan.lora, "--device", "cpu", "--cache-dir", cache, *extra]


@pytest.fixture(scope="module")
def compiled(wan, tmp_path_factory):
    """``sfi compile --backend onnx`` on the tiny model folder: (its output, the cache folder); exported once here."""
    cache = tmp_path_factory.mktemp("engine_cache")
    return run_sfi("compile", "--engine", "semfi", "--backend", "onnx", "--json", *flags(wan, cache)), cache


@pytest.fixture(scope="module")
def graph(compiled):
    result, cache = compiled
    assert result.code == 0, result.stderr
    return Path(json.loads(result.stdout)["built"][0].split(": ", 1)[1]) / onnx_graph.GRAPH, store.Store(cache)


def test_our_forward_equals_diffsynths(weights):
    source = source_for(weights)
    source.mixture.activate(3)
    inputs = inputs_for(30)
    with torch.no_grad():
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        theirs = model_fn_wan_video(dit=source.dit, latents=inputs[0], timestep=inputs[1], context=inputs[2],
                                    clip_feature=inputs[3], y=inputs[4])
        ours = ExportableDiT(source.dit)(*inputs)
    assert ours.shape == theirs.shape == inputs[0].shape
    assert relative(ours, theirs) < 1e-5


@pytest.mark.parametrize("first,second", [(2, 5), (6, 1)])
def test_an_expert_switch_with_lora_inputs_equals_a_fresh_merge(weights, first, second):
    source = source_for(weights)
    source.mixture.merge_universal()
    module = ExportableDiT(source.dit)
    inputs = inputs_for(7, seed=1)
    with torch.no_grad():
        module(*inputs, expert=source.expert_tensors(first))
        switched = module(*inputs, expert=source.expert_tensors(second))
    assert relative(switched, eager_velocity(weights, second, inputs)) < 1e-5


def test_the_graph_has_no_complex_or_float64_and_dynamic_sizes(graph):
    import onnx

    path, _ = graph
    operators, elements = onnx_graph.graph_types(path)
    assert "FLOAT" in elements, elements
    assert not elements & {"DOUBLE", "COMPLEX64", "COMPLEX128"}
    assert "MatMul" in operators and "Softmax" in operators and "Cos" in operators  # attention, real RoPE tables
    assert (path.parent / "dit.onnx.data").stat().st_size > path.stat().st_size  # weights in the external file
    model = onnx.load(str(path), load_external_data=False)
    names = [i.name for i in model.graph.input]
    assert names == [*onnx_graph.INPUTS, *expert_input_names()] and model.opset_import[0].version == onnx_graph.OPSET
    latents = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in latents[:2]] == [1, 16] and all(d.dim_param for d in latents[2:])


# 7 new frames: a 9-frame run (3 latent frames, expert 2); 30 new frames (not 4k+1 with the ends): 33 frames, expert 4.
@pytest.mark.parametrize("new_frames,size", [(7, (4, 6)), (30, (2, 4))])
def test_onnxruntime_equals_eager_for_two_experts(tmp_path_factory, graph, new_frames, size):
    """The graph sfi compile exported from the tiny model folder against diffsynth's forward on the engine's DiT."""
    from engines.semfi_parts.backends.onnx_graph import OnnxDenoiser

    path, cache = graph
    source = tiny_engine(tmp_path_factory).runtime()[0].denoiser.source
    expert = expert_index(model_frame_count(new_frames))
    inputs = inputs_for(new_frames, seed=new_frames, height=size[0], width=size[1])
    denoiser = OnnxDenoiser(path, source, cache)
    denoiser.use_expert(expert)
    eager = EagerDenoiser(source, "sdpa", cache)
    eager.use_expert(expert)
    with torch.no_grad():
        assert relative(denoiser(*inputs), eager(*inputs)) < 1e-4


def test_compile_equals_eager_without_recompiling_on_an_expert_switch(weights, capsys):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    denoiser = CompiledDenoiser(source_for(weights), "sdpa", None)
    inputs = inputs_for(7, seed=4)
    with torch.no_grad():
        denoiser.use_expert(2)
        first = denoiser(*inputs)
        graphs = counters["stats"]["unique_graphs"]
        denoiser.use_expert(5)  # weights rewritten in place: same tensors, new values
        second = denoiser(*inputs)
    assert graphs == 1  # one compiled graph serves both blocks
    assert counters["stats"]["unique_graphs"] == graphs  # and the expert switch compiled nothing
    assert relative(first, eager_velocity(weights, 2, inputs)) < 1e-5
    assert relative(second, eager_velocity(weights, 5, inputs)) < 1e-5
    log = capsys.readouterr().err
    assert log.count("torch.compile of the DiT blocks for 3 latent frames at 48x32") == 1 and "compiled in" in log


def test_a_stopped_cache_write_leaves_nothing(tmp_path):
    cache = store.Store(tmp_path / "cache")
    key = store.onnx_key("m", "l", "float32")

    def fail(folder):
        (folder / "dit.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.write(key, fail)
    assert cache.find(key) is None and list((tmp_path / "cache").iterdir()) == []
    folder = cache.write(key, lambda f: (f / "dit.onnx").write_bytes(b"whole"))
    assert cache.find(key) == folder and (folder / "dit.onnx").read_bytes() == b"whole"
    assert cache.find(store.onnx_key("m", "other lora", "float32")) is None


def test_tensorrt_profiles_and_engine_key():
    working = [(848, 480), (832, 480), (848, 480)]
    profiles = tensorrt.profiles_for(working, [model_frame_count(n) for n in (30, 7, 79)])
    assert [(p.width, p.height, p.frames) for p in profiles] == [(848, 480, (3, 21, 21)), (832, 480, (3, 21, 21))]
    assert profiles[0].holds((1, 16, 9, 60, 106)) and not profiles[0].holds((1, 16, 22, 60, 106))
    assert not profiles[0].holds((1, 16, 9, 60, 104)) and profiles[1].holds((1, 16, 9, 60, 104))
    assert profiles[0].latent_shape(20, 0) == (1, 20, 3, 60, 106)
    identity = {"tensorrt": "11.4.0", "gpu": "NVIDIA H200"}
    graph_key = store.onnx_key("model", "lora", "bfloat16")
    key = tensorrt.engine_key(graph_key, profiles, identity)
    variants = [tensorrt.engine_key(store.onnx_key("model2", "lora", "bfloat16"), profiles, identity),
                tensorrt.engine_key(store.onnx_key("model", "lora2", "bfloat16"), profiles, identity),
                tensorrt.engine_key(graph_key, profiles[:1], identity),
                tensorrt.engine_key(graph_key, profiles, {**identity, "tensorrt": "10.13.0"}),
                tensorrt.engine_key(graph_key, profiles, {**identity, "gpu": "NVIDIA H100"}),
                {**key, "sfi": "9.9"}]
    folders = {store.Store("/cache").folder(k) for k in [key, *variants]}
    assert len(folders) == 7 and all(f.name.startswith("tensorrt-") for f in folders)
    assert tensorrt.timing_cache_path("/cache", identity).name == "timing-11.4.0-NVIDIA-H200.cache"


def test_a_pass_finds_the_engine_whose_profile_holds_its_shape(tmp_path):
    cache = store.Store(tmp_path)
    identity = {"tensorrt": "11.4.0", "gpu": "NVIDIA H200"}
    graph_key = store.onnx_key("model", "lora", "bfloat16")
    short = tensorrt.profiles_for([(848, 480)], [9, 33])
    long = tensorrt.profiles_for([(832, 480), (848, 480)], [65, 81])
    made = {name: cache.write(tensorrt.engine_key(graph_key, profiles, identity), lambda f: None)
            for name, profiles in (("short", short), ("long", long))}
    cache.write(tensorrt.engine_key(store.onnx_key("model", "other lora", "bfloat16"), short, identity), lambda f: None)
    assert tensorrt.find_engine(cache, graph_key, identity, (1, 16, 9, 60, 106)) == (made["short"], 0)
    assert tensorrt.find_engine(cache, graph_key, identity, (1, 16, 21, 60, 106)) == (made["long"], 1)
    assert tensorrt.find_engine(cache, graph_key, identity, (1, 16, 17, 60, 104)) == (made["long"], 0)
    assert tensorrt.find_engine(cache, graph_key, identity, (1, 16, 12, 60, 104)) is None  # 45 frames: built for neither
    assert tensorrt.find_engine(cache, graph_key, {**identity, "gpu": "NVIDIA H100"}, (1, 16, 9, 60, 106)) is None
    assert tensorrt.find_engine(cache, store.onnx_key("model", "lora", "float32"), identity, (1, 16, 9, 60, 106)) is None


def test_backends_say_in_one_line_what_they_lack():
    assert backend_problem("eager", "sdpa", "cpu", "float32") is None
    assert backend_problem("onnx", "sdpa", "cpu", "float32") is None
    assert "--device cpu" in backend_problem("onnx", "sdpa", "cuda", "bfloat16")
    assert "float32" in backend_problem("onnx", "sdpa", "cpu", "bfloat16")
    assert "NVIDIA GPU" in backend_problem("tensorrt", "sdpa", "cpu", "float32")
    if not torch.cuda.is_available():
        lacking = backend_problem("tensorrt", "sdpa", "cuda", "bfloat16")
        assert "tensorrt" in lacking and ("install.sh gpu" in lacking or "CUDA GPU" in lacking)
    assert "CUDA kernel" in backend_problem("eager", "flash3", "cpu", "float32") or \
        "not installed" in backend_problem("eager", "flash3", "cpu", "float32")
    assert "sdpa" in backend_problem("onnx", "sage", "cpu", "float32")


# -- through the CLI, on the tiny model folder ---------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backend_pair")
    for name, image in zip(("a.png", "b.png"), gradient_pair(48, 32)):
        Image.fromarray(image).save(folder / name)
    return folder / "a.png", folder / "b.png"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_sfi_compile_writes_the_graph_that_interpolate_onnx_reuses_and_matches_eager(sfi, wan, images, tmp_path,
                                                                                      compiled, graph):
    built, cache = compiled
    assert graph[0].parent.parent == cache and "exporting the DiT to ONNX" in built.stderr
    frames = {}
    for backend in ("onnx", "eager"):
        out = tmp_path / backend
        run = sfi("interpolate", *images, "-n", 7, "-o", out, "--raw", "--engine", "semfi", "--steps", "2",
                  "--area", "1024", "--backend", backend, *flags(wan, cache))
        assert run.code == 0, run.stderr
        assert "exporting" not in run.stderr  # the onnx run took the graph sfi compile made
        frames[backend] = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    assert len(frames["onnx"]) == len(frames["eager"]) == 9
    worst = min(psnr(a, b) for a, b in zip(frames["onnx"], frames["eager"]))
    assert worst >= 45, worst
    doctor = sfi("doctor", *flags(wan, cache))
    assert f"engine cache: {cache}: 1 entries" in doctor.stdout and "ONNX graph, float32" in doctor.stdout
    assert "backend onnx: usable on cpu" in doctor.stdout and "backend tensorrt: not usable here" in doctor.stdout


def test_tensorrt_without_a_gpu_and_a_missing_kernel_fail_in_one_line(sfi, wan, images, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    cache = tmp_path / "cache"
    for command in (["compile", "--engine", "semfi", "--backend", "tensorrt", "--size", "640x360", "--frames", "7"],
                    ["interpolate", *images, "-n", 7, "-o", tmp_path / "out", "--engine", "semfi", "--backend", "tensorrt"]):
        for device in ("cpu", "cuda"):
            result = sfi(*command, *flags(wan, cache)[:-4], "--device", device, "--cache-dir", cache)
            lines = result.stderr.strip().splitlines()
            assert result.code != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
            assert "tensorrt" in lines[0] or "GPU" in lines[0], lines[0]
    assert not cache.exists() and not (tmp_path / "out").exists()
    kernel = sfi("interpolate", *images, "-n", 7, "-o", tmp_path / "out", "--engine", "semfi", "--attention", "flash3",
                 *flags(wan, cache))
    assert kernel.code != 0 and len(kernel.stderr.strip().splitlines()) == 1 and "flash3" in kernel.stderr
