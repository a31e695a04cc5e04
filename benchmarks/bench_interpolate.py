"""Quality and speed of in-between frames: ``flow``, ``rife`` and ``crossfade`` against ffmpeg's minterpolate.

Usage: .venv/bin/python benchmarks/bench_interpolate.py [--quick] [--videos DIR]

Method: take real frame triplets (t-1, t, t+1) from inside a shot, give each method
frames t-1 and t+1, ask for the frame halfway between, and compare it with the real
frame t (PSNR on RGB, SSIM on luma). Speed is in-between frames per second at 1080p
when doubling a clip's frame rate: ``flow``, ``rife`` (its default two-pass ensemble, on the CPU, float32, a thread per
core) and ``crossfade`` are called once per gap in this process; minterpolate runs once over the clip (raw RGB piped in and out), its
fixed start-up cost left out. minterpolate (mi_mode=mci, mc_mode=aobmc, me_mode=bidir)
is measured in the same run and every result is also printed as a ratio against it.
Last, the wall time of ``sfi --help`` (start-up cost).

Material:
- A 1080p30 clip made here by ffmpeg (no files needed): a camera that pans, zooms
  in and rolls slightly over a detailed still (a Mandelbrot-set region overlaid with
  a blurred cellular-automaton pattern and fine static grain), with two independent
  objects on top that occlude it: a test card sliding right to left at ~23 px/frame,
  and a round fractal disc that spins (~3 degrees/frame) while drifting diagonally.
  Encoded with x264 at CRF 14, so inputs carry real compression artefacts.
- Every ``*.mp4`` in ``--videos`` (default ../shared/data/videos beside the project)
  when that folder exists. Triplets are taken only where frames really change inside
  a shot; cuts, fades/dissolves and still frames are skipped and counted (see
  ``classify``). Up to 6 triplets per video (2 with --quick), evenly spread, are used.
  With the project's shared clips: counter-1080p.mp4 only changes burnt-in frame
  numbers (no method can predict the digits, so all score alike there), and
  leaves-cuts-720p.mp4 has no usable triplet (stills, fades and cuts only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from engines.crossfade import dissolve
from engines.flow import FlowEngine
from engines.rife import RifeEngine
from sfi_cli.media.ffmpeg import decode_frames, find_ffmpeg

FPS = 30
SIZE = (1920, 1080)
MINTERPOLATE = "minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir"
SYNTHETIC = "synthetic 1080p clip"
DEFAULT_VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"

# Triplet selection, on luma at 480 px wide (levels 0..255).
CHANGE_LEVEL = 10  # a pixel "changes" when it moves more than this many levels ...
MIN_CHANGED = 0.005  # ... and a triplet must have at least this share of such pixels.
CUT_RATIO, CUT_OFFSET = 2.5, 2.0  # a step this much bigger than the other is a cut.
BLEND_RATIO = 0.3  # middle this close to the mean of its neighbours: fade or dissolve.


# --------------------------------------------------------------------------- material

def background_graph(frames: int) -> str:
    """The detailed still the camera moves over, 2880x1620, repeated ``frames`` times."""
    return (
        f"mandelbrot=s=2880x1620:rate={FPS}:maxiter=400:start_x=-0.7436438870:start_y=0.1318259042:"
        "start_scale=0.004:end_scale=0.004:inner=period,format=rgb24[fractal];"
        f"cellauto=s=2880x1620:rate={FPS}:rule=30:random_fill_ratio=0.5:scroll=0:start_full=1,"
        "format=gray,gblur=sigma=2,format=rgb24[cells];"
        "[fractal][cells]blend=all_mode=overlay:all_opacity=0.6,noise=alls=12:allf=0,"
        f"trim=end_frame=1,loop=loop={frames}:size=1,setpts=N/({FPS}*TB)"
    )


def camera(frames: int) -> str:
    """A perspective filter that pans, zooms in and rolls over the still, then scales to 1080p.

    The view rectangle's centre, half-width and roll angle are functions of time, so
    motion is smooth and sub-pixel (no integer-crop jitter).
    """
    t = f"(in/{FPS})"
    cx, cy = f"(1440+260*sin(0.8*{t})+90*{t})", f"(810+120*sin(0.5*{t}+1))"
    half_w = f"(1100/(1+0.12*{t}))"
    half_h = f"({half_w}*9/16)"
    angle = f"(0.04*sin(0.7*{t}))"

    def corner(sx: int, sy: int) -> tuple[str, str]:
        x = f"{cx}+({sx})*{half_w}*cos({angle})-({sy})*{half_h}*sin({angle})"
        y = f"{cy}+({sx})*{half_w}*sin({angle})+({sy})*{half_h}*cos({angle})"
        return f"'{x}'", f"'{y}'"

    points = [corner(-1, -1), corner(1, -1), corner(-1, 1), corner(1, 1)]
    coords = ":".join(f"x{i}={x}:y{i}={y}" for i, (x, y) in enumerate(points))
    return f"perspective={coords}:interpolation=cubic:eval=frame:sense=source,scale={SIZE[0]}:{SIZE[1]}:flags=area"


def make_clip(ffmpeg: str, path: Path, frames: int) -> None:
    """Render the synthetic test clip described in the module docstring."""
    still = f"trim=end_frame=1,loop=loop={frames}:size=1,setpts=N/({FPS}*TB)"
    graph = ";".join([
        f"{background_graph(frames)},{camera(frames)}[bg]",
        f"testsrc=s=480x320:rate={FPS},{still}[card]",
        f"mandelbrot=s=360x360:rate={FPS}:maxiter=200:start_x=-1.25066:start_y=0.02012:start_scale=0.02:end_scale=0.02,"
        "format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='255*lt(hypot(X-180,Y-180),170)',"
        f"{still},rotate=a='1.6*t':c=none:ow=360:oh=360[disc]",
        "[bg][card]overlay=x='1900-700*t':y='640+90*sin(2.5*t)':eval=frame[with_card]",
        "[with_card][disc]overlay=x='150+420*t':y='120+160*t':eval=frame,format=yuv420p",
    ])
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph,
                    "-frames:v", str(frames), "-c:v", "libx264", "-crf", "14", "-preset", "veryfast", str(path)],
                   check=True)


def video_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


@dataclass
class Triplet:
    """Three consecutive frames of one source: the ends a method gets, and the truth between."""

    source: str
    before: np.ndarray
    middle: np.ndarray
    after: np.ndarray


@dataclass
class Selection:
    """Which triplets of a video are usable, and why the others were not."""

    usable: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"cut": 0, "fade/dissolve": 0, "still": 0})


def classify(before: np.ndarray, middle: np.ndarray, after: np.ndarray) -> str:
    """'usable', 'cut', 'fade/dissolve' or 'still' for small RGB frames of one triplet.

    cut: one step changes the picture far more than the other. fade/dissolve: the middle
    frame is (nearly) the average of its neighbours, which a plain dissolve reproduces and
    no motion explains. still: almost nothing changes beyond compression noise.
    """
    a, b, c = (f.astype(np.float32) for f in (before, middle, after))
    step_1, step_2 = np.abs(b - a).mean(), np.abs(c - b).mean()
    if max(step_1, step_2) > CUT_RATIO * min(step_1, step_2) + CUT_OFFSET:
        return "cut"
    luma = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (before, middle, after)]
    change = np.abs(luma[2] - luma[0])
    if (change > CHANGE_LEVEL).mean() < MIN_CHANGED:
        return "still"
    if np.abs(luma[1] - (luma[0] + luma[2]) / 2).mean() < BLEND_RATIO * change.mean():
        return "fade/dissolve"
    return "usable"


def select(ffmpeg: str, path: Path) -> Selection:
    """Classify every triplet of ``path`` on a small decode."""
    width, height = video_size(path)
    small = (480, max(2, round(480 * height / width / 2) * 2))
    selection = Selection()
    window: list[np.ndarray] = []
    for index, frame in enumerate(decode_frames(path, small, ffmpeg=ffmpeg)):
        window = (window + [frame])[-3:]
        if len(window) == 3:
            kind = classify(*window)
            if kind == "usable":
                selection.usable.append(index - 1)
            else:
                selection.skipped[kind] += 1
    return selection


def spread(items: list[int], count: int) -> list[int]:
    """Up to ``count`` (at least 2) items evenly spread over ``items``, both ends included."""
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def triplets_at(ffmpeg: str, path: Path, centres: list[int], name: str) -> list[Triplet]:
    """Decode ``path`` at full size, keeping only the triplets around ``centres``."""
    wanted = set(centres)
    result, previous = [], []
    for index, frame in enumerate(decode_frames(path, video_size(path), ffmpeg=ffmpeg)):
        previous = (previous + [frame])[-3:]
        if index - 1 in wanted and len(previous) == 3:
            result.append(Triplet(name, *previous))
    return result


# --------------------------------------------------------------------------- methods

def flow_middle(engine: FlowEngine) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: next(iter(engine.generate(a, b, 1)))


def rife_middle(engine: RifeEngine) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: engine.between(a, b, 0.5)


def run_minterpolate(ffmpeg: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Double the frame rate of ``frames`` with minterpolate; returns every output frame.

    minterpolate holds back the last gap until it sees a later frame, so the last input
    is sent twice; n+1 inputs then give 2n+1 outputs: input, in-between, input, ...
    """
    height, width = frames[0].shape[:2]
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-framerate", "1", "-i", "pipe:0",
               "-vf", MINTERPOLATE.format(fps=2), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in [*frames, frames[-1]])
    out = subprocess.run(command, input=data, capture_output=True, check=True).stdout
    count = len(out) // (width * height * 3)
    result = list(np.frombuffer(out, np.uint8)[: count * width * height * 3].reshape(count, height, width, 3))
    if count != 2 * len(frames) - 1:
        raise RuntimeError(f"minterpolate gave {count} frames for {len(frames)} inputs, expected {2 * len(frames) - 1}")
    return result


def minterpolate_middle(ffmpeg: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def middle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        first, between, last = run_minterpolate(ffmpeg, [a, b])
        # The outputs around the in-between must be the inputs: checks the midpoint is index 1.
        if psnr(first, a) < 40 or psnr(last, b) < 40:
            raise RuntimeError("minterpolate output is not [first, in-between, last]; the benchmark is broken")
        return between
    return middle


# --------------------------------------------------------------------------- metrics

def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio over all RGB samples, in dB (capped at 100 for exact matches)."""
    mse = np.mean((prediction.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) on BT.601 luma with an 11x11 Gaussian window, sigma 1.5."""
    x, y = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in (prediction, truth))
    blur = lambda image: cv2.GaussianBlur(image, (11, 11), 1.5)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def per_call(make_between: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], float]:
    """Seconds per in-between when ``make_between`` is called once for every gap of the frames."""
    return lambda frames: timed(lambda: [make_between(a, b) for a, b in zip(frames, frames[1:])]) / (len(frames) - 1)


def per_gap_of_run(run: Callable[[list[np.ndarray]], object]) -> Callable[[list[np.ndarray]], float]:
    """Seconds per in-between of a tool that processes a whole clip in one run (ffmpeg).

    Its fixed costs (process start, the last frame sent twice to flush it) are left out,
    as they would vanish on a long clip: the time of a one-gap run is subtracted and the
    rest divided by the remaining gaps.
    """
    return lambda frames: (timed(lambda: run(frames)) - timed(lambda: run(frames[:2]))) / (len(frames) - 2)


def help_seconds(runs: int = 5) -> list[float]:
    sfi = Path(sys.executable).parent / "sfi"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(sfi), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------- report

METHODS = ("flow", "rife", "crossfade", "minterpolate")
Scores = dict[str, list[tuple[float, float]]]  # method -> (PSNR, SSIM) per triplet


@dataclass
class Material:
    triplets: list[Triplet]
    speed_frames: list[np.ndarray]
    notes: list[str]


def gather(ffmpeg: str, videos: Path, quick: bool) -> Material:
    """The synthetic clip's triplets and speed frames, plus usable triplets from ``videos``."""
    clip_frames, step, per_video, speed_gaps = (40, 9, 2, 4) if quick else (75, 6, 6, 8)
    centres = list(range(step // 2, clip_frames - 1, step))
    keep = {i + d for i in centres for d in (-1, 0, 1)} | set(range(speed_gaps + 1))
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "synthetic.mp4"
        started = time.perf_counter()
        make_clip(ffmpeg, clip, clip_frames)
        rendered = time.perf_counter() - started
        frames = {i: f for i, f in enumerate(decode_frames(clip, SIZE, ffmpeg=ffmpeg)) if i in keep}
    name = SYNTHETIC
    notes = [f"{name}: {clip_frames} frames 1920x1080 @ {FPS} fps (rendered in {rendered:.1f}s); triplets at {centres}"]
    triplets = [Triplet(name, frames[i - 1], frames[i], frames[i + 1]) for i in centres]
    if not videos.is_dir():
        notes.append(f"{videos} not found: synthetic clip only")
    for video in sorted(videos.glob("*.mp4")) if videos.is_dir() else []:
        selection = select(ffmpeg, video)
        chosen = spread(selection.usable, per_video)
        skipped = ", ".join(f"{n} {kind}" for kind, n in selection.skipped.items())
        notes.append(f"{video.name}: {len(selection.usable)} usable triplets ({skipped} skipped); using {chosen}")
        triplets += triplets_at(ffmpeg, video, chosen, video.name)
    return Material(triplets, [frames[i] for i in range(speed_gaps + 1)], notes)


def score(triplets: list[Triplet], predictors: dict[str, Callable]) -> dict[str, Scores]:
    """(PSNR, SSIM) of every method on every triplet, grouped by source."""
    scores: dict[str, Scores] = {}
    for triplet in triplets:
        source = scores.setdefault(triplet.source, {m: [] for m in METHODS})
        for method, predict in predictors.items():
            frame = predict(triplet.before, triplet.after)
            source[method].append((psnr(frame, triplet.middle), ssim(frame, triplet.middle)))
    return scores


def speeds(timers: dict[str, Callable[[list[np.ndarray]], float]], frames: list[np.ndarray], rounds: int) -> dict[str, float]:
    """Best seconds per in-between of each method over ``rounds`` interleaved rounds.

    Interleaving and taking the best of each keeps a slow spell of a shared machine from
    landing on one method only.
    """
    best = {method: float("inf") for method in timers}
    for _ in range(rounds):
        for method, seconds in timers.items():
            best[method] = min(best[method], seconds(frames))
    return best


def quality_rows(name: str, scores: Scores) -> Iterator[str]:
    """Table rows of mean PSNR/SSIM per method, with differences and ratios against minterpolate."""
    means = {m: (statistics.fmean(p for p, _ in s), statistics.fmean(q for _, q in s)) for m, s in scores.items()}
    base_psnr, base_ssim = means["minterpolate"]
    for position, method in enumerate(METHODS):
        p, q = means[method]
        label = f"{name} ({len(scores[method])})" if position == 0 else ""
        yield f"{label:<36}{method:<14}{p:>8.2f}{p - base_psnr:>+8.2f}{p / base_psnr:>8.3f}{q:>9.4f}{q / base_ssim:>8.3f}"
    for better, than in (("flow", "minterpolate"), ("rife", "flow")):
        gains = " ".join(f"{b - t:+.1f}" for (b, _), (t, _) in zip(scores[better], scores[than]))
        yield f"{'':<36}{better} - {than} PSNR per triplet: {gains}"


def report(material: Material, scores: dict[str, Scores], seconds: dict[str, float], help_times: list[float]) -> None:
    print("\n".join(material.notes))
    print("\nQuality: frame t predicted from t-1 and t+1, mean over triplets; 'vs mi' and 'ratio' against minterpolate")
    print(f"{'source (triplets)':<36}{'method':<14}{'PSNR dB':>8}{'vs mi':>8}{'ratio':>8}{'SSIM':>9}{'ratio':>8}")
    everything: Scores = {m: [] for m in METHODS}
    for source, by_method in scores.items():
        print("\n".join(quality_rows(source, by_method)))
        for method, values in by_method.items():
            everything[method] += values
    print("\n".join(quality_rows("all triplets", everything)))

    gaps = len(material.speed_frames) - 1
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nSpeed at 1920x1080, one in-between per gap over {gaps} gaps of the synthetic clip, "
          f"best of interleaved rounds ({os.cpu_count()} CPUs, load average now {load})")
    print(f"{'method':<14}{'frames/s':>10}{'s/frame':>10}{'ratio':>8}")
    for method in METHODS:
        print(f"{method:<14}{1 / seconds[method]:>10.2f}{seconds[method]:>10.3f}{seconds['minterpolate'] / seconds[method]:>8.2f}")

    median_help = statistics.median(help_times)
    print(f"\nsfi --help: {median_help:.3f}s median of {len(help_times)} runs (max {max(help_times):.3f}s)")
    flow_psnr = statistics.fmean(p for p, _ in everything["flow"])
    mi_psnr = statistics.fmean(p for p, _ in everything["minterpolate"])
    speedup = seconds["minterpolate"] / seconds["flow"]
    verdict = lambda met: "MET" if met else "MISSED"  # noqa: E731
    real = {source: by_method for source, by_method in scores.items() if source != SYNTHETIC}
    rife_over_flow = {source: statistics.fmean(p for p, _ in m["rife"]) - statistics.fmean(p for p, _ in m["flow"])
                      for source, m in real.items()}
    gains = ", ".join(f"{source} {gain:+.2f} dB" for source, gain in rife_over_flow.items()) or "no real footage"
    print("\nTargets:")
    print(f"  flow PSNR > minterpolate PSNR (all triplets): {verdict(flow_psnr > mi_psnr)} ({flow_psnr:.2f} vs {mi_psnr:.2f} dB)")
    print(f"  rife PSNR > flow PSNR on every real group:    {verdict(bool(real) and min(rife_over_flow.values()) > 0)} ({gains})")
    print(f"  rife CPU speed at 1080p (reported):           {1 / seconds['rife']:.3f} frames/s ({seconds['rife']:.2f} s/frame)")
    print(f"  flow >= 3x minterpolate's speed at 1080p:     {verdict(speedup >= 3)} ({speedup:.2f}x)")
    print(f"  sfi --help under 0.5 s:                       {verdict(median_help < 0.5)} ({median_help:.3f}s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer triplets, gaps and rounds (under a minute)")
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of extra .mp4 clips")
    args = parser.parse_args(argv)
    ffmpeg = find_ffmpeg()
    help_times = help_seconds()
    material = gather(ffmpeg, args.videos, args.quick)
    flow = flow_middle(FlowEngine())
    rife = rife_middle(RifeEngine(device="cpu"))
    crossfade = lambda a, b: dissolve(a, b, 0.5)  # noqa: E731
    scores = score(material.triplets, {"flow": flow, "rife": rife, "crossfade": crossfade,
                                       "minterpolate": minterpolate_middle(ffmpeg)})
    timers = {"flow": per_call(flow), "rife": per_call(rife), "crossfade": per_call(crossfade),
              "minterpolate": per_gap_of_run(lambda frames: run_minterpolate(ffmpeg, frames))}
    seconds = speeds(timers, material.speed_frames, rounds=2 if args.quick else 3)
    report(material, scores, seconds, help_times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
