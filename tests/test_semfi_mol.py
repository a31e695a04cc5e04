"""Mixture-of-LoRA: merged weights equal the LoRA formula, experts switch without drift,
bad checkpoints are refused with a summary; plus the GPU memory-mode choice."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from engines.semfi_parts import memory, mol
from engines.errors import EngineError
from tiny_wan import ADAPTED, DIT, TEXT, lora_key, random_lora_state


@pytest.fixture(scope="module")
def dit_and_state():
    from diffsynth.models.wan_video_dit import WanModel

    torch.manual_seed(3)
    dit = WanModel(dim=DIT["dim"], in_dim=36, ffn_dim=DIT["ffn_dim"], out_dim=16, text_dim=TEXT["dim"], freq_dim=256,
                   eps=1e-6, patch_size=(1, 2, 2), num_heads=DIT["num_heads"], num_layers=DIT["num_layers"],
                   has_image_input=True).eval()
    disk = {k: v.clone() for k, v in dit.state_dict().items()}  # what the shards hold
    lora = random_lora_state(disk, np.random.default_rng(5))
    return dit, disk, lora


def shapes_of(disk):
    return mol.adapted_shapes({k: tuple(v.shape) for k, v in disk.items()}, DIT["num_layers"])


def fresh_mixture(dit_and_state, dtype=torch.float32):
    dit, disk, lora = dit_and_state
    model = type(dit)(dim=DIT["dim"], in_dim=36, ffn_dim=DIT["ffn_dim"], out_dim=16, text_dim=TEXT["dim"], freq_dim=256,
                      eps=1e-6, patch_size=(1, 2, 2), num_heads=DIT["num_heads"], num_layers=DIT["num_layers"],
                      has_image_input=True)
    model.load_state_dict(disk)
    model = model.to(dtype)
    loras = mol.map_checkpoint(lora, shapes_of(disk), "semfi.ckpt")
    return model, mol.MixtureOfLoRA(model, loras, lambda key: disk[key], "cpu")


def lora_branch(lora, block, layer, index):
    """LoRA_j as two nn.Linear layers with bias, built from the checkpoint tensors: x -> B(A(x))."""
    a_weight = lora[lora_key(block, layer, index, "A", "weight")].double()
    b_weight = lora[lora_key(block, layer, index, "B", "weight")].double()
    down = torch.nn.Linear(a_weight.shape[1], a_weight.shape[0]).double()
    up = torch.nn.Linear(b_weight.shape[1], b_weight.shape[0]).double()
    with torch.no_grad():
        down.weight.copy_(a_weight)
        down.bias.copy_(lora[lora_key(block, layer, index, "A", "bias")])
        up.weight.copy_(b_weight)
        up.bias.copy_(lora[lora_key(block, layer, index, "B", "bias")])
    return lambda x: up(down(x))


@pytest.mark.parametrize("expert", [1, 4, 6])
def test_merged_linear_equals_base_plus_universal_plus_expert(dit_and_state, expert):
    _, disk, lora = dit_and_state
    model, mixture = fresh_mixture(dit_and_state)
    mixture.activate(expert)
    x = torch.randn(7, 3, DIT["dim"], dtype=torch.float64)
    for block in range(DIT["num_layers"]):
        for layer in ADAPTED:
            linear = model.get_submodule(f"blocks.{block}.{layer}")
            weight, bias = disk[f"blocks.{block}.{layer}.weight"].double(), disk[f"blocks.{block}.{layer}.bias"].double()
            inputs = torch.randn(5, weight.shape[1], dtype=torch.float64) if weight.shape[1] != DIT["dim"] else x
            expected = (inputs @ weight.T + bias + lora_branch(lora, block, layer, 0)(inputs)
                        + lora_branch(lora, block, layer, expert)(inputs))
            with torch.no_grad():
                got = linear(inputs.float()).double()
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), (block, layer)
            assert not torch.allclose(got, inputs @ weight.T + bias, atol=1e-3)  # the LoRA did change it


def test_unadapted_layers_stay_as_loaded(dit_and_state):
    _, disk, _ = dit_and_state
    model, mixture = fresh_mixture(dit_and_state)
    mixture.activate(2)
    state = model.state_dict()
    for key in ("blocks.0.cross_attn.k_img.weight", "blocks.1.cross_attn.v_img.bias", "head.head.weight", "img_emb.proj.1.weight"):
        assert torch.equal(state[key], disk[key])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_switching_experts_does_not_drift(dit_and_state, dtype):
    model, mixture = fresh_mixture(dit_and_state, dtype)
    mixture.activate(3)
    after_first = {k: v.clone() for k, v in model.state_dict().items()}
    for expert in (1, 6, 2, 5, 1, 4):
        assert mixture.activate(expert)
    mixture.activate(3)
    for key, value in model.state_dict().items():
        assert torch.equal(value, after_first[key]), key
    assert not mixture.activate(3)  # already active: nothing to do
    fresh_model, fresh = fresh_mixture(dit_and_state, dtype)
    fresh.activate(5)
    mixture.activate(5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh_model.state_dict()[key]), key


def save(tmp_path, state, name="semfi.ckpt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def load_and_map(path, disk):
    return mol.map_checkpoint(mol.read_checkpoint(path), shapes_of(disk), path)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module", "prefix", "safetensors"])
def test_checkpoint_forms_that_load(dit_and_state, tmp_path, wrap):
    _, disk, lora = dit_and_state
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "semfi.safetensors"
        save_file({k: v.contiguous() for k, v in lora.items()}, str(path))
    elif wrap == "prefix":
        path = save(tmp_path, {"module." + k: v for k, v in lora.items()})
    elif wrap == "plain":
        path = save(tmp_path, lora)
    else:
        path = save(tmp_path, {wrap: lora, "epoch": 3})
    loras = load_and_map(path, disk)
    assert len(loras) == DIT["num_layers"] * len(ADAPTED)
    assert all(len(v) == mol.LORA_COUNT for v in loras.values())


def refusal(path, disk) -> str:
    with pytest.raises(EngineError) as error:
        load_and_map(path, disk)
    message = str(error.value)
    assert "\n" not in message and "does not fit this DiT" in message and "expected blocks.{i}" in message
    return message


def test_missing_expert_is_refused_with_a_summary(dit_and_state, tmp_path):
    _, disk, lora = dit_and_state
    broken = {k: v for k, v in lora.items() if ".6.lora_" not in k}
    message = refusal(save(tmp_path, broken), disk)
    total_missing = DIT["num_layers"] * len(ADAPTED) * 4
    assert f"{len(broken)} of {len(broken)} keys map" in message
    assert f"{total_missing} expected keys are missing" in message and ".6.lora_A.weight" in message


def test_keys_that_do_not_map_are_listed(dit_and_state, tmp_path):
    _, disk, lora = dit_and_state
    broken = dict(lora)
    broken["blocks.0.cross_attn.lora_k_img.0.lora_A.weight"] = torch.zeros(16, DIT["dim"])
    broken[lora_key(DIT["num_layers"], "ffn.0", 0, "A", "weight")] = torch.zeros(16, DIT["dim"])
    broken["blocks.0.self_attn.lora_q.7.lora_A.weight"] = torch.zeros(16, DIT["dim"])
    message = refusal(save(tmp_path, broken), disk)
    assert f"{len(lora)} of {len(broken)} keys map" in message and "3 do not" in message
    assert "not a SemFi LoRA key" in message and f"the DiT has {DIT['num_layers']} blocks" in message
    assert "missing" not in message


def test_wrong_shapes_are_refused(dit_and_state, tmp_path):
    _, disk, lora = dit_and_state
    broken = dict(lora)
    key = lora_key(1, "ffn.2", 3, "A", "weight")
    broken[key] = torch.zeros(16, DIT["dim"])  # ffn.2 takes ffn_dim inputs
    message = refusal(save(tmp_path, broken), disk)
    assert key in message
    assert f"expected (16, {DIT['ffn_dim']})" in message


def test_unreadable_checkpoints(tmp_path, dit_and_state):
    _, disk, _ = dit_and_state
    with pytest.raises(EngineError, match="does not exist"):
        mol.read_checkpoint(tmp_path / "nope.ckpt")
    evil = tmp_path / "pickled.ckpt"
    evil.write_bytes(pickle.dumps({"blocks.0": pickle.PickleBuffer}, protocol=2))  # a class: refused by weights_only
    with pytest.raises(EngineError, match="cannot read LoRA checkpoint"):
        mol.read_checkpoint(evil)
    with pytest.raises(EngineError, match="not a dict of tensors"):
        mol.read_checkpoint(save(tmp_path, [torch.zeros(2)], "list.ckpt"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(EngineError, match="cannot read LoRA checkpoint"):
        mol.read_checkpoint(garbage)


# Parameter counts of the published Wan2.1-I2V-14B files (DiT, umT5-XXL encoder, CLIP ViT-H, VAE).
WAN_14B = {"dit": 16_394_878_784, "text_encoder": 5_680_910_336, "image_encoder": 632_076_800, "vae": 126_892_531}
GIB = 1024**3


@pytest.mark.parametrize("free_gib,area,expected", [
    (79, "480p", "full"), (60, "480p", "full"), (50, "480p", "offload"), (41, "480p", "offload"),
    (40, "480p", "stream"), (23, "480p", "stream"), (79, "720p", "full"), (60, "720p", "offload"),
    (48, "720p", "stream"),
])
def test_memory_mode_follows_free_gpu_memory(free_gib, area, expected):
    from engines.semfi_parts.rules import area_pixels

    assert memory.choose_memory_mode(free_gib * GIB, WAN_14B, 2, area_pixels(area)) == expected


def test_memory_needs_are_worked_out_from_the_weights():
    pixels = 832 * 480
    full = memory.gpu_bytes_needed("full", WAN_14B, 2, pixels)
    offload = memory.gpu_bytes_needed("offload", WAN_14B, 2, pixels)
    stream = memory.gpu_bytes_needed("stream", WAN_14B, 2, pixels)
    assert full - offload == 2 * (sum(WAN_14B.values()) - WAN_14B["dit"])
    assert offload - stream == 2 * WAN_14B["dit"] - memory.STREAM_RESIDENT
    assert memory.gpu_bytes_needed("full", WAN_14B, 4, pixels) > full  # float32 weights are twice as big


def test_memory_mode_setting_is_respected_and_checked():
    assert memory.resolve_memory_mode("auto", "cpu", None, WAN_14B, 4, 1000) == "full"
    assert memory.resolve_memory_mode("stream", "cuda", 80 * GIB, WAN_14B, 2, 1000) == "stream"
    assert memory.resolve_memory_mode("auto", "cuda:0", 10 * GIB, WAN_14B, 2, 1000) == "stream"
    with pytest.raises(EngineError, match="on device 'cpu'"):
        memory.resolve_memory_mode("offload", "cpu", None, WAN_14B, 4, 1000)
    with pytest.raises(EngineError, match="memory mode must be"):
        memory.resolve_memory_mode("disk", "cuda", 1, WAN_14B, 2, 1000)
    assert memory.vram_config("full", "cuda", torch.bfloat16) is None
    assert memory.vram_config("offload", "cuda", torch.bfloat16)["onload_device"] == "cuda"
    assert memory.vram_config("stream", "cuda", torch.bfloat16)["onload_device"] == "cpu"
