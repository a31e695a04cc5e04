"""``sfi render``: recipes of stills and video, the work folder's resume, manifests and sheets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clips import decode_all, frame_index, make_clip, stream_facts

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SFI = [sys.executable, "-m", "sfi_cli"]


def test_photo_sequence_renders(tmp_path, sfi):
    out = tmp_path / "day.mp4"
    result = sfi("render", RECIPES / "photo-sequence.toml", "-o", out, "--engine", "crossfade",
                 "--sheet", tmp_path / "sheet.png", "--work-dir", tmp_path / "work", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames_written"] == 48 + 36 + 72 + 48 + 60 == stream_facts(out)["frames"]
    assert summary["fps"] == "24000/1001" and (summary["width"], summary["height"]) == (640, 360)
    assert "audio" not in stream_facts(out)["streams"]
    manifest = json.loads((tmp_path / "day.sfi.json").read_text())
    assert [g["prompt"][:11] for g in manifest["gaps"]] == ["the sun cli", "the afterno"]
    assert [g["seed"] for g in manifest["gaps"]] == [7, 11]
    assert (tmp_path / "sheet.png").stat().st_size > 0
    # a second run finds every transition in the work folder
    again = sfi("render", RECIPES / "photo-sequence.toml", "-o", out, "--engine", "crossfade",
                "--work-dir", tmp_path / "work", "--force", "--json")
    assert json.loads(again.stdout)["gaps_cached"] == 2


def test_mixed_stills_and_video_with_slow_motion(tmp_path, ffmpeg_exe, sfi):
    make_clip(tmp_path / "clip.mp4", ffmpeg_exe, frames=40, cuts=(), rate="25")
    from PIL import Image

    Image.new("RGB", (300, 100), (200, 40, 40)).save(tmp_path / "title.png")  # another shape: cover-cropped
    (tmp_path / "r.toml").write_text("""
[output]
path = "mixed.mp4"
size = "192x128"

[[shot]]
image = "title.png"
duration = "0.4s"

[shot.transition]
frames = 5

[[shot]]
video = "clip.mp4"
in = 0
out = 10

[[shot]]
video = "clip.mp4"
in = 10
out = 14
slowmo = 3

[[shot]]
video = "clip.mp4"
in = 14
out = 20
""")
    result = sfi("render", tmp_path / "r.toml", "--engine", "flow", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    slow = 4 + 3 * 2
    assert summary["frames_written"] == 10 + 5 + 10 + slow + 6
    assert summary["gap_count"] == 1 + 3
    facts = stream_facts(tmp_path / "mixed.mp4")
    assert facts["frames"] == 41 and abs(facts["audio_duration"] - facts["video_duration"]) <= 1 / 25
    frames = decode_all(tmp_path / "mixed.mp4", ffmpeg_exe)
    assert [frame_index(f) for f in frames[15:26]] == list(range(0, 11))
    assert [frame_index(frames[i]) for i in (25, 28, 31, 34)] == [10, 11, 12, 13]
    assert [frame_index(f) for f in frames[35:]] == list(range(14, 20))


def _gap_stamps(work: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (work / "gaps").glob("*/gap.json")}


def test_resume_after_kill_recomputes_no_finished_gap(tmp_path, ffmpeg_exe):
    """Kill a real run once some gaps are done; the re-run skips exactly those and gives the same video."""
    clip = make_clip(tmp_path / "long.mp4", ffmpeg_exe, frames=200, cuts=(40, 80, 120, 160), rate="25",
                     size=(480, 320))
    out, work = tmp_path / "out.mp4", tmp_path / "work"

    def fill_command(output: Path, work: Path) -> list[str]:
        return [*SFI, "fill", str(clip), "-o", str(output), "--engine", "flow", "--frames", "40", "--work-dir", str(work)]

    command = fill_command(out, work)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _gap_stamps(work) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = _gap_stamps(work)
    assert 1 <= len(finished) < 4, "the run should have been killed part-way through its gaps"
    assert not out.exists()  # at most a hidden partial file, which the next run removes

    resumed = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["gaps_cached"] == len(finished)
    assert {g["key"] for g in summary["gaps"] if g["cached"]} == set(finished)
    after = _gap_stamps(work)
    assert all(after[key] == stamp for key, stamp in finished.items())  # not rewritten
    assert len(after) == 4
    assert out.exists() and not list(tmp_path.glob(".*partial*"))

    fresh = tmp_path / "fresh.mp4"
    subprocess.run(fill_command(fresh, tmp_path / "other"), check=True, capture_output=True)
    framemd5 = lambda path: subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],  # noqa: E731
                                           capture_output=True, text=True, check=True).stdout.splitlines()[-200:]
    assert framemd5(out) == framemd5(fresh)


def test_changing_one_prompt_regenerates_one_gap(tmp_path, ffmpeg_exe, sfi):
    clip = make_clip(tmp_path / "c.mp4", ffmpeg_exe, frames=90, cuts=(30, 60), audio=False)
    recipe = tmp_path / "cuts.toml"
    assert sfi("detect", clip, "--recipe", recipe, "--frames", "4").code == 0
    first = json.loads(sfi("render", recipe, "--engine", "crossfade", "--json").stdout)
    assert first["gaps_cached"] == 0
    recipe.write_text(recipe.read_text().replace('prompt = ""', 'prompt = "a new idea"', 1))
    second = json.loads(sfi("render", recipe, "--engine", "crossfade", "--json", "--force").stdout)
    assert [g["cached"] for g in second["gaps"]] == [False, True]


def test_plain_progress_lines_when_not_a_terminal(tmp_path, ffmpeg_exe):
    clip = make_clip(tmp_path / "c.mp4", ffmpeg_exe, frames=60, cuts=(30,), audio=False)
    result = subprocess.run([*SFI, "fill", str(clip), "-o", str(tmp_path / "o.mp4"), "--engine", "crossfade",
                             "--frames", "3"], capture_output=True, text=True, check=True)
    assert "gap 1/1" in result.stderr and "ETA" in result.stderr and "\x1b[" not in result.stderr
    assert result.stdout.startswith("wrote 63 frames")


def test_quiet_prints_nothing(tmp_path, ffmpeg_exe, sfi):
    clip = make_clip(tmp_path / "c.mp4", ffmpeg_exe, frames=60, cuts=(30,), audio=False)
    result = sfi("fill", clip, "-o", tmp_path / "o.mp4", "--engine", "crossfade", "-q")
    assert result.code == 0 and result.stdout == "" and result.stderr == ""


def test_gaps_made_mid_splice_leave_one_line_each_on_a_terminal(capsys):
    """On a terminal a gap's bar lives inside the splice's display, then leaves a line, never a pile of bars."""
    from sfi_cli.progress import Reporter

    reporter = Reporter(interactive=True)
    with reporter.task("splicing", 100) as splice:
        for gap in range(3):
            with reporter.task(f"gap {gap + 1}/3", 12) as progress:
                progress(12, 12)
            splice(30 * (gap + 1), 100)
        splice(100, 100)
    shown = capsys.readouterr().out
    assert all(shown.count(f"gap {gap}/3: done in") == 1 for gap in (1, 2, 3))
    assert "splicing" in shown and "100/100" in shown


def test_bad_values_are_refused_before_any_work(tmp_path, sfi):
    crf = tmp_path / "crf.toml"
    crf.write_text("[output]\ncrf = 52\n")
    preset = tmp_path / "preset.toml"
    preset.write_text("[output]\npreset = 'slowest'\n")
    out = tmp_path / "day.mp4"
    for args, message in [
        (["render", RECIPES / "photo-sequence.toml", "-o", out, "--engine", "magic"],
         "--engine (config 'engine') must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'magic'"),
        (["--config", crf, "render", RECIPES / "photo-sequence.toml", "-o", out], "crf.toml:2: 'output.crf' must be an integer from 0 to 51"),
        (["--config", preset, "render", RECIPES / "photo-sequence.toml", "-o", out], "preset.toml:2: 'output.preset' must be one of"),
    ]:
        result = sfi(*args)
        lines = result.stderr.strip().splitlines()
        assert result.code != 0 and len(lines) == 1 and lines[0].startswith("sfi: error: ") and message in lines[0], result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["crf.toml", "preset.toml"]
