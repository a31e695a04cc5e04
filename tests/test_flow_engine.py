"""The ``flow`` engine against known motion: translations, a moving object, cuts, odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import textured_image
from engines.crossfade import CrossfadeEngine, dissolve
from engines.flow import FlowEngine, MotionField, trust

SHIFT = (12, 6)  # total motion (x, y) in pixels between the two ends
WIDTH, HEIGHT = 160, 96
MARGIN = 20
BASE = textured_image(WIDTH + 2 * MARGIN, HEIGHT + 2 * MARGIN, seed=3)


def view(dx: int, dy: int) -> np.ndarray:
    """The texture seen through a window moved by (dx, dy): the picture pans by (-dx, -dy)."""
    return np.ascontiguousarray(BASE[MARGIN + dy:MARGIN + dy + HEIGHT, MARGIN + dx:MARGIN + dx + WIDTH])


def truth(t: float) -> np.ndarray:
    """Ground truth at time t; only called where t * SHIFT is whole pixels."""
    dx, dy = round(SHIFT[0] * t), round(SHIFT[1] * t)
    assert abs(dx - SHIFT[0] * t) < 1e-9 and abs(dy - SHIFT[1] * t) < 1e-9
    return view(dx, dy)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("count", [1, 2, 5])
def test_translation_matches_ground_truth_far_better_than_a_dissolve(count):
    first, last = view(0, 0), view(*SHIFT)
    flow = list(FlowEngine().generate(first, last, count))
    fade = list(CrossfadeEngine().generate(first, last, count))
    for index, (ours, baseline) in enumerate(zip(flow, fade)):
        expected = truth((index + 1) / (count + 1))
        assert psnr(ours, expected) > 34, f"frame {index}"
        assert psnr(ours, expected) > psnr(baseline, expected) + 15, f"frame {index}"


def test_frames_are_evenly_spaced_in_time():
    # Five in-betweens of a 12 px move: each must sit at its own step of 2 px (t = 1/6 ... 5/6),
    # matching the truth for its own time far better than the truth one step away.
    first, last = view(0, 0), view(*SHIFT)
    frames = list(FlowEngine().generate(first, last, 5))
    steps = [truth(k / 6) for k in range(7)]
    for index, frame in enumerate(frames):
        scores = [psnr(frame, step) for step in steps]
        assert int(np.argmax(scores)) == index + 1
        assert scores[index + 1] > max(scores[index], scores[index + 2]) + 10


@pytest.mark.parametrize("count", [1, 2, 3, 7, 24])
def test_exact_count_shape_and_type(count):
    frames = list(FlowEngine().generate(view(0, 0), view(*SHIFT), count))
    assert len(frames) == count
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in frames)


@pytest.mark.parametrize("engine", [CrossfadeEngine, FlowEngine])
def test_a_gap_of_any_length_starts_at_once_in_the_memory_of_a_frame(engine):
    # 10**10 in-betweens: a table of all their times alone would need 75 GiB
    first, last = view(0, 0), view(*SHIFT)
    frames = engine().generate(first, last, 10**10)
    frame = next(iter(frames))
    assert frame.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(frame, next(iter(engine().generate(first, last, 10**10 + 7))))  # both at t ~ 1e-10: the first end
    frames.close()


def test_progress_reports_every_frame_as_it_is_made():
    calls = []
    frames = FlowEngine().generate(view(0, 0), view(*SHIFT), 3, progress=lambda done, total: calls.append((done, total)))
    next(iter(frames))
    assert calls == [(1, 3)]
    list(frames)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def block_scene(x: int) -> np.ndarray:
    """A 64 px textured block at column ``x`` in front of a still textured background."""
    frame = textured_image(320, 192, seed=5).copy()
    frame[64:128, x:x + 64] = textured_image(64, 64, seed=6)
    return frame


def grey(image: np.ndarray) -> np.ndarray:
    return np.rint(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def test_moving_object_lands_where_it_should_without_a_double_image():
    first, middle, last = block_scene(106), block_scene(111), block_scene(116)
    ours = next(iter(FlowEngine().generate(first, last, 1)))
    fade = next(iter(CrossfadeEngine().generate(first, last, 1)))
    inside = (slice(68, 124), slice(115, 171))  # the block at t = 0.5, minus a 4 px rim
    around = (slice(56, 136), slice(98, 190))  # the block's whole path plus 8 px
    assert psnr(ours[inside], middle[inside]) > 45
    assert psnr(ours[around], middle[around]) > psnr(fade[around], middle[around]) + 6


def test_trust_is_low_only_where_the_block_covers_or_uncovers_background():
    first, last = block_scene(106), block_scene(116)
    field = MotionField(first, last, 960)
    forward, _ = trust(grey(first), grey(last), field.forward, field.backward, field.grid)
    backward, _ = trust(grey(last), grey(first), field.backward, field.forward, field.grid)
    assert forward[64:128, 170:180].mean() < 0.2  # background the block moves onto
    assert backward[64:128, 106:116].mean() < 0.2  # background the block moves off
    assert forward[68:124, 110:166].mean() > 0.9 and backward[68:124, 120:176].mean() > 0.9  # the block
    assert forward[:48].mean() > 0.9 and backward[140:].mean() > 0.9  # open background


def test_still_picture_fading_is_blended_by_temporal_distance():
    # No motion, only light: each frame must lean towards its nearer end, like a dissolve.
    first = textured_image(WIDTH, HEIGHT, seed=4)
    last = (first * 0.7).astype(np.uint8)
    flow = FlowEngine().generate(first, last, 3)
    fade = CrossfadeEngine().generate(first, last, 3)
    for ours, baseline in zip(flow, fade):
        assert np.abs(ours.astype(int) - baseline).mean() < 1.5


def test_cut_between_unrelated_pictures_falls_back_to_a_dissolve():
    first, last = textured_image(WIDTH, HEIGHT, seed=1), textured_image(WIDTH, HEIGHT, seed=2)
    flow = list(FlowEngine().generate(first, last, 4))
    fade = list(CrossfadeEngine().generate(first, last, 4))
    assert all(np.array_equal(a, b) for a, b in zip(flow, fade))


def test_min_confidence_decides_between_flow_and_dissolve():
    first, last = view(0, 0), view(*SHIFT)
    fade = next(iter(CrossfadeEngine().generate(first, last, 1)))
    strict = next(iter(FlowEngine(min_confidence=1.01).generate(first, last, 1)))
    assert np.array_equal(strict, fade)
    assert not np.array_equal(next(iter(FlowEngine(min_confidence=0.0).generate(first, last, 1))), fade)


def test_identical_ends_give_identical_frames():
    image = textured_image(WIDTH, HEIGHT, seed=4)
    assert all(np.array_equal(frame, image) for frame in FlowEngine().generate(image, image.copy(), 3))


@pytest.mark.parametrize("size", [(7, 5), (1, 1), (2, 40), (13, 9), (31, 17), (33, 65), (101, 37)])
def test_odd_and_tiny_sizes(size):
    width, height = size
    first = textured_image(width, height, seed=7)
    last = np.roll(first, 1, axis=1)
    frames = list(FlowEngine().generate(first, last, 2))
    assert len(frames) == 2
    assert all(f.shape == (height, width, 3) and f.dtype == np.uint8 for f in frames)


def test_pictures_wider_than_flow_width_are_measured_small_and_output_full_size():
    # The texture enlarged 3x, flow measured at a third of the width: still follows the motion.
    big = np.asarray(Image.fromarray(BASE).resize((3 * BASE.shape[1], 3 * BASE.shape[0]), Image.Resampling.BICUBIC))
    first = np.ascontiguousarray(big[60:60 + 3 * HEIGHT, 60:60 + 3 * WIDTH])
    middle = np.ascontiguousarray(big[69:69 + 3 * HEIGHT, 78:78 + 3 * WIDTH])
    last = np.ascontiguousarray(big[78:78 + 3 * HEIGHT, 96:96 + 3 * WIDTH])
    frame = next(iter(FlowEngine(flow_width=WIDTH).generate(first, last, 1)))
    fade = next(iter(CrossfadeEngine().generate(first, last, 1)))
    assert frame.shape == first.shape
    assert psnr(frame, middle) > 34
    assert psnr(frame, middle) > psnr(fade, middle) + 10


@pytest.mark.parametrize("t", [1 / 13, 0.25, 0.5, 7 / 13, 12 / 13])
def test_dissolve_is_the_rounded_weighted_sum(t):
    rng = np.random.default_rng(5)
    first, last = (rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8) for _ in range(2))
    expected = np.rint(np.float32(1 - t) * first.astype(np.float32) + np.float32(t) * last.astype(np.float32))
    mirrored_view = np.ascontiguousarray(last[:, ::-1])[:, ::-1]  # equals ``last``, but not contiguous
    assert np.array_equal(dissolve(first, mirrored_view, t), expected.astype(np.uint8))


def test_between_is_the_frame_generate_makes_at_that_time():
    first, last = view(0, 0), view(*SHIFT)
    frames = list(FlowEngine().generate(first, last, 5))
    assert np.array_equal(FlowEngine().between(first, last, 2 / 6), frames[1])
    assert psnr(FlowEngine().between(first, last, 0.5), truth(0.5)) > psnr(dissolve(first, last, 0.5), truth(0.5)) + 15


def test_between_follows_the_engines_settings():
    first, last = view(0, 0), view(*SHIFT)
    assert np.array_equal(FlowEngine(min_confidence=1.01).between(first, last, 0.5), dissolve(first, last, 0.5))
    assert not np.array_equal(FlowEngine().between(first, last, 0.5), dissolve(first, last, 0.5))


def test_cache_keys_hold_every_setting_with_defaults_and_the_engine_version(monkeypatch):
    plain = FlowEngine().cache_key()
    assert plain == FlowEngine(flow_width=480, min_confidence=0.35).cache_key()
    assert plain["version"] == FlowEngine.version and plain["engine"] == "flow"
    assert FlowEngine(flow_width=240).cache_key() != plain
    assert FlowEngine(min_confidence=0.5).cache_key() != plain
    fade = CrossfadeEngine().cache_key()
    monkeypatch.setattr(FlowEngine, "version", FlowEngine.version + 1)
    monkeypatch.setattr(CrossfadeEngine, "version", CrossfadeEngine.version + 1)
    assert FlowEngine().cache_key() != plain and CrossfadeEngine().cache_key() != fade
