"""A live dissolve, as in an NLE: the outgoing shot keeps playing while the incoming one fades in.

Given the real frames of both shots around the transition (``ShotFrames``), new frame j is the mix at
t = (j + 1) / (count + 1) of the outgoing shot's picture at its place ``outgoing_at[j]`` and the incoming
shot's at ``incoming_at[j]``. A place on a real frame is that frame; one between two real frames is made
by the flow engine between them; one past the last real frame of the outgoing shot (or before the first
of the incoming one) continues that shot's own motion, measured between its two frames nearest the cut,
by warping its nearest frame along it: neither picture ever stands still. Without the shots (two
images, ``sfi interpolate``) it is a plain dissolve.

The flow engine falls back to this where it finds no motion between the two ends (a cut).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np

from engines.base import Engine, ProgressCallback, ShotFrames, frame_times
from engines.crossfade import dissolve


class ShotLayer:
    """One shot's picture at any place along its real frames (see the module doc)."""

    def __init__(self, frames: Sequence[np.ndarray], flow) -> None:
        self.frames, self.flow = frames, flow
        self._motion: dict[int, Any] = {}  # by end (-1: past the last frame, 0: before the first): the field

    def at(self, place: float) -> np.ndarray:
        last = len(self.frames) - 1
        if 0 <= place <= last:
            index = math.floor(place)
            if place == index:
                return self.frames[index]
            return self.flow.between(self.frames[index], self.frames[index + 1], place - index)
        end, steps = (last, place - last) if place > last else (0, -place)
        return self.continued(end, steps)

    def continued(self, end: int, steps: float) -> np.ndarray:
        """The frame ``steps`` frames beyond real frame ``end`` (the first or last), moving on as it moved into it."""
        from engines.flow import MIN_FLOW_SIDE, MotionField, flow_size, pixel_grid, warp

        if len(self.frames) < 2 or min(flow_size(self.frames[end].shape, self.flow.flow_width)) < MIN_FLOW_SIDE:
            return self.frames[end]  # a single frame (a still), or too small a one, has no motion to go on with
        if end not in self._motion:
            inward = self.frames[end - 1] if end else self.frames[1]
            field = MotionField(self.frames[end], inward, self.flow.flow_width)
            self._motion[end] = field.full_motion(field.forward)  # from the end frame to the one before it in time
        frame = self.frames[end]
        return warp(frame, pixel_grid(frame.shape[1], frame.shape[0]), self._motion[end], steps)


def live_dissolve(first: np.ndarray, last: np.ndarray, count: int, shots: ShotFrames | None, flow,
                  progress: ProgressCallback | None = None) -> Iterator[np.ndarray]:
    """The ``count`` frames of a live dissolve (``flow``: the flow engine that places and continues motion)."""
    outgoing = ShotLayer(shots.outgoing, flow) if shots else None
    incoming = ShotLayer(shots.incoming, flow) if shots else None
    for index, t in enumerate(frame_times(count)):
        if shots:
            frame = dissolve(outgoing.at(shots.outgoing_at[index]), incoming.at(shots.incoming_at[index]), t)
        else:
            frame = dissolve(first, last, t)
        if progress:
            progress(index + 1, count)
        yield frame


class DissolveEngine(Engine):
    """The live dissolve as an engine of its own: for cuts where motion between the two sides means nothing."""

    name = "dissolve"
    uses = ("flow",)
    uses_shots = True

    def __init__(self, *, flow, **settings) -> None:
        super().__init__(**settings)
        self.flow = flow

    def generate(self, first, last, count, *, prompt="", negative_prompt="", seed=0,
                 progress: ProgressCallback | None = None, notes: dict[str, Any] | None = None,
                 shots: ShotFrames | None = None) -> Iterator[np.ndarray]:
        return live_dissolve(first, last, count, shots, self.flow, progress)
