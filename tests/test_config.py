"""Config lookup and validation: errors name file, line and key."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import click
import pytest

from sfi_cli.config import load_config
from sfi_cli.config.schema import SCHEMA
from sfi_cli.errors import SfiError


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = load_config(None)
    assert config.source is None and config["output.crf"] == 18 and config["engine"] == "auto"


def test_lookup_order_explicit_then_cwd_then_user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "sfi" / "sfi.toml"
    user.parent.mkdir(parents=True)
    write(user, "[output]\ncrf = 30\n")
    assert load_config(None)["output.crf"] == 30
    write(tmp_path / "sfi.toml", "[output]\ncrf = 20\n")
    assert load_config(None)["output.crf"] == 20
    explicit = write(tmp_path / "other.toml", "[output]\ncrf = 10\n")
    assert load_config(explicit)["output.crf"] == 10


@pytest.mark.parametrize("flags, expected", [
    ({"fill.seconds": float("nan")}, "--seconds (config 'fill.seconds') must be an integer or a finite number of at least 0, got nan"),
    ({"fill.seconds": float("-inf")}, "--seconds (config 'fill.seconds') must be"),
    ({"detect.threshold": -1.0}, "--threshold (config 'detect.threshold') must be an integer or a finite number of at least 0, got -1.0"),
    ({"engine": "magic"}, "--engine (config 'engine') must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'magic'"),
    ({"engines.semfi.cfg": float("inf")}, "--cfg (config 'engines.semfi.cfg') must be"),
    ({"output.crf": 99}, "--crf (config 'output.crf') must be an integer from 0 to 51, got 99"),
    ({"fill.mode": "replace", "fill.seconds": -1.0}, "--seconds (config 'fill.seconds') must be"),
])
def test_flag_values_are_checked_against_the_schema(tmp_path, flags, expected):
    config = load_config(write(tmp_path / "c.toml", "engine = 'crossfade'\n"))
    with pytest.raises(SfiError) as error:
        config.with_flags(flags)
    assert expected in str(error.value)
    assert config["engine"] == "crossfade" and config["fill.seconds"] == 1.0 and config["fill.mode"] == "insert"


def test_flags_make_a_new_config_and_leave_the_file_settings_alone(tmp_path):
    config = load_config(write(tmp_path / "c.toml", 'engine = "crossfade"\n[output]\nfps = 25\n'))
    flagged = config.with_flags({"engine": "flow", "output.fps": None})
    assert flagged["engine"] == "flow" and flagged["output.fps"] == 25 and dict(flagged.flags) == {"engine": "flow"}
    assert config["engine"] == "crossfade" and not config.flags and flagged.source == config.source
    with pytest.raises(TypeError):
        config.values["engine"] = "flow"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.values = {}  # type: ignore[misc]


def test_sfi_toml_example_lists_every_key_with_its_default():
    """The documented example is the schema: every key, nothing else, each at its default (and it loads)."""
    example = Path(__file__).parent.parent / "sfi.toml.example"
    def keys(table, prefix=""):
        for name, value in table.items():
            yield from keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [(prefix + name, value)]

    assert dict(keys(tomllib.loads(example.read_text()))) == {name: key.default for name, key in SCHEMA.items()}
    assert dict(load_config(example).values) == {name: key.default for name, key in SCHEMA.items()}


def test_every_flag_has_its_help_in_the_schema_and_shows_it():
    from sfi_cli.commands import cli

    keyed = {}  # dotted key -> the flags that show it, in every command
    for command in cli.commands.values():
        for option in command.params:
            if isinstance(option, click.Option) and "[config " in (option.help or ""):
                name = option.help.rpartition("[config ")[2].rstrip("].")
                assert SCHEMA[name].help and SCHEMA[name].help in option.help, (command.name, option.help)
                keyed.setdefault(name, set()).add(option.opts[0])
    assert keyed == {name: {key.flag.split("/")[0]} for name, key in SCHEMA.items() if key.flag}  # "--on/--off": one option


def test_engine_sections_become_engine_settings(tmp_path):
    config = load_config(write(tmp_path / "c.toml", "[engines.flow]\nflow_width = 480\n"))
    assert config.engine_settings()["flow"]["flow_width"] == 480


@pytest.mark.parametrize("text, expected", [
    ("[output]\nfps = 24\ncolour = 'x'\n", "c.toml:3: unknown key 'output.colour'"),
    ("[output]\ncodec = 'x'\n", "c.toml:2: 'output.codec' must be one of auto, h264, h265, prores, ffv1, png, got 'x'"),
    ("[output]\n\ncrf = 'high'\n", "c.toml:3: 'output.crf' must be an integer from 0 to 51, got str"),
    ("[output]\ncrf = true\n", "c.toml:2: 'output.crf' must be an integer from 0 to 51, got true/false"),
    ("[output]\ncrf = 52\n", "c.toml:2: 'output.crf' must be an integer from 0 to 51, got 52"),
    ("[output]\ncrf = -1\n", "c.toml:2: 'output.crf' must be an integer from 0 to 51, got -1"),
    ("[output]\npreset = 'quick'\n", "c.toml:2: 'output.preset' must be one of ultrafast, superfast, veryfast"),
    ("engine = 'magic'\n", "c.toml:1: 'engine' must be one of auto, crossfade, dissolve, flow, rife, semfi, got 'magic'"),
    ("[detect]\nthreshold = -2\n", "c.toml:2: 'detect.threshold' must be an integer or a finite number of at least 0"),
    ("[fill]\nseconds = nan\n", "c.toml:2: 'fill.seconds' must be an integer or a finite number of at least 0, got nan"),
    ("[fill]\nseconds = inf\n", "c.toml:2: 'fill.seconds' must be an integer or a finite number of at least 0, got inf"),
    ("[fill]\nseconds = -0.5\n", "c.toml:2: 'fill.seconds' must be an integer or a finite number of at least 0, got -0.5"),
    ("[engines.flow]\nmin_confidence = 1.5\n", "c.toml:2: 'engines.flow.min_confidence' must be an integer or a finite number from 0 to 1, got 1.5"),
    ("[engines.flow]\nmin_confidence = -0.1\n", "'engines.flow.min_confidence' must be an integer or a finite number from 0 to 1"),
    ("[output]\nfit = 'zoom'\n", "c.toml:2: 'output.fit' must be one of cover, contain, stretch"),
    ("[mystery]\nx = 1\n", "c.toml:2: unknown key 'mystery.x'"),
    ("engine = \n", "c.toml: TOML syntax error"),
    ("[engines.flow]\nflow_width = 1.5\n", "c.toml:2: 'engines.flow.flow_width' must be an integer"),
    ("[engines.flow]\nflow_width = 0\n", "c.toml:2: 'engines.flow.flow_width' must be an integer of at least 16, got 0"),
    ("[engines.semfi]\nsteps = 0\n", "c.toml:2: 'engines.semfi.steps' must be an integer of at least 1, got 0"),
])
def test_errors_name_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(SfiError) as error:
        load_config(write(tmp_path / "c.toml", text))
    assert expected in str(error.value)


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(SfiError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_user_config_that_is_a_folder_is_one_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "sfi" / "sfi.toml").mkdir(parents=True)
    with pytest.raises(SfiError, match=r"cannot read config file '.*sfi.toml': .*Is a directory"):
        load_config(None)


def test_user_config_folder_that_cannot_be_searched_is_one_error(tmp_path, monkeypatch):
    """stat() failing with an error other than "not there" (here ENAMETOOLONG, which root meets too)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ("x" * 300)))
    with pytest.raises(SfiError, match=r"cannot look for config file .*File name too long.*pass --config"):
        load_config(None)


def test_user_config_under_a_regular_file_means_no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "file", "not a folder")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "file"))
    assert load_config(None).source is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permission bits")
def test_unreadable_user_config_is_one_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "xdg" / "sfi"
    write(folder.mkdir(parents=True) or folder / "sfi.toml", "engine = 'flow'\n")
    folder.chmod(0)
    try:
        with pytest.raises(SfiError, match="cannot look for config file .*Permission denied"):
            load_config(None)
    finally:
        folder.chmod(0o755)


def test_deleted_current_folder_is_one_error(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(SfiError, match="cannot look for sfi.toml in the current folder"):
        load_config(None)


@pytest.mark.parametrize("make", ["folder named sfi.toml", "name too long"])
def test_unusable_user_config_is_one_line_from_the_cli(tmp_path, monkeypatch, sfi, make):
    monkeypatch.chdir(tmp_path)
    if make == "folder named sfi.toml":
        (tmp_path / "xdg" / "sfi" / "sfi.toml").mkdir(parents=True)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ("x" * 300)))
    before = sorted(tmp_path.rglob("*"))
    result = sfi("interpolate", "a.png", "b.png", "-n", "2", "-o", "out.mp4")
    lines = result.stderr.strip().splitlines()
    assert result.code != 0 and len(lines) == 1 and lines[0].startswith("sfi: error: cannot "), result.stderr
    assert "sfi.toml" in lines[0] and sorted(tmp_path.rglob("*")) == before
