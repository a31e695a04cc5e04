"""What an editor chooses per run: which cuts get a transition (``--cuts``, ``--min-score``), the output's
codec, quality and preset (``--codec``, ``--crf``, ``--preset`` on every command that writes video), and a
minimum shot length that is a time, so low-rate footage keeps its cuts."""

from __future__ import annotations

import json
import subprocess

import pytest

from clips import make_clip
from helpers import count_video_frames


@pytest.fixture(scope="module")
def three_cuts(tmp_path_factory):
    from sfi_cli.media.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    folder = tmp_path_factory.mktemp("choices")
    return make_clip(folder / "clip.mp4", ffmpeg, frames=80, cuts=(20, 40, 60), audio=False), ffmpeg


def video_codec(path, ffmpeg) -> str:
    from sfi_cli.media.probe import probe

    return probe(path).codec


def test_only_the_chosen_cuts_get_a_transition(tmp_path, three_cuts, sfi):
    clip, ffmpeg = three_cuts
    out = tmp_path / "out.mp4"
    result = sfi("fill", clip, "-o", out, "--cuts", "1,3", "--engine", "crossfade", "--frames", "4", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(c["number"], c["frame"], c["filled"]) for c in summary["cuts"]] == [(1, 20, True), (2, 40, False),
                                                                                 (3, 60, True)]
    assert [gap["output_start"] for gap in summary["gaps"]] == [20, 64]  # cut 2 stays a plain cut
    assert count_video_frames(out, ffmpeg) == 88
    recipe = (tmp_path / ".sfi-work" / "out.recipe.toml").read_text()
    assert "cut 1 at frame 20" in recipe and "cut 3 at frame 60" in recipe and "cut 2 " not in recipe


def test_a_range_and_a_minimum_score(tmp_path, three_cuts, sfi):
    clip, _ = three_cuts
    listed = json.loads(sfi("detect", clip, "--json").stdout)["cuts"]
    floor = sorted(c["score"] for c in listed)[1]  # the two highest scores at least this
    result = sfi("fill", clip, "-o", tmp_path / "out.mp4", "--cuts", "1-3", "--min-score", floor, "--engine",
                 "crossfade", "--frames", "2", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    filled = [c["number"] for c in json.loads(result.stdout)["cuts"] if c["filled"]]
    assert filled == [n for n, c in enumerate(listed, start=1) if c["score"] >= floor] and len(filled) == 2


@pytest.mark.parametrize("cuts, message", [
    ("2,x", "sfi: error: --cuts 2,x: 'x' is not a cut number or range"),
    ("3-1", "sfi: error: --cuts 3-1: '3-1' is not a cut number or range"),
    ("0", "sfi: error: --cuts 0: '0' is not a cut number or range"),
    ("1-", "sfi: error: --cuts 1-: '1-' is not a cut number or range"),
    ("2,4", "sfi: error: --cuts names cut 4, but 3 cuts were found; see them numbered with: sfi detect VIDEO"),
])
def test_a_wrong_cut_choice_is_one_line_and_writes_nothing(tmp_path, three_cuts, sfi, cuts, message):
    result = sfi("fill", three_cuts[0], "-o", tmp_path / "out.mp4", "--cuts", cuts, "--engine", "crossfade", "-q")
    assert result.code == 1 and result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_cut_chosen_writes_nothing_unless_a_copy_is_asked_for(tmp_path, three_cuts, sfi):
    clip, ffmpeg = three_cuts
    out = tmp_path / "out.mp4"
    result = sfi("fill", clip, "-o", out, "--min-score", 10_000, "--engine", "crossfade")
    assert result.code == 0 and "none of the 3 cuts found in clip.mp4 is chosen" in result.stderr
    assert not out.exists()
    copied = sfi("fill", clip, "-o", out, "--min-score", 10_000, "--copy-if-no-cuts", "--engine", "crossfade", "-q")
    assert copied.code == 0, copied.stderr
    assert count_video_frames(out, ffmpeg) == 80


def test_codec_flag_on_fill_render_and_interpolate(tmp_path, three_cuts, image_pair, sfi):
    clip, ffmpeg = three_cuts
    lossless = tmp_path / "lossless.mkv"
    assert sfi("fill", clip, "-o", lossless, "--codec", "ffv1", "--engine", "crossfade", "--frames", "2", "-q").code == 0
    assert video_codec(lossless, ffmpeg) == "ffv1"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[output]\npath = "r.mkv"\ncodec = "h264"\n\n[[shot]]\nvideo = "{clip}"\n')
    assert sfi("render", recipe, "--codec", "prores", "-q").code == 0  # the flag wins over the recipe
    assert video_codec(tmp_path / "r.mkv", ffmpeg) == "prores"
    assert sfi("interpolate", *image_pair, "-n", "2", "-o", tmp_path / "i.mkv", "--codec", "h265", "-q",
               "--engine", "crossfade").code == 0
    assert video_codec(tmp_path / "i.mkv", ffmpeg) == "hevc"


def test_a_codec_the_container_cannot_hold_is_one_line_before_detection(tmp_path, three_cuts, sfi):
    result = sfi("fill", three_cuts[0], "-o", tmp_path / "out.mp4", "--codec", "ffv1")
    assert result.code == 1 and result.stderr == "sfi: error: codec ffv1 cannot be written to 'out.mp4': use .mkv\n"
    assert list(tmp_path.iterdir()) == []


def test_crf_and_preset_flags_reach_the_encoder(tmp_path, three_cuts, sfi):
    """x264 writes its settings into the stream: the flags' values are there, over the recipe's own."""
    clip, _ = three_cuts
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[output]\npath = "r.mp4"\nquality = 10\npreset = "slow"\n\n[[shot]]\nvideo = "{clip}"\n')
    assert sfi("render", recipe, "--crf", "33", "--preset", "veryfast", "-q").code == 0
    settings = (tmp_path / "r.mp4").read_bytes()
    assert b"crf=33.0" in settings and b"subme=2" in settings  # veryfast's subme; slow would write subme=8
    out = tmp_path / "f.mp4"
    assert sfi("fill", clip, "-o", out, "--crf", "40", "--engine", "crossfade", "--frames", "2", "-q").code == 0
    assert b"crf=40.0" in out.read_bytes()


def test_the_shortest_shot_is_half_a_second_by_default(tmp_path, sfi, ffmpeg_exe):
    """At 10 fps, shots 8 frames (0.8 s) long are kept apart; 15 frames would have merged them."""
    clip = make_clip(tmp_path / "ten.mp4", ffmpeg_exe, frames=40, cuts=(8, 16, 24, 32), rate="10", audio=False)
    cuts = json.loads(sfi("detect", clip, "--json").stdout)["cuts"]
    assert [c["frame"] for c in cuts] == [8, 16, 24, 32]
    fewer = json.loads(sfi("detect", clip, "--json", "--min-scene-len", "15").stdout)["cuts"]
    assert len(fewer) < 4


def test_dry_run_json_is_a_structured_plan(tmp_path, three_cuts, sfi):
    """One object per gap (frames, output times, boundary frames, engine with its notes, key) and every segment
    in output order, whose frames add up to the plan's; the terminal's lines are not in it."""
    clip, _ = three_cuts
    result = sfi("fill", clip, "-o", tmp_path / "out.mp4", "--engine", "semfi", "--frames", "14", "--dry-run", "--json",
                 "-q")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "plan_lines" not in summary and not (tmp_path / ".sfi-work" / "gaps").exists()
    plan = summary["plan"]
    assert sum(s["frames"] for s in plan["segments"]) == summary["frames"] == 80 + 3 * 14
    gaps = plan["gaps"]
    assert [(g["number"], g["frames"], g["output_start"], g["before"]["frame"], g["after"]["frame"]) for g in gaps] == \
        [(1, 14, 20, 19, 20), (2, 14, 54, 39, 40), (3, 14, 88, 59, 60)]
    assert gaps[1]["start_seconds"] == 54 / 25 and gaps[1]["end_seconds"] == 68 / 25
    assert all(g["notes"] == {"semfi_expert": 17} and g["engine"] == "semfi" for g in gaps)
    assert len({g["key"] for g in gaps}) == 3
    assert [s["kind"] for s in plan["segments"]] == ["footage", "gap"] * 3 + ["footage"]
    text = sfi("fill", clip, "-o", tmp_path / "out.mp4", "--engine", "semfi", "--frames", "14", "--dry-run", "-q")
    assert "gap 1    14 new frames, insert, engine semfi, expert 17" in text.stdout


def fade_clip(path, ffmpeg):
    """A moving texture (frames 0-29), a hard cut to black (30-49), a second texture fading in from black
    (from 5% at frame 50, 4% more each frame) and held to 79, then a hard cut to a third (80-99)."""
    import numpy as np

    from helpers import textured_image

    shots = [textured_image(160, 96, seed=seed) for seed in (1, 2, 3)]
    frames = []
    for index in range(100):
        if index < 30:
            frame = np.roll(shots[0], index, axis=1)
        elif index < 50:
            frame = np.zeros_like(shots[0])
        elif index < 80:
            frame = (shots[1] * min(1.0, 0.05 + (index - 50) * 0.04)).astype(np.uint8)
        else:
            frame = shots[2]
        frames.append(frame)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "160x96", "-r", "25",
                    "-i", "-", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)],
                   input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def test_a_fade_in_from_black_is_left_out_unless_asked_a_hard_cut_to_black_is_not(tmp_path, sfi, ffmpeg_exe):
    clip = fade_clip(tmp_path / "fade.mp4", ffmpeg_exe)
    found = sfi("detect", clip, "--json")
    assert found.code == 0, found.stderr
    listed = json.loads(found.stdout)
    assert [c["frame"] for c in listed["cuts"]] == [30, 80]  # the hard cut to black and the hard cut
    left_out = [c["frame"] for c in listed["fades_left_out"]]
    assert left_out == [50]  # black into a picture still brightening
    assert "1 fade in from or out to black left out (not cuts to fill), at frame 50; pass --fade-cuts" in found.stderr
    everything = json.loads(sfi("detect", clip, "--json", "--fade-cuts").stdout)
    assert [c["frame"] for c in everything["cuts"]] == [30, 50, 80] and everything["fades_left_out"] == []
    filled = sfi("fill", clip, "-o", tmp_path / "out.mp4", "--engine", "crossfade", "--frames", "2", "--json", "-q")
    assert [gap["output_start"] for gap in json.loads(filled.stdout)["gaps"]] == [30, 82]


def test_preview_is_the_transitions_with_handles_at_half_size_without_sound(tmp_path, sfi, ffmpeg_exe):
    from sfi_cli.media.probe import probe

    clip = make_clip(tmp_path / "clip.mp4", ffmpeg_exe, frames=60, cuts=(20, 40))  # with sound
    work = tmp_path / "work"
    result = sfi("fill", clip, "-o", tmp_path / "preview.mp4", "--engine", "crossfade", "--frames", "4", "--preview",
                 "--handles", "5", "--work-dir", work, "--json", "-q")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    # 5 frames of shot 1, gap, 5 + 5 of shot 2 (20 frames long), gap, 5 of shot 3
    assert summary["frames"] == 28 and [gap["output_start"] for gap in summary["gaps"]] == [5, 19]
    info = probe(tmp_path / "preview.mp4")
    assert (info.width, info.height, info.frame_count, info.audio) == (96, 64, 28, ())
    assert b"subme=0" in (tmp_path / "preview.mp4").read_bytes()  # x264's ultrafast
    full = json.loads(sfi("fill", clip, "-o", tmp_path / "full.mp4", "--engine", "crossfade", "--frames", "4",
                          "--work-dir", work, "--json", "-q").stdout)
    assert full["gaps_cached"] == 0  # half-size transitions never stand in for full-size ones


def test_preview_of_a_timeline_without_transitions_is_one_line(tmp_path, three_cuts, sfi):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[output]\npath = "r.mp4"\n\n[[shot]]\nvideo = "{three_cuts[0]}"\n')
    result = sfi("render", recipe, "--preview")
    assert result.code == 1 and result.stderr == ("sfi: error: nothing to preview: the timeline has no transitions "
                                                  "(drop --preview to render it)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]


@pytest.mark.parametrize("levels, cut, fade", [
    ([0.5] * 8 + [87.6] * 8, 8, False),  # a hard cut from black into a picture at full level
    ([87.3] * 8 + [0.9] * 8, 8, False),  # a hard cut to black
    ([1.0] * 8 + [3.2, 5.4, 7.9, 10.4, 13.0, 15.6, 18.2, 20.8], 8, True),  # black into a picture still brightening
    ([60, 50, 40, 30, 20, 16, 13, 9.0] + [0.5] * 8, 8, True),  # a picture already darkening, into black
    ([1.0] * 8 + [2.0] * 8, 8, True),  # black on both sides
    ([80.0] * 8 + [20.0] * 8, 8, False),  # no black at all
])
def test_fade_edges_are_told_from_cuts_to_and_from_black(levels, cut, fade):
    """Measured on ../shared's leaves-cuts-720p.mp4: its hard cuts from and to black (frames 30, 180) stay
    cuts, its fade in from black (394: levels 1.0, 3.2, 5.4, 7.9 ...) is a fade's edge."""
    from sfi_cli.timeline.cuts import fade_edge

    assert fade_edge(levels, cut) is fade
