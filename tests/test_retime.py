"""``sfi retime``: exact frame counts up and down and slowed, frames made at their exact times, none blended
across a cut, the sound's length, real timestamps of a variable-rate clip, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from clips import decode_all, frame_index, make_clip, stream_facts

SFI = [sys.executable, "-m", "sfi_cli"]
SIZE = (96, 64)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg_exe):
    """2 s at 24 fps with a cut at frame 20, and 2 s at 30 fps with a cut at 30; a tone on each."""
    folder = tmp_path_factory.mktemp("retime")
    return {"24": make_clip(folder / "c24.mp4", ffmpeg_exe, frames=48, cuts=(20,), rate="24", size=SIZE),
            "30": make_clip(folder / "c30.mp4", ffmpeg_exe, frames=60, cuts=(30,), rate="30", size=SIZE)}


def video_rate(path: Path) -> Fraction:
    import av

    with av.open(str(path)) as container:
        return Fraction(container.streams.video[0].guessed_rate)


def sound_seconds(path: Path) -> float:
    """How long the first audio track plays: its decoded samples (Matroska stores no stream durations)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def retime(sfi, clip, out, *args):
    result = sfi("retime", clip, "-o", out, "--engine", "crossfade", "--json", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def expected_places(frames: int, cut: int, source_rate: Fraction, total: int, step: Fraction):
    """What each output frame must show: ("copy", i) or ("made", i, t) between real frames i and i + 1."""
    places = []
    for k in range(total):
        position = k * step * source_rate
        index, t = int(position), position - int(position)
        if index >= frames - 1:
            places.append(("copy", frames - 1))
        elif t == 0:
            places.append(("copy", index))
        elif index + 1 == cut:
            places.append(("copy", index if t < Fraction(1, 2) else index + 1))
        else:
            places.append(("made", index, t))
    return places


def check_frames(source, output, places):
    """Copied frames are the real frame (barely changed by encoding); made ones are the dissolve at exactly their
    time t (the crossfade engine), closer to it than to the dissolve a frame's 1/8 off."""
    for position, (frame, place) in enumerate(zip(output, places)):
        frame = frame.astype(np.float32)
        if place[0] == "copy":
            real = source[place[1]].astype(np.float32)
            assert frame_index(output[position]) == place[1], (position, place)
            assert np.abs(frame - real).mean() < 3, (position, place)
            continue
        _, index, t = place
        a, b = source[index].astype(np.float32), source[index + 1].astype(np.float32)
        error = np.abs(frame - ((1 - float(t)) * a + float(t) * b)).mean()
        off = min(np.abs(frame - ((1 - u) * a + u * b)).mean() for u in (float(t) - 0.125, float(t) + 0.125))
        assert error < 3 and error < off, (position, place, error, off)


@pytest.mark.parametrize("clip, fps, total", [("24", "60000/1001", 120), ("30", "24", 48)])
def test_fps_gives_exact_frame_counts_frames_at_their_times_and_none_across_the_cut(clips, tmp_path, ffmpeg_exe,
                                                                                  sfi, clip, fps, total):
    out = tmp_path / "out.mov"
    summary = retime(sfi, clips[clip], out, "--fps", fps)
    source_rate, rate = Fraction(clip), Fraction(fps)
    frames, cut = (48, 20) if clip == "24" else (60, 30)
    assert total == round(Fraction(frames) / source_rate * rate)  # round(duration x fps)
    assert summary["frames_written"] == total
    source, output = decode_all(clips[clip], ffmpeg_exe), decode_all(out, ffmpeg_exe)
    assert len(output) == total and video_rate(out) == rate
    assert abs(sound_seconds(out) - total / rate) <= 1 / rate
    places = expected_places(frames, cut, source_rate, total, 1 / rate)
    assert any(p[0] == "copy" and p[1] in (cut - 1, cut) for p in places)  # the cut falls between output frames
    check_frames(source, output, places)
    assert summary["generated_frames"] == sum(p[0] == "made" for p in places)


def test_slowmo_any_factor_with_its_sound_stretched_or_dropped(clips, tmp_path, ffmpeg_exe, sfi):
    out = tmp_path / "slow.mov"
    summary = retime(sfi, clips["24"], out, "--slowmo", "2.5")
    assert summary["frames_written"] == 120 == round(Fraction(48, 24) * Fraction(5, 2) * 24)
    source, output = decode_all(clips["24"], ffmpeg_exe), decode_all(out, ffmpeg_exe)
    assert len(output) == 120 and video_rate(out) == 24
    assert abs(sound_seconds(out) - 120 / 24) <= 1 / 24
    check_frames(source, output, expected_places(48, 20, Fraction(24), 120, Fraction(1, 60)))
    # the 440 Hz tone, slowed with its pitch kept: still 440 Hz
    import av

    with av.open(str(out)) as container:
        sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    middle = sound[48000:48000 + 48000]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    assert abs(np.argmax(spectrum) * 48000 / len(middle) - 440) < 3

    silent = tmp_path / "silent.mp4"
    retime(sfi, clips["24"], silent, "--slowmo", "2.5", "--slowmo-audio", "drop")
    assert stream_facts(silent)["streams"] == ["video"]


def test_slowmo_and_fps_together_and_the_manifest(clips, tmp_path, sfi):
    out = tmp_path / "both.mp4"
    summary = retime(sfi, clips["30"], out, "--slowmo", "1.5", "--fps", "25")
    assert summary["frames_written"] == round(2 * Fraction(3, 2) * 25) == stream_facts(out)["frames"]
    manifest = json.loads((tmp_path / "both.sfi.json").read_text())
    assert manifest["retime"]["slowmo"] == 1.5 and [c["frame"] for c in manifest["cuts"]] == [30]
    assert all(g["mode"] == "retime" and g["engine"] == "crossfade" for g in manifest["gaps"])


def test_variable_rate_clip_is_placed_by_its_real_timestamps(tmp_path, ffmpeg_exe, sfi):
    """Every fifth frame of the clip lasts two frames: at 25 fps the output shows the real frames at their own
    times and a made frame halfway through each long one."""
    clip = make_clip(tmp_path / "vfr.mp4", ffmpeg_exe, frames=30, cuts=(), rate="25", size=SIZE, vfr=True)
    out = tmp_path / "cfr.mov"
    summary = retime(sfi, clip, out, "--fps", "25")
    stamps = [Fraction(i + i // 5, 25) for i in range(30)]  # as make_clip times them
    total = round((stamps[-1] + Fraction(1, 25)) * 25)
    assert summary["frames_written"] == total == 35
    places = []
    for k in range(total):
        index = max(i for i, stamp in enumerate(stamps) if stamp <= Fraction(k, 25))
        t = 0 if index == 29 else (Fraction(k, 25) - stamps[index]) / (stamps[index + 1] - stamps[index])
        places.append(("made", index, t) if t else ("copy", index))
    assert sum(p[0] == "made" for p in places) == 5 == summary["generated_frames"]
    check_frames(decode_all(clip, ffmpeg_exe), decode_all(out, ffmpeg_exe), places)


def _chunk_stamps(work: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (work / "gaps").glob("*/gap.json")}


def test_a_killed_retime_resumes_from_its_finished_chunks(tmp_path, ffmpeg_exe):
    clip = make_clip(tmp_path / "long.mp4", ffmpeg_exe, frames=48, cuts=(24,), rate="24", size=(192, 128), audio=False)
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    command = [*SFI, "retime", str(clip), "-o", str(out), "--slowmo", "3", "--engine", "flow", "--work-dir", str(work)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _chunk_stamps(work) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = _chunk_stamps(work)
    resumed = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, check=True).stdout)
    assert 1 <= len(finished) < resumed["gap_count"], "the run should have been killed part-way through its chunks"
    assert resumed["gaps_cached"] == len(finished)
    assert {g["key"] for g in resumed["gaps"] if g["cached"]} == set(finished)
    assert all(_chunk_stamps(work)[key] == stamp for key, stamp in finished.items())  # not made again
    fresh = tmp_path / "fresh.mp4"
    subprocess.run([*command[:6], str(fresh), *command[7:-2], "--work-dir", str(tmp_path / "other")], check=True,
                   capture_output=True)
    framemd5 = lambda path: subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5",  # noqa: E731
                                            "-"], capture_output=True, text=True, check=True).stdout.splitlines()[-144:]
    assert framemd5(out) == framemd5(fresh) and len(framemd5(out)) == 144


def test_chunks_made_by_worker_processes_give_the_same_frames(clips, tmp_path, ffmpeg_exe, sfi):
    """Retime runs on fill's executors: two local workers make the same chunks as one process."""
    serial, pooled = tmp_path / "serial.mkv", tmp_path / "pooled.mkv"
    retime(sfi, clips["24"], serial, "--slowmo", "2", "--codec", "ffv1", "--work-dir", tmp_path / "w1")
    summary = retime(sfi, clips["24"], pooled, "--slowmo", "2", "--codec", "ffv1", "--work-dir", tmp_path / "w2",
                     "--workers", "2")
    assert os.getpid() not in {g["pid"] for g in summary["gaps"]}  # made in the worker processes, not here
    framemd5 = lambda path: subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5",  # noqa: E731
                                            "-"], capture_output=True, text=True, check=True).stdout.splitlines()[-96:]
    assert framemd5(serial) == framemd5(pooled)


@pytest.mark.parametrize("args, message", [
    ([], "retime needs --fps RATE"),
    (["--slowmo", "0.5"], "--slowmo"),
    (["--fps", "0"], "bad frame rate"),
    (["--slowmo", "2", "--engine", "semfi"], "makes only evenly spaced"),
])
def test_bad_requests_are_one_line_and_write_nothing(clips, tmp_path, sfi, args, message):
    result = sfi("retime", clips["24"], "-o", tmp_path / "out.mp4", *args)
    assert result.code != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.iterdir())


def test_slowmo_stretches_the_subtitles_with_the_picture(tmp_path, ffmpeg_exe, sfi):
    import av

    clip = make_clip(tmp_path / "subs.mp4", ffmpeg_exe, frames=48, cuts=(20,), rate="24", size=SIZE, subtitles=True)
    for suffix in (".mp4", ".mkv"):
        out = tmp_path / f"slow{suffix.replace('.', '_')}{suffix}"
        summary = retime(sfi, clip, out, "--slowmo", "2.5")
        assert not any("subtitle" in w for w in summary["warnings"]), summary["warnings"]
        with av.open(str(out)) as container:
            stream = container.streams.subtitles[0]
            cues = [(float(p.pts * p.time_base), float(p.duration * p.time_base), bytes(p))
                    for p in container.demux(stream) if p.size and p.duration]
        texts = [(start, length) for start, length, data in cues if b"line" in data]
        # the clip's cues 0.2-0.8 s and 1.4-1.8 s, 2.5 times slower
        assert texts == [pytest.approx((0.5, 1.5), abs=0.01), pytest.approx((3.5, 1.0), abs=0.01)], (suffix, cues)
