"""The engine package as a library: no dependency on the CLI, light to import, its own one-line errors,
and the interface the CLI reads engine knowledge through (describe, notes, diagnose, auto)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines import AUTO_ORDER, auto_choice, engine_class, load_engine, resolve_name
from engines.errors import EngineError, UnknownEngine

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [
    ["grep", "-rE", "^(from|import) sfi_cli", "engines/"],  # the issue's own check
    ["grep", "-rn", "--include=*.py", "sfi_cli", "engines/"],  # nor lazily inside a function, nor by name at all
])
def test_engines_import_nothing_from_the_cli(command):
    found = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == "", found.stdout  # grep: 1 = no line matched


def test_the_engine_package_and_its_errors_load_without_numpy():
    code = ("import sys, engines, engines.errors\n"
            "assert engines.REGISTRY and issubclass(engines.EngineUnavailable, engines.EngineError)\n"
            "print(','.join(m for m in ('numpy', 'cv2', 'torch', 'PIL', 'sfi_cli') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_sfi_help_loads_no_heavy_library():
    code = ("import runpy, sys\nsys.argv = ['sfi', '--help']\n"
            "try:\n    runpy.run_module('sfi_cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in ('numpy', 'cv2', 'torch', 'av') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("HEAVY="), result.stdout + result.stderr


def test_engine_errors_are_one_line():
    error = EngineError("cannot read 'x'\n  (truncated file)\n")
    assert str(error) == "cannot read 'x' (truncated file)" and error.exit_code == 1


def test_cli_prints_an_engine_error_as_one_line_and_writes_nothing(sfi, image_pair, tmp_path):
    empty = tmp_path / "model"
    empty.mkdir()
    before = {p: p.read_bytes() for p in image_pair}
    out = tmp_path / "out.mp4"
    result = sfi("interpolate", *image_pair, "-n", 3, "-o", out, "--engine", "semfi", "--model-dir", empty,
                 "--lora", tmp_path / "semfi.ckpt", "--device", "cpu")
    lines = result.stderr.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("sfi: error: engine 'semfi' cannot run here: DiT:") and "download" in lines[0]
    assert not out.exists() and sorted(tmp_path.iterdir()) == sorted([*image_pair, empty])
    assert {p: p.read_bytes() for p in image_pair} == before


def test_unknown_engine_names_the_choices():
    with pytest.raises(UnknownEngine, match=r"unknown engine .optical. \(choose one of: crossfade, dissolve, flow, rife, semfi, auto\)"):
        resolve_name("optical")


def test_describe_and_notes_come_from_the_engine():
    assert engine_class("flow").describe(14) == "" and engine_class("flow").notes(14) == {}
    assert engine_class("crossfade").describe(14) == "" and engine_class("crossfade").notes(14) == {}
    semfi = engine_class("semfi")
    # 14 new frames: the model runs 17 (the smallest 4k+1 >= 16) and that is an expert's own count
    assert semfi.describe(14) == "expert 17 (model runs 17 frames)" and semfi.notes(14) == {"semfi_expert": 17}
    assert semfi.notes(40) == {"semfi_expert": 33}  # 45 model frames: nearer 33 than 65


def test_auto_passes_over_what_cannot_run_and_says_why():
    rife_on_cpu = {"device": "cpu"}  # rife on a GPU comes before flow (tests/test_rife_engine.py)
    name, passed_over = auto_choice({"semfi": {"model_dir": "/nowhere", "device": "cuda"}, "rife": rife_on_cpu})
    assert name == "flow" == resolve_name("auto", {"semfi": {"model_dir": "/nowhere"}, "rife": rife_on_cpu})
    assert list(passed_over) == ["semfi", "rife"] and "'/nowhere' does not exist" in passed_over["semfi"]
    assert passed_over["rife"] == "auto does not pick rife with these settings"
    assert AUTO_ORDER.index("semfi") < AUTO_ORDER.index("rife") < AUTO_ORDER.index("flow")
    _, on_cpu = auto_choice({"semfi": {"model_dir": "/nowhere", "device": "cpu"}})
    assert "auto does not pick semfi" in on_cpu["semfi"]  # suits_auto is asked before anything is checked


def test_load_engine_builds_each_engine_with_its_own_section():
    flow = load_engine("flow", {"flow": {"flow_width": 200}, "semfi": {"steps": 3}})
    assert flow.flow_width == 200 and flow.cache_key()["flow_width"] == 200
    assert load_engine("crossfade").cache_key() == {"engine": "crossfade", "version": engine_class("crossfade").version}


def test_a_flow_fallback_is_in_the_log_and_the_manifest(tmp_path, sfi):
    """Unrelated pictures: the gap is a dissolve, and the log line and manifest entry say so with the
    measured confidence and the threshold; a moving texture is interpolated and its confidence recorded."""
    from PIL import Image

    from helpers import textured_image

    moving = textured_image(160, 96, seed=3)
    for name, picture in (("a.png", moving), ("b.png", np.roll(moving, 5, axis=1)),
                          ("other.png", textured_image(160, 96, seed=99))):
        Image.fromarray(picture).save(tmp_path / name)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[output]\npath = "out.mp4"\n\n' + "".join(
        f'[[shot]]\nimage = "{name}"\nduration = 1\n' + ('[shot.transition]\nframes = 3\n\n' if n < 2 else '')
        for n, name in enumerate(["a.png", "b.png", "other.png"])))
    result = sfi("render", recipe, "--engine", "flow", "--json")
    assert result.code == 0, result.stderr
    moved, unrelated = json.loads(result.stdout)["gaps"]
    assert "fallback" not in moved and moved["confidence"] >= 0.35
    assert unrelated["fallback"] == "dissolve" and unrelated["confidence"] < 0.35
    assert unrelated["fallback_reason"] == (f"motion confidence {unrelated['confidence']:.3f} is below min_confidence "
                                            f"0.35 (unrelated pictures, a flash, or too little texture)")
    logged = [line for line in result.stderr.splitlines() if "made in" in line]
    assert "fell back" not in logged[0] and logged[1].endswith(f"; fell back to a dissolve: {unrelated['fallback_reason']}")
    manifest = json.loads((tmp_path / "out.sfi.json").read_text())
    assert manifest["gaps"][1]["fallback_reason"] == unrelated["fallback_reason"]
    again = json.loads(sfi("render", recipe, "--engine", "flow", "--json", "--force").stdout)["gaps"]
    assert again[1]["cached"] and again[1]["fallback"] == "dissolve"  # a stored gap keeps what was found
