"""PNG sequences: ``--codec png`` (or a folder / %d pattern output) from render, fill and retime, and transition
media as PNG sequences for ``--timeline`` and ``--transitions-only``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from clips import frame_index, make_clip

FRAMES, CUTS, GAP = 40, (20,), 4


@pytest.fixture(scope="module")
def clip(tmp_path_factory, ffmpeg_exe):
    return make_clip(tmp_path_factory.mktemp("png") / "clip.mp4", ffmpeg_exe, frames=FRAMES, cuts=CUTS, size=(96, 64))


def exact_rgb(path: Path, ffmpeg: str) -> list[np.ndarray]:
    """Every frame as RGB with chroma interpolated in full and rounded exactly (ffmpeg's default is coarser)."""
    import subprocess

    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-vf", "scale=flags=accurate_rnd+full_chroma_int",
                          "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, 64, 96, 3))


def pngs(folder: Path, pattern: str = "frame_*.png") -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob(pattern))]


def test_fill_into_a_folder_and_a_pattern_writes_every_frame_as_png(clip, tmp_path, ffmpeg_exe, sfi):
    source = exact_rgb(clip, ffmpeg_exe)
    result = sfi("fill", clip, "-o", tmp_path / "frames", "--engine", "crossfade", "--frames", str(GAP), "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["codec"] == "png" and any("PNG sequence holds pictures only" in w for w in summary["warnings"])
    frames = pngs(tmp_path / "frames")
    assert len(frames) == FRAMES + GAP == summary["frames_written"]
    assert frames[0].shape == (64, 96, 3)
    for position, index in ((0, 0), (19, 19), (20 + GAP, 20), (FRAMES + GAP - 1, FRAMES - 1)):  # footage, in place
        assert frame_index(frames[position]) == index
        assert np.abs(frames[position].astype(int) - source[index].astype(int)).mean() < 1  # the real frame
    assert json.loads((tmp_path / "frames" / ".sfi-frames.json").read_text())["files"][0] == "frame_00001.png"
    assert (tmp_path / "frames.sfi.json").is_file()

    (tmp_path / "shots").mkdir()
    assert sfi("fill", clip, "-o", tmp_path / "shots" / "cut_%06d.png", "--engine", "crossfade", "--frames", str(GAP),
               "--codec", "png", "-q").code == 0
    assert len(pngs(tmp_path / "shots", "cut_*.png")) == FRAMES + GAP and (tmp_path / "shots" / "cut_000001.png").is_file()
    assert (tmp_path / "shots" / "cut.sfi.json").is_file()


def test_png_into_an_existing_folder_needs_force_and_keeps_other_files(clip, tmp_path, sfi):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    args = ("retime", clip, "-o", folder, "--slowmo", "1.5", "--engine", "crossfade", "-q")
    refused = sfi(*args)
    assert refused.code != 0 and "already exists" in refused.stderr
    assert sfi(*args, "--force").code == 0
    assert len(pngs(folder)) == round(FRAMES * 1.5) and (folder / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("output, codec, message", [
    ("out.mp4", "png", "--codec png writes a PNG sequence"),
    ("frames", "h264", "writes a video file, not the PNG sequence"),
])
def test_codec_and_output_form_must_agree(clip, tmp_path, sfi, output, codec, message):
    result = sfi("fill", clip, "-o", tmp_path / output, "--codec", codec, "--engine", "crossfade")
    assert result.code != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_transition_media_as_png_sequences_in_every_timeline_format(clip, tmp_path, sfi):
    for suffix in (".otio", ".xml", ".edl"):
        timeline = tmp_path / f"cut{suffix[1:]}{suffix}"
        result = sfi("fill", clip, "-o", tmp_path / f"out-{suffix[1:]}.mp4", "--engine", "crossfade", "--frames",
                     str(GAP), "--timeline", timeline, "--timeline-media", "png", "--handles", "2", "--json")
        assert result.code == 0, result.stderr
        media = Path(json.loads(result.stdout)["timeline_media"])
        clip_folders = [p for p in media.iterdir() if p.is_dir()]
        assert len(clip_folders) == 1 and len(pngs(clip_folders[0])) == GAP + 4
        read = otio.adapters.read_from_file(str(timeline), **({"rate": 25} if suffix == ".edl" else {}))
        transition = [c for c in read.find_clips() if c.name.startswith(clip.stem + "_")]
        if suffix == ".otio":
            reference = transition[0].media_reference
            assert isinstance(reference, otio.schema.ImageSequenceReference)
            frames = [Path(otio.url_utils.filepath_from_url(reference.target_url_for_image_number(n)))
                      for n in range(reference.number_of_images_in_sequence())]
            assert frames == sorted(clip_folders[0].glob("frame_*.png"))
        elif suffix == ".xml":
            first = Path(otio.url_utils.filepath_from_url(transition[0].media_reference.target_url))
            assert first == clip_folders[0] / "frame_00001.png" and first.is_file()
    # again with --force: the earlier clip folders are replaced whole
    again = sfi("fill", clip, "-o", tmp_path / "out-otio.mp4", "--engine", "crossfade", "--frames", str(GAP + 2),
                "--timeline", tmp_path / "cutotio.otio", "--timeline-media", "png", "--handles", "2", "--force", "-q")
    assert again.code == 0, again.stderr
    folders = [p for p in (tmp_path / "cutotio-transitions").iterdir() if p.is_dir()]
    assert len(folders) == 1 and len(pngs(folders[0])) == GAP + 2 + 4


def test_transitions_only_as_png_sequences(clip, tmp_path, sfi):
    result = sfi("fill", clip, "--transitions-only", tmp_path / "clips", "--engine", "crossfade", "--frames", str(GAP),
                 "--timeline-media", "png", "--handles", "1", "--json")
    assert result.code == 0, result.stderr
    made = [Path(p) for p in json.loads(result.stdout)["transition_clips"]]
    assert len(made) == 1 and made[0].is_dir() and len(pngs(made[0])) == GAP + 2


@pytest.mark.parametrize("folder, name", [("p%x", "frames"), ("q%d", "f_%03d.png"), (".", "sub:dir")])
def test_png_sequence_under_any_name_ffmpeg_would_read_as_a_pattern_or_protocol(clip, tmp_path, sfi, folder, name):
    """A '%' in a folder above the frames, or a name ffmpeg takes for a protocol ('sub:dir'), names files as it is."""
    parent = tmp_path / folder
    parent.mkdir(exist_ok=True)
    result = sfi("retime", clip, "-o", parent / name, "--slowmo", "1.5", "--engine", "crossfade", "-q")
    assert result.code == 0, result.stderr
    written = sorted(p.name for p in parent.rglob("*.png"))
    assert len(written) == round(FRAMES * 1.5) and written[0] in ("frame_00001.png", "f_001.png")


@pytest.mark.parametrize("output, sheet", [("frames", "frames/frame_00001.png"), ("frames/s_%02d.png", "frames/s_05.png")])
def test_a_sheet_named_like_one_of_the_frames_is_refused_before_any_frame(clip, tmp_path, sfi, output, sheet):
    (tmp_path / "frames").mkdir()
    result = sfi("retime", clip, "-o", tmp_path / output, "--slowmo", "1.5", "--engine", "crossfade", "--force",
                 "--sheet", tmp_path / sheet, "-q")
    lines = result.stderr.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and "is also a frame of the output" in lines[0], result.stderr
    assert not list((tmp_path / "frames").iterdir())
