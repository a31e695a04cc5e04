"""Recipes: a timeline of shots and the transitions between them, as TOML.

    [output]            path, fps, size, fit, codec, quality, preset, audio
    [defaults]          frames | seconds, prompt, negative_prompt, engine, seed, mode, audio, image_duration
    [[shot]]            image = "a.png" (+ duration)  or  video = "b.mp4" (+ in, out | duration, slowmo)
    [shot.transition]   into the next shot: frames | seconds, prompt, negative_prompt, engine, seed, mode, audio

Everything is checked here, before any work: TOML syntax, unknown keys, types,
positions, lengths, and that every media file exists; each complaint names the file,
line and key. Relative paths resolve against the recipe's folder. Turning positions
into frame numbers needs the media's frame rates and happens in ``timeline.layout``.
``recipe_text`` writes a ``Recipe`` back as TOML (``sfi detect --recipe``, ``sfi fill``) from the
same keys, so what it writes reads back as an equal ``Recipe``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from sfi_cli.config.schema import SCHEMA, Key, check_value, expected
from sfi_cli.errors import SfiError
from sfi_cli.media.formats import CODECS as VIDEO_CODECS, PRORES_HQ, output_codec
from sfi_cli.timeline.timecode import Position, parse_position
from sfi_cli.config.toml import dotted, read_toml, toml_comment, toml_string, unicode_text, where

AUDIO = ("shots", "none")
POSITION = Key((int, float, str), None)
# ``quality`` is the CRF for H.264/H.265 (the config's output.crf range) and the ProRes profile for
# ProRes: 0 proxy, 1 LT, 2 standard, 3 HQ (4444 profiles are chosen from the source, not here).
CRF_QUALITY = replace(SCHEMA["output.crf"], default=None)
PRORES_QUALITY = Key((int,), None, minimum=0, maximum=PRORES_HQ)

OUTPUT_KEYS = {
    "path": Key((str,), None), "fps": Key((int, float, str), None), "size": Key((str,), None),
    "fit": SCHEMA["output.fit"], "codec": Key((str,), None, tuple(VIDEO_CODECS)), "quality": Key((int,), None),
    "preset": replace(SCHEMA["output.preset"], default=None), "audio": Key((str,), "shots", AUDIO),
}
TRANSITION_KEYS = {
    "frames": Key((int,), None), "seconds": Key((int, float), None), "prompt": Key((str,), ""),
    "negative_prompt": Key((str,), ""), "engine": replace(SCHEMA["engine"], default=None), "seed": Key((int,), 0),
    "mode": SCHEMA["fill.mode"], "audio": SCHEMA["fill.audio"],
}
DEFAULTS_KEYS = {**TRANSITION_KEYS, "image_duration": POSITION}
SHOT_KEYS = {
    "image": Key((str,), None), "video": Key((str,), None), "in": POSITION, "out": POSITION,
    "duration": POSITION, "slowmo": Key((int,), 1), "transition": Key((dict,), None),
}
TOP_KEYS = {"output": Key((dict,), None), "defaults": Key((dict,), None), "shot": Key((list,), None)}
DEFAULT_IMAGE_DURATION = 2.0  # seconds an image is held when neither it nor [defaults] says


@dataclass(frozen=True)
class TransitionSpec:
    """Generated frames from one shot into the next; ``length`` is frames or seconds."""

    length: Position
    prompt: str
    negative_prompt: str
    engine: str | None  # None: the command line's / config's engine
    seed: int
    mode: str
    where: str = field(compare=False)  # file:line of its length, for messages (not part of its value)
    audio: str  # under an inserted transition: "crossfade" (the two sides' sound) or "silence"


@dataclass(frozen=True)
class ShotSpec:
    kind: str  # "image" or "video"
    path: Path
    start: Position | None
    stop: Position | None
    duration: Position | None
    slowmo: int
    transition: TransitionSpec | None
    where: str = field(compare=False)  # file:line of its [[shot]]


@dataclass(frozen=True)
class OutputSpec:
    path: Path | None
    fps: Fraction | None
    size: tuple[int, int] | None
    fit: str
    codec: str | None
    quality: int | None
    preset: str | None
    audio: str


@dataclass(frozen=True)
class Recipe:
    path: Path
    shots: tuple[ShotSpec, ...]
    output: OutputSpec


class _Reader:
    """Checks tables against a schema, naming file:line and key in every complaint."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def where(self, key_path: tuple[str | int, ...]) -> str:
        return where(self.path, self.text, key_path)

    def fail(self, key_path: tuple[str | int, ...], message: str) -> SfiError:
        return SfiError(f"{self.where(key_path)}: {message}")

    def table(self, data: Any, schema: dict[str, Key], key_path: tuple[str | int, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key_path, f"'{dotted(key_path)}' must be a table")
        for name, value in data.items():
            path = key_path + (name,)
            key = schema.get(name)
            if key is None:
                raise self.fail(path, f"unknown key '{dotted(path)}' (known here: {', '.join(schema)})")
            problem = check_value(key, value)
            if problem:
                raise self.fail(path, f"'{dotted(path)}' must be {expected(key)}, {problem}")
        return data

    def position(self, value: Any, key_path: tuple[str | int, ...]) -> Position | None:
        if value is None:
            return None
        try:
            return parse_position(value)
        except SfiError as error:
            raise self.fail(key_path, f"'{dotted(key_path)}': {error}") from None

    def media(self, value: str, key_path: tuple[str | int, ...]) -> Path:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.path.parent / path
        if not path.is_file():
            raise self.fail(key_path, f"media file '{value}' does not exist (looked for {path})")
        return path


def load_recipe(path: Path, output_override: Path | None = None) -> Recipe:
    """Read and check a recipe file; paths inside it are relative to its folder."""
    path = Path(path)
    data, text = read_toml(path, "recipe")
    return parse_recipe(data, text, path, output_override)


def parse_recipe(data: dict[str, Any], text: str, path: Path, output_override: Path | None = None) -> Recipe:
    reader = _Reader(path, text)
    reader.table(data, TOP_KEYS, ())
    output = _output(reader, data.get("output", {}), output_override)
    defaults = reader.table(data.get("defaults", {}), DEFAULTS_KEYS, ("defaults",))
    _one_length(reader, defaults, ("defaults",))
    shots_data = data.get("shot")
    if not shots_data:
        raise SfiError(f"{path}: the recipe has no [[shot]]; add at least one shot")
    shots = tuple(_shot(reader, shot, index, defaults) for index, shot in enumerate(shots_data))
    if shots[-1].transition is not None:
        raise reader.fail(("shot", len(shots) - 1, "transition"),
                          "the last shot has a transition but no shot follows it; remove it or add a shot")
    return Recipe(path, shots, output)


def _output(reader: _Reader, data: Any, override: Path | None) -> OutputSpec:
    from sfi_cli.media.ffmpeg import parse_rate
    from sfi_cli.media.images import parse_size

    values = reader.table(data, OUTPUT_KEYS, ("output",))
    path = override
    if path is None and values.get("path"):
        path = Path(values["path"]).expanduser()
        path = path if path.is_absolute() else reader.path.parent / path
    try:
        fps = parse_rate(values["fps"]) if "fps" in values else None
        size = parse_size(values["size"]) if "size" in values else None
    except SfiError as error:
        key = "fps" if "fps" in str(error) else "size"
        raise reader.fail(("output", key), str(error)) from None
    if "quality" in values and path is not None:
        _check_quality(reader, values["quality"], path, values.get("codec"), from_recipe=override is None)
    return OutputSpec(path, fps, size, values.get("fit", OUTPUT_KEYS["fit"].default), values.get("codec"), values.get("quality"),
                      values.get("preset"), values.get("audio", "shots"))


def _check_quality(reader: _Reader, quality: int, output: Path, codec: str | None, *, from_recipe: bool) -> None:
    """``quality`` must suit the codec the output will get (CRF 0-51, or a ProRes profile 0-3); an output path
    (from the recipe) that takes no codec is named at its line."""
    try:
        codec = output_codec(output, codec)
    except SfiError as error:
        if from_recipe:
            raise reader.fail(("output", "path"), str(error)) from None
        raise
    key = PRORES_QUALITY if codec == "prores" else CRF_QUALITY
    problem = check_value(key, quality)
    if problem:
        meaning = "the ProRes profile" if codec == "prores" else f"the {codec} CRF"
        raise reader.fail(("output", "quality"), f"'output.quality' ({meaning}) must be {expected(key)}, {problem}")


def with_output_settings(recipe: Recipe, **settings: Any) -> Recipe:
    """``recipe`` with these ``OutputSpec`` fields replaced (command-line flags win over the recipe)."""
    return replace(recipe, output=replace(recipe.output, **settings)) if settings else recipe


def with_engine(recipe: Recipe, engine: str) -> Recipe:
    """``recipe`` with every transition made by ``engine`` (``render --engine`` wins over the recipe)."""
    shots = tuple(shot if shot.transition is None else replace(shot, transition=replace(shot.transition, engine=engine))
                  for shot in recipe.shots)
    return replace(recipe, shots=shots)


def _one_length(reader: _Reader, values: dict[str, Any], key_path: tuple[str | int, ...]) -> None:
    if "frames" in values and "seconds" in values:
        raise reader.fail(key_path + ("seconds",), f"give '{dotted(key_path + ('frames',))}' or "
                                                   f"'{dotted(key_path + ('seconds',))}', not both")
    for name in ("frames", "seconds"):
        if name in values and values[name] <= 0:
            raise reader.fail(key_path + (name,), f"zero-length transition: '{dotted(key_path + (name,))}' "
                                                  f"must be more than 0 (got {values[name]})")


def _shot(reader: _Reader, data: Any, index: int, defaults: dict[str, Any]) -> ShotSpec:
    key_path: tuple[str | int, ...] = ("shot", index)
    values = reader.table(data, SHOT_KEYS, key_path)
    kinds = [kind for kind in ("image", "video") if kind in values]
    if len(kinds) != 1:
        raise reader.fail(key_path, f"shot {index + 1} needs exactly one of 'image' or 'video' (has {len(kinds) or 'neither'})")
    kind = kinds[0]
    media = reader.media(values[kind], key_path + (kind,))
    if kind == "image":
        for name in ("in", "out", "slowmo"):
            if name in values:
                raise reader.fail(key_path + (name,), f"'{name}' applies to video shots; an image shot takes 'duration'")
    if "out" in values and "duration" in values:
        raise reader.fail(key_path + ("duration",), "give 'out' or 'duration', not both")
    if values.get("slowmo", 1) < 1:
        raise reader.fail(key_path + ("slowmo",), f"'slowmo' must be 1 or more (got {values['slowmo']})")
    duration = values.get("duration")
    if kind == "image" and duration is None:
        duration = defaults.get("image_duration", DEFAULT_IMAGE_DURATION)
        key = ("defaults", "image_duration") if "image_duration" in defaults else key_path
    else:
        key = key_path + ("duration",)
    transition = None
    if "transition" in values:
        transition = _transition(reader, values["transition"], key_path + ("transition",), defaults)
    return ShotSpec(kind, media, reader.position(values.get("in"), key_path + ("in",)),
                    reader.position(values.get("out"), key_path + ("out",)), reader.position(duration, key),
                    values.get("slowmo", 1), transition, reader.where(key_path))


def _transition(reader: _Reader, data: Any, key_path: tuple[str | int, ...], defaults: dict[str, Any]) -> TransitionSpec:
    values = reader.table(data, TRANSITION_KEYS, key_path)
    _one_length(reader, values, key_path)
    if "frames" in values or "seconds" in values:
        length_path = key_path
        merged = {**{k: v for k, v in defaults.items() if k not in ("frames", "seconds")}, **values}
    else:
        length_path = ("defaults",)
        merged = {**defaults, **values}
    if "frames" in merged:
        length = Position(str(merged["frames"]), frames=merged["frames"])
    elif "seconds" in merged:
        length = Position(f"{merged['seconds']}s", seconds=Fraction(str(merged["seconds"])))
    else:
        raise reader.fail(key_path, f"transition '{dotted(key_path)}' needs a length: 'frames' or 'seconds' "
                                    f"(here or in [defaults])")
    return TransitionSpec(length, merged.get("prompt", ""), merged.get("negative_prompt", ""), merged.get("engine"),
                          merged.get("seed", 0), merged.get("mode", TRANSITION_KEYS["mode"].default), reader.where(length_path + (
                              ("frames",) if "frames" in merged else ("seconds",))),
                          merged.get("audio", TRANSITION_KEYS["audio"].default))


def check_recipe_path(path: str | Path) -> None:
    """A path written into a recipe must read back as the same file: TOML holds only Unicode, so a name
    with bytes that are not UTF-8 is refused up front (instead of a recipe naming a file that is not there)."""
    text = str(path)
    if unicode_text(text) != text:
        raise SfiError(f"path '{unicode_text(text)}' is not valid UTF-8, so a recipe cannot name it; "
                       f"rename it, or choose a name that is")


# Transition settings written once in [defaults] when every transition agrees; each transition keeps its
# own length and prompt (the editor fills in prompts one by one).
SHARED_TRANSITION_KEYS = ("mode", "seed", "audio", "engine", "negative_prompt")
KEY_NOTES = {name: TRANSITION_KEYS[name].help for name in ("mode", "audio")}  # the flags' help, as comments


def recipe_text(recipe: Recipe, *, header: str = "", notes: Sequence[str] = (), relative: bool = False) -> str:
    """``recipe`` as TOML that ``parse_recipe`` reads back as an equal ``Recipe``: ``header`` and ``notes`` (one
    per transition, e.g. the cut it is at) become comments; media and output paths are written relative to
    the recipe's folder when ``relative``, else as they are."""
    folder = recipe.path.parent
    transitions = [shot.transition for shot in recipe.shots if shot.transition]
    values = [_transition_values(transition) for transition in transitions]
    shared = {key: values[0][key] for key in SHARED_TRANSITION_KEYS
              if values and all(v[key] == values[0][key] for v in values)}
    lines = [*map(toml_comment, header.splitlines()),
             "# Positions are frame numbers; 'out' is the first frame NOT in the shot.", "",
             "[output]", *_output_lines(recipe.output, folder, relative)]
    if any(_written(value) for value in shared.values()):
        lines += ["", "[defaults]", *(_key_line(key, value) for key, value in shared.items() if _written(value))]
    numbered = iter(zip(values, [*notes, *[""] * len(values)]))
    for shot in recipe.shots:
        lines += ["", "[[shot]]", f"{shot.kind} = {toml_string(_path_text(shot.path, folder, relative))}"]
        lines += [f"{name} = {_position_text(position)}" for name, position in
                  (("in", shot.start), ("out", shot.stop), ("duration", shot.duration)) if position is not None]
        if shot.slowmo != 1:
            lines.append(f"slowmo = {shot.slowmo}")
        if shot.transition:
            own, note = next(numbered)
            length = shot.transition.length
            lines += ["", *([toml_comment(note)] if note else []), "[shot.transition]",
                      f"frames = {length.frames}" if length.frames is not None else f"seconds = {length.text[:-1]}",
                      f"prompt = {toml_string(shot.transition.prompt)}",
                      *(_key_line(key, value) for key, value in own.items() if key not in shared and _written(value))]
    return "\n".join(lines) + "\n"


def located(recipe: Recipe, text: str) -> Recipe:
    """``recipe`` with every message location (``where``) pointing into ``text``, its file as
    ``recipe_text`` wrote it, so errors found later name the line, as for a recipe read from disk."""
    shots = []
    for index, shot in enumerate(recipe.shots):
        transition = shot.transition
        if transition is not None:
            length = "frames" if transition.length.frames is not None else "seconds"
            transition = replace(transition, where=where(recipe.path, text, ("shot", index, "transition", length)))
        shots.append(replace(shot, transition=transition, where=where(recipe.path, text, ("shot", index))))
    return replace(recipe, shots=tuple(shots))


def _transition_values(transition: TransitionSpec) -> dict[str, Any]:
    return {key: getattr(transition, key) for key in SHARED_TRANSITION_KEYS}


def _written(value: Any) -> bool:
    """Whether a setting is written at all (None and "" are what an absent key means)."""
    return value is not None and value != ""


def _key_line(key: str, value: Any) -> str:
    text = toml_string(value) if isinstance(value, str) else str(value)
    return f"{key} = {text}" + (f"  # {KEY_NOTES[key]}" if key in KEY_NOTES else "")


def _path_text(path: Path, folder: Path, relative: bool) -> str:
    check_recipe_path(path)
    return os.path.relpath(path, folder) if relative else str(path)


def _position_text(position: Position) -> str:
    """A position as TOML that parses back to it: a bare number where its text is one, else a string."""
    text = position.text
    return text if text.replace(".", "", 1).isdigit() else toml_string(text)


def _output_lines(output: OutputSpec, folder: Path, relative: bool) -> list[str]:
    values = {"path": _path_text(output.path, folder, relative) if output.path else None,
              "fps": f"{output.fps.numerator}/{output.fps.denominator}" if output.fps else None,
              "size": f"{output.size[0]}x{output.size[1]}" if output.size else None,
              "fit": output.fit if output.fit != OUTPUT_KEYS["fit"].default else None, "codec": output.codec,
              "quality": output.quality, "preset": output.preset,
              "audio": output.audio if output.audio != OUTPUT_KEYS["audio"].default else None}
    return [f"{key} = {toml_string(value) if isinstance(value, str) else value}"
            for key, value in values.items() if value is not None]
