"""The suite's shared fixtures, registered once: ``helpers`` (the CLI runner, images, frame counts) and
``clips`` (session-wide clips made with ffmpeg: cuts, tones and numbered frames). Their plain functions
are imported from those modules, never from here. ``wan`` is the tiny SemFi model of ``tiny_wan``, whose
module stays free of pytest (benchmarks/gpu_check.py builds the model with it on a bare GPU machine)."""

import pytest

from tiny_wan import tiny_wan

pytest_plugins = ["helpers", "clips"]


@pytest.fixture(scope="session")
def wan(tmp_path_factory):
    return tiny_wan(tmp_path_factory)
