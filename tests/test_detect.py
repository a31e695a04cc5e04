"""Cut detection on clips with hard cuts at known frames, and frame-accurate access by number."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from clips import frame_index, make_clip
from sfi_cli.config.schema import SCHEMA
from sfi_cli.timeline.cuts import DEFAULT_THRESHOLDS, detect_cuts, make_detector
from sfi_cli.media.probe import probe
from sfi_cli.timeline.recipe import load_recipe
from sfi_cli.media.readers import VideoReader
from sfi_cli.timeline.timecode import format_timecode, parse_position


@pytest.mark.parametrize("detector", ["adaptive", "content", "hash"])
def test_cuts_found_within_one_frame(cut_clip, ffmpeg_exe, detector):
    # The hash detector's default (0.395) is tuned for real footage; these noise textures differ less.
    threshold = 0.3 if detector == "hash" else None
    detection = detect_cuts(probe(cut_clip), detector=detector, threshold=threshold, ffmpeg=ffmpeg_exe)
    found = [cut.frame for cut in detection.cuts]
    assert len(found) == 2, found
    for expected, got in zip((30, 60), found):
        assert abs(got - expected) <= 1
    assert detection.frames == 90


def test_threshold_detector_finds_a_fade(tmp_path, ffmpeg_exe):
    clip = make_clip(tmp_path / "fade.mp4", ffmpeg_exe, frames=60, cuts=(), audio=False)
    faded = tmp_path / "faded.mp4"
    import subprocess

    dip = "clip(abs(T-1.2)/0.4-0.25\\,0\\,1)"  # black from 1.1 s to 1.3 s, fading either side
    subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(clip), "-vf",
                    f"format=gbrp,geq=r='r(X\\,Y)*{dip}':g='g(X\\,Y)*{dip}':b='b(X\\,Y)*{dip}'",
                    "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(faded)], check=True)
    detection = detect_cuts(probe(faded), detector="threshold", ffmpeg=ffmpeg_exe)
    assert len(detection.cuts) == 1 and 20 <= detection.cuts[0].frame <= 40


@pytest.mark.parametrize("rate", ["25", "30000/1001"])
def test_frame_pulled_is_the_frame_detected(tmp_path, ffmpeg_exe, rate):
    """Seeking (mid-GOP, backwards, forwards) returns exactly the numbered frame, incl. at each cut."""
    clip = make_clip(tmp_path / "c.mp4", ffmpeg_exe, frames=150, cuts=(37, 101), rate=rate)
    info = probe(clip)
    assert info.rate == Fraction(rate) and info.frame_count == 150
    cuts = [cut.frame for cut in detect_cuts(info, ffmpeg=ffmpeg_exe).cuts]
    assert cuts == [37, 101]
    reader = VideoReader(info, size=(info.width, info.height), fit="cover", rate=info.rate, pix_fmt="rgb24",
                         keep_rotation=True, ffmpeg=ffmpeg_exe)
    try:
        for index in (101, 100, 37, 36, 149, 0, 71, 72, 140, 3):
            assert frame_index(reader.frame(index)) == index
        assert [frame_index(f) for f in reader.frames(95, 110)] == list(range(95, 110))
    finally:
        reader.close()
    # a transition's boundary frames are read again right after the footage that holds them
    reader = VideoReader(info, size=(info.width, info.height), fit="cover", rate=info.rate, pix_fmt="rgb24",
                         keep_rotation=True, ffmpeg=ffmpeg_exe)
    try:
        assert [frame_index(f) for f in reader.frames(0, 37)] == list(range(37))
        assert frame_index(reader.frame(36)) == 36  # the last frame written before a cut
        assert frame_index(reader.frame(37)) == 37  # the first frame after it ...
        assert [frame_index(f) for f in reader.frames(37, 40)] == [37, 38, 39]  # ... and still the footage's first
        assert frame_index(reader.frame(38)) == 38 and frame_index(reader.frame(36)) == 36  # a seek back, not a replay
    finally:
        reader.close()


def test_detect_cli_lists_cuts_and_writes_recipe(cut_clip, tmp_path, sfi):
    recipe = tmp_path / "cuts.toml"
    result = sfi("detect", cut_clip, "--recipe", recipe, "--seconds", "0.4")
    assert result.code == 0, result.stderr
    assert "2 cuts" in result.stdout and "00:00:01:05" in result.stdout
    loaded = load_recipe(recipe)
    assert [(s.start.frames, s.stop.frames) for s in loaded.shots] == [(0, 30), (30, 60), (60, 90)]
    transitions = [s.transition for s in loaded.shots[:2]]
    assert all(t.length.frames == 10 and t.prompt == "" for t in transitions)
    assert loaded.shots[0].path.resolve() == cut_clip.resolve()
    again = sfi("detect", cut_clip, "--recipe", recipe)
    assert again.code != 0 and "already exists" in again.stderr


def test_detect_json(cut_clip, sfi):
    result = sfi("detect", cut_clip, "--json", "--detector", "content")
    data = json.loads(result.stdout)
    assert [c["frame"] for c in data["cuts"]] == [30, 60]
    assert data["cuts"][0]["timecode"] == "00:00:01:05" and data["cuts"][0]["score"] > 27
    assert data["fps"] == "25/1" and data["frames"] == 90


def test_no_cuts_says_so(still_clip, sfi):
    result = sfi("detect", still_clip)
    assert result.code == 0 and result.stdout.startswith("0 cuts")


@pytest.mark.parametrize("args, message", [
    (["missing.mp4"], "does not exist"),
    (["--detector", "magic"], "'magic' is not one of"),
    (["--min-scene-len", "1:99:00:00"], "bad timecode"),
])
def test_detect_bad_input(cut_clip, sfi, args, message):
    args = args if args[0] == "missing.mp4" else [cut_clip, *args]
    result = sfi("detect", *args)
    assert result.code != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_not_a_video(tmp_path, sfi):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    result = sfi("detect", text)
    assert result.code != 0 and "not a video" in result.stderr


def test_variable_frame_rate_is_converted_with_a_warning(tmp_path, ffmpeg_exe, sfi):
    clip = make_clip(tmp_path / "vfr.mp4", ffmpeg_exe, frames=60, cuts=(30,), vfr=True)
    info = probe(clip)
    assert info.vfr and info.rate == 25
    result = sfi("detect", clip, "--json")
    assert "variable frame rate" in result.stderr and "25 fps" in result.stderr
    assert len(json.loads(result.stdout)["cuts"]) == 1


@pytest.mark.parametrize("text, rate, frames", [
    ("00:00:04:12", Fraction(25), 112), ("00:01:00;02", Fraction(30000, 1001), 1800), ("2.5s", Fraction(24), 60),
    (48, Fraction(24), 48), (1.5, Fraction(24), 36), ("01:02.5", Fraction(24), 1500), ("120f", Fraction(25), 120),
])
def test_positions(text, rate, frames):
    assert parse_position(text).to_frames(rate) == frames


def test_drop_frame_timecode_round_trips():
    rate = Fraction(30000, 1001)
    for frame in (0, 1799, 1800, 17982, 107892, 123456):
        assert parse_position(format_timecode(frame, rate)).to_frames(rate) == frame


def test_every_detector_the_schema_offers_can_be_made():
    for name in SCHEMA["detect.detector"].allowed():
        detector, score_key = make_detector(name, DEFAULT_THRESHOLDS[name], 15)
        assert isinstance(score_key(detector), str)
