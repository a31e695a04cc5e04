"""``sfi interpolate --engine semfi``, ``--raw`` and ``sfi doctor`` end to end on the tiny Wan folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from helpers import count_video_frames
from tiny_wan import gradient_pair


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    first, last = gradient_pair(48, 32)
    Image.fromarray(first).save(folder / "a.png")
    Image.fromarray(last).save(folder / "b.png")
    return folder / "a.png", folder / "b.png"


def semfi_flags(wan, *extra):
    return ["--engine", "semfi", "--model-dir", wan.model_dir, "--lora", wan.lora, "--device", "cpu",
            "--steps", "1", "--area", "1024", *extra]


# 7 new frames fill a 9-frame run; 30 do not fill the 33-frame run, so they are retimed. Every expert's
# count is checked on the engine (test_semfi_engine) and the rule for 1..100 frames in test_semfi_rules.
@pytest.mark.parametrize("frames", [7, 30])
def test_exact_count_through_the_cli(sfi, wan, images, tmp_path, frames):
    out = tmp_path / "frames"
    result = sfi("interpolate", *images, "-n", frames, "-o", out, "--json", *semfi_flags(wan))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "semfi" and summary["frames_written"] == frames
    written = sorted(out.glob("frame_*.png"))
    assert len(written) == frames
    assert Image.open(written[0]).size == (48, 32)


def test_video_has_the_given_ends_around_the_new_frames(sfi, wan, images, tmp_path, ffmpeg_exe):
    out = tmp_path / "gap.mp4"
    result = sfi("interpolate", *images, "-n", 10, "-o", out, "-q", *semfi_flags(wan, "--prompt", "a fox jumps"))
    assert result.code == 0, result.stderr
    assert count_video_frames(out, ffmpeg_exe) == 12


def test_raw_writes_every_model_frame_at_the_working_size(sfi, wan, images, tmp_path):
    out = tmp_path / "raw"
    result = sfi("interpolate", *images, "-n", 12, "-o", out, "--raw", "--size", "32x48", "--json", *semfi_flags(wan))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["raw"] and summary["model_frames"] == 17 and summary["frames_written"] == 17
    written = sorted(out.glob("frame_*.png"))
    assert len(written) == 17 and Image.open(written[0]).size == (32, 48)


@pytest.mark.parametrize("args,message", [
    (["--raw", "--size", "50x32"], "multiples of 16"),
    (["--raw", "--include-ends"], "drop --include-ends"),
])
def test_raw_user_errors(sfi, wan, images, tmp_path, args, message):
    result = sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", *semfi_flags(wan, *args))
    assert result.code == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_raw_needs_semfi(sfi, images, tmp_path):
    result = sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", "--engine", "flow", "--raw")
    assert result.code == 1 and "--engine semfi" in result.stderr


def one_line_error(result, *fragments):
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sfi: error:") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_missing_model_folder(sfi, wan, images, tmp_path):
    flags = semfi_flags(wan)
    flags[flags.index("--model-dir") + 1] = tmp_path / "nowhere"
    one_line_error(sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", *flags), "does not exist", "sfi doctor")


def test_bad_lora(sfi, wan, images, tmp_path):
    bad = tmp_path / "semfi.ckpt"
    torch.save({"blocks.0.self_attn.lora_q.0.lora_A.weight": torch.zeros(16, 64)}, bad)
    flags = semfi_flags(wan)
    flags[flags.index("--lora") + 1] = bad
    one_line_error(sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", *flags),
                   "does not fit this DiT", "expected keys are missing")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu(sfi, wan, images, tmp_path):
    flags = semfi_flags(wan)
    flags[flags.index("--device") + 1] = "cuda"
    one_line_error(sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", *flags), "no CUDA GPU", "--device cpu")


def test_settings_from_sfi_toml(sfi, wan, images, tmp_path):
    config = tmp_path / "sfi.toml"
    config.write_text(f'engine = "semfi"\n[engines.semfi]\nmodel_dir = "{wan.model_dir}"\nlora = "{wan.lora}"\n'
                      f'device = "cpu"\nsteps = 1\narea = 1024\nmemory_mode = "auto"\n')
    out = tmp_path / "frames"
    result = sfi("--config", config, "interpolate", *images, "-n", 4, "-o", out, "-q")
    assert result.code == 0, result.stderr
    assert len(list(out.glob("frame_*.png"))) == 4
    config.write_text('[engines.semfi]\nmemory_mode = "disk"\n')
    one_line_error(sfi("--config", config, "interpolate", *images, "-n", 4, "-o", tmp_path / "y"), "memory_mode")


def test_auto_does_not_pick_semfi_without_cuda(sfi, wan, images, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    flags = semfi_flags(wan)
    flags[flags.index("--engine") + 1] = "auto"
    flags[flags.index("--device") + 1] = "cuda"
    result = sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "f", "--json", *flags)
    assert result.code == 0 and json.loads(result.stdout)["engine"] == "flow"


def test_auto_never_picks_semfi_on_the_cpu(sfi, wan, images, tmp_path):
    """Even with every file present and device = cpu, auto leaves a 14B model off the CPU."""
    flags = semfi_flags(wan)
    flags[flags.index("--engine") + 1] = "auto"
    result = sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "f", "--json", *flags)
    assert result.code == 0 and json.loads(result.stdout)["engine"] == "flow"


def test_doctor_reports_a_ready_setup(sfi, wan):
    result = sfi("doctor", "--model-dir", wan.model_dir, "--lora", wan.lora, "--device", "cpu")
    assert result.code == 0, result.stdout + result.stderr
    for fragment in ("7 shards + index", "models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google/umt5-xxl/",
                     "DiT dim 64, 2 blocks", "all 560 keys map", "ffmpeg", "SemFi is ready."):
        assert fragment in result.stdout, fragment


def test_doctor_says_what_to_do(sfi, wan, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for entry in wan.model_dir.iterdir():
        if entry.name != "Wan2.1_VAE.pth":
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    result = sfi("doctor", "--model-dir", folder, "--device", "cpu", "--json")
    assert result.code == 1
    checks = {c["item"]: c for c in json.loads(result.stdout)}
    assert checks["Wan2.1_VAE.pth"]["status"] == "fail" and "download Wan2.1_VAE.pth" in checks["Wan2.1_VAE.pth"]["fix"]
    assert checks["LoRA"]["status"] == "fail" and "engines.semfi.lora" in checks["LoRA"]["fix"]
    assert checks["torch"]["status"] == "ok"


@pytest.mark.parametrize("impostor", ["true", "echo"])
def test_doctor_tells_a_program_that_is_not_ffmpeg(sfi, wan, monkeypatch, impostor):
    found = shutil.which(impostor)
    if not found:
        pytest.skip(f"no {impostor} here")
    monkeypatch.setenv("SFI_FFMPEG", found)
    result = sfi("doctor", "--model-dir", wan.model_dir, "--lora", wan.lora, "--device", "cpu", "--json")
    assert result.code == 1
    checks = {c["item"]: c for c in json.loads(result.stdout)}
    assert checks["ffmpeg"]["status"] == "fail" and "is not ffmpeg" in checks["ffmpeg"]["detail"]


def test_help_and_availability_checks_stay_light():
    code = ("import sys\n"
            "from sfi_cli.commands import main\n"
            "try:\n    main(['interpolate', '--help'])\nexcept SystemExit:\n    pass\n"
            "from engines.semfi import SemFiEngine\n"
            "assert SemFiEngine.unavailable_reason({'model_dir': '/nowhere', 'lora': 'x'})\n"
            "assert 'torch' not in sys.modules and 'diffsynth' not in sys.modules, 'heavy import'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--model-dir" in result.stdout and "--raw" in result.stdout


def linked_folder(source, target, leave_out=()):
    """The tiny model folder again, every entry a link, without the entries named in ``leave_out``."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.name not in leave_out:
            (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return target


@pytest.mark.parametrize("leave_out,item", [("Wan2.1_VAE.pth", "Wan2.1_VAE.pth"), ("google", "google/umt5-xxl/"),
                                            ("diffusion_pytorch_model-00004-of-00007.safetensors", "DiT")])
def test_doctor_availability_and_auto_give_one_answer(sfi, wan, images, tmp_path, leave_out, item):
    """A broken folder: doctor's first failure is the reason semfi cannot run, the reason auto passes it
    over, and the one-line error of --engine semfi. (device cuda, so auto would consider SemFi at all.)"""
    from engines import auto_choice, load_engine
    from engines.base import Check
    from engines.errors import EngineUnavailable
    from engines.semfi import SemFiEngine

    folder = linked_folder(wan.model_dir, tmp_path / "model", {leave_out})
    settings = {"model_dir": str(folder), "lora": str(wan.lora), "device": "cuda"}
    result = sfi("doctor", "--model-dir", folder, "--lora", wan.lora, "--device", "cuda", "--json")
    assert result.code == 1
    first_failure = Check(**next(c for c in json.loads(result.stdout) if c["status"] == "fail"))
    assert first_failure.item == item
    reason = SemFiEngine.unavailable_reason(settings)
    assert reason.startswith(first_failure.sentence())
    assert auto_choice({"semfi": settings, "rife": {"device": "cpu"}})[1]["semfi"] == reason
    with pytest.raises(EngineUnavailable) as refused:
        load_engine("semfi", {"semfi": settings})
    assert reason in str(refused.value)
    flags = ["--engine", "semfi", "--model-dir", folder, "--lora", wan.lora, "--device", "cuda"]
    one_line_error(sfi("interpolate", *images, "-n", 3, "-o", tmp_path / "x", *flags), first_failure.sentence())
    assert not (tmp_path / "x").exists()
