"""SemFi's numeric rules, each checked against what docs/semfi-method.md writes down.

The expectations here are built from the document's wording, not from the engine code:
frame counts, expert thresholds, mask folding, guidance video, pixel ranges, uint8
truncation, text zeroing, sigma schedule and Euler step, working size, even retiming.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.semfi_parts import rules
from engines.semfi_parts.schedule import sigma_schedule, timesteps_problem
from engines.errors import EngineError


def doc_model_frames(new_frames: int) -> int:
    """'the smallest 4k+1 >= N+2'."""
    frames = 1
    while frames < new_frames + 2:
        frames += 4
    return frames


def doc_expert(frames: int) -> int:
    """'N <= 7 -> 5, <= 13 -> 9, <= 25 -> 17, <= 49 -> 33, <= 73 -> 65, else 81' (official thresholds)."""
    for limit, expert in ((7, 5), (13, 9), (25, 17), (49, 33), (73, 65)):
        if frames <= limit:
            return expert
    return 81


@pytest.mark.parametrize("new_frames", range(1, 101))
def test_model_frames_and_expert_for_1_to_100(new_frames):
    frames = rules.model_frame_count(new_frames)
    assert frames == doc_model_frames(new_frames)
    assert (frames - 1) % 4 == 0 and frames >= new_frames + 2 and frames - 4 < new_frames + 2
    expected = doc_expert(frames)
    assert rules.expert_frames(frames) == expected
    assert rules.expert_index(frames) == (5, 9, 17, 33, 65, 81).index(expected) + 1


def test_expert_ties_go_to_the_smaller_count():
    # 7 is as far from 5 as from 9, 13 from 9 and 17, 25 from 17 and 33, ...
    assert [rules.expert_frames(f) for f in (7, 13, 25, 49, 73)] == [5, 9, 17, 33, 65]
    assert [rules.expert_frames(f) for f in (8, 14, 26, 50, 74)] == [9, 17, 33, 65, 81]
    assert rules.expert_frames(1001) == 81


def test_latent_frames():
    assert [rules.latent_frame_count(f) for f in (1, 5, 9, 17, 33, 81)] == [1, 2, 3, 5, 9, 21]


@pytest.mark.parametrize("frames", [5, 9, 13, 17, 81])
def test_mask_is_folded_as_the_doc_says(frames):
    height, width = 3, 5
    # 'ones at frame 0 and frame F-1, zeros between; the first frame's mask is repeated 4 times,
    #  then the F + 3 mask frames are folded into (F-1)//4 + 1 groups of 4, giving 4 mask channels'
    per_frame = [1.0] + [0.0] * (frames - 2) + [1.0]
    padded = per_frame[:1] * 4 + per_frame[1:]
    assert len(padded) == frames + 3
    groups = (frames - 1) // 4 + 1
    mask = rules.frame_mask(frames, height, width)
    assert mask.shape == (4, groups, height, width)
    for group in range(groups):
        for channel in range(4):
            assert torch.all(mask[channel, group] == padded[4 * group + channel])
    # The last latent frame carries the last image: its last channel is 1, earlier ones 0 unless frames == 5.
    assert mask[3, -1, 0, 0] == 1 and mask[:, 0, 0, 0].tolist() == [1, 1, 1, 1]


def test_guidance_video_has_both_ends_and_zeros_between():
    first, last = torch.full((3, 4, 6), 0.5), torch.full((3, 4, 6), -0.25)
    video = rules.guidance_video(first, last, 9)
    assert video.shape == (3, 9, 4, 6)
    assert torch.equal(video[:, 0], first) and torch.equal(video[:, 8], last)
    assert torch.count_nonzero(video[:, 1:8]) == 0


def test_pixels_in_minus_one_to_one():
    frame = np.array([[[0, 255, 51]]], dtype=np.uint8)
    pixels = rules.to_model_pixels(frame)
    assert pixels.shape == (3, 1, 1) and pixels.dtype == torch.float32
    assert torch.allclose(pixels[:, 0, 0], torch.tensor([-1.0, 1.0, 51 * 2 / 255 - 1]))


def test_frames_out_are_truncated_not_rounded():
    values = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0, 0.5 * (2 * 100.9 / 255) - 0.0])
    video = values.view(1, -1, 1, 1).expand(3, -1, 1, 1)  # (3, F, 1, 1)
    frames = rules.to_uint8_frames(video)
    got = [int(f[0, 0, 0]) for f in frames]
    expected = [int(np.clip(v / 2 + 0.5, 0, 1) * 255) for v in values.tolist()]  # astype(uint8) truncates
    assert got == expected
    assert got[2] == 127  # 127.5 truncated, not rounded to 128
    assert frames[0].shape == (1, 1, 3) and frames[0].dtype == np.uint8


def test_text_embeddings_past_the_token_count_are_zero():
    embeddings = torch.randn(2, 10, 4) + 3
    out = rules.zero_past_length(embeddings, torch.tensor([1, 6]))
    assert torch.equal(out[0, :1], embeddings[0, :1]) and torch.count_nonzero(out[0, 1:]) == 0
    assert torch.equal(out[1, :6], embeddings[1, :6]) and torch.count_nonzero(out[1, 6:]) == 0
    assert torch.count_nonzero(embeddings[:, 6:]) > 0  # the input is left alone


@pytest.mark.parametrize("steps,shift", [(50, 5.0), (4, 5.0), (7, 3.0)])
def test_sigmas_and_timesteps(steps, shift):
    sigmas, timesteps = sigma_schedule(steps, shift)
    base = np.linspace(1, 0, steps + 1)[:-1]
    expected = shift * base / (1 + (shift - 1) * base)
    assert np.allclose(sigmas.numpy(), expected, atol=1e-6)
    assert np.allclose(timesteps.numpy(), expected * 1000, atol=1e-3)
    assert len(timesteps) == steps and sigmas[0] == 1.0


def test_four_steps_at_shift_5_are_the_distillation_schedule():
    """lightx2v's 4-step Wan2.1 distillation: denoising_step_list [1000, 750, 500, 250] on the shift-5 curve."""
    _, timesteps = sigma_schedule(4, 5.0)
    assert np.allclose(timesteps.numpy(), [1000.0, 937.5, 833.3333, 625.0], atol=1e-3)


def test_an_explicit_timestep_list_overrides_steps_and_shift():
    sigmas, timesteps = sigma_schedule(50, 5.0, [1000, 750.5, 250])
    assert timesteps.tolist() == [1000.0, 750.5, 250.0] and torch.equal(sigmas, timesteps / 1000)


@pytest.mark.parametrize("values,problem", [
    ([1000, 900, 500], None), ([999.5], None),
    ([900, 950], "strictly decreasing"), ([1000, 1000], "strictly decreasing"), ([1200, 500], "at most 1000"),
    ([500, 0], "above 0"), ([500, "x"], "entry 'x'"), ([True], "entry True"), ("1000", "got str"),
])
def test_timestep_lists_are_checked(values, problem):
    found = timesteps_problem(values)
    assert (found is None) if problem is None else (problem in found), found


@pytest.mark.parametrize("source,area,expected", [
    ((1920, 1080), "480p", (848, 480)),
    ((1280, 720), "720p", (1280, 720)),
    ((832, 480), "480p", (832, 480)),
    ((1080, 1920), "480p", (480, 848)),
    ((1024, 1024), "720p", (960, 960)),
    ((48, 32), 1024, (32, 32)),
])
def test_working_size_keeps_aspect_and_area(source, area, expected):
    size = rules.working_size(*source, area)
    assert size == expected
    assert size[0] % 16 == 0 and size[1] % 16 == 0
    pixels = rules.area_pixels(area)
    # Nearest multiples of 16 to the exact-area size: area within one 16-px row/column, aspect within 16 px.
    assert abs(size[0] * size[1] - pixels) <= 16 * (size[0] + size[1]) + 256
    assert abs(size[0] / size[1] - source[0] / source[1]) <= 16 / min(size)


def test_bad_area_and_raw_size_are_user_errors():
    with pytest.raises(EngineError, match="480p, 720p"):
        rules.area_pixels("1080i")
    with pytest.raises(EngineError, match="multiples of 16"):
        rules.check_working_size(100, 64)
    rules.check_working_size(96, 64)


@pytest.mark.parametrize("count", [1, 3, 7, 12, 24, 79])
def test_retime_positions_are_evenly_timed(count):
    frames = rules.model_frame_count(count)
    positions = rules.frame_positions(count, frames)
    times = positions / (frames - 1)
    assert np.allclose(times, np.arange(1, count + 1) / (count + 1))
    assert positions[0] >= 1 and positions[-1] <= frames - 2  # never the generated ends themselves
    if count + 2 == frames:
        assert np.allclose(positions, np.arange(1, count + 1))


def test_the_method_sections_the_rules_cite_are_in_the_docs():
    doc = Path(__file__).parent.parent / "docs" / "semfi-method.md"
    headings = {line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")}
    cited = re.findall(r'"([^"]+)"', rules.__doc__)
    assert "docs/semfi-method.md" in rules.__doc__ and len(cited) >= 5
    assert set(cited) <= headings, set(cited) - headings
