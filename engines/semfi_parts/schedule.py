"""Which timesteps the DiT sees: from ``steps`` and ``shift`` (Wan's flow-matching schedule) or an explicit list.

A 4-step distillation LoRA is trained on a few fixed timesteps; ``timesteps`` names them directly
(what the DiT gets, 0 < t <= 1000, sigma = t / 1000) and then overrides ``steps`` and ``shift``.
Importing this module is cheap (the schema checks a config's list with ``timesteps_problem``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

TRAIN_TIMESTEPS = 1000


def timesteps_problem(values: Any) -> str | None:
    """Why ``values`` is not a usable explicit timestep list (strictly decreasing numbers in (0, 1000]), or None."""
    if not isinstance(values, (list, tuple)):
        return f"got {type(values).__name__}"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"got the entry {value!r}"
        if not 0 < value <= TRAIN_TIMESTEPS:
            return f"got {value:g} (each must be above 0 and at most {TRAIN_TIMESTEPS})"
    pairs = [(a, b) for a, b in zip(values, values[1:]) if a <= b]
    if pairs:
        return f"got {pairs[0][0]:g} before {pairs[0][1]:g} (they must be strictly decreasing)"
    return None


def sigma_schedule(steps: int, shift: float, timesteps: Sequence[float] = ()):
    """(sigmas, timesteps) as float32 tensors, one per step: ``timesteps`` as given, else diffsynth's Wan
    schedule, sigmas linspace(1, 0, steps + 1)[:-1] shifted by ``shift``, t = 1000 sigma (bit for bit)."""
    import torch

    if timesteps:
        given = torch.tensor([float(t) for t in timesteps], dtype=torch.float32)
        return given / TRAIN_TIMESTEPS, given
    from diffsynth.diffusion import FlowMatchScheduler

    return FlowMatchScheduler.set_timesteps_wan(steps, denoising_strength=1.0, shift=shift)


def shifted_timesteps(steps: int, shift: float, sigma_max: float = 1.0) -> list[float]:
    """The timesteps of a ``steps``-step shifted schedule starting at ``sigma_max`` (plain floats, for curves)."""
    sigmas = [sigma_max * (1 - index / steps) for index in range(steps)]
    return [TRAIN_TIMESTEPS * shift * s / (1 + (shift - 1) * s) for s in sigmas]
