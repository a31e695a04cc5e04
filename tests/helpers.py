"""Shared test helpers: run the real CLI in-process, make images, ask ffmpeg about outputs.

Registered once as a plugin in ``conftest.py`` (its fixtures are everywhere); tests import its plain
functions by name, ``from helpers import ...``, as they do ``clips`` and ``tiny_wan``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfi_cli.commands import main
from sfi_cli.media.ffmpeg import find_ffmpeg


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_sfi(*args: str | Path) -> CliResult:
    """Run ``sfi ARGS`` through the real entry point, capturing its output and exit code."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def sfi():
    return run_sfi


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


def textured_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (the kind optical flow can lock on to)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


@pytest.fixture
def image_pair(tmp_path):
    """Two PNGs of a texture moved 6 px to the right."""
    base = textured_image(80, 48, seed=1)
    first, last = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(base).save(first)
    Image.fromarray(np.roll(base, 6, axis=1)).save(last)
    return first, last


def count_video_frames(path: Path, ffmpeg: str) -> int:
    """Frames in the first video stream, counted by ffmpeg decoding every frame."""
    listing = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
                             check=True, capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines() if line and not line.startswith("#"))


def peak_rss_kib(command: list[str]) -> int:
    """Peak resident memory (KiB) of ``command``'s largest process, measured in a fresh wrapper so that
    earlier children of the test process do not count."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    return int(subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True,
                              text=True).stdout)
