"""Every stream kept, in sync: audio start offsets, sound under inserted transitions, Matroska streams.

Sync is measured, not assumed: the clips' audio is seeded noise, so a stretch of the source's sound
is found in the output by cross-correlation at one lag only, and its time is compared with where
the video puts it (later by the transition frames inserted before it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clips import (FONT_BYTES, STREAM_CUT, STREAM_FRAMES, STREAM_RATE, STREAM_SAMPLE_RATE, stream_audio)

GAP = 10  # transition frames
INSERTED = GAP / STREAM_RATE  # seconds an insert transition adds at the cut
CUT = STREAM_CUT / STREAM_RATE  # the cut, seconds from the first frame


def fill(sfi, clip, out, *args):
    result = sfi("fill", clip, "-o", out, "--engine", "crossfade", "--frames", str(GAP), "--json", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def decoded_audio(path, track: int) -> tuple[np.ndarray, float]:
    """Track ``track`` of ``path`` as float mono samples, and its first sample's time after the first frame."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video_start = float(video.start_time * video.time_base)
        frames = list(container.decode(container.streams.audio[track]))
    samples = np.concatenate([frame.to_ndarray()[0] for frame in frames]).astype(np.float64)
    if np.issubdtype(frames[0].to_ndarray().dtype, np.integer):
        samples /= 2.0 ** 31
    return samples, frames[0].time - video_start


def found_at(signal: np.ndarray, stretch: np.ndarray) -> int:
    """The sample of ``signal`` where ``stretch`` lines up best (FFT cross-correlation)."""
    size = len(signal) + len(stretch)
    correlation = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(stretch, size)), size)
    return int(np.argmax(correlation[:len(signal) - len(stretch) + 1]))


def heard_at(path, track: int, offset: float, source_time: float, within: tuple[float, float] | None = None) -> float:
    """Where, in seconds after the output's first frame, the output plays the sound that the source track
    (starting ``offset`` s after its video) played ``source_time`` s after its first frame; ``within`` limits
    the search to a stretch of the output (a crossfade plays some sound twice)."""
    samples, start = decoded_audio(path, track)
    first = round((source_time - offset) * STREAM_SAMPLE_RATE)
    stretch = stream_audio(track, 3.0)[first:first + STREAM_SAMPLE_RATE // 20]
    low, high = (round((t - start) * STREAM_SAMPLE_RATE) for t in within) if within else (0, len(samples))
    return start + (low + found_at(samples[low:high], stretch)) / STREAM_SAMPLE_RATE


@pytest.mark.parametrize("mode", ["insert", "replace"])
@pytest.mark.parametrize("clip, offsets", [("late_audio_clip", (0.3, 0.12)), ("early_audio_clip", (-0.2,))])
def test_every_audio_track_keeps_its_offset_from_the_video(request, tmp_path, sfi, mode, clip, offsets):
    """Each track plays each sound at the same place relative to the picture as in the source (within 1 ms),
    before and after an inserted transition, in both modes: a track that starts 0.3 s after the video still
    does; a track that starts before the video loses only the sound before the first frame."""
    out = tmp_path / f"{mode}.mp4"
    fill(sfi, request.getfixturevalue(clip), out, "--mode", mode)
    shift = INSERTED if mode == "insert" else 0.0
    for track, offset in enumerate(offsets):
        for source_time, expected in ((0.5, 0.5), (CUT + 0.5, CUT + 0.5 + shift)):
            error = heard_at(out, track, offset, source_time) - expected
            assert abs(error) < 0.001, (mode, track, source_time, error)


def rms(samples: np.ndarray, start: float, stop: float) -> float:
    return float(np.sqrt(np.mean(samples[round(start * STREAM_SAMPLE_RATE):round(stop * STREAM_SAMPLE_RATE)] ** 2)))


def test_inserted_transition_crossfades_the_two_sides_sound_by_default(late_audio_clip, tmp_path, sfi):
    """Under the transition the outgoing shot's sound runs on, then the incoming shot's sound leads in:
    never a dip to silence, the exact length, and everything after in sync."""
    out = tmp_path / "crossfade.mov"  # PCM: samples are exact
    summary = fill(sfi, late_audio_clip, out)
    assert summary["frames_written"] == STREAM_FRAMES + GAP
    for track, offset in enumerate((0.3, 0.12)):
        samples, start = decoded_audio(out, track)
        assert start == 0 and len(samples) == round((STREAM_FRAMES + GAP) / STREAM_RATE * STREAM_SAMPLE_RATE)
        floor = 0.5 * rms(samples, 0.5, 0.9)
        windows = np.arange(CUT, CUT + INSERTED - 0.04, 0.02)
        assert min(rms(samples, t, t + 0.02) for t in windows) > floor
        gap = (CUT, CUT + INSERTED)
        # first half: the sound that followed the outgoing shot in the source, at the same time
        assert abs(heard_at(out, track, offset, CUT + 0.02, gap) - (CUT + 0.02)) < 0.001
        # second half: the sound that came before the incoming shot, leading into it
        assert abs(heard_at(out, track, offset, CUT - 0.12, gap) - (CUT - 0.12 + INSERTED)) < 0.001


def test_silence_under_transitions_is_a_setting(late_audio_clip, tmp_path, sfi):
    """``fill.audio = "silence"`` (config) / ``--audio silence``: the transition is silent, the length exact,
    and the recipe that fill writes says so."""
    config = tmp_path / "sfi.toml"
    config.write_text('[fill]\naudio = "silence"\n')
    out = tmp_path / "silence.mov"
    result = sfi("--config", config, "fill", late_audio_clip, "-o", out, "--engine", "crossfade", "--frames", str(GAP))
    assert result.code == 0, result.stderr
    assert 'audio = "silence"' in (tmp_path / ".sfi-work" / "silence.recipe.toml").read_text()
    samples, _ = decoded_audio(out, 0)
    assert len(samples) == round((STREAM_FRAMES + GAP) / STREAM_RATE * STREAM_SAMPLE_RATE)
    assert rms(samples, CUT + 0.02, CUT + INSERTED - 0.02) < 1e-4
    assert rms(samples, 0.5, 0.9) > 0.1 and rms(samples, CUT + INSERTED + 0.02, CUT + INSERTED + 0.4) > 0.1
    # the flag overrides the config
    again = fill(sfi, late_audio_clip, tmp_path / "flag.mov", "--audio", "crossfade")
    samples, _ = decoded_audio(again["output"], 0)
    assert rms(samples, CUT + 0.02, CUT + INSERTED - 0.02) > 0.1


def stream_kinds(path) -> dict:
    """Codec names per stream kind, attachments (name, mimetype, bytes), chapters and subtitle events."""
    import av

    with av.open(str(path)) as container:
        facts = {"kinds": [s.type for s in container.streams],
                 "subtitles": [s.codec_context.name for s in container.streams.subtitles],
                 "attachments": [(s.metadata.get("filename"), s.metadata.get("mimetype"), bytes(s.data))
                                 for s in container.streams.attachments],
                 "chapters": [(float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]),
                               c["metadata"].get("title")) for c in container.chapters()]}
        events = []
        if container.streams.subtitles:
            stream = container.streams.subtitles[0]
            events = [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in container.demux(stream) if p.size]
        facts["events"] = events
    return facts


def test_matroska_fill_keeps_ass_fonts_and_chapters(matroska_clip, tmp_path, sfi):
    out = tmp_path / "filled.mkv"
    summary = fill(sfi, matroska_clip, out)
    assert summary["codec"] == "h264" and summary["warnings"] == []
    facts = stream_kinds(out)
    assert facts["subtitles"] in (["ass"], ["ssa"])
    assert facts["attachments"] == [("SfiTest.ttf", "application/x-truetype-font", FONT_BYTES)]
    # the ASS events keep their styling and move later by the inserted transition when after the cut
    (first_time, first), (last_time, last) = facts["events"]
    assert b"{\\b1}first line" in first and b"last line" in last
    assert first_time == pytest.approx(0.2, abs=0.002) and last_time == pytest.approx(1.4 + INSERTED, abs=0.002)
    # chapters: the one that starts at the cut starts after its transition
    assert facts["chapters"] == [pytest.approx((0.0, CUT + INSERTED, "Before the cut")),
                                 pytest.approx((CUT + INSERTED, 2.0 + INSERTED, "After the cut"))]
    manifest = json.loads((tmp_path / "filled.sfi.json").read_text())
    assert manifest["attachments"] == ["SfiTest.ttf"] and manifest["chapters"] == 2


def test_ass_into_mp4_is_converted_with_a_warning_in_the_manifest(matroska_clip, tmp_path, sfi):
    out = tmp_path / "filled.mp4"
    result = sfi("fill", matroska_clip, "-o", out, "--engine", "crossfade", "--frames", str(GAP), "--mode", "replace")
    assert result.code == 0, result.stderr
    warnings = json.loads((tmp_path / "filled.sfi.json").read_text())["warnings"]
    assert any("becomes mov_text in .mp4" in w and "loses its styling" in w for w in warnings), warnings
    assert any("SfiTest.ttf" in w and "cannot carry attachments" in w for w in warnings), warnings
    assert all(f"warning: {w}" in result.stderr for w in warnings)
    facts = stream_kinds(out)
    assert facts["subtitles"] == ["mov_text"] and facts["attachments"] == []
    assert [c[2] for c in facts["chapters"]] == ["Before the cut", "After the cut"]


def test_detect_recipe_keeps_the_matroska_container(matroska_clip, tmp_path, sfi):
    recipe = tmp_path / "cuts.toml"
    result = sfi("detect", matroska_clip, "--recipe", recipe, "-q")
    assert result.code == 0, result.stderr
    assert f'path = "{matroska_clip.stem}-filled.mkv"' in recipe.read_text()


def test_transition_audio_in_a_recipe_is_checked(late_audio_clip, tmp_path, sfi):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'[[shot]]\nvideo = "{late_audio_clip}"\nout = 25\n[shot.transition]\nframes = 4\n'
                      f'audio = "loud"\n[[shot]]\nvideo = "{late_audio_clip}"\nin = 25\n')
    result = sfi("render", recipe, "-o", tmp_path / "out.mkv")
    assert result.code != 0 and not (tmp_path / "out.mkv").exists()
    assert result.stderr.strip().splitlines() == [
        f"sfi: error: {recipe}:6: 'shot[0].transition.audio' must be one of crossfade, silence, got 'loud'"]
