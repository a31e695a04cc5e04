"""Pass 1 on a farm: a real Ray instance on this machine (2 CPUs, 2 logical GPU slots for placement), and the
same fault tests for the local worker processes: the same frames as a serial run, a worker killed mid-job,
a job that always fails, a re-run after it, a work folder the workers cannot see."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clips import make_clip
from test_passes import SFI, NumberJob, framemd5, gaps_in, hidden

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_address():
    """One Ray instance for the module; the CLI joins it in-process (already initialised) or by its address."""
    import ray

    path = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             runtime_env={"env_vars": {"PYTHONPATH": path}})  # the workers import this module's job functions
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def short(tmp_path_factory, ffmpeg_exe):
    """A clip with two cuts and its recipe (4-frame transitions)."""
    folder = tmp_path_factory.mktemp("farm")
    clip = make_clip(folder / "clip.mp4", ffmpeg_exe, frames=60, cuts=(20, 40))
    recipe = folder / "clip.toml"
    subprocess.run([*SFI, "detect", str(clip), "--recipe", str(recipe), "--frames", "4", "-q"], check=True)
    return {"clip": clip, "recipe": recipe}


def semfi_config(wan, folder: Path, lora: Path | None = None) -> list:
    """``--config`` of an sfi.toml for the tiny SemFi on the CPU (fill takes engine settings from the config)."""
    config = folder / "sfi.toml"
    config.write_text(f'[engines.semfi]\nmodel_dir = "{wan.model_dir}"\nlora = "{lora or wan.lora}"\ndevice = "cpu"\n'
                      f'steps = 1\narea = 1024\n')
    return ["--config", config]


EXECUTORS = {"local": ["--workers", "2"], "ray": ["--executor", "ray", "--workers", "2"]}
# A failing SemFi gap loads torch in each worker it is tried on: one Ray actor keeps the test short (the pool's
# retries are the same code for both executors; the local one runs two processes).
FAILING = {"local": ["--workers", "2"], "ray": ["--executor", "ray", "--workers", "1"]}


def run_fill(sfi, config, clip, out, *flags):
    result = sfi(*config, "fill", clip, "-o", out, "--frames", "4", "--work-dir", out.parent / f"{out.stem}-work",
                 "--json", *flags)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("engine, workers", [("flow", 2), ("semfi", 1)])
def test_ray_gives_the_frames_of_a_serial_run(tmp_path, sfi, short, wan, ray_address, ffmpeg_exe, engine, workers):
    """(The local worker processes: test_passes.test_two_worker_processes_give_the_same_file.)"""
    config = semfi_config(wan, tmp_path) if engine == "semfi" else []
    serial, _ = run_fill(sfi, config, short["clip"], tmp_path / "serial.mp4", "--engine", engine)
    farmed, log = run_fill(sfi, config, short["clip"], tmp_path / "farmed.mp4", "--engine", engine, "--executor", "ray",
                           "--workers", workers)
    assert framemd5(tmp_path / "farmed.mp4", ffmpeg_exe) == framemd5(tmp_path / "serial.mp4", ffmpeg_exe)
    records = farmed["gaps"]
    assert len(records) == 2 and [r["key"] for r in records] == [r["key"] for r in serial["gaps"]]
    assert all(not r["cached"] and r["pid"] != os.getpid() and r["host"] and r["device"] == "cpu" and r["seconds"] > 0
               for r in records)
    assert re.search(r"worker [12] \([^,]+, cpu, pid \d+\): gap 1/2 .* started \(0 done\)", log), log
    assert re.search(r"gap 2/2 .*: made in [\d.]+s on .* \(cpu\); [12]/2 done, ETA \d+s", log), log
    assert re.search(rf"ray: {workers} workers? on .* ready in [\d.]+s \(results in the shared work folder\)", log), log
    assert not hidden(tmp_path / "farmed-work")


@pytest.fixture(scope="module")
def long(tmp_path_factory, ffmpeg_exe):
    """Two gaps long enough to kill a worker in the middle of one, and their frames made serially."""
    folder = tmp_path_factory.mktemp("long")
    clip = make_clip(folder / "long.mp4", ffmpeg_exe, frames=120, cuts=(40, 80), rate="25", size=(320, 192))
    reference = folder / "reference.mp4"
    subprocess.run([*SFI, "fill", str(clip), "-o", str(reference), "--engine", "flow", "--frames", "40",
                    "--work-dir", str(folder / "work"), "-q"], check=True)
    return {"clip": clip, "reference": reference}


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_worker_killed_mid_job_is_restarted_and_every_gap_made_once(tmp_path, long, ray_address, ffmpeg_exe,
                                                                      executor):
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    command = [*SFI, "fill", str(long["clip"]), "-o", "out.mp4", "--engine", "flow", "--frames", "40", "--work-dir",
               "work", "--json", *EXECUTORS[executor], *(["--ray-address", ray_address] if executor == "ray" else [])]
    # Relative paths: the workers (Ray's run in another folder) get the work folder as this folder's.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    killed, log = None, []
    for line in process.stderr:
        log.append(line)
        started = re.search(r"pid (\d+)\): gap (\d+)/\d+ .* started", line)
        if started and killed is None:
            killed = int(started[1]), int(started[2])
            os.kill(killed[0], signal.SIGKILL)
    stdout = process.stdout.read()
    assert process.wait(timeout=120) == 0, "".join(log)
    assert killed is not None, "".join(log)
    records = json.loads(stdout)["gaps"]
    assert len(records) == 2 and len({r["key"] for r in records}) == 2 and not any(r["cached"] for r in records)
    retried = records[killed[1] - 1]
    assert retried["pid"] != killed[0], "the killed worker's job should have been made again by another process"
    assert len(gaps_in(work)) == 2 and not hidden(work)
    assert framemd5(out, ffmpeg_exe) == framemd5(long["reference"], ffmpeg_exe)


def failing_recipe(short, name: str) -> Path:
    """The short clip's recipe with its first transition a dissolve and its second made by SemFi (beside the
    first: its media paths are relative)."""
    text = short["recipe"].read_text()
    first, second = (text.index("[shot.transition]", start) for start in (0, text.index("[shot.transition]") + 1))
    end = len("[shot.transition]\n")
    text = (text[:first + end] + 'engine = "crossfade"\n' + text[first + end:second + end] + 'engine = "semfi"\n'
            + text[second + end:])
    recipe = short["recipe"].with_name(name)
    recipe.write_text(text)
    return recipe


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_transition_that_always_fails_is_one_line_and_a_rerun_makes_only_it(tmp_path, sfi, short, wan, ray_address,
                                                                               executor):
    """A LoRA that passes the quick check but does not fit the DiT fails in the worker, on every try."""
    import shutil

    import torch

    lora = tmp_path / "semfi.ckpt"
    torch.save({"blocks.0.self_attn.lora_q.0.lora_A.weight": torch.zeros(16, 64)}, lora)
    recipe, out, work = failing_recipe(short, f"mixed-{executor}.toml"), tmp_path / "out.mp4", tmp_path / "work"
    flags = [*semfi_config(wan, tmp_path, lora), "render", recipe, "-o", out, "--work-dir", work, "--attempts", "2"]
    failed = sfi(*flags, *FAILING[executor])
    lines = failed.stderr.strip().splitlines()
    assert failed.code == 1 and lines[-1].startswith("sfi: error: gap 2/2 (") and "Traceback" not in failed.stderr
    assert re.search(r"failed 2 times \(last on [^)]+\): .*does not fit this DiT.*; nothing was published", lines[-1])
    assert sum("sfi: error" in line for line in lines) == 1
    assert sum("semfi) failed (" in line and "trying again" in line for line in lines) == 1, failed.stderr
    assert not out.exists() and not out.with_name("out.sfi.json").exists()
    assert len(gaps_in(work)) == 1 and json.loads(gaps_in(work)[0].read_text())["engine"]["engine"] == "crossfade"
    assert not hidden(tmp_path)
    shutil.copyfile(wan.lora, lora)  # the right checkpoint in its place
    again = sfi(*flags, "--json")  # in this process: what is made again does not depend on where
    assert again.code == 0, again.stderr
    assert [r["cached"] for r in json.loads(again.stdout)["gaps"]] == [True, False] and len(gaps_in(work)) == 2


def test_a_work_folder_the_workers_cannot_see_is_one_line(tmp_path, sfi, short, ray_address, ffmpeg_exe):
    """The driver runs in its own mount namespace with a private folder over the work folder's path, as on a
    node whose work folder is not the shared one; results sent back work there."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a private mount namespace (unshare -m, root) to hide the work folder from the workers")
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    work.mkdir()
    hide = f'mount -t tmpfs sfi-test "{work}" && exec "$@"'

    def run(*flags):
        return subprocess.run(["unshare", "-m", "sh", "-c", hide, "sh", *SFI, "fill", str(short["clip"]), "-o",
                               str(out), "--engine", "crossfade", "--frames", "4", "--work-dir", str(work),
                               "--executor", "ray", "--ray-address", ray_address, *flags],
                              capture_output=True, text=True)

    blind = run()
    assert blind.returncode == 1 and not out.exists(), blind.stderr
    assert blind.stderr.strip().splitlines()[-1].startswith(f"sfi: error: the work folder '{work}' is not shared "
                                                            f"with the farm: ")
    assert "storage = \"send\"" in blind.stderr and sum("sfi: error" in line for line in blind.stderr.splitlines()) == 1
    sent = run("--farm-storage", "send", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["gaps_cached"] == 0 and list(work.iterdir()) == []  # stored in the private folder
    run_fill(sfi, [], short["clip"], tmp_path / "serial.mp4", "--engine", "crossfade")
    assert framemd5(out, ffmpeg_exe) == framemd5(tmp_path / "serial.mp4", ffmpeg_exe)


WITHOUT_RAY = """
import sys

class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")

sys.meta_path.insert(0, NoRay())
from sfi_cli.commands import main
main()
"""


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path, short):
    out = tmp_path / "out.mp4"
    result = subprocess.run([sys.executable, "-c", WITHOUT_RAY, "fill", str(short["clip"]), "-o", str(out),
                             "--engine", "crossfade", "--frames", "4", "--work-dir", str(tmp_path / "work"),
                             "--executor", "ray"], capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "needs Ray" in result.stderr and "bash scripts/install.sh farm" in result.stderr and not out.exists()


def where_it_ran(job: NumberJob) -> tuple[str, str | None]:
    """A job function: the GPU Ray made visible to the worker and the device its engines were given."""
    from sfi_cli.render import transitions

    return os.environ.get("CUDA_VISIBLE_DEVICES", ""), transitions._placement["device"]


def test_workers_of_a_gpu_engine_each_get_a_gpu_of_their_own(ray_address):
    from sfi_cli.progress import Reporter
    from sfi_cli.render import RenderOptions
    from sfi_cli.render.farm import RayExecutor

    executor = RayExecutor(RenderOptions(ffmpeg="", engine_settings={}, reporter=Reporter(quiet=True)),
                           gpu_engines=("semfi",))
    results = list(executor.map(where_it_ran, [NumberJob(f"job {n}", n) for n in range(4)]))
    assert {visible for _, (visible, _) in results} == {"0", "1"}  # the two logical GPU slots, one per worker
    assert {device for _, (_, device) in results} == {"cuda:0"}  # each sees only its own GPU
    assert sorted(device for _, device, _ in executor.where) == ["cuda:0", "cuda:1"]


@pytest.mark.parametrize("flags, message", [
    (["--devices", "gpu0"], "'gpu0' is not a device"),
    (["--devices", "cuda:0,cuda:1", "--workers", "3"], "--workers 3 and --devices (2 devices) disagree"),
    (["--devices", "cuda:0", "--executor", "ray"], "--devices is for the local executor"),
    (["--executor", "dask"], "'dask' is not one of 'local', 'ray'"),
])
def test_bad_executor_flags_are_one_line(tmp_path, sfi, short, flags, message):
    result = sfi("fill", short["clip"], "-o", tmp_path / "out.mp4", "--engine", "crossfade", *flags)
    assert result.code != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
