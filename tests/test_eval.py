"""``sfi eval``: scores of engines on held-out real frames and on image pairs, each checked against a
computation of its own here (numpy), the HTML report self-contained, bad use one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clips import decode_all
from helpers import textured_image
from sfi_cli.evaluate import metrics


def own_psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def own_dissolve(a, b, t):
    return np.rint((1 - t) * a.astype(np.float64) + t * b.astype(np.float64)).astype(np.uint8)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, pan_clip):
    from helpers import run_sfi

    report = tmp_path_factory.mktemp("eval") / "report.html"
    result = run_sfi("eval", pan_clip, "--held-out", 1, "--gaps", 3, "--engines", "crossfade,flow", "--json",
                     "--report", report)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout), report


def test_held_out_frames_are_scored_as_numpy_scores_them(video_run, pan_clip, ffmpeg_exe):
    summary, _ = video_run
    frames = decode_all(pan_clip, ffmpeg_exe)  # 13 frames: kept ones every 2nd, 6 gaps, 3 evenly spread
    assert summary["gap_starts"] == [0, 4, 10] and summary["in_betweens"] == 1 and summary["size"] == [128, 80]
    crossfade = summary["engines"]["crossfade"]
    assert crossfade["per_frame"]["frame"] == [1, 5, 11]
    expected = [own_psnr(own_dissolve(frames[n - 1], frames[n + 1], 0.5), frames[n]) for n in (1, 5, 11)]
    assert crossfade["per_frame"]["psnr"] == pytest.approx(expected, abs=0.01)
    assert crossfade["psnr"] == pytest.approx(np.mean(expected), abs=0.01)
    real_steps = [np.abs(frames[n + 1].astype(int) - frames[n].astype(int)).mean() for s in (0, 4, 10) for n in (s, s + 1)]
    assert summary["real"]["flicker"] == pytest.approx(np.mean(real_steps), abs=1e-6)
    flow = summary["engines"]["flow"]
    assert flow["psnr"] > crossfade["psnr"] + 3 and 0.5 < crossfade["ssim"] < flow["ssim"] <= 1
    assert summary["real"]["dynamic_degree"] == pytest.approx(np.hypot(3, 2), rel=0.25)  # the pan: 3 px right, 2 down
    assert all(e["seconds_per_frame"] >= 0 and e["fallbacks"] == [] for e in summary["engines"].values())


def test_the_html_report_holds_its_plots_and_frame_strips(video_run):
    summary, report = video_run
    text = report.read_text()
    assert summary["report"] == str(report) and text.startswith("<!DOCTYPE html>")
    plots = text.count("<img alt=")
    strips = text.count("<figure><img src='data:image/png;base64,")
    assert plots == 2 and strips == 3 * 3  # PSNR and flicker plots; A, made, B for each engine and the real frames
    assert "http" not in text and "src='data:image/png;base64," in text  # nothing outside the file
    assert all(len(chunk) > 1000 for chunk in text.split("base64,")[1:])


def test_an_image_pair_is_scored_without_truth(sfi, tmp_path):
    first = textured_image(80, 48, seed=1)
    last = np.clip(np.roll(first, 6, axis=1).astype(int) + 40, 0, 255).astype(np.uint8)  # moves and brightens
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(first).save(a)
    Image.fromarray(last).save(b)
    result = sfi("eval", a, b, "--engines", "crossfade", "--frames", 3, "--json")
    assert result.code == 0, result.stderr
    scores = json.loads(result.stdout)["engines"]["crossfade"]
    run = [first, *(own_dissolve(first, last, t) for t in (0.25, 0.5, 0.75)), last]
    assert scores["end_psnr"] == pytest.approx([own_psnr(run[1], first), own_psnr(run[3], last)], abs=0.01)
    assert scores["flicker"] == pytest.approx(np.mean([np.abs(y.astype(int) - x.astype(int)).mean()
                                                       for x, y in zip(run, run[1:])]), abs=0.01)
    assert abs(scores["seam_jump"]) < 0.1  # a dissolve's colour moves evenly: no jump at the seams
    assert "psnr" not in scores and 0 < scores["smoothness"] <= 1


def test_metrics_on_known_frames():
    frame = textured_image(64, 48, seed=3)
    noisy = np.clip(frame.astype(int) + np.random.default_rng(0).normal(0, 8, frame.shape).round(), 0, 255).astype(np.uint8)
    assert metrics.psnr(frame, frame) == 100.0 and metrics.ssim(frame, frame) == pytest.approx(1.0)
    assert metrics.psnr(noisy, frame) == pytest.approx(own_psnr(noisy, frame)) and metrics.ssim(noisy, frame) < 0.95
    assert metrics.flicker([frame, frame, frame]) == 0
    assert metrics.seam_jump(frame, [frame, frame], frame) == 0 and metrics.seam_jump(frame, [frame], frame) is None
    assert metrics.dynamic_degree([np.full((4, 4), 2.0), np.full((4, 4), 4.0)]) == 3.0


def test_bad_use_is_one_line(sfi, tmp_path, image_pair):
    existing = tmp_path / "r.html"
    existing.write_text("mine")
    for args, words in [
        ((*image_pair, "--report", existing), "exists; pass --force"),
        ((*image_pair, "--report", image_pair[0]), "is also an input"),
        ((*image_pair, "--engines", "warp"), "unknown engine 'warp'"),
        ((*image_pair, image_pair[0]), "give two images or one video, got 3 inputs"),
        ((*image_pair, "--frames", 0), "--frames must be 1 or more"),
        ((*image_pair, "--report", existing / "r.html"), f"folder '{existing}' for the report does not exist"),
    ]:
        result = sfi("eval", *args)
        lines = result.stderr.strip().splitlines()
        assert result.code != 0 and len(lines) == 1 and words in lines[0], (args, result.stderr)
    assert existing.read_text() == "mine"


def test_held_out_windows_over_a_cut_are_left_out(sfi, cut_clip):
    result = sfi("eval", cut_clip, "--held-out", 3, "--gaps", 100, "--engines", "crossfade", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cuts"] == [30, 60] and summary["gaps_over_cuts_left_out"] == 2
    every = list(range(0, 90 - 4, 4))  # kept frames every 4th: windows 0-4, 4-8, ..., 84-88
    assert summary["gap_starts"] == [s for s in every if s not in (28, 56)]  # 28-32 holds cut 30, 56-60 cut 60
    assert summary["engines"]["crossfade"]["per_frame"]["frame"][:3] == [1, 2, 3]
