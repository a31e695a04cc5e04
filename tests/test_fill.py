"""``sfi fill`` end to end on clips with known cuts: frame counts, sync, untouched footage, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from fractions import Fraction

import numpy as np
import pytest

from clips import decode_all, frame_index, make_clip, stream_facts
from helpers import peak_rss_kib

SFI = [sys.executable, "-m", "sfi_cli"]

FRAMES, CUTS, RATE = 90, (30, 60), Fraction(25)


def fill(sfi, clip, out, *args):
    result = sfi("fill", clip, "-o", out, "--engine", "crossfade", "--json", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def footage_matches(source, output, expected_indices):
    """Output frames at the untouched positions are the source frames, in order, barely changed by re-encoding."""
    for position, index in expected_indices:
        assert frame_index(output[position]) == index, (position, index)
        difference = np.abs(output[position].astype(int) - source[index].astype(int)).mean()
        assert difference < 4, (position, index, difference)


def test_insert_adds_frames_at_each_cut_and_keeps_sync(cut_clip, tmp_path, ffmpeg_exe, sfi):
    out = tmp_path / "insert.mp4"
    summary = fill(sfi, cut_clip, out, "--frames", "12", "--mode", "insert")
    total = FRAMES + 2 * 12
    assert summary["frames_written"] == total and summary["gap_count"] == 2
    facts = stream_facts(out)
    assert facts["frames"] == total and facts["rate"] == RATE
    assert abs(facts["audio_duration"] - facts["video_duration"]) <= 1 / RATE
    assert abs(facts["video_duration"] - total / RATE) < 1e-6
    source, output = decode_all(cut_clip, ffmpeg_exe), decode_all(out, ffmpeg_exe)
    assert len(output) == total
    expected = [(i, i) for i in range(30)] + [(i + 12, i) for i in range(30, 60)] + [(i + 24, i) for i in range(60, 90)]
    footage_matches(source, output, expected)
    # streams and metadata carried over: subtitles (moved past the inserted time), timecode
    assert facts["subtitles"] == ["mov_text"] and facts["video_metadata"]["timecode"] == "01:00:00:00"
    manifest = json.loads((tmp_path / "insert.sfi.json").read_text())
    assert [g["frames"] for g in manifest["gaps"]] == [12, 12] and manifest["cuts"][0]["frame"] == 30


def test_footage_relayed_in_the_kernel_equals_footage_copied_through_python(cut_clip, tmp_path, ffmpeg_exe, sfi,
                                                                           monkeypatch):
    """Linux moves untouched footage pipe to pipe; elsewhere it is read and written: same frames either way."""
    import sfi_cli.media.readers

    def video_md5s(path):
        return subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                              capture_output=True, text=True, check=True).stdout.splitlines()[-(FRAMES + 16):]

    moved = fill(sfi, cut_clip, tmp_path / "moved.mp4", "--frames", "8", "--work-dir", tmp_path / "work")
    monkeypatch.setattr(sfi_cli.media.readers, "CAN_MOVE_FRAMES", False)
    copied = fill(sfi, cut_clip, tmp_path / "copied.mp4", "--frames", "8", "--work-dir", tmp_path / "work")
    assert moved["frames_written"] == copied["frames_written"] == FRAMES + 16
    assert video_md5s(tmp_path / "moved.mp4") == video_md5s(tmp_path / "copied.mp4")


def test_insert_silence_sits_where_the_frames_were_added(cut_clip, tmp_path, sfi):
    """With ``--audio silence`` the tone stops for exactly the inserted stretch, so what follows stays in sync."""
    import av

    out = tmp_path / "insert.mp4"
    fill(sfi, cut_clip, out, "--frames", "25", "--mode", "insert", "--audio", "silence")  # 1 s at each cut
    with av.open(str(out)) as container:
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
    rate = 48000
    window = lambda second: np.abs(samples[int(second * rate): int(second * rate) + 2400]).mean()  # noqa: E731
    assert window(0.5) > 0.05  # tone in shot 1
    assert window(1.5) < 0.01  # the first inserted second (1.2 s .. 2.2 s) is silent
    assert window(2.5) > 0.05  # tone again in shot 2
    assert window(3.8) < 0.01  # the second inserted second (3.4 s .. 4.4 s)
    assert window(5.5) > 0.05


def test_replace_keeps_duration_and_audio(cut_clip, tmp_path, ffmpeg_exe, sfi):
    out = tmp_path / "replace.mp4"
    summary = fill(sfi, cut_clip, out, "--frames", "10", "--mode", "replace", "--sheet", tmp_path / "sheet.png")
    assert summary["frames_written"] == FRAMES
    assert summary["audio_tracks"][0]["copied"] is True
    facts = stream_facts(out)
    assert facts["frames"] == FRAMES and abs(facts["audio_duration"] - facts["video_duration"]) <= 1 / RATE
    source, output = decode_all(cut_clip, ffmpeg_exe), decode_all(out, ffmpeg_exe)
    untouched = [i for i in range(FRAMES) if not (25 <= i < 35 or 55 <= i < 65)]
    footage_matches(source, output, [(i, i) for i in untouched])
    # the transition dissolves between the outer edges, frames 24 and 35 of the source; pulling the
    # frames one step inside (25 and 34: the texture drifts a pixel a frame) would show
    for step in range(10):
        t = (step + 1) / 11
        got = output[25 + step].astype(float)
        right = np.abs(got - ((1 - t) * source[24] + t * source[35])).mean()
        inside = np.abs(got - ((1 - t) * source[25] + t * source[34])).mean()
        assert right < 4 and right < inside, (step, right, inside)
    assert (tmp_path / "sheet.png").is_file()


def test_seconds_and_prores_mov(cut_clip, tmp_path, ffmpeg_exe, sfi):
    out = tmp_path / "out.mov"
    summary = fill(sfi, cut_clip, out, "--seconds", "0.2")  # 5 frames at 25 fps
    assert summary["frames_written"] == FRAMES + 10 and summary["codec"] == "prores"
    facts = stream_facts(out)
    assert facts["pix_fmt"] == "yuv422p10le" and facts["audio_codec"].startswith("pcm")
    assert abs(facts["audio_duration"] - facts["video_duration"]) <= 1 / RATE


def test_formats_and_tags_are_kept(tmp_path, ffmpeg_exe, sfi):
    """10-bit stays 10-bit, colour tags, rotation and a 30000/1001 rate survive the splice."""
    import av

    clip = make_clip(tmp_path / "deep.mp4", ffmpeg_exe, frames=60, cuts=(30,), rate="30000/1001",
                     pix_fmt="yuv420p10le", color=True, rotation=90)
    out = tmp_path / "deep-out.mp4"
    fill(sfi, clip, out, "--frames", "4")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        assert stream.guessed_rate == Fraction(30000, 1001) and stream.frames == 64
        assert context.format.name == "yuv420p10le"
        assert (context.color_primaries, context.color_trc, context.colorspace) == (1, 1, 1)
        assert (context.width, context.height) == (192, 128)
        assert next(container.decode(stream)).rotation == 90


def test_dry_run_prints_plan_and_writes_nothing(cut_clip, tmp_path, sfi):
    out = tmp_path / "dry.mp4"
    result = sfi("fill", cut_clip, "-o", out, "--engine", "semfi", "--frames", "14", "--dry-run")
    assert result.code == 0, result.stderr
    assert "gap 1    14 new frames, insert, engine semfi, expert 17 (model runs 17 frames)" in result.stdout
    assert not out.exists() and not (tmp_path / ".sfi-work" / "gaps").exists()
    assert "cut 1 at frame 30" in (tmp_path / ".sfi-work" / "dry.recipe.toml").read_text()


def test_no_cuts_copies_nothing_unless_asked(still_clip, tmp_path, sfi):
    out = tmp_path / "copy.mp4"
    result = sfi("fill", still_clip, "-o", out, "--engine", "crossfade")
    assert result.code == 0 and "no cuts found" in result.stderr and not out.exists()
    summary = fill(sfi, still_clip, out, "--copy-if-no-cuts")
    assert summary["frames_written"] == 50 and stream_facts(out)["frames"] == 50


def test_inputs_are_never_modified(cut_clip, tmp_path, sfi):
    before = hashlib.sha256(cut_clip.read_bytes()).hexdigest()
    fill(sfi, cut_clip, tmp_path / "o.mp4", "--frames", "3", "--mode", "replace")
    assert hashlib.sha256(cut_clip.read_bytes()).hexdigest() == before


def test_variable_frame_rate_becomes_constant(tmp_path, ffmpeg_exe, sfi):
    clip = make_clip(tmp_path / "vfr.mp4", ffmpeg_exe, frames=60, cuts=(30,), vfr=True)
    out = tmp_path / "cfr.mp4"
    result = sfi("fill", clip, "-o", out, "--engine", "crossfade", "--frames", "5")
    assert result.code == 0, result.stderr
    assert "variable frame rate" in result.stderr and "constant 25 fps" in result.stderr
    facts = stream_facts(out)
    assert facts["rate"] == 25 and abs(facts["audio_duration"] - facts["video_duration"]) <= 1 / 25


@pytest.mark.parametrize("args, message", [
    (["{missing}", "-o", "{out}"], "does not exist"),
    (["{text}", "-o", "{out}"], "not a video"),
    (["{clip}", "-o", "{out}", "--seconds", "0"], "zero-length transition"),
    (["{clip}", "-o", "{out}", "--frames", "0"], "zero-length transition"),
    (["{clip}", "-o", "{out}", "--frames", "40", "--mode", "replace"], "longer than the shot it replaces into"),
    (["{clip}", "-o", "{out}", "--detector", "nope"], "'nope' is not one of"),
    (["{clip}", "-o", "{out}", "--min-scene-len", "12:xx"], "bad timecode"),
    (["{clip}", "-o", "{clip}"], "is also an input"),
    (["{clip}", "-o", "{tmp}/no/such/folder/out.mp4"], "does not exist"),
    (["{clip}", "-o", "{tmp}/out.avi"], "must end in .mp4, .mov or .mkv"),
    (["{clip}", "-o", "{existing}"], "already exists; pass --force"),
    (["{clip}", "-o", "{out}", "--seconds", "nan"],
     "--seconds (config 'fill.seconds') must be an integer or a finite number of at least 0, got nan"),
    (["{clip}", "-o", "{out}", "--seconds", "inf"], "--seconds (config 'fill.seconds') must be"),
    (["{clip}", "-o", "{out}", "--seconds", "-1"], "--seconds (config 'fill.seconds') must be"),
    (["{clip}", "-o", "{out}", "--threshold", "-3"],
     "--threshold (config 'detect.threshold') must be an integer or a finite number of at least 0, got -3.0"),
    (["{clip}", "-o", "{out}", "--threshold", "nan"], "--threshold (config 'detect.threshold') must be"),
    (["{clip}", "-o", "{out}", "--downscale", "-2"], "--downscale (config 'detect.downscale') must be"),
    (["--config", "{crf_config}", "fill", "{clip}", "-o", "{out}"], "crf.toml:2: 'output.crf' must be an integer from 0 to 51"),
    (["--config", "{confidence_config}", "fill", "{clip}", "-o", "{out}"],
     "confidence.toml:2: 'engines.flow.min_confidence' must be an integer or a finite number from 0 to 1, got 2"),
    (["--config", "{seconds_config}", "fill", "{clip}", "-o", "{out}"], "seconds.toml:2: 'fill.seconds' must be"),
])
def test_bad_input_is_one_line_and_leaves_nothing(cut_clip, tmp_path, sfi, args, message):
    (tmp_path / "text.mp4").write_text("hello")
    (tmp_path / "existing.mp4").write_bytes(b"keep me")
    configs = {name: tmp_path / f"{name}.toml" for name in ("crf", "confidence", "seconds")}
    configs["crf"].write_text("[output]\ncrf = 80\n")
    configs["confidence"].write_text("[engines.flow]\nmin_confidence = 2\n")
    configs["seconds"].write_text("[fill]\nseconds = nan\n")
    values = {"missing": tmp_path / "missing.mp4", "text": tmp_path / "text.mp4", "clip": cut_clip,
              "out": tmp_path / "out.mp4", "tmp": tmp_path, "existing": tmp_path / "existing.mp4",
              **{f"{name}_config": path for name, path in configs.items()}}
    args = [a.format(**values) for a in args]
    result = sfi(*(args if args[0] == "--config" else ["fill", *args]), "--engine", "crossfade")
    assert result.code != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith("sfi")
    assert not (tmp_path / "out.mp4").exists() and (tmp_path / "existing.mp4").read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".*partial*"))


def test_prompts_with_control_characters_and_bad_bytes_round_trip(cut_clip, tmp_path, sfi):
    """Bytes that are not UTF-8 on the real command line become U+FFFD; control characters are kept. The recipe
    fill writes parses back to the prompts it used, the manifest is JSON, and rendering that recipe finds the
    same gaps (same prompts, same keys) in the work folder."""
    out = tmp_path / "out.mp4"
    prompt = b'tab\there, line\nbreak, bell\x07, del\x7f, \xc3\xa9t\xc3\xa9 "quoted" back\\slash, bad \xff\xfe end'
    negative = b"no \x1b[31mred\r\x80"
    result = subprocess.run([*SFI, "fill", str(cut_clip).encode(), b"-o", str(out).encode(), b"--engine", b"crossfade",
                             b"--frames", b"3", b"--json", b"--prompt", prompt, b"--negative-prompt", negative],
                            capture_output=True)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    expected = prompt.decode("utf-8", "replace")
    assert "\ufffd\ufffd end" in expected and "\t" in expected and "\x7f" in expected
    recipe_file = tmp_path / ".sfi-work" / "out.recipe.toml"
    recipe = tomllib.loads(recipe_file.read_text(encoding="utf-8"))
    assert [shot["transition"]["prompt"] for shot in recipe["shot"][:-1]] == [expected, expected]
    assert recipe["defaults"]["negative_prompt"] == negative.decode("utf-8", "replace")
    manifest = json.loads((tmp_path / "out.sfi.json").read_text(encoding="utf-8"))
    assert [g["prompt"] for g in manifest["gaps"]] == [expected, expected]
    assert json.loads(result.stdout)["gaps"][0]["negative_prompt"] == negative.decode("utf-8", "replace")

    again = sfi("render", recipe_file, "-o", tmp_path / "again.mp4", "--json")
    assert again.code == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["gaps_cached"] == 2 and [g["key"] for g in summary["gaps"]] == [g["key"] for g in manifest["gaps"]]


def test_long_gaps_run_in_flat_memory(tmp_path, ffmpeg_exe):
    """A 20000-frame transition (contact sheet included) takes no more memory than a 2000-frame one:
    frames stream from the engine through the work folder into the output. Holding them would cost
    20000 x 64x36x3 bytes = 138 MB more."""
    from PIL import Image

    clip = make_clip(tmp_path / "tiny.mp4", ffmpeg_exe, frames=40, cuts=(20,), size=(64, 36), audio=False)
    peaks = {}
    for frames in (2000, 20000):
        out = tmp_path / f"out{frames}.mp4"
        peaks[frames] = peak_rss_kib([*SFI, "fill", str(clip), "-o", str(out), "--engine", "crossfade",
                                       "--frames", str(frames), "--sheet", str(tmp_path / f"sheet{frames}.png"), "-q"])
        assert stream_facts(out)["frames"] == 40 + frames
    assert peaks[20000] < 1.3 * peaks[2000], peaks
    with Image.open(tmp_path / "sheet20000.png") as sheet:  # an even sample of at most 256 thumbnails (32 rows of 8)
        assert sheet.width == 8 * 240 and 16 * 135 <= sheet.height <= 32 * 135
