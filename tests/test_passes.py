"""The two passes of a render: transitions made as independent jobs (serially or by worker processes),
then a splice that reads them from the work folder and needs no engine; and the work folder's keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from clips import make_clip

SFI = [sys.executable, "-m", "sfi_cli"]

# Pass 2 alone, in a process where importing anything of ``engines`` fails: the plan is made first (naming
# engines needs their registry), then every engine module is dropped and blocked before the splice.
SPLICE_WITHOUT_ENGINES = """
import sys
from pathlib import Path
from sfi_cli.config import load_config
from sfi_cli.media.ffmpeg import find_ffmpeg, parse_rate
from sfi_cli.progress import Reporter
from sfi_cli.render import RenderOptions, render_plan
from sfi_cli.timeline.layout import make_plan
from sfi_cli.timeline.recipe import load_recipe

recipe, out, work = map(Path, sys.argv[1:4])
config = load_config()
plan = make_plan(load_recipe(recipe, out), engine="crossfade", engine_settings=config.engine_settings(),
                 default_fps=parse_rate(config["output.fps"]), crf=config["output.crf"], preset=config["output.preset"])
for name in [m for m in sys.modules if m == "engines" or m.startswith("engines.")]:
    del sys.modules[name]

class NoEngines:
    def find_spec(self, name, path=None, target=None):
        if name == "engines" or name.startswith("engines."):
            raise ImportError("pass 2 imported " + name)

sys.meta_path.insert(0, NoEngines())
render_plan(plan, RenderOptions(ffmpeg=find_ffmpeg(), engine_settings=config.engine_settings(),
                                reporter=Reporter(quiet=True), work_dir=work, passes=("splice",)))
print(sorted(m for m in sys.modules if m == "engines" or m.startswith("engines.")))
"""


def framemd5(path: Path, ffmpeg: str) -> list[str]:
    """Per-frame checksums of the video and audio streams (timestamps included), without the header."""
    text = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v", "-map", "0:a", "-f", "framemd5", "-"],
                          capture_output=True, text=True, check=True).stdout
    return [line for line in text.splitlines() if not line.startswith("#")]


def gaps_in(work: Path) -> list[Path]:
    """The published gaps (pathlib's glob also matches a hidden folder still being staged: left out)."""
    return sorted(path for path in (work / "gaps").glob("*/gap.json") if not path.parent.name.startswith("."))


def hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


@pytest.fixture(scope="module")
def timeline(tmp_path_factory):
    """A clip with sound and two cuts, its recipe (4-frame transitions) and a one-shot render of it."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    folder = tmp_path_factory.mktemp("passes")
    clip = make_clip(folder / "clip.mp4", ffmpeg, frames=60, cuts=(20, 40))
    recipe = folder / "clip.toml"
    subprocess.run([*SFI, "detect", str(clip), "--recipe", str(recipe), "--frames", "4", "-q"], check=True)
    whole = folder / "whole.mp4"
    subprocess.run([*SFI, "render", str(recipe), "-o", str(whole), "--engine", "crossfade", "--work-dir",
                    str(folder / "whole-work"), "-q"], check=True)
    return {"ffmpeg": ffmpeg, "recipe": recipe, "whole": whole, "gaps": 2}


def test_transitions_alone_then_splice_alone_without_engines_gives_the_same_file(tmp_path, timeline):
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    first = subprocess.run([*SFI, "render", str(timeline["recipe"]), "-o", str(out), "--engine", "crossfade",
                            "--work-dir", str(work), "--only", "transitions", "--json"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["passes"] == ["transitions"] and summary["gaps_cached"] == 0
    assert len(gaps_in(work)) == timeline["gaps"] and not out.exists() and not hidden(work)
    second = subprocess.run([sys.executable, "-c", SPLICE_WITHOUT_ENGINES, str(timeline["recipe"]), str(out), str(work)],
                            capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "[]"
    assert framemd5(out, timeline["ffmpeg"]) == framemd5(timeline["whole"], timeline["ffmpeg"])


def test_two_worker_processes_give_the_same_file(tmp_path, timeline):
    out = tmp_path / "out.mp4"
    process = subprocess.Popen([*SFI, "render", str(timeline["recipe"]), "-o", str(out), "--engine", "crossfade",
                                "--work-dir", str(tmp_path / "work"), "--workers", "2", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    records = json.loads(stdout)["gaps"]
    assert len(records) == timeline["gaps"] and all(not r["cached"] and r["pid"] != process.pid for r in records)
    assert framemd5(out, timeline["ffmpeg"]) == framemd5(timeline["whole"], timeline["ffmpeg"])


def test_splice_alone_with_a_transition_missing_is_one_line(tmp_path, timeline, sfi):
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    assert sfi("render", timeline["recipe"], "-o", out, "--engine", "crossfade", "--work-dir", work,
               "--only", "transitions", "-q").code == 0
    removed = gaps_in(work)[0].parent
    for path in removed.iterdir():
        path.unlink()
    removed.rmdir()
    result = sfi("render", timeline["recipe"], "-o", out, "--engine", "crossfade", "--work-dir", work, "--only", "splice")
    assert result.code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("sfi: error: 1 of 2 transitions are not in the work folder") \
        and "run the transitions first" in result.stderr
    assert not out.exists() and not hidden(tmp_path)


def test_transitions_alone_leave_an_existing_output_alone(tmp_path, timeline, sfi):
    """Pass 1 alone writes only into the work folder: no output check, no lock, so farm nodes run side by side."""
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    out.write_bytes(b"an earlier result")
    assert sfi("render", timeline["recipe"], "-o", out, "--engine", "crossfade", "--work-dir", work,
               "--only", "transitions", "-q").code == 0
    assert out.read_bytes() == b"an earlier result" and len(gaps_in(work)) == timeline["gaps"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "work"]


def test_fill_transitions_alone_take_no_output_lock(tmp_path, cut_clip, sfi):
    """Farm nodes run ``fill --only transitions`` side by side: a run holding the output's lock stops none of them."""
    import socket

    from sfi_cli.media.publish import lock_path

    out, work = tmp_path / "out.mp4", tmp_path / "work"
    holder = subprocess.Popen(["sleep", "60"])  # another run of this machine, busy writing out.mp4
    try:
        lock_path(out).write_text(f"{socket.gethostname()} {holder.pid}\n")
        result = sfi("fill", cut_clip, "-o", out, "--engine", "crossfade", "--frames", "4", "--work-dir", work,
                     "--only", "transitions", "-q")
        assert result.code == 0, result.stderr
        assert len(gaps_in(work)) == 2 and not out.exists()
        refused = sfi("fill", cut_clip, "-o", out, "--engine", "crossfade", "--frames", "4", "--work-dir", work, "-q")
        assert refused.code == 1 and str(holder.pid) in refused.stderr  # a run that splices does wait its turn
    finally:
        holder.kill()
        holder.wait()


def test_a_signal_while_workers_make_transitions_leaves_finished_gaps_only(tmp_path, ffmpeg_exe):
    clip = make_clip(tmp_path / "long.mp4", ffmpeg_exe, frames=200, cuts=(40, 80, 120, 160), rate="25",
                     size=(480, 320), audio=False)
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    command = [*SFI, "fill", str(clip), "-o", str(out), "--engine", "flow", "--frames", "40", "--work-dir", str(work),
               "--workers", "2", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not gaps_in(work) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and stderr == "sfi: interrupted\n", stderr
    finished = gaps_in(work)
    assert 1 <= len(finished) < 4, "the run should have been stopped part-way through its gaps"
    assert all((gap.parent / "frames.mkv").stat().st_size > 0 for gap in finished)
    assert not hidden(work), "a worker left a half-made gap"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "work"]
    again = subprocess.run([*command[:-1], "--json"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["gaps_cached"] == len(finished)


def test_workers_below_one_is_one_line_before_any_work(tmp_path, timeline, sfi):
    result = sfi("render", timeline["recipe"], "-o", tmp_path / "out.mp4", "--work-dir", tmp_path / "work", "--workers", "0")
    assert result.code == 1 and result.stderr.startswith("sfi: error: --workers (config 'render.workers') must be")
    assert len(result.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_two_transitions_alike_are_made_once(tmp_path, image_pair, sfi):
    """A-B-A-B: the first and last transitions (A to B) have one key, so one job makes it for both."""
    shots = "".join(f'[[shot]]\nimage = "{name}"\nduration = 2\n' + ("[shot.transition]\nframes = 3\n\n" if n < 3 else "")
                    for n, name in enumerate(["a.png", "b.png", "a.png", "b.png"]))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[output]\npath = "out.mp4"\n\n' + shots)
    result = sfi("render", recipe, "--engine", "crossfade", "--work-dir", tmp_path / "work", "--json")
    assert result.code == 0, result.stderr
    records = json.loads(result.stdout)["gaps"]
    assert len(records) == 3 and records[0]["key"] == records[2]["key"] != records[1]["key"]
    assert [r["cached"] for r in records] == [False, False, True] and len(gaps_in(tmp_path / "work")) == 2


def test_interpolate_runs_its_one_gap_through_a_private_work_folder_it_removes(tmp_path, image_pair, sfi):
    for output in ("out.mp4", "frames/"):
        result = sfi("interpolate", *image_pair, "-n", "3", "-o", tmp_path / output, "--engine", "crossfade", "--json")
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["frames_written"] == (5 if output == "out.mp4" else 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", "b.png", "out.mp4", "frames"])


# --- keys -----------------------------------------------------------------------------------------------------------

BOUNDARY = {"source": "ab" * 32, "kind": "video", "frame": 19, "size": [64, 36], "fit": "cover", "rate": "25/1",
            "pix_fmt": "yuv420p", "rgb_pix_fmt": "rgb24", "matrix": "bt709", "range": "tv", "sar": "1/1",
            "pad": [0, 0], "keep_rotation": False, "source_colour": ["bt709", "tv"], "primary_colour": ["bt709", "tv"]}
PARAMS = {"count": 4, "prompt": "a door opens", "negative_prompt": "", "seed": 0}
SETTINGS = {"flow_width": 480, "min_confidence": 0.35}


def key(**changes):
    from sfi_cli.render.workdir import gap_key

    boundaries = [{**BOUNDARY, **changes.get("first", {})}, {**BOUNDARY, "frame": 20, **changes.get("last", {})}]
    return gap_key(changes.get("engine", "flow"), {**SETTINGS, **changes.get("settings", {})},
                   {**PARAMS, **changes.get("params", {})}, boundaries)


def test_key_is_stable_for_the_same_ingredients():
    assert key() == key() and len(key()) == 32


@pytest.mark.parametrize("change", [
    {"engine": "crossfade"}, {"settings": {"flow_width": 240}}, {"settings": {"min_confidence": 0.5}},
    {"settings": {"new_setting": 1}},
    *({"params": {name: value}} for name, value in (("count", 5), ("prompt", "a door closes"),
                                                     ("negative_prompt", "blur"), ("seed", 1))),
    *({side: {name: value}} for side in ("first", "last") for name, value in (
        ("source", "cd" * 32), ("frame", 7), ("size", [66, 36]), ("fit", "contain"), ("rate", "24/1"),
        ("pix_fmt", "yuv422p10le"), ("rgb_pix_fmt", "rgb48le"), ("matrix", "bt601"), ("range", "pc"),
        ("sar", "4/3"), ("pad", [1, 0]), ("keep_rotation", True), ("source_colour", ["bt601", "tv"]),
        ("primary_colour", ["bt601", "tv"]), ("kind", "image"))),
])
def test_key_changes_with_each_ingredient(change):
    assert key(**change) != key()


def test_key_changes_with_the_sfi_version(monkeypatch):
    import sfi_cli.render.workdir as workdir

    before = key()
    monkeypatch.setattr(workdir, "__version__", workdir.__version__ + ".1")
    assert key() != before


def test_source_fingerprint_follows_the_content(tmp_path):
    from sfi_cli.render.workdir import FINGERPRINT_CHUNK, source_fingerprint

    path = tmp_path / "clip.bin"
    data = bytearray(os.urandom(4 * FINGERPRINT_CHUNK))
    path.write_bytes(data)
    original = source_fingerprint(path)
    assert source_fingerprint(tmp_path / "clip.bin") == original
    for offset in (0, len(data) // 2, len(data) - 1):  # start, middle and end are read
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        path.write_bytes(changed)
        os.utime(path, ns=(1, 10 + offset))
        assert source_fingerprint(path) != original
    path.write_bytes(data + b"x")
    assert source_fingerprint(path) != original


def test_settings_identity_follows_a_named_file(tmp_path):
    from sfi_cli.render.workdir import settings_identity

    checkpoint = tmp_path / "semfi.ckpt"
    checkpoint.write_bytes(b"weights one")
    settings = {"lora": str(checkpoint), "steps": 50, "device": "cuda"}
    before = settings_identity(settings)
    assert before["steps"] == 50 and set(before["files"]) == {"lora"} and settings_identity(settings) == before
    checkpoint.write_bytes(b"other weights")  # another size: a new fingerprint whatever the clock says
    assert settings_identity(settings) != before
    assert "files" not in settings_identity({"steps": 50, "model_dir": str(tmp_path)})  # folders are named, not read


def test_keys_come_from_the_plan_without_an_engine(timeline):
    """Two plans of one recipe give the same keys; a plan at another size gives others."""
    from sfi_cli.render.transitions import gap_keys
    from sfi_cli.timeline.layout import make_plan
    from sfi_cli.timeline.recipe import load_recipe
    from fractions import Fraction

    def plan(size=None, settings=None):
        recipe = load_recipe(timeline["recipe"], None)
        made = make_plan(recipe, engine="crossfade", engine_settings=settings or {}, default_fps=Fraction(24), crf=18,
                         preset="medium")
        return made if size is None else __import__("dataclasses").replace(made, size=size)

    keys = gap_keys(plan())
    assert len(set(keys)) == timeline["gaps"] and gap_keys(plan()) == keys
    assert set(gap_keys(plan((128, 72)))).isdisjoint(keys)
    assert gap_keys(plan(settings={"crossfade": {"curve": "smooth"}})) != keys
    assert gap_keys(plan(settings={"flow": {"flow_width": 320}})) == keys  # another engine's settings: same gaps


# --- executors ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NumberJob:
    name: str
    number: int
    group: tuple = ()


def square_or_fail(job: NumberJob) -> tuple[int, int]:
    """A job function for the executors: fails for negative numbers as an engine would."""
    from sfi_cli.errors import SfiError

    if job.number < 0:
        raise SfiError(f"cannot square {job.number}")
    return job.number * job.number, os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_executors_yield_every_result_with_its_job(workers):
    from sfi_cli.render.executors import LocalExecutor, ProcessExecutor

    jobs = [NumberJob(f"job {n}", n) for n in range(7)]
    results = list((LocalExecutor() if workers == 1 else ProcessExecutor(workers)).map(square_or_fail, jobs))
    assert sorted((job.number, result[0]) for job, result in results) == [(n, n * n) for n in range(7)]
    pids = {result[1] for _, result in results}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids and 1 <= len(pids) <= 2)


def test_a_job_failing_in_a_worker_is_one_error_naming_it():
    from sfi_cli.errors import SfiError
    from sfi_cli.render.executors import ProcessExecutor

    import socket

    jobs = [NumberJob("job 1", 1), NumberJob("gap 2/3 (cut at 40)", -2), NumberJob("job 3", 3)]
    made = []
    with pytest.raises(SfiError, match=rf"^gap 2/3 \(cut at 40\) failed 2 times \(last on {socket.gethostname()}\): "
                                       rf"cannot square -2; nothing was published; .* run again to make only the missing"):
        for job, _ in ProcessExecutor(2, attempts=2).map(square_or_fail, jobs):
            made.append(job.number)
    assert 1 in made  # the jobs under way when a job fails for good still finish


def device_of_semfi(job: NumberJob) -> str:
    """A job function: the device a worker's SemFi settings get."""
    from sfi_cli.render.transitions import _placement, placed_settings

    return placed_settings({"semfi": {"device": "cuda"}}, "semfi", _placement["device"])["semfi"]["device"]


def test_each_local_worker_gives_its_device_to_its_engines():
    from sfi_cli.render.executors import ProcessExecutor

    results = list(ProcessExecutor(1, devices=("cpu", "cuda:1")).map(device_of_semfi, [NumberJob("a", 1), NumberJob("b", 2)]))
    assert sorted(device for _, device in results) == ["cpu", "cuda:1"]  # both start at once, one job each


def test_a_free_worker_takes_a_job_of_the_group_it_ran_last():
    """Jobs come in pairs of two groups (SemFi experts): A A B B A A B B. Taken in order, each worker would
    switch expert at almost every job; kept to its group, each switches once, when its group runs out."""
    from sfi_cli.render.executors import ProcessExecutor

    jobs = [NumberJob(f"job {n}", n, group=("semfi", 17 if n // 2 % 2 else 33)) for n in range(8)]
    runs: dict[int, list] = {}
    for job, (_, pid) in ProcessExecutor(2).map(square_or_fail, jobs):
        runs.setdefault(pid, []).append(job.group)
    switches = [sum(a != b for a, b in zip(run, run[1:])) for run in runs.values()]
    assert sum(map(len, runs.values())) == 8 and max(switches) <= 1, runs


def test_the_splice_starts_beside_pass_one_and_waits_for_each_gap(tmp_path, timeline):
    """One run, both passes: the splice task begins before the first transition is made (plain log lines
    show the order), and its file is the one the passes make one after the other."""
    out = tmp_path / "out.mp4"
    run = subprocess.run([*SFI, "render", str(timeline["recipe"]), "-o", str(out), "--engine", "crossfade",
                          "--work-dir", str(tmp_path / "work")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    started = next(i for i, line in enumerate(lines) if "splicing" in line and line.endswith("started (68 steps)"))
    made = next(i for i, line in enumerate(lines) if "made in" in line)
    assert started < made, run.stderr
    assert framemd5(out, timeline["ffmpeg"]) == framemd5(timeline["whole"], timeline["ffmpeg"])


def test_a_transition_failing_while_the_splice_runs_publishes_nothing(tmp_path, timeline):
    """The second gap cannot be stored (its place in the work folder is taken by a file sfi did not make):
    the run stops with one line, the splice beside it deletes its partial output, the first gap is kept."""
    probe_run = subprocess.run([*SFI, "render", str(timeline["recipe"]), "-o", str(tmp_path / "probe.mp4"), "--engine",
                                "crossfade", "--work-dir", str(tmp_path / "probe"), "--only", "transitions", "--json"],
                               capture_output=True, text=True, check=True)
    keys = [gap["key"] for gap in json.loads(probe_run.stdout)["gaps"]]
    out, work = tmp_path / "out" / "out.mp4", tmp_path / "work"
    out.parent.mkdir()
    (work / "gaps").mkdir(parents=True)
    blocker = work / "gaps" / keys[1]
    blocker.write_text("not sfi's")
    run = subprocess.run([*SFI, "render", str(timeline["recipe"]), "-o", str(out), "--engine", "crossfade",
                          "--work-dir", str(work), "-q"], capture_output=True, text=True)
    assert run.returncode == 1 and len(run.stderr.splitlines()) == 1 and run.stderr.startswith("sfi: error:"), run.stderr
    assert list(out.parent.iterdir()) == [], "the splice left its output or a partial of it"
    assert blocker.read_text() == "not sfi's"
    assert [p.parent.name for p in gaps_in(work)] == [keys[0]] and not hidden(work)
