"""Never lose or touch a user's file; fail cleanly on signals, read-only folders, odd names and concurrent runs.

Every test looks at the file system afterwards: inputs byte-identical, unrelated files
still there, no hidden temporaries (``.<stem>.sfi-partial-<host>-<pid><suffix>``) left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clips import make_clip
from helpers import count_video_frames, textured_image

SFI = [sys.executable, "-m", "sfi_cli"]


def partials(folder: Path) -> list[Path]:
    """Every temporary sfi makes, anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".sfi-partial-" in p.name]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to compare before and after)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(result, text: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.code != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("sfi: error: ") and text in lines[0], lines[0]


def save_pair(folder: Path, first: str = "a.png", last: str = "b.png") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = textured_image(64, 36, seed=3)
    Image.fromarray(base).save(folder / first)
    Image.fromarray(np.roll(base, 4, axis=1)).save(folder / last)
    return folder / first, folder / last


# --- inputs and unrelated files are never touched -----------------------------------------------------------

def test_force_into_the_inputs_folder_keeps_the_inputs(tmp_path, sfi):
    first, last = save_pair(tmp_path / "shots")
    before = snapshot(tmp_path / "shots")
    result = sfi("interpolate", first, last, "-n", "3", "-o", f"{tmp_path / 'shots'}/", "--force",
                 "--engine", "crossfade", "-q")
    assert result.code == 0, result.stderr
    after = snapshot(tmp_path / "shots")
    assert {k: after[k] for k in before} == before
    assert sorted(after) == [".sfi-frames.json", "a.png", "b.png", "frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert not partials(tmp_path)


def test_force_into_a_folder_replaces_only_its_frames_and_an_earlier_result(tmp_path, sfi):
    first, last = save_pair(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    (victim / "frame_00009.png").write_bytes(b"not sfi's")
    assert sfi("interpolate", first, last, "-n", "5", "-o", victim, "--force", "--engine", "crossfade", "-q").code == 0
    assert (victim / "notes.txt").read_text() == "mine" and (victim / "frame_00009.png").read_bytes() == b"not sfi's"
    assert sorted(p.name for p in victim.glob("frame_*")) == [f"frame_{i:05d}.png" for i in (1, 2, 3, 4, 5, 9)]
    # a shorter result replaces the earlier one's frames (3..5 go), never the user's
    assert sfi("interpolate", first, last, "-n", "2", "-o", victim, "--force", "--engine", "crossfade", "-q").code == 0
    assert sorted(p.name for p in victim.glob("frame_*")) == ["frame_00001.png", "frame_00002.png", "frame_00009.png"]
    assert (victim / "notes.txt").read_text() == "mine" and (victim / "frame_00009.png").read_bytes() == b"not sfi's"
    assert json.loads((victim / ".sfi-frames.json").read_text())["files"] == ["frame_00001.png", "frame_00002.png"]
    assert not partials(tmp_path)


def test_force_never_deletes_a_folder_where_an_earlier_frame_was(tmp_path, sfi):
    first, last = save_pair(tmp_path)
    out = tmp_path / "out"
    assert sfi("interpolate", first, last, "-n", "3", "-o", out, "--engine", "crossfade", "-q").code == 0
    (out / "frame_00003.png").unlink()
    (out / "frame_00003.png").mkdir()  # the user's folder now, under a name the marker lists
    (out / "frame_00003.png" / "keep.txt").write_text("mine")
    assert sfi("interpolate", first, last, "-n", "2", "-o", out, "--force", "--engine", "crossfade", "-q").code == 0
    assert (out / "frame_00003.png" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.glob("frame_*")) == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert not partials(tmp_path)


def test_folder_output_whose_frame_is_an_input_is_refused_even_with_force(tmp_path, sfi):
    first, last = save_pair(tmp_path / "frames", "frame_00002.png", "z.png")
    before = snapshot(tmp_path)
    one_error(sfi("interpolate", first, last, "-n", "3", "-o", tmp_path / "frames", "--force"), "is also an input")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


def test_every_name_of_a_pattern_is_checked_before_the_first_frame(tmp_path, sfi):
    first, last = save_pair(tmp_path / "seq", "a.png", "0003.png")
    (tmp_path / "seq" / "0005.png").write_bytes(b"someone's frame")
    before = snapshot(tmp_path)
    pattern = tmp_path / "seq" / "%04d.png"
    one_error(sfi("interpolate", first, last, "-n", "5", "-o", pattern), "0003.png' is also an input")
    assert snapshot(tmp_path) == before
    one_error(sfi("interpolate", first, last, "-n", "5", "-o", pattern, "--force"), "0003.png' is also an input")
    assert snapshot(tmp_path) == before and not partials(tmp_path)
    # with --force, a frame that is no input is replaced
    (tmp_path / "seq" / "p0002.png").write_bytes(b"an old frame")
    one_error(sfi("interpolate", first, last, "-n", "2", "-o", tmp_path / "seq" / "p%04d.png"), "p0002.png' already exists")
    assert not (tmp_path / "seq" / "p0001.png").exists()
    assert sfi("interpolate", first, last, "-n", "2", "-o", tmp_path / "seq" / "p%04d.png", "--force", "-q").code == 0
    assert Image.open(tmp_path / "seq" / "p0002.png").size == (64, 36)
    assert (tmp_path / "seq" / "0003.png").read_bytes() == before["seq/0003.png"] and not partials(tmp_path)


def test_sheet_that_is_an_input_is_refused_even_with_force(tmp_path, sfi):
    first, last = save_pair(tmp_path)
    before = snapshot(tmp_path)
    one_error(sfi("interpolate", first, last, "-n", "2", "-o", tmp_path / "out.mp4", "--sheet", first, "--force"),
              "is also an input")
    pattern = tmp_path / "f%02d.png"
    one_error(sfi("interpolate", first, last, "-n", "2", "-o", pattern, "--sheet", tmp_path / "f02.png", "--force"),
              "is also a frame of the output")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("link", ["same", "hardlink", "symlink"])
def test_detect_recipe_onto_its_video_is_refused(tmp_path, ffmpeg_exe, sfi, link):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    recipe = video
    if link == "hardlink":
        os.link(video, recipe := tmp_path / "h.toml")
    elif link == "symlink":
        (recipe := tmp_path / "s.toml").symlink_to(video)
    before = snapshot(tmp_path)
    one_error(sfi("detect", video, "--recipe", recipe, "--force"), "is also an input")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_fill_output_that_is_the_input_by_another_name_is_refused(tmp_path, ffmpeg_exe, sfi, link):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    other = tmp_path / "other.mp4"
    os.link(video, other) if link == "hardlink" else other.symlink_to(video)
    before = snapshot(tmp_path)
    one_error(sfi("fill", video, "-o", other, "--force", "--engine", "crossfade"), "is also an input")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


def test_render_never_writes_its_recipe_or_sources(tmp_path, ffmpeg_exe, sfi):
    make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[output]\npath = "v.mp4"\n\n[[shot]]\nvideo = "v.mp4"\nin = 0\nout = 10\n')
    os.link(recipe, tmp_path / "r.sfi.json")
    before = snapshot(tmp_path)
    one_error(sfi("render", recipe, "--force", "--engine", "crossfade"), "is also an input")
    one_error(sfi("render", recipe, "-o", tmp_path / "r.mp4", "--force", "--engine", "crossfade"), "is also an input")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("output, message", [(".", "names no file or folder of its own"), ("..", "of its own"),
                                             ("{tmp}/.", "of its own"), ("{tmp}/folder.mp4", "is a folder")])
def test_output_that_is_a_folder_is_one_line(tmp_path, sfi, monkeypatch, output, message):
    first, last = save_pair(tmp_path / "in")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "folder.mp4" / "keep.txt").write_text("keep")
    monkeypatch.chdir(tmp_path / "in")
    before = snapshot(tmp_path)
    one_error(sfi("interpolate", first, last, "-n", "2", "-o", output.format(tmp=tmp_path), "--force"), message)
    assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("case", ["video", "folder", "sheet", "recipe", "loop in the path"])
def test_a_dangling_or_looping_symlink_is_an_existing_file(tmp_path, ffmpeg_exe, sfi, case):
    """A link to an offline volume is the user's file: never replaced without --force, and no traceback."""
    first, last = save_pair(tmp_path)
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    link = tmp_path / {"video": "link.mp4", "sheet": "link.png"}.get(case, "link")
    link.symlink_to(link if case == "loop in the path" else tmp_path / "offline" / "x")
    args, message = {
        "video": (["interpolate", first, last, "-n", "2", "-o", link], "already exists"),
        "folder": (["interpolate", first, last, "-n", "2", "-o", f"{link}/"], "is a file, not a folder"),
        "sheet": (["interpolate", first, last, "-n", "2", "-o", tmp_path / "o.mp4", "--sheet", link], "already exists"),
        "recipe": (["detect", video, "-q", "--recipe", link], "already exists"),
        "loop in the path": (["interpolate", first, last, "-n", "2", "-o", link / "x.mp4"], "does not exist"),
    }[case]
    names = sorted(p.name for p in tmp_path.iterdir())
    one_error(sfi(*args), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == names and link.is_symlink() and not partials(tmp_path)


@pytest.mark.parametrize("command", ["detect", "fill", "interpolate"])
def test_a_pipe_as_input_is_refused_instead_of_waiting_forever(tmp_path, sfi, command):
    first, last = save_pair(tmp_path)
    pipe = tmp_path / ("in.png" if command == "interpolate" else "in.mp4")
    os.mkfifo(pipe)  # nobody writes to it: opening it would block
    args = {"detect": ["detect", pipe], "fill": ["fill", pipe, "-o", tmp_path / "o.mp4"],
            "interpolate": ["interpolate", pipe, last, "-n", "2", "-o", tmp_path / "o.mp4"]}[command]
    before = snapshot(tmp_path)
    one_error(sfi(*args), "is not a regular file")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


def test_another_results_manifest_is_never_replaced(tmp_path, ffmpeg_exe, sfi):
    """out.mp4 and out.mkv would share out.sfi.json: the second is refused, even with --force, while out.mp4 is there."""
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    fill = ["fill", video, "--frames", "2", "--engine", "crossfade", "-q"]
    assert sfi(*fill, "-o", tmp_path / "out.mp4").code == 0
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        one_error(sfi(*fill, "-o", tmp_path / "out.mkv", *force), "is the manifest of another result")
        assert snapshot(tmp_path) == before and not partials(tmp_path)
    (tmp_path / "out.mp4").unlink()  # that result gone: its manifest is free to go too
    assert sfi(*fill, "-o", tmp_path / "out.mkv").code == 0
    assert json.loads((tmp_path / "out.sfi.json").read_text())["output"].endswith("out.mkv")


@pytest.mark.parametrize("written", ["out.mp4", "sheet.png", "report.html", "linked.html"])
def test_force_never_replaces_a_pipe_or_device_with_a_file(tmp_path, sfi, written):
    """--force overwrites files; a pipe (or a device, or a link to one: --report /dev/stdout) where an output goes is
    refused, left as it is."""
    first, last = save_pair(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / written).symlink_to(tmp_path / "pipe") if written == "linked.html" else (tmp_path / "pipe").rename(tmp_path / written)
    args = (["eval", first, last, "--engines", "crossfade", "-n", "2", "--report", tmp_path / written]
            if written.endswith(".html") else
            ["interpolate", first, last, "-n", "2", "--engine", "crossfade", "-o", tmp_path / "out.mp4"]
            + (["--sheet", tmp_path / written] if written == "sheet.png" else []))
    one_error(sfi(*args, "--force"), "is not a regular file")
    assert (tmp_path / written).is_fifo() and not partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", "b.png", written, *(["pipe"] if written == "linked.html" else [])])


@pytest.mark.parametrize("kept", ['{"mine": 1}\n', "notes, not JSON\n"])
def test_a_file_where_the_manifest_goes_that_sfi_did_not_write_is_never_replaced(tmp_path, ffmpeg_exe, sfi, kept):
    """out.sfi.json that is no sfi manifest is the user's file: the run is refused, even with --force."""
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=6, cuts=(), size=(64, 36), audio=False)
    (tmp_path / "out.sfi.json").write_text(kept)
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        one_error(sfi("retime", video, "-o", tmp_path / "out.mp4", "--slowmo", "1.5", "--engine", "crossfade", *force),
                  "is not an sfi manifest")
        assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("work", ["out.mp4", "out.mp4/work", "out.sfi.json", "sheet.png"])
def test_work_folder_where_a_result_goes_is_refused_before_anything_is_made(tmp_path, ffmpeg_exe, sfi, work):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    before = snapshot(tmp_path)
    one_error(sfi("fill", video, "-o", tmp_path / "out.mp4", "--frames", "2", "--engine", "crossfade",
                  "--sheet", tmp_path / "sheet.png", "--work-dir", tmp_path / work), "choose another --work-dir")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


# --- read-only folders --------------------------------------------------------------------------------------

def _read_only_command(folder: Path, command: list[str]) -> list[str] | None:
    """``command`` run where ``folder`` cannot be written: a read-only bind mount in a mount namespace of its
    own (root ignores permission bits), else (not root) the folder's permission bits; None if neither works."""
    if os.geteuid() != 0:
        return command
    unshare = shutil.which("unshare")
    if not unshare:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    for namespaces in (["-m"], ["-r", "-m"]):  # a mount namespace; else one inside a user namespace
        wrapped = [unshare, *namespaces, "sh", "-c", script, str(folder)]
        probe = subprocess.run([*wrapped, "touch", str(folder / ".probe")], capture_output=True)
        if (folder / ".probe").exists():
            (folder / ".probe").unlink()
        elif probe.returncode != 0 and b"Read-only" in probe.stderr:
            return [*wrapped, *command]
    return None


def run_read_only(folder: Path, *args) -> subprocess.CompletedProcess:
    command = _read_only_command(folder, [*SFI, *[str(a) for a in args]])
    if command is None:
        pytest.skip("this environment cannot make a read-only folder (not root without mount namespaces)")
    if os.geteuid() != 0:
        folder.chmod(0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("case", ["output", "folder output", "sheet", "work-dir", "work-dir inside", "recipe"])
def test_read_only_folder_is_one_line_before_any_output(tmp_path, ffmpeg_exe, case):
    first, last = save_pair(tmp_path)
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.txt").write_text("old")
    out = tmp_path / "out.mp4"
    args = {
        "output": ["interpolate", first, last, "-n", "2", "-o", locked / "out.mp4"],
        "folder output": ["interpolate", first, last, "-n", "2", "-o", locked, "--force"],
        "sheet": ["interpolate", first, last, "-n", "2", "-o", out, "--sheet", locked / "sheet.png"],
        "work-dir": ["fill", video, "-o", out, "--frames", "2", "--engine", "crossfade", "--work-dir", locked],
        "work-dir inside": ["fill", video, "-o", out, "--frames", "2", "--engine", "crossfade",
                            "--work-dir", locked / "work"],
        "recipe": ["detect", video, "--recipe", locked / "cuts.toml"],
    }[case]
    before = snapshot(tmp_path)
    result = run_read_only(locked, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("sfi: error: ") and "read-only" in lines[0] and str(locked) in lines[0]
    assert snapshot(tmp_path) == before and not out.exists() and not partials(tmp_path)


# --- names ffmpeg would take for protocols or options ----------------------------------------------------------

@pytest.mark.parametrize("name", ["concat:b.mp4", "file:b.mp4", "-b.mp4"])
def test_video_named_like_a_protocol_is_that_file(tmp_path, ffmpeg_exe, sfi, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / name, ffmpeg_exe, frames=40, cuts=(20,), size=(64, 36), audio=False)
    make_clip(tmp_path / "b.mp4", ffmpeg_exe, frames=24, cuts=(), size=(64, 36), audio=False)  # what a URL would read
    decoy = (tmp_path / "b.mp4").read_bytes()
    found = sfi("detect", "--json", "--", name)
    assert found.code == 0, found.stderr
    assert json.loads(found.stdout)["frames"] == 40 and [c["frame"] for c in json.loads(found.stdout)["cuts"]] == [20]
    output = name.replace("b.mp4", "out.mp4")
    result = sfi("fill", "-o", output, "--frames", "3", "--engine", "crossfade", "-q", "--", name)
    assert result.code == 0, result.stderr
    assert count_video_frames(tmp_path / output, ffmpeg_exe) == 43
    assert not (tmp_path / "out.mp4").exists() and (tmp_path / "b.mp4").read_bytes() == decoy
    assert not partials(tmp_path)


def test_images_and_outputs_named_like_protocols(tmp_path, sfi, ffmpeg_exe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_pair(tmp_path, "file:a.png", "-b.png")
    for output in ("concat:o.mp4", "-o.mov", "file:o.mp4"):
        result = sfi("interpolate", "-n", "2", "-o", output, "--engine", "crossfade", "-q", "--sheet",
                     f"file:{output}.png", "--", "file:a.png", "-b.png")
        assert result.code == 0, result.stderr
        assert count_video_frames(tmp_path / output, ffmpeg_exe) == 4
        assert (tmp_path / f"file:{output}.png").is_file()
    assert not (tmp_path / "o.mp4").exists() and not partials(tmp_path)


@pytest.mark.parametrize("command", ["detect", "fill video", "fill output"])
def test_name_that_is_not_utf8_is_refused_before_a_recipe_names_another_file(tmp_path, ffmpeg_exe, sfi, command):
    """A TOML recipe holds only Unicode: the byte 0xff would become U+FFFD, naming a file that is not there."""
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    odd = tmp_path / "b\udcffd.mp4"  # how Python names the file b"b\xffd.mp4"
    if command != "fill output":
        video = video.rename(odd)
    before = snapshot(tmp_path)
    args = {"detect": ["detect", video, "--recipe", tmp_path / "r.toml"],
            "fill video": ["fill", video, "-o", tmp_path / "out.mp4", "--frames", "2", "--engine", "crossfade"],
            "fill output": ["fill", video, "-o", odd, "--frames", "2", "--engine", "crossfade"]}[command]
    one_error(sfi(*args), "is not valid UTF-8")
    assert snapshot(tmp_path) == before and not partials(tmp_path)


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_stdout_or_stderr_is_no_crash_and_json_stays_json(tmp_path, closed):
    """Jobs started with >&- or 2>&- (cron, some farm wrappers) have no stream there at all."""
    first, last = save_pair(tmp_path)
    out = tmp_path / "out.mp4"
    redirect = ">&-" if closed == "stdout" else "2>&-"
    command = [*SFI, "interpolate", first, last, "-n", "2", "-o", out, "--engine", "crossfade",
               *(["--json"] if closed == "stderr" else [])]
    result = subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", *map(str, command)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if closed == "stderr":
        assert json.loads(result.stdout)["frames_written"] == 4
    else:
        assert "Traceback" not in result.stderr
    assert out.is_file() and not partials(tmp_path)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
def test_summary_to_a_full_disk_is_one_line(tmp_path, ffmpeg_exe):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    before = snapshot(tmp_path)
    with open("/dev/full", "w") as full:
        result = subprocess.run([*SFI, "detect", str(video), "--json", "-q"], stdout=full, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("sfi: error: ") and "No space left" in lines[0]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("suffix", [".mp4", ""])
def test_longest_file_name_can_be_staged_and_locked(tmp_path, sfi, suffix):
    """The hidden temporary and lock names add to a name; one the file system takes must still work."""
    first, last = save_pair(tmp_path)
    name = "é" * ((255 - len(suffix)) // 2) + suffix  # 253 or 254 bytes of UTF-8
    result = sfi("interpolate", first, last, "-n", "2", "-o", tmp_path / name, "--engine", "crossfade", "-q")
    assert result.code == 0, result.stderr
    assert (tmp_path / name).exists() and not partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", "b.png", name])  # no lock left


# --- leftovers of killed runs, concurrent runs --------------------------------------------------------------------

def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_next_run_removes_what_dead_runs_left_and_nothing_else(tmp_path, ffmpeg_exe, sfi):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    host, dead = socket.gethostname(), _dead_pid()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        work = tmp_path / "work"
        (work / "gaps").mkdir(parents=True)
        stale = [tmp_path / f".out.sfi-partial-{host}-{dead}.mp4", tmp_path / f".frames.sfi-partial-{host}-{dead}",
                 work / "gaps" / f".0123abcd.sfi-partial-{host}-{dead}"]
        kept = [tmp_path / f".out.sfi-partial-{host}-{alive.pid}.mp4",
                tmp_path / f".out.sfi-partial-otherhost-{dead}.mp4", work / "gaps" / f".0123abcd.sfi-partial-otherhost-{dead}"]
        for path in stale + kept:
            path.write_bytes(b"partial") if path.name.endswith(".mp4") else path.mkdir()
        (stale[1] / "frame_00001.png").write_bytes(b"partial")
        (stale[2] / "frames.mkv").write_bytes(b"partial")
        result = sfi("fill", video, "-o", tmp_path / "out.mp4", "--frames", "2", "--engine", "crossfade",
                     "--work-dir", work, "-q")
        assert result.code == 0, result.stderr
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
        assert set(partials(tmp_path)) == set(kept)
    finally:
        alive.kill()
        alive.wait()


def test_second_run_to_a_locked_output_is_refused_and_a_dead_runs_lock_taken_over(tmp_path, sfi):
    first, last = save_pair(tmp_path)
    out, lock = tmp_path / "out.mp4", tmp_path / ".out.mp4.sfi-lock"
    alive = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(f"{socket.gethostname()} {alive.pid}\n")
        one_error(sfi("interpolate", first, last, "-n", "2", "-o", out, "--force"),
                  f"being written by another sfi run (pid {alive.pid} on {socket.gethostname()})")
        assert not out.exists() and lock.read_text() == f"{socket.gethostname()} {alive.pid}\n"
    finally:
        alive.kill()
        alive.wait()
    lock.write_text(f"{socket.gethostname()} {_dead_pid()}\n")
    assert sfi("interpolate", first, last, "-n", "2", "-o", out, "--engine", "crossfade", "-q").code == 0
    assert out.exists() and not lock.exists() and not partials(tmp_path)


def test_second_detect_to_a_recipe_being_written_is_refused(tmp_path, ffmpeg_exe, sfi):
    video = make_clip(tmp_path / "v.mp4", ffmpeg_exe, frames=30, cuts=(15,), size=(64, 36), audio=False)
    recipe, lock = tmp_path / "cuts.toml", tmp_path / ".cuts.toml.sfi-lock"
    alive = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(f"{socket.gethostname()} {alive.pid}\n")
        one_error(sfi("detect", video, "--recipe", recipe, "--force"), f"being written by another sfi run (pid {alive.pid}")
        assert not recipe.exists() and lock.exists()
    finally:
        alive.kill()
        alive.wait()
    lock.unlink()
    assert sfi("detect", video, "--recipe", recipe, "-q").code == 0
    assert recipe.exists() and not lock.exists() and not partials(tmp_path)


# --- signals --------------------------------------------------------------------------------------------------------

def _gap_files(work: Path) -> list[Path]:
    return list((work / "gaps").glob("*/gap.json"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_each_stop_signal_becomes_an_interruption_with_its_exit_code(signum):
    """What every signal shares with the run below: raised where the program is, as exit 128 + its number,
    with the handlers from before put back afterwards."""
    from sfi_cli.commands import Interrupted, signals_as_interrupts

    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as stopped:
        with signals_as_interrupts():
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises at once; this only bounds a broken one
    assert stopped.value.exit_code == 128 + signum and signal.getsignal(signum) == before


def test_signal_stops_a_run_cleanly_and_keeps_finished_gaps(tmp_path, ffmpeg_exe):
    """A real ``sfi fill`` stopped by SIGTERM (a farm ending a job) once a gap is done: one line, exit 143,
    no output under any name, the finished gaps kept; a second run meanwhile is refused by the lock."""
    signum, code = signal.SIGTERM, 143
    clip = make_clip(tmp_path / "long.mp4", ffmpeg_exe, frames=200, cuts=(40, 80, 120, 160), rate="25",
                     size=(480, 320), audio=False)
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    command = [*SFI, "fill", str(clip), "-o", str(out), "--engine", "flow", "--frames", "40", "--work-dir", str(work), "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _gap_files(work) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run([*SFI, "fill", str(clip), "-o", str(out), "--engine", "crossfade", "--frames", "40",
                             "--work-dir", str(tmp_path / "w2"), "--force"], capture_output=True, text=True)
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code and stderr == "sfi: interrupted\n", stderr
    assert second.returncode == 1 and f"(pid {process.pid} on " in second.stderr
    finished = _gap_files(work)
    assert 1 <= len(finished) < 4, "the run should have been stopped part-way through its gaps"
    assert all((gap.parent / "frames.mkv").stat().st_size > 0 for gap in finished)
    assert not out.exists() and not partials(tmp_path) and not (tmp_path / ".out.mp4.sfi-lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "work"]


def test_signal_while_only_the_splice_runs_stops_its_ffmpeg_and_leaves_no_partial(tmp_path, ffmpeg_exe):
    """Pass 1 over, the main thread waiting for the splice (here: ffmpeg stretching the sound of ``retime
    --slowmo``): a signal there must still stop the splice, its ffmpeg and its hidden file with it."""
    clip = make_clip(tmp_path / "in.mp4", ffmpeg_exe, frames=25, cuts=(), size=(64, 36))
    command = [*SFI, "retime", str(clip), "-o", str(tmp_path / "out.mp4"), "--slowmo", "40", "--engine", "crossfade", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not partials(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1)  # pass 1 (a few crossfade chunks) is over well before the sound is
    assert process.poll() is None, "the splice should still be running"
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    time.sleep(0.5)  # an ffmpeg left running would still be writing its file
    assert process.returncode == 143 and stderr == "sfi: interrupted\n", stderr
    assert not partials(tmp_path) and not (tmp_path / "out.mp4").exists()
