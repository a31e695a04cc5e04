"""What SemFi's step cache skips and what it costs in fidelity, on the tiny random Wan model (CPU).

For the published Wan2.1-I2V curve and for the tiny model's own curve (measured the way ``sfi calibrate`` does,
on two other gaps), at several thresholds: DiT passes made of those of the uncached run, the run's time, and the
PSNR of its raw frames to the uncached frames. A random model's outputs are not a trained model's, so the PSNR
column shows that the cache works and how it scales, not what Wan2.1 loses (docs/semfi.md).

Usage: .venv/bin/python benchmarks/bench_stepcache.py [--steps 50] [--frames 31] [--thresholds 0.06,0.12,0.24]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engines.semfi import SemFiEngine  # noqa: E402
from engines.semfi_parts.schedule import sigma_schedule  # noqa: E402
from engines.semfi_parts.stepcache import MagnitudeRecorder  # noqa: E402
from tiny_wan import gradient_pair, write_tiny_wan  # noqa: E402

SIZE = (32, 48)


def psnr(a, b) -> float:
    error = float(np.mean((np.stack(a).astype(np.float64) - np.stack(b).astype(np.float64)) ** 2))
    return float("inf") if error == 0 else 10 * np.log10(255.0 ** 2 / error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frames", type=int, default=31, help="new frames (31: a 33-frame run)")
    parser.add_argument("--thresholds", default="0.06,0.12,0.24")
    parser.add_argument("--max-skips", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        wan = write_tiny_wan(Path(folder))
        common = dict(model_dir=str(wan.model_dir), lora=str(wan.lora), device="cpu", steps=args.steps, cfg=5.0,
                      area=SIZE[0] * SIZE[1])
        plain = SemFiEngine(**common)
        first, last = gradient_pair(48, 32)
        runtime = plain.runtime()

        recorder = MagnitudeRecorder()  # the tiny model's own curve, from two other gaps
        timesteps = sigma_schedule(args.steps, 5.0)[1].tolist()
        for seed, (a, b) in enumerate([(last, first), (first[::-1].copy(), last[:, ::-1].copy())]):
            recorder.start(timesteps)
            plain.generate_raw(a, b, args.frames, SIZE, seed=10 + seed, observe=recorder)
        calibration = Path(folder) / "tiny-curve.json"
        calibration.write_text(json.dumps(recorder.record()))

        started = time.perf_counter()
        reference = plain.generate_raw(first, last, args.frames, SIZE, seed=1)
        base_seconds = time.perf_counter() - started
        print(f"tiny Wan model, {plain.model_frames(args.frames)} frames at {SIZE[0]}x{SIZE[1]}, {args.steps} steps, cfg 5, "
              f"max {args.max_skips} skips in a row; uncached: {2 * args.steps} passes, {base_seconds:.1f}s")
        print(f"{'curve':<30} {'threshold':>9} {'passes':>9} {'seconds':>8} {'PSNR dB':>8}")
        for curve in ("", str(calibration)):
            for threshold in (float(t) for t in args.thresholds.split(",")):
                engine = SemFiEngine(**common, cache_threshold=threshold, cache_max_skips=args.max_skips,
                                     cache_calibration=curve)
                engine._runtime = runtime  # the same loaded models: only the sampling differs
                notes = {}
                started = time.perf_counter()
                frames = engine.generate_raw(first, last, args.frames, SIZE, seed=1, notes=notes)
                seconds = time.perf_counter() - started
                cache = notes["semfi_cache"]
                print(f"{cache['curve'][:30]:<30} {threshold:>9.2f} {cache['passes'] - cache['skipped']:>5}/{cache['passes']:<3} "
                      f"{seconds:>8.1f} {psnr(frames, reference):>8.1f}")


if __name__ == "__main__":
    main()
