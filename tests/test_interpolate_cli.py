"""``sfi interpolate`` end to end: exact frame counts checked by ffmpeg, outputs, bad input."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from engines.base import frame_times
from engines.crossfade import CrossfadeEngine
from engines.flow import FlowEngine
from helpers import count_video_frames, peak_rss_kib, textured_image
from sfi_cli.errors import SfiError
from sfi_cli.media.ffmpeg import decode_frames
from sfi_cli.media.targets import parse_target, write_frames
from sfi_cli.media.publish import Publication
from sfi_cli.render.transitions import counted


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# The exact count is the engines' (frame_times), the counter's (counted) and the writer's: the rules are
# checked over many counts below without encoding, and end to end through ffmpeg for a few.
COUNTS = [*range(1, 41), 250]


@pytest.mark.parametrize("frames", [1, 2, 17, 250])
def test_video_holds_exactly_n_new_frames_plus_ends(sfi, image_pair, tmp_path, ffmpeg_exe, frames):
    out = tmp_path / "out.mp4"
    result = sfi("interpolate", *image_pair, "--frames", frames, "-o", out, "--quiet")
    assert result.code == 0, result.stderr
    assert count_video_frames(out, ffmpeg_exe) == frames + 2


def test_frame_times_are_evenly_spaced_strictly_between_the_ends():
    for count in COUNTS:
        times = list(frame_times(count))
        assert len(times) == count
        assert np.allclose(np.diff([0.0, *times, 1.0]), 1 / (count + 1)), count


@pytest.mark.parametrize("engine", [CrossfadeEngine, FlowEngine])
def test_built_in_engines_make_exactly_the_count_asked_for(engine):
    first, last = textured_image(24, 16, seed=1), textured_image(24, 16, seed=2)
    for count in COUNTS:
        frames = list(engine().generate(first, last, count))
        assert len(frames) == count and all(f.shape == (16, 24, 3) for f in frames), count


def test_counter_passes_the_expected_frames_and_stops_any_other_count():
    frame = np.zeros((2, 2, 3), np.uint8)
    assert len(list(counted([frame] * 5, 5, "test"))) == 5
    with pytest.raises(SfiError, match="engine 'test' returned 4 frames instead of 5; this is a bug"):
        list(counted([frame] * 4, 5, "test"))
    with pytest.raises(SfiError, match="returned 6 frames instead of 5"):  # an endless engine is cut off
        list(counted(itertools.repeat(frame), 5, "test"))


def test_png_folder_defaults_to_new_frames_only(sfi, image_pair, tmp_path):
    out = tmp_path / "frames"
    assert sfi("interpolate", *image_pair, "-n", "7", "-o", out, "-q").code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [".sfi-frames.json", *(f"frame_{i:05d}.png" for i in range(1, 8))]  # the marker lists its frames


def test_png_pattern_with_ends(sfi, image_pair, tmp_path):
    pattern = tmp_path / "shot_%03d.png"
    assert sfi("interpolate", *image_pair, "-n", "3", "-o", pattern, "--include-ends", "-q").code == 0
    written = sorted(p.name for p in tmp_path.glob("shot_*.png"))
    assert written == ["shot_001.png", "shot_002.png", "shot_003.png", "shot_004.png", "shot_005.png"]
    first = np.asarray(Image.open(image_pair[0]).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "shot_001.png")), first)
    assert not list(tmp_path.glob(".*partial*"))


def test_ends_in_video_are_the_given_images(sfi, image_pair, tmp_path, ffmpeg_exe):
    out = tmp_path / "out.mp4"
    assert sfi("interpolate", *image_pair, "-n", "4", "-o", out, "-q").code == 0
    decoded = list(decode_frames(out, (80, 48), ffmpeg=ffmpeg_exe))
    first = np.asarray(Image.open(image_pair[0]).convert("RGB"))
    last = np.asarray(Image.open(image_pair[1]).convert("RGB"))
    assert psnr(decoded[0], first) > 25 and psnr(decoded[-1], last) > 25  # yuv420p chroma loss
    assert psnr(decoded[0], last) < psnr(decoded[0], first)


def test_prores_mov_with_fps_and_size(sfi, image_pair, tmp_path):
    out = tmp_path / "out.mov"
    result = sfi("interpolate", *image_pair, "-n", "5", "-o", out, "--fps", "24000/1001", "--size", "64x36", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames_written"] == 7 and summary["fps"] == "24000/1001"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores"
        assert (stream.width, stream.height) == (64, 36)
        assert stream.average_rate == Fraction(24000, 1001)
        assert stream.codec_context.pix_fmt == "yuv422p10le"


def test_mkv_is_h264_in_matroska_like_mp4(sfi, image_pair, tmp_path):
    out = tmp_path / "out.mkv"
    result = sfi("interpolate", *image_pair, "-n", "3", "-o", out, "--fps", "25", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["frames_written"] == 5
    with av.open(str(out)) as container:
        assert "matroska" in container.format.name
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 5
    assert not list(tmp_path.glob(".*sfi*"))


def test_mp4_is_h264_yuv420p_and_odd_sizes_are_padded(sfi, tmp_path):
    first, last = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(textured_image(33, 21, 1)).save(first)
    Image.fromarray(textured_image(33, 21, 2)).save(last)
    out = tmp_path / "out.mp4"
    assert sfi("interpolate", first, last, "-n", "2", "-o", out, "-q").code == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (34, 22)


def test_json_summary_and_contact_sheet(sfi, image_pair, tmp_path):
    out, sheet = tmp_path / "out.mp4", tmp_path / "sheet.png"
    result = sfi("interpolate", *image_pair, "-n", "3", "-o", out, "--engine", "crossfade", "--sheet", sheet, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "crossfade" and summary["new_frames"] == 3 and summary["sheet"] == str(sheet)
    assert Image.open(sheet).size[0] > 0


def test_existing_output_needs_force(sfi, image_pair, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    refused = sfi("interpolate", *image_pair, "-n", "2", "-o", out)
    assert refused.code != 0 and "--force" in refused.stderr
    assert out.read_bytes() == b"precious"
    assert sfi("interpolate", *image_pair, "-n", "2", "-o", out, "--force", "-q").code == 0
    assert out.read_bytes() != b"precious"


def test_failed_write_leaves_no_file(tmp_path, ffmpeg_exe):
    def frames_then_crash():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("engine died")

    for output in ("out.mp4", "frames", "shot_%03d.png"):
        target = parse_target(str(tmp_path / output))
        with pytest.raises(RuntimeError), Publication() as results:
            write_frames(target, frames_then_crash(), results, fps=Fraction(24), ffmpeg=ffmpeg_exe, crf=18,
                         preset="ultrafast")
        assert list(tmp_path.iterdir()) == []


def _bad_inputs(tmp_path, image_pair):
    first, last = image_pair
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(first.read_bytes()[:200])
    broken_config = tmp_path / "broken.toml"
    broken_config.write_text("[output\nfps = 24\n")
    bad_crf = tmp_path / "crf.toml"
    bad_crf.write_text("[output]\ncrf = 60\n")
    bad_preset = tmp_path / "preset.toml"
    bad_preset.write_text("[output]\npreset = 'turbo'\n")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (16385, 2)).save(huge)
    out = tmp_path / "out.mp4"
    first_as_video = tmp_path / "a.mp4"  # a video output that is the first image by another name
    os.link(first, first_as_video)
    return {
        "missing file": ([tmp_path / "nope.png", last, "-n", "3", "-o", out], "does not exist"),
        "not an image": ([not_image, last, "-n", "3", "-o", out], "not an image"),
        "truncated image": ([truncated, last, "-n", "3", "-o", out], "truncated"),
        "zero frames": ([first, last, "-n", "0", "-o", out], "1 or more"),
        "negative frames": ([first, last, "-n", "-4", "-o", out], "1 or more"),
        "non-integer frames": ([first, last, "-n", "2.5", "-o", out], "not a valid integer"),
        "missing output folder": ([first, last, "-n", "3", "-o", tmp_path / "no" / "out.mp4"], "does not exist"),
        "output equals input": ([first, last, "-n", "3", "-o", first_as_video, "--force"], "also an input"),
        "unknown engine": ([first, last, "-n", "3", "-o", out, "--engine", "magic"],
                           "--engine (config 'engine') must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'magic'"),
        "unknown extension": ([first, last, "-n", "3", "-o", tmp_path / "out.avi"], "unknown output extension"),
        "bad size": ([first, last, "-n", "3", "-o", out, "--size", "wide"], "bad size"),
        "bad fps": ([first, last, "-n", "3", "-o", out, "--fps", "fast"], "bad frame rate"),
        "nan fps": ([first, last, "-n", "3", "-o", out, "--fps", "nan"], "bad frame rate 'nan'"),
        "huge fps": ([first, last, "-n", "3", "-o", out, "--fps", "1e400"], "1/1000 to 100000 fps"),
        "tiny fps": ([first, last, "-n", "3", "-o", out, "--fps", "1/100000"], "1/1000 to 100000 fps"),
        "fps terms": ([first, last, "-n", "3", "-o", out, "--fps", "2147483647/2147483648"], "up to 2147483647"),
        "huge size": ([first, last, "-n", "3", "-o", out, "--size", "100000x100000"],
                      "size 100000x100000 is too large: sfi works on frames of at most 16384 pixels a side and 67 Mpx"),
        "too many pixels": ([first, last, "-n", "3", "-o", out, "--size", "16000x9000"], "size 16000x9000 is too large"),
        "huge image": ([huge, last, "-n", "3", "-o", out], "huge.png' of 16385x2 is too large"),
        "inf cfg": ([first, last, "-n", "3", "-o", out, "--cfg", "inf"], "--cfg (config 'engines.semfi.cfg') must be"),
        "zero steps": ([first, last, "-n", "3", "-o", out, "--steps", "0"], "--steps (config 'engines.semfi.steps') must be an integer of at least 1, got 0"),
        "bad dtype": ([first, last, "-n", "3", "-o", out, "--dtype", "int8"], "'int8' is not one of"),
        "crf out of range": (["--config", bad_crf, "interpolate", first, last, "-n", "3", "-o", out],
                             "crf.toml:2: 'output.crf' must be an integer from 0 to 51, got 60"),
        "unknown preset": (["--config", bad_preset, "interpolate", first, last, "-n", "3", "-o", out],
                           "preset.toml:2: 'output.preset' must be one of ultrafast"),
        "broken config": (["--config", broken_config, "interpolate", first, last, "-n", "3", "-o", out], "broken.toml"),
    }


BAD_INPUT_CASES = ["missing file", "not an image", "truncated image", "zero frames", "negative frames",
                   "non-integer frames", "missing output folder", "output equals input", "unknown engine",
                   "unknown extension", "bad size", "bad fps", "broken config", "nan fps", "huge size",
                   "too many pixels", "huge image", "inf cfg", "zero steps", "bad dtype", "crf out of range",
                   "unknown preset", "huge fps", "tiny fps", "fps terms"]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_one_clear_line_and_no_output(sfi, tmp_path, image_pair, case):
    args, expected_text = _bad_inputs(tmp_path, image_pair)[case]
    if args[0] != "--config":
        args = ["interpolate", *args]
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = sfi(*args)
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sfi") and expected_text in lines[0]
    assert "Traceback" not in result.stderr
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before, "bad input must not create or touch any file"


def test_help_imports_no_heavy_library():
    """``sfi --help`` must not pay for numpy, cv2, torch or diffsynth."""
    code = ("import sys; from sfi_cli.commands import main\n"
            "try:\n    main(['interpolate', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('numpy', 'cv2', 'torch', 'diffsynth', 'PIL', 'av', 'scenedetect', 'rich') if m in sys.modules)\n"
            "print('HEAVY=' + ','.join(heavy))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in output or output.rstrip().endswith("HEAVY="), output


def test_validation_rejects_pattern_without_number():
    with pytest.raises(SfiError):
        parse_target("frames/%s.png")


def test_many_new_frames_stream_in_flat_memory(tmp_path, ffmpeg_exe):
    """-n 20000 takes no more memory than -n 2000: the engine's frames go straight to the encoder."""
    first, last = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(textured_image(64, 36, seed=3)).save(first)
    Image.fromarray(textured_image(64, 36, seed=4)).save(last)
    peaks = {}
    for frames in (2000, 20000):
        out = tmp_path / f"out{frames}.mp4"
        peaks[frames] = peak_rss_kib([sys.executable, "-m", "sfi_cli", "interpolate", str(first), str(last), "-n",
                                      str(frames), "-o", str(out), "--engine", "crossfade", "-q"])
        assert count_video_frames(out, ffmpeg_exe) == frames + 2
    assert peaks[20000] < 1.3 * peaks[2000], peaks


def test_contact_sheet_keeps_an_even_sample_numbered_by_frame():
    from sfi_cli.media.targets import ContactSheet

    sheet = ContactSheet(limit=8)
    frames = [np.full((4, 8, 3), i % 256, np.uint8) for i in range(100)]
    assert all(sheet.add(frame) is frame for frame in frames)  # every frame passes through untouched
    numbers = [number for number, _ in sheet.thumbnails]
    steps = {b - a for a, b in zip(numbers, numbers[1:])}
    assert 4 <= len(numbers) <= 8 and numbers[0] == 1 and len(steps) == 1 and numbers[-1] + steps.pop() > 100
    assert [np.asarray(t)[0, 0, 0] for _, t in sheet.thumbnails] == [(n - 1) % 256 for n in numbers]
