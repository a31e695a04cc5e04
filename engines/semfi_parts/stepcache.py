"""Step caching, MagCache-style: skip a DiT pass when reusing that branch's last output is predicted to cost little.

MagCache (Ma et al. 2025, arXiv 2506.09045, github.com/Zehong-Ma/MagCache) found that the ratio of the
magnitudes of a DiT's outputs at consecutive steps follows one curve per model and schedule, almost the
same for any prompt or picture, near 1 for most of the run and falling at the end. Reusing step k's output
at step j then errs by about |1 - r_k+1 ... r_j|; passes are skipped while the sum of those errors stays
under ``cache_threshold`` and at most ``cache_max_skips`` in a row, never in the first fifth of the steps.

The choice over TeaCache: the decision needs only that curve, never the DiT's inner tensors (TeaCache's
Wan rule reads the timestep modulation inside the model), so it holds for every backend, a compiled or
TensorRT DiT included, where the DiT is one opaque call; and calibrating it is a plain average of ratios
(TeaCache's is a 4th-degree polynomial fit, whose published Wan coefficients reach 1e5). The decisions
depend on the curve and the schedule only, so a run's skipped passes are known before it starts.

sfi skips the whole DiT pass (the only unit every backend has) and reuses the velocity; MagCache reuses
its blocks' residual. The published curves (below) were measured on that residual; ``sfi calibrate``
measures the velocity's own curve on this model, as a file ``cache_calibration`` names. A curve is kept as
each branch's log magnitude along the timestep axis, so it carries over to any step count, shift or
explicit timestep list by interpolation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engines.errors import EngineError
from engines.semfi_parts.schedule import shifted_timesteps

RETAINED = 0.2  # fraction of the steps at the start always run (MagCache's retention ratio for Wan)
BRANCHES = ("positive", "negative")  # the prompt's pass, then the negative prompt's (CFG)
FORMAT = "sfi-semfi-step-cache"

# MagCache4Wan2.1/magcache_generate.py (commit df81cb1): mean per-token magnitude ratio of consecutive
# steps' block residuals for Wan2.1-I2V-14B, 40-step UniPC (shift 3 at 832x480, 5 at 1280x720), SDPA;
# the first entry of each branch stands for "no previous step". Apache-2.0.
PUBLISHED = {
    "480p": dict(model="Wan2.1-I2V-14B-480P", steps=40, shift=3.0, pixels=832 * 480, positive=(
        1.0, 0.98783, 0.97559, 0.98311, 0.98202, 0.9888, 0.98762, 0.98957, 0.99052, 0.99383, 0.98857, 0.99065,
        0.98845, 0.99057, 0.98957, 0.98601, 0.98823, 0.98756, 0.98808, 0.98721, 0.98571, 0.98543, 0.98157,
        0.98411, 0.97952, 0.98149, 0.9774, 0.97825, 0.97355, 0.97085, 0.97056, 0.96588, 0.96113, 0.9567,
        0.94961, 0.93973, 0.93217, 0.91878, 0.90955, 0.92617), negative=(
        1.0, 0.98993, 0.97593, 0.98319, 0.98225, 0.98878, 0.98759, 0.98971, 0.99043, 0.99384, 0.9886, 0.99068,
        0.98847, 0.99057, 0.98961, 0.9861, 0.98823, 0.98759, 0.98814, 0.98724, 0.98572, 0.98544, 0.98165,
        0.98413, 0.97953, 0.9815, 0.97742, 0.97826, 0.97361, 0.97087, 0.97055, 0.96587, 0.96124, 0.95681,
        0.94969, 0.93988, 0.93224, 0.91896, 0.90954, 0.92616)),
    "720p": dict(model="Wan2.1-I2V-14B-720P", steps=40, shift=5.0, pixels=1280 * 720, positive=(
        1.0, 0.99428, 0.98588, 0.98273, 0.99018, 0.98911, 0.98646, 0.99454, 0.9891, 0.99124, 0.99102, 0.99215,
        0.99515, 0.99576, 0.99068, 0.99097, 0.99166, 0.99041, 0.99201, 0.99101, 0.98599, 0.98845, 0.98848,
        0.98862, 0.98718, 0.98497, 0.98264, 0.98389, 0.97938, 0.97535, 0.97498, 0.973, 0.96827, 0.96261,
        0.95335, 0.94649, 0.93397, 0.91636, 0.89088, 0.8679), negative=(
        1.0, 0.99498, 0.98621, 0.98281, 0.99023, 0.98917, 0.98652, 0.99456, 0.98909, 0.99127, 0.99103, 0.99212,
        0.99515, 0.99572, 0.99072, 0.99097, 0.99169, 0.99042, 0.99198, 0.99101, 0.98603, 0.98844, 0.98851,
        0.98857, 0.98719, 0.98497, 0.98263, 0.98393, 0.9794, 0.97536, 0.97499, 0.97301, 0.96828, 0.96263,
        0.9534, 0.94655, 0.93414, 0.9165, 0.89109, 0.86768)),
}
UNIPC_SIGMA_MAX = 0.999  # Wan's UniPC schedule starts one training step below sigma 1


@dataclass(frozen=True)
class Curve:
    """Each branch's log output magnitude at decreasing ``timesteps``, relative to the first."""

    source: str
    timesteps: tuple[float, ...]
    logs: dict[str, tuple[float, ...]]

    @classmethod
    def from_ratios(cls, source: str, timesteps: Sequence[float], ratios: dict[str, Sequence[float]]) -> Curve:
        """From per-step ratios (entry 0 ignored: the first step has no previous one)."""
        logs = {}
        for branch, values in ratios.items():
            total, running = [0.0], 0.0
            for value in values[1:]:
                running += math.log(value)
                total.append(running)
            logs[branch] = tuple(total)
        return cls(source, tuple(float(t) for t in timesteps), logs)

    def ratios(self, branch: str, timesteps: Sequence[float]) -> list[float]:
        """Predicted magnitude ratio of each step's output to the previous step's (1.0 for the first step)."""
        logs = [interpolate(self.timesteps, self.logs[branch], float(t)) for t in timesteps]
        return [1.0] + [math.exp(b - a) for a, b in zip(logs, logs[1:])]


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear y(x) through points with decreasing ``xs``, extended along the end segments."""
    if len(xs) == 1:
        return ys[0]
    segment = next((i for i in range(len(xs) - 2) if x >= xs[i + 1]), len(xs) - 2)
    x0, x1, y0, y1 = xs[segment], xs[segment + 1], ys[segment], ys[segment + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def published_curve(area_pixels: int) -> Curve:
    """The published Wan2.1-I2V curve nearest ``area_pixels`` (by pixel-count ratio), placed on its own schedule."""
    name = min(PUBLISHED, key=lambda n: abs(math.log(area_pixels / PUBLISHED[n]["pixels"])))
    data = PUBLISHED[name]
    timesteps = shifted_timesteps(data["steps"], data["shift"], UNIPC_SIGMA_MAX)
    return Curve.from_ratios(f"published {name} (MagCache, {data['model']})", timesteps,
                             {branch: data[branch] for branch in BRANCHES})


def skip_plan(ratios: Sequence[float], threshold: float, max_skips: int) -> tuple[bool, ...]:
    """Which of a branch's passes run (True) or reuse the last output (False): MagCache's rule."""
    retained = max(1, int(len(ratios) * RETAINED))
    runs, ratio, error, skipped = [], 1.0, 0.0, 0
    for index, step_ratio in enumerate(ratios):
        if index >= retained and threshold > 0:
            ratio *= step_ratio
            error += abs(1 - ratio)
            skipped += 1
            if error < threshold and skipped <= max_skips:
                runs.append(False)
                continue
        runs.append(True)
        ratio, error, skipped = 1.0, 0.0, 0
    return tuple(runs)


@dataclass(frozen=True)
class CachePlan:
    """Which DiT passes a run makes, per branch and step."""

    runs: dict[str, tuple[bool, ...]]
    threshold: float
    source: str

    def runs_pass(self, branch: str, step: int) -> bool:
        return self.runs[branch][step]

    @property
    def passes(self) -> int:
        return sum(len(r) for r in self.runs.values())

    @property
    def skipped(self) -> int:
        return sum(r.count(False) for r in self.runs.values())

    def notes(self) -> dict[str, Any]:
        """What the gap's manifest entry and log line say about it."""
        return {"semfi_cache": {"skipped": self.skipped, "passes": self.passes, "threshold": self.threshold,
                                "curve": self.source},
                "remark": f"step cache skipped {self.skipped} of {self.passes} DiT passes"}


def make_plan(curve: Curve, timesteps: Sequence[float], branches: Sequence[str], threshold: float,
              max_skips: int) -> CachePlan:
    return CachePlan({branch: skip_plan(curve.ratios(branch, timesteps), threshold, max_skips) for branch in branches},
                     threshold, curve.source)


def read_calibration(path: Path) -> Curve:
    """The curve ``sfi calibrate`` wrote to ``path``; one clear line when it is not such a file."""
    path = Path(path)
    advice = "make one with 'sfi calibrate' or leave cache_calibration empty for the published curve"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"cache calibration '{path}' does not exist; {advice}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EngineError(f"cannot read cache calibration '{path}' ({error}); {advice}") from None
    problem = calibration_problem(data)
    if problem:
        raise EngineError(f"cache calibration '{path}' is not usable: {problem}; {advice}")
    return Curve.from_ratios(f"calibrated ({path.name})", data["timesteps"], data["ratios"])


def calibration_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"it is not an '{FORMAT}' file"
    timesteps, ratios = data.get("timesteps"), data.get("ratios")
    if not isinstance(timesteps, list) or len(timesteps) < 2 or any(
            not isinstance(t, (int, float)) for t in timesteps) or any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        return "'timesteps' must be 2 or more decreasing numbers"
    if not isinstance(ratios, dict) or BRANCHES[0] not in ratios:
        return f"'ratios' must hold '{BRANCHES[0]}' (and '{BRANCHES[1]}' for CFG)"
    for branch, values in ratios.items():
        if branch not in BRANCHES or not isinstance(values, list) or len(values) != len(timesteps) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf for v in values):
            return f"'ratios.{branch}' must be {len(timesteps)} positive numbers, one per timestep"
    return None


class MagnitudeRecorder:
    """Averages, over the runs it watches, each step's mean per-position output magnitude ratio to the step before."""

    def __init__(self) -> None:
        self.timesteps: list[float] | None = None
        self.sums: dict[str, list[float]] = {}
        self.runs = 0
        self._previous: dict[str, Any] = {}

    def start(self, timesteps: Sequence[float]) -> None:
        timesteps = [float(t) for t in timesteps]
        if self.timesteps is not None and timesteps != self.timesteps:
            raise ValueError("every calibration run must use the same schedule")
        self.timesteps = timesteps
        self._previous = {}
        self.runs += 1

    def __call__(self, step: int, branch: str, velocity) -> None:
        """Record one computed pass (``velocity``: the DiT output, (1, C, F, H, W))."""
        norms = velocity.float().norm(dim=1)
        sums = self.sums.setdefault(branch, [0.0] * len(self.timesteps))
        if step > 0:
            sums[step] += float((norms / self._previous[branch].clamp_min(1e-12)).mean())
        self._previous[branch] = norms

    def record(self, **meta: Any) -> dict[str, Any]:
        """The calibration file's content: the averaged ratios (first entry 1.0) and what they were measured on."""
        ratios = {branch: [1.0] + [round(s / self.runs, 6) for s in sums[1:]] for branch, sums in self.sums.items()}
        return {"format": FORMAT, "version": 1, "timesteps": [round(t, 4) for t in self.timesteps],
                "ratios": ratios, "runs": self.runs, **meta}


@dataclass(frozen=True)
class CacheSettings:
    """``cache_threshold`` (0: off), ``cache_max_skips`` and the curve ``cache_calibration`` names (None: published)."""

    threshold: float
    max_skips: int
    calibration: Path | None
    curve: Curve | None

    def key(self) -> dict[str, Any]:
        """What shapes the frames: the settings and the calibration's content (not its path)."""
        import hashlib

        digest = hashlib.sha256(self.calibration.read_bytes()).hexdigest() if self.calibration else "published"
        return {"threshold": self.threshold, "max_skips": self.max_skips, "calibration": digest}

    def plan(self, timesteps: Sequence[float], branches: Sequence[str], area_pixels: int) -> CachePlan:
        return make_plan(self.curve or published_curve(area_pixels), timesteps, branches, self.threshold, self.max_skips)


def cache_settings(threshold: Any, max_skips: Any, calibration: Any) -> CacheSettings | None:
    """The step cache a run uses (None when ``threshold`` is 0); a bad value or calibration file is one clear line."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
        raise EngineError(f"cache_threshold must be a number of at least 0 (0: no step cache), got {threshold!r}")
    if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 1:
        raise EngineError(f"cache_max_skips must be an integer of at least 1, got {max_skips!r}")
    if threshold == 0:
        return None
    path = Path(str(calibration)).expanduser().resolve() if calibration else None
    return CacheSettings(float(threshold), max_skips, path, read_calibration(path) if path else None)
