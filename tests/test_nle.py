"""NLE round trip through OpenTimelineIO: a fill exported as .otio, FCP 7 .xml and CMX 3600 .edl reads back
with the right clips; an EDL's dissolves become generated transitions of their lengths; transitions alone
as clips with handles; bad timelines are one line and leave nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest

from clips import decode_all, frame_index, make_clip
from helpers import count_video_frames

SFI = [sys.executable, "-m", "sfi_cli"]
RATE = 25
START = 10 * 3600 * RATE  # the clip's start timecode 10:00:00:00, in frames
HANDLES = 3


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A 60-frame clip with cuts at 20 and 40 and start timecode 10:00:00:00."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    folder = tmp_path_factory.mktemp("nle")
    return {"ffmpeg": ffmpeg, "clip": make_clip(folder / "clip.mp4", ffmpeg, frames=60, cuts=(20, 40), timecode="10:00:00:00")}


@pytest.fixture(scope="module")
def exported(footage, tmp_path_factory):
    """One fill (4-frame inserted transitions) exported to each format; each run finds the gaps made by the first."""
    from helpers import run_sfi

    folder = tmp_path_factory.mktemp("exported")
    clip = folder / "clip.mp4"
    clip.symlink_to(footage["clip"])
    runs = {}
    for suffix in (".otio", ".xml", ".edl"):
        out = folder / f"out-{suffix[1:]}.mp4"
        timeline = folder / f"cut-{suffix[1:]}{suffix}"
        result = run_sfi("fill", clip, "-o", out, "--frames", "4", "--engine", "crossfade", "--timeline", timeline,
                         "--handles", HANDLES, "--json")
        assert result.code == 0, result.stderr
        runs[suffix] = {"out": out, "timeline": timeline, "summary": json.loads(result.stdout)}
    return {"folder": folder, "runs": runs}


def read_back(path: Path):
    return otio.adapters.read_from_file(str(path), **({"rate": RATE} if path.suffix == ".edl" else {}))


def local(url: str) -> Path:
    return Path(otio.url_utils.filepath_from_url(url))


@pytest.mark.parametrize("suffix", [".otio", ".xml", ".edl"])
def test_fill_exported_timeline_reads_back_with_its_clips_media_and_markers(exported, footage, suffix):
    run = exported["runs"][suffix]
    timeline = read_back(run["timeline"])
    track = timeline.video_tracks()[0]
    clips = list(track.find_clips())
    assert len(clips) == 5  # three shots and two transitions
    assert sum(round(clip.duration().value) for clip in clips) == count_video_frames(run["out"], footage["ffmpeg"]) == 68
    shots, transitions = clips[::2], clips[1::2]
    assert [local(clip.media_reference.target_url).resolve() for clip in shots] == [footage["clip"].resolve()] * 3
    assert [round(clip.source_range.start_time.value) for clip in shots] == [START, START + 20, START + 40]
    folder = run["timeline"].with_name(f"{run['timeline'].stem}-transitions")
    assert [local(clip.media_reference.target_url) for clip in transitions] == [
        folder / "clip_10-00-00-20.mov", folder / "clip_10-00-01-15.mov"]
    assert all(local(clip.media_reference.target_url).is_file() for clip in transitions)
    assert [round(clip.source_range.start_time.value) for clip in transitions] == [HANDLES, HANDLES]
    if suffix != ".xml":  # an EDL conforms by reel: each transition has its own
        assert [clip.metadata["cmx_3600"]["reel"] for clip in transitions] == ["SFI001", "SFI002"]
    keys = [gap["key"] for gap in run["summary"]["gaps"]]
    for clip, key in zip(transitions, keys):
        (marker,) = clip.markers
        assert f"key {key}" in marker.name.lower() and "crossfade" in marker.name.lower() and "seed 0" in marker.name.lower()
    if suffix == ".otio":
        assert [clip.markers[0].metadata["sfi"]["key"] for clip in transitions] == keys
    # The timeline starts at the source's timecode (an EDL says so in its record timecodes).
    start = timeline.global_start_time or -track.source_range.start_time
    assert round(start.value) == START


def test_transition_clips_hold_the_gap_between_real_handles(exported, footage):
    run = exported["runs"][".otio"]
    folder = run["timeline"].with_name(f"{run['timeline'].stem}-transitions")
    first = decode_all(folder / "clip_10-00-00-20.mov", footage["ffmpeg"])
    assert len(first) == 4 + 2 * HANDLES
    assert [frame_index(frame) for frame in first[:HANDLES] + first[-HANDLES:]] == [17, 18, 19, 20, 21, 22]


def test_export_writes_only_its_own_files(exported):
    names = {path.name for path in exported["folder"].iterdir()}
    made = {name for suffix in ("otio", "xml", "edl")
            for name in (f"out-{suffix}.mp4", f"out-{suffix}.sfi.json", f"cut-{suffix}.{suffix}", f"cut-{suffix}-transitions")}
    assert names == {"clip.mp4", ".sfi-work", *made}
    assert not list(exported["folder"].rglob("*sfi-partial*"))


EDL = """TITLE: two dissolves
FCM: NON-DROP FRAME

001  AX       V     C        10:00:00:00 10:00:00:20 01:00:00:00 01:00:00:20
* FROM CLIP NAME: clip.mp4
002  AX       V     C        10:00:00:20 10:00:00:20 01:00:00:20 01:00:00:20
002  AX       V     D 006    10:00:00:17 10:00:01:15 01:00:00:20 01:00:01:18
* FROM CLIP NAME: clip.mp4
* TO CLIP NAME: clip.mp4
* PROMPT: the camera drifts into the second shot
003  AX       V     C        10:00:01:15 10:00:01:15 01:00:01:18 01:00:01:18
003  AX       V     D 004    10:00:01:13 10:00:02:10 01:00:01:18 01:00:02:15
* FROM CLIP NAME: clip.mp4
* TO CLIP NAME: clip.mp4
* LOC: 01:00:01:19 YELLOW  a slow fade of light
"""


@pytest.mark.parametrize("suffix", [".edl", ".xml", ".otio"])
def test_cut_list_dissolves_render_as_generated_transitions_of_their_lengths(footage, tmp_path, sfi, suffix):
    """The EDL as written, and as OpenTimelineIO converts it to FCP XML and .otio."""
    cuts = tmp_path / f"cuts{suffix}"
    (tmp_path / "cuts.edl").write_text(EDL)
    if suffix != ".edl":
        timeline = otio.adapters.read_from_file(str(tmp_path / "cuts.edl"), rate=RATE)
        if suffix == ".xml":  # FCP XML keeps neither EDL comments nor record-timed locators: prompts as sequence markers
            for at, prompt in ((22, "the camera drifts into the second shot"), (44, "a slow fade of light")):
                timeline.tracks.markers.append(otio.schema.Marker(name=prompt, marked_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(at, RATE), otio.opentime.RationalTime(0, RATE))))
        otio.adapters.write_to_file(timeline, str(cuts))
    out = tmp_path / "cut.mp4"
    result = sfi("render", cuts, "--source", footage["clip"], "-o", out, "--engine", "crossfade", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(gap["frames"], gap["mode"], gap["output_start"]) for gap in summary["gaps"]] == [(6, "replace", 20),
                                                                                            (4, "replace", 43)]
    assert [gap["prompt"] for gap in summary["gaps"]] == ["the camera drifts into the second shot", "a slow fade of light"]
    frames = decode_all(out, footage["ffmpeg"])
    assert len(frames) == 65  # the EDL's record length
    # Real frames exactly where the NLE shows them: A to the dissolve, B after it (its source in + 6), then C.
    expected = {**{i: i for i in range(20)}, **{26 + i: 23 + i for i in range(17)}, **{47 + i: 42 + i for i in range(18)}}
    assert {i: frame_index(frames[i]) for i in expected} == expected


def test_transitions_only_writes_clips_with_handles_and_no_output(footage, tmp_path, sfi):
    clips = tmp_path / "clips"
    result = sfi("fill", footage["clip"], "--transitions-only", clips, "--frames", "4", "--engine", "crossfade",
                 "--handles", "2", "--work-dir", tmp_path / "work", "--json")
    assert result.code == 0, result.stderr
    assert sorted(path.name for path in clips.iterdir()) == [".sfi-media.json", "clip_10-00-00-20.mov",
                                                            "clip_10-00-01-15.mov"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clips", "work"]
    assert count_video_frames(clips / "clip_10-00-01-15.mov", footage["ffmpeg"]) == 4 + 2 * 2
    again = sfi("fill", footage["clip"], "--transitions-only", clips, "--frames", "4", "--engine", "crossfade",
                "--work-dir", tmp_path / "work")
    assert again.code == 1 and "already exists; pass --force" in again.stderr
    (clips / "notes.txt").write_text("the editor's")
    forced = sfi("fill", footage["clip"], "--transitions-only", clips, "--frames", "6", "--engine", "crossfade",
                 "--handles", "0", "--work-dir", tmp_path / "work", "--force", "-q")
    assert forced.code == 0, forced.stderr
    assert sorted(path.name for path in clips.iterdir()) == [".sfi-media.json", "clip_10-00-00-20.mov",
                                                            "clip_10-00-01-15.mov", "notes.txt"]
    assert count_video_frames(clips / "clip_10-00-01-15.mov", footage["ffmpeg"]) == 6


GAP_EDL = """TITLE: a gap
001  AX       V     C        10:00:00:00 10:00:00:20 01:00:00:00 01:00:00:20
* FROM CLIP NAME: clip.mp4
002  AX       V     C        10:00:00:20 10:00:01:10 01:00:01:00 01:00:01:15
* FROM CLIP NAME: clip.mp4
"""


@pytest.mark.parametrize("text, message", [
    ("not an edit decision list\n", "cannot read timeline"),
    (GAP_EDL, "the track has a gap (black) of 5 frames"),
    (GAP_EDL.replace("01:00:01:00 01:00:01:15", "01:00:00:20 01:00:03:20").replace("10:00:01:10", "10:00:03:20"),
     "past the end of 'clip.mp4'"),
])
def test_bad_cut_list_is_one_line_and_writes_nothing(footage, tmp_path, sfi, text, message):
    edl = tmp_path / "bad.edl"
    edl.write_text(text)
    result = sfi("render", edl, "--source", footage["clip"], "-o", tmp_path / "out.mp4", "--engine", "crossfade")
    assert result.code == 1 and result.stderr.startswith("sfi: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.edl"]


@pytest.mark.parametrize("args, message", [
    (["--timeline", "cut.aaf"], "unknown extension '.aaf'"),
    (["--timeline", "cut.otio", "--only", "transitions"], "needs the splice"),
    (["--timeline", "cut.otio", "--transitions-only", "clips"], "takes no --timeline"),
    (["--timeline", "clip.mp4"], "unknown extension"),
])
def test_bad_timeline_options_are_one_line_and_write_nothing(footage, tmp_path, sfi, args, message):
    clip = tmp_path / "clip.mp4"
    clip.symlink_to(footage["clip"])
    result = sfi("fill", clip, "-o", tmp_path / "out.mp4", "--frames", "4", "--engine", "crossfade",
                 *[tmp_path / a if a.startswith(("cut", "clip")) else a for a in args])
    assert result.code == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_file_where_the_transition_clips_go_is_refused_before_any_work(footage, tmp_path, sfi):
    (tmp_path / "cut-transitions").write_text("the editor's notes")
    result = sfi("fill", footage["clip"], "-o", tmp_path / "out.mp4", "--frames", "4", "--engine", "crossfade",
                 "--timeline", tmp_path / "cut.xml", "--work-dir", tmp_path / "work")
    assert result.code == 1 and result.stderr.count("\n") == 1  # before detection: no progress lines
    assert "is a file, not a folder for transition clips" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut-transitions"]
    assert (tmp_path / "cut-transitions").read_text() == "the editor's notes"


# ``opentimelineio`` absent: its import fails, as in an install without the ``nle`` extra.
WITHOUT_OTIO = """
import sys
class NoOtio:
    def find_spec(self, name, path=None, target=None):
        if name == "opentimelineio" or name.startswith("opentimelineio."):
            raise ImportError("no " + name)
sys.meta_path.insert(0, NoOtio())
from sfi_cli.commands import main
main(sys.argv[1:])
"""


def test_without_opentimelineio_the_options_say_what_to_install(footage, tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_OTIO, "fill", str(footage["clip"]), "-o",
                             str(tmp_path / "out.mp4"), "--timeline", str(tmp_path / "cut.otio")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "bash scripts/install.sh nle" in result.stderr
    assert not list(tmp_path.iterdir())
