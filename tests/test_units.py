"""Unit tests of two shared mechanisms, without running ffmpeg: publishing under temporary names
(media/publish.py) and the splice's ffmpeg command line (render/splice.py), so a failure points at its cause."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from sfi_cli.errors import SfiError
from sfi_cli.media import publish
from sfi_cli.media.ffmpeg import ffmpeg_path
from sfi_cli.media.probe import AudioStream, ColorTags, MediaInfo
from sfi_cli.render.splice import splice_command
from sfi_cli.timeline.layout import make_plan
from sfi_cli.timeline.recipe import OutputSpec, Recipe, ShotSpec, TransitionSpec
from sfi_cli.timeline.timecode import Position, parse_position


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if publish.MARK in p.name or p.name.endswith(".sfi-lock"))


# --- publish -----------------------------------------------------------------------------------------------------

def test_a_publication_renames_everything_it_staged_on_a_clean_exit(tmp_path):
    with publish.Publication() as results:
        video, sheet = results.stage(tmp_path / "out.mp4"), results.stage(tmp_path / "sheet.png")
        video.write_bytes(b"video")
        sheet.write_bytes(b"sheet")
        assert video.name.startswith(".out.sfi-partial-") and video.suffix == ".mp4"  # ffmpeg picks the muxer by it
        assert not (tmp_path / "out.mp4").exists()
    assert (tmp_path / "out.mp4").read_bytes() == b"video" and (tmp_path / "sheet.png").read_bytes() == b"sheet"
    assert leftovers(tmp_path) == []


def test_a_publication_that_fails_leaves_neither_results_nor_temporaries(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"earlier result")
    with pytest.raises(KeyboardInterrupt):
        with publish.Publication() as results:
            results.stage(tmp_path / "out.mp4").write_bytes(b"half")
            results.stage(tmp_path / "frames", folder=True)
            raise KeyboardInterrupt
    assert (tmp_path / "out.mp4").read_bytes() == b"earlier result"
    assert not (tmp_path / "frames").exists() and leftovers(tmp_path) == []


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_leftovers_of_dead_runs_on_this_host_are_removed_and_nothing_else(tmp_path):
    host = publish._host()
    dead_file = tmp_path / f".out{publish.MARK}{host}-{dead_pid()}.mp4"
    dead_folder = tmp_path / f".gap{publish.MARK}{host}-{dead_pid()}"
    alive = tmp_path / f".out{publish.MARK}{host}-{os.getpid()}.mp4"
    other_host = tmp_path / f".out{publish.MARK}elsewhere-{dead_pid()}.mp4"
    user_file = tmp_path / "out.sfi-partial-notes.txt"
    for path in (dead_file, alive, other_host, user_file):
        path.write_text("x")
    dead_folder.mkdir()
    (dead_folder / "frames.mkv").write_text("x")
    publish.remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, other_host, user_file))


def test_an_input_is_found_by_identity_through_links(tmp_path):
    original = tmp_path / "a.png"
    original.write_bytes(b"image")
    os.link(original, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(original)
    for alias in ("hard.png", "soft.png", "a.png"):
        with pytest.raises(SfiError, match="also an input"):
            publish.refuse_inputs([tmp_path / alias], [original])
    publish.refuse_inputs([tmp_path / "new.png"], [original])  # a name of its own is fine


def test_the_longest_names_still_get_a_temporary_and_a_lock_within_the_limit(tmp_path):
    names = [tmp_path / ("x" * 250 + ".mp4"), tmp_path / ("x" * 249 + "y.mp4")]
    temporaries = [publish.temporary_path(name) for name in names]
    locks = [publish.lock_path(name) for name in names]
    assert all(len(os.fsencode(p.name)) <= publish.NAME_BYTES for p in temporaries + locks)
    assert len(set(temporaries)) == 2 and len(set(locks)) == 2  # shortened names stay apart (hash of the whole)
    assert all(p.suffix == ".mp4" for p in temporaries)


def test_a_lock_refuses_a_second_holder_is_reentrant_and_is_taken_over_from_a_dead_one(tmp_path):
    output = tmp_path / "out.mp4"
    lock = publish.lock_path(output)
    lock.write_text(f"{publish._host()} {dead_pid()}\n")  # left by a run that was killed
    with publish.output_lock(output):
        assert lock.read_text().split() == [publish._host(), str(os.getpid())]
        with publish.output_lock(output):  # fill holds it around detection and the render
            pass
        assert lock.exists()
        holder = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                 "from sfi_cli.media.publish import output_lock\n"
                                 "try:\n    output_lock(Path(sys.argv[1])).__enter__()\n"
                                 "except Exception as error:\n    print(error)", str(output)],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        assert str(os.getpid()) in holder.stdout  # refused, naming this run
    assert not lock.exists() and leftovers(tmp_path) == []


# --- the splice's command line ---------------------------------------------------------------------------------

def clip_facts(path: Path, *, start_offset=Fraction(0), audio_offset=Fraction(0), frames: int = 48) -> MediaInfo:
    return MediaInfo(path=path, width=64, height=36, rate=Fraction(24), frame_count=frames, codec="h264",
                     pix_fmt="yuv420p", bit_depth=8, chroma="420", color=ColorTags(), rotation=0, timecode="01:00:00:00",
                     start_offset=start_offset, vfr=False,
                     audio=(AudioStream(0, "aac", 48000, 2, "stereo", start_offset=audio_offset),))


def fill_plan(tmp_path: Path, info: MediaInfo, mode: str, audio: str = "crossfade"):
    """The plan ``sfi fill`` makes for one cut at frame 24 of ``info`` (from its facts: no file is read)."""
    transition = TransitionSpec(Position("4", frames=4), "", "", "crossfade", 0, mode, where="t", audio=audio)
    shots = (ShotSpec("video", info.path, parse_position(0), parse_position(24), None, 1, transition, where="s1"),
             ShotSpec("video", info.path, parse_position(24), parse_position(info.frame_count), None, 1, None, where="s2"))
    recipe = Recipe(tmp_path / "r.toml", shots, OutputSpec(tmp_path / "out.mp4", None, None, "cover", None, None, None,
                                                          "shots"))
    return make_plan(recipe, engine="crossfade", engine_settings={}, default_fps=Fraction(24), crf=18,
                     preset="medium", probed={info.path.resolve(): info})


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_frames_come_raw_on_stdin_and_every_file_is_named_as_a_plain_path(tmp_path):
    source = tmp_path / "concat:clip.mp4"
    plan = fill_plan(tmp_path, clip_facts(source), "replace")
    partial = tmp_path / ".out.sfi-partial-host-1.mp4"
    command = splice_command(plan, partial, "ffmpeg")
    assert command[-1] == ffmpeg_path(partial) == "file:" + str(partial)
    inputs = [command[i + 1] for i, word in enumerate(command) if word == "-i"]
    assert inputs[0] == "pipe:" and inputs[1:] == [ffmpeg_path(source)]
    assert (option(command, "-f"), option(command, "-pix_fmt"), option(command, "-s"), option(command, "-framerate")) == (
        "rawvideo", "yuv420p", "64x36", "24/1")
    assert option(command, "-map_metadata") == "1" and option(command, "-map_chapters") == "-1"
    assert option(command, "-timecode") == "01:00:00:00"


def test_replace_copies_the_sound_and_insert_rebuilds_it_as_the_setting_says(tmp_path):
    info = clip_facts(tmp_path / "clip.mp4")
    replace = splice_command(fill_plan(tmp_path, info, "replace"), tmp_path / "p.mp4", "ffmpeg")
    assert option(replace, "-c:a:0") == "copy" and "atrim" not in " ".join(replace)  # the track as it is
    crossfade = splice_command(fill_plan(tmp_path, info, "insert"), tmp_path / "p.mp4", "ffmpeg")
    silence = splice_command(fill_plan(tmp_path, info, "insert", audio="silence"), tmp_path / "p.mp4", "ffmpeg")
    assert option(crossfade, "-c:a:0") == option(silence, "-c:a:0") == "aac"
    assert "acrossfade" in option(crossfade, "-filter_complex") and "anullsrc" not in " ".join(crossfade)
    assert "anullsrc" in " ".join(silence) and "acrossfade" not in option(silence, "-filter_complex")


def test_a_source_whose_video_starts_late_is_timed_from_its_first_frame(tmp_path):
    info = clip_facts(tmp_path / "clip.mp4", start_offset=Fraction(1, 2))
    command = splice_command(fill_plan(tmp_path, info, "replace"), tmp_path / "p.mp4", "ffmpeg")
    position = command.index(ffmpeg_path(info.path))
    assert command[position - 3:position - 1] == ["-itsoffset", "-0.500000"]


# --- where a reader seeks ----------------------------------------------------------------------------------------

def test_a_reader_seeks_only_when_a_keyframe_lies_well_ahead_of_it(tmp_path):
    """A seek decodes from the keyframe before its target, so across a long GOP reading on is cheaper."""
    from sfi_cli.media.readers import VideoReader

    info = dataclasses.replace(clip_facts(tmp_path / "clip.mp4", frames=600), keyframes=(0, 250, 500))
    reader = VideoReader(info, size=(64, 36), fit="cover", rate=info.rate, pix_fmt="yuv420p", keep_rotation=False,
                         ffmpeg="ffmpeg")
    reader._position = 121  # as after the boundary frames of a cut at frame 120
    assert reader._reads_on_to(239)  # the keyframe before 239 is 0: a seek would decode 239 frames, reading on 118
    assert not reader._reads_on_to(300)  # keyframe 250 lies ahead: a seek decodes 50 frames instead of 179
    assert not reader._reads_on_to(100)  # behind the decoder
    untold = VideoReader(dataclasses.replace(info, keyframes=()), size=(64, 36), fit="cover", rate=info.rate,
                         pix_fmt="yuv420p", keep_rotation=False, ffmpeg="ffmpeg")
    untold._position = 121
    assert untold._reads_on_to(121 + 48) and not untold._reads_on_to(121 + 49)  # without keyframes: within ~2 s


# --- what of an engine's settings reaches the work-folder keys -------------------------------------------------

def test_an_engines_identity_holds_what_shapes_frames_and_nothing_else():
    from engines import engine_class

    semfi = engine_class("semfi")

    def identity(**semfi_settings):
        return semfi.identity({"semfi": semfi_settings, "flow": {"flow_width": 480}})

    base = identity(steps=50, area="480p", memory_mode="full", device="cuda:0")
    assert identity(steps=50, area=399360, memory_mode="stream", device="cuda:1") == base  # same frames
    assert identity(steps=40, area="480p", memory_mode="full", device="cuda:0") != base
    assert semfi.identity({"semfi": {"steps": 50, "area": "480p"}, "flow": {"flow_width": 320}}) != identity(
        steps=50, area="480p")  # SemFi retimes with flow: its settings count
    flow = engine_class("flow")
    assert flow.identity({"flow": {}}) == flow.identity({"flow": {"flow_width": 480}})  # defaults filled in
