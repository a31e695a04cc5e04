"""Recipe validation: every mistake is one line naming file, line and key, found before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clips import make_clip
from sfi_cli.timeline.recipe import load_recipe
from sfi_cli.config.toml import key_line

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

GOOD = """\
[output]
path = "out.mp4"
fps = 25

[defaults]
frames = 6

[[shot]]
image = "a.png"
duration = 10

[shot.transition]
prompt = "a"

[[shot]]
video = "clip.mp4"
in = 10
out = "00:00:02:00"

[shot.transition]
seconds = 0.2
mode = "replace"

[[shot]]
video = "clip.mp4"
in = 60
"""


@pytest.fixture
def project(tmp_path, cut_clip):
    """A folder with an image and a clip the recipes refer to by relative path."""
    Image.fromarray(np.full((128, 192, 3), 90, np.uint8)).save(tmp_path / "a.png")
    shutil.copy(cut_clip, tmp_path / "clip.mp4")
    return tmp_path


def write(project: Path, text: str) -> Path:
    path = project / "r.toml"
    path.write_text(text)
    return path


def test_good_recipe_plans(project, sfi):
    result = sfi("render", write(project, GOOD), "--dry-run", "--engine", "crossfade")
    assert result.code == 0, result.stderr
    # still 10 + gap 6 + clip 10..49 less 2 replaced + gap 5 + clip 60..89 less 3 replaced
    assert "plan: 86 frames" in result.stdout
    assert "footage  clip.mp4 frames 10-47" in result.stdout and "footage  clip.mp4 frames 63-89" in result.stdout
    assert not (project / "out.mp4").exists() and not (project / ".sfi-work").exists()


@pytest.mark.parametrize("old, new, message, line", [
    ('fps = 25', 'fps = 25\nfps = 24', "TOML syntax error", None),
    ('prompt = "a"', 'prompt = "a', "TOML syntax error", None),
    ('prompt = "a"', 'promt = "a"', "unknown key 'shot[0].transition.promt'", 13),
    ('in = 60', 'in = 60\ncolour = "red"', "unknown key 'shot[2].colour'", 27),
    ('[defaults]', '[default]', "unknown key 'default'", 5),
    ('fps = 25', 'fps = true', "'output.fps' must be", 3),
    ('seconds = 0.2', 'seconds = "0.2"', "'shot[1].transition.seconds' must be", 21),
    ('mode = "replace"', 'mode = "overlay"', "must be one of insert, replace", 22),
    ('image = "a.png"', 'image = "missing.png"', "media file 'missing.png' does not exist", 9),
    ('video = "clip.mp4"\nin = 60', 'video = "nope.mp4"\nin = 60', "media file 'nope.mp4' does not exist", 25),
    ('image = "a.png"', 'image = "a.png"\nvideo = "clip.mp4"', "exactly one of 'image' or 'video'", 8),
    ('out = "00:00:02:00"', 'out = "00:00:02:30"', "frame part 30 must be below 25", 15),
    ('out = "00:00:02:00"', 'out = "two seconds"', "bad timecode 'two seconds'", 18),
    ('out = "00:00:02:00"', 'out = 500', "past the end of 'clip.mp4' (90 frames)", 15),
    ('out = "00:00:02:00"', 'out = 5', "the shot is empty", 15),
    ('frames = 6', 'frames = 0', "zero-length transition", 6),
    ('seconds = 0.2', 'seconds = 0.01', "zero-length transition", 21),
    ('seconds = 0.2', 'frames = 2\nseconds = 0.2', "not both", 22),
    ('seconds = 0.2', 'seconds = 4.0', "transition longer than the shot it replaces into", 15),
    ('in = 60\n', 'in = 60\n[shot.transition]\nframes = 3\n', "the last shot has a transition", 27),
    ('duration = 10', 'duration = 10\nslowmo = 2', "'slowmo' applies to video shots", 11),
    ('path = "out.mp4"', 'path = "clip.mp4"', "is also an input", None),
    ('path = "out.mp4"', 'path = "out.mp4"\ncodec = "prores"', "codec prores cannot be written to 'out.mp4'", None),
    ('fps = 25', 'fps = 25\nquality = 52', "'output.quality' (the h264 CRF) must be an integer from 0 to 51, got 52", 4),
    ('fps = 25', 'fps = 25\nquality = -1\ncodec = "h265"', "(the h265 CRF) must be an integer from 0 to 51, got -1", 4),
    ('path = "out.mp4"', 'path = "out.mov"\nquality = 4', "'output.quality' (the ProRes profile) must be an integer from 0 to 3, got 4", 3),
    ('path = "out.mp4"', 'path = "out.avi"\nquality = 20', "out.avi' must end in .mp4, .mov or .mkv", 2),
    ('path = "out.mp4"', 'path = "out.mp4"\ncodec = "prores"\nquality = 3', "codec prores cannot be written to 'out.mp4'", 2),
    ('fps = 25', 'fps = 25\npreset = "fastest"', "'output.preset' must be one of ultrafast, superfast", 4),
    ('fps = 25', 'fps = 25\nsize = "100000x100000"', "size 100000x100000 is too large: sfi works on frames of at most 16384", 4),
    ('prompt = "a"', 'prompt = "a"\nengine = "magic"',
     "'shot[0].transition.engine' must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'magic'", 14),
    ('frames = 6', 'frames = 6\nengine = "warp"', "'defaults.engine' must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'warp'", 7),
    ('seconds = 0.2', 'seconds = nan', "'shot[1].transition.seconds' must be an integer or a finite number, got nan", 21),
    ('seconds = 0.2', 'seconds = inf', "'shot[1].transition.seconds' must be an integer or a finite number, got inf", 21),
    ('seconds = 0.2', 'seconds = -inf', "got -inf", 21),
    ('seconds = 0.2', 'seconds = -0.5', "zero-length transition", 21),
    ('in = 10', 'in = inf', "'shot[1].in' must be an integer or a finite number or a string, got inf", 17),
    ('duration = 10', 'duration = nan', "'shot[0].duration' must be", 10),
    ('fps = 25', 'fps = inf', "'output.fps' must be", 3),
])
def test_recipe_errors(project, sfi, old, new, message, line):
    assert old in GOOD
    recipe = write(project, GOOD.replace(old, new, 1))
    result = sfi("render", recipe, "--dry-run", "--engine", "crossfade")
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert str(recipe) in lines[0] or "also an input" in message or "codec" in message
    if line is not None:
        assert f"{recipe}:{line}:" in lines[0]


def test_recipe_without_shots(project, sfi):
    result = sfi("render", write(project, '[output]\npath = "x.mp4"\n'))
    assert result.code != 0 and "has no [[shot]]" in result.stderr


def test_missing_recipe_and_missing_output(project, sfi):
    result = sfi("render", project / "none.toml")
    assert result.code != 0 and "does not exist" in result.stderr
    result = sfi("render", write(project, GOOD.replace('path = "out.mp4"\n', "")), "--dry-run")
    assert result.code != 0 and "no output path" in result.stderr


def test_missing_media_reported_before_any_work(project, sfi):
    """A later shot's missing file stops the run before the first transition is made."""
    recipe = write(project, GOOD.replace('video = "clip.mp4"\nin = 60', 'video = "gone.mp4"\nin = 60'))
    result = sfi("render", recipe, "--engine", "crossfade")
    assert result.code != 0 and "gone.mp4" in result.stderr
    assert not (project / ".sfi-work").exists() and not (project / "out.mp4").exists()


def test_key_line_follows_sub_tables_of_arrays():
    text = GOOD
    assert key_line(text, ("shot", 1, "transition", "mode")) == 22
    assert key_line(text, ("shot", 0, "transition", "prompt")) == 13
    assert key_line(text, ("shot", 2)) == 24


def test_example_photo_sequence_plans(sfi):
    result = sfi("render", RECIPES / "photo-sequence.toml", "--dry-run", "--engine", "crossfade", "-o", "/tmp/never.mp4")
    assert result.code == 0, result.stderr
    assert "24000/1001" in result.stdout and "2 gaps, 84 generated frames" in result.stdout


@pytest.mark.parametrize("name, clip, frames", [
    ("fill-cuts.toml", "footage/interview.mp4", 400),
    ("slow-motion.toml", "footage/skate.mp4", 100),
])
def test_example_video_recipes_plan(tmp_path, ffmpeg_exe, sfi, name, clip, frames):
    """The video examples parse and plan once their placeholder footage exists."""
    shutil.copy(RECIPES / name, tmp_path / name)
    (tmp_path / "footage").mkdir()
    make_clip(tmp_path / clip, ffmpeg_exe, frames=frames, cuts=(120, 300) if frames == 400 else (), rate="25")
    result = sfi("render", tmp_path / name, "--dry-run")
    assert result.code == 0, result.stderr
    assert "gap" in result.stdout or "slowmo" in result.stdout
    assert load_recipe(tmp_path / name).shots


def test_render_engine_replaces_the_engines_a_recipe_names(project, sfi):
    recipe = write(project, GOOD.replace('prompt = "a"', 'prompt = "a"\nengine = "flow"').replace(
        "frames = 6", 'frames = 6\nengine = "flow"'))
    result = sfi("render", recipe, "--dry-run", "--engine", "crossfade")
    assert result.code == 0, result.stderr
    gaps = [line for line in result.stdout.splitlines() if line.strip().startswith("gap ")]
    assert len(gaps) == 2 and all("engine crossfade" in line for line in gaps), result.stdout
    kept = sfi("render", recipe, "--dry-run")  # without --engine the recipe's own engine stands
    assert kept.code == 0, kept.stderr
    gaps = [line for line in kept.stdout.splitlines() if line.strip().startswith("gap ")]
    assert len(gaps) == 2 and all("engine flow" in line for line in gaps), kept.stdout


def test_too_large_image_shot_is_refused_before_any_work(project, sfi):
    Image.new("RGB", (20000, 4)).save(project / "wide.png")
    recipe = write(project, GOOD.replace('image = "a.png"', 'image = "wide.png"'))
    result = sfi("render", recipe, "--engine", "crossfade")
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{recipe}:8" in lines[0] and "20000x4 is too large" in lines[0], result.stderr
    assert not (project / ".sfi-work").exists() and not (project / "out.mp4").exists()
