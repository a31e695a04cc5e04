"""The live dissolve (engine ``dissolve``, and the flow engine where it finds no motion at a cut): both shots
keep playing through the transition, made of their real frames, nothing frozen."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clips import STRIP, clip_frame, decode_all

N, CUT = 8, 30  # a transition of 8 frames at cut_clip's first cut (shot 0 before it, shot 1 from it)


def picture(frame: np.ndarray) -> np.ndarray:
    """The textured part of a test frame (its index strip left out), as float."""
    return frame[: frame.shape[0] - STRIP].astype(np.float32)


def nearest(target: np.ndarray, candidates: dict[int, np.ndarray]) -> int:
    return min(candidates, key=lambda i: np.abs(picture(target) - candidates[i]).mean())


def shot_frame(index: int, shot: int, textures: dict) -> np.ndarray:
    """Frame ``index`` as the clip's shot ``shot`` would show it, had the shot gone on that long (the texture
    drifts a pixel a frame): what a shot that keeps playing past the cut looks like."""
    return picture(clip_frame(index, shot, 192, 128, textures))


@pytest.fixture(scope="module")
def source(cut_clip, ffmpeg_exe):
    return decode_all(cut_clip, ffmpeg_exe)


@pytest.mark.parametrize("engine", ["dissolve", "flow"])
def test_replace_plays_the_real_frames_of_both_shots_through_the_transition(cut_clip, source, tmp_path, ffmpeg_exe,
                                                                           sfi, engine):
    out = tmp_path / "out.mov"
    result = sfi("fill", cut_clip, "-o", out, "--engine", engine, "--mode", "replace", "--frames", str(N), "--json")
    assert result.code == 0, result.stderr
    output = decode_all(out, ffmpeg_exe)
    half, start = N // 2, CUT - N // 2  # the transition replaces frames 26-29 of shot 0 and 30-33 of shot 1
    for j in range(N):
        t = (j + 1) / (N + 1)
        frame = output[start + j]
        if j < half:  # the outgoing shot dominates: which of its real frames is it?
            shown = nearest(frame, {i: (1 - t) * picture(source[i]) + t * picture(source[CUT]) for i in range(20, CUT)})
            assert shown == start + j, (j, shown)
        else:  # the incoming shot dominates
            shown = nearest(frame, {i: (1 - t) * picture(source[CUT - 1]) + t * picture(source[i])
                                    for i in range(CUT, CUT + 10)})
            assert shown == CUT + j - half, (j, shown)
    # around it the footage is untouched: the frames before and after are the real ones
    assert nearest(output[start - 1], {i: picture(source[i]) for i in range(20, 40)}) == start - 1
    assert nearest(output[start + N], {i: picture(source[i]) for i in range(20, 40)}) == CUT + half
    if engine == "flow":
        gap = json.loads(result.stdout)["gaps"][0]
        assert gap["fallback"] == "live dissolve" and "below min_confidence" in gap["fallback_reason"]


def test_insert_continues_both_shots_motion_instead_of_freezing(cut_clip, source, tmp_path, ffmpeg_exe, sfi):
    """Inserted frames show the outgoing shot moving on past its last frame (and the incoming one leading in),
    at half speed: closer to the shot as it would have gone on than to its last frame held."""
    out = tmp_path / "out.mov"
    assert sfi("fill", cut_clip, "-o", out, "--engine", "dissolve", "--mode", "insert", "--frames", str(N)).code == 0
    output, textures = decode_all(out, ffmpeg_exe), {}
    for j in (1, 3):  # the outgoing shot at half speed: 1 and 2 frames on from its last one
        t = (j + 1) / (N + 1)
        ahead = (j + 1) // 2
        incoming = (shot_frame(CUT - (N - j) // 2, 1, textures) + shot_frame(CUT - (N - j + 1) // 2, 1, textures)) / 2
        moving = (1 - t) * shot_frame(CUT - 1 + ahead, 0, textures) + t * incoming
        frozen = (1 - t) * picture(source[CUT - 1]) + t * picture(source[CUT])
        made = picture(output[CUT + j])
        assert np.abs(made - moving).mean() < np.abs(made - frozen).mean(), j
    for j in (N - 4, N - 2):  # and the incoming shot leading in to its first frame
        t = (j + 1) / (N + 1)
        behind = (N - j) // 2
        outgoing = (shot_frame(CUT - 1 + (j + 1) // 2, 0, textures) + shot_frame(CUT - 1 + (j + 2) // 2, 0, textures)) / 2
        moving = (1 - t) * outgoing + t * shot_frame(CUT - behind, 1, textures)
        frozen = (1 - t) * picture(source[CUT - 1]) + t * picture(source[CUT])
        made = picture(output[CUT + j])
        assert np.abs(made - moving).mean() < np.abs(made - frozen).mean(), j


def test_without_shots_the_dissolve_engine_mixes_two_images(image_pair, tmp_path, sfi, ffmpeg_exe):
    a, b = image_pair
    out = tmp_path / "out.mp4"
    assert sfi("interpolate", a, b, "-n", "3", "-o", out, "--engine", "dissolve").code == 0
    frames = decode_all(out, ffmpeg_exe)
    assert len(frames) == 5
    first, last = frames[0].astype(np.float32), frames[-1].astype(np.float32)
    assert np.abs(frames[2].astype(np.float32) - (first + last) / 2).mean() < 2
