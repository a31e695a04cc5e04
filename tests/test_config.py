"""Config lookup and validation: errors name file, line and key."""

from __future__ import annotations

import pytest

from sfi_cli.config import load_config
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


def test_cli_values_override_file(tmp_path):
    config = load_config(write(tmp_path / "c.toml", 'engine = "crossfade"\n[output]\nfps = 25\n'))
    config.override(engine="flow", output__fps=None)
    assert config["engine"] == "flow" and config["output.fps"] == 25


def test_engine_sections_become_engine_settings(tmp_path):
    config = load_config(write(tmp_path / "c.toml", "[engines.flow]\nflow_width = 480\n"))
    assert config.engine_settings()["flow"]["flow_width"] == 480


@pytest.mark.parametrize("text, expected", [
    ("[output]\nfps = 24\ncodec = 'x'\n", "c.toml:3: unknown key 'output.codec'"),
    ("[output]\n\ncrf = 'high'\n", "c.toml:3: 'output.crf' must be an integer of at least 0, got str"),
    ("[output]\ncrf = true\n", "c.toml:2: 'output.crf' must be an integer of at least 0, got true/false"),
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
