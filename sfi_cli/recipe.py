"""Recipes: a timeline of shots and the transitions between them, as TOML.

    [output]            path, fps, size, fit, codec, quality, preset, audio
    [defaults]          frames | seconds, prompt, negative_prompt, engine, seed, mode, audio, image_duration
    [[shot]]            image = "a.png" (+ duration)  or  video = "b.mp4" (+ in, out | duration, slowmo)
    [shot.transition]   into the next shot: frames | seconds, prompt, negative_prompt, engine, seed, mode, audio

Everything is checked here, before any work: TOML syntax, unknown keys, types,
positions, lengths, and that every media file exists; each complaint names the file,
line and key. Relative paths resolve against the recipe's folder. Turning positions
into frame numbers needs the media's frame rates and happens in ``plan``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from sfi_cli.config import SCHEMA, Key, check_value, expected
from sfi_cli.errors import SfiError
from sfi_cli.images import FIT_POLICIES
from sfi_cli.timecode import Position, parse_position
from sfi_cli.tomlfile import dotted, read_toml, toml_comment, toml_string, unicode_text, where

CODECS = ("h264", "h265", "prores")
AUDIO = ("shots", "none")
POSITION = Key((int, float, str), None)
# ``quality`` is the CRF for H.264/H.265 (the config's output.crf range) and the ProRes profile for
# ProRes: 0 proxy, 1 LT, 2 standard, 3 HQ (4444 profiles are chosen from the source, not here).
CRF_QUALITY = replace(SCHEMA["output.crf"], default=None)
PRORES_QUALITY = Key((int,), None, minimum=0, maximum=3)

OUTPUT_KEYS = {
    "path": Key((str,), None), "fps": Key((int, float, str), None), "size": Key((str,), None),
    "fit": Key((str,), "cover", FIT_POLICIES), "codec": Key((str,), None, CODECS), "quality": Key((int,), None),
    "preset": replace(SCHEMA["output.preset"], default=None), "audio": Key((str,), "shots", AUDIO),
}
TRANSITION_KEYS = {
    "frames": Key((int,), None), "seconds": Key((int, float), None), "prompt": Key((str,), ""),
    "negative_prompt": Key((str,), ""), "engine": replace(SCHEMA["engine"], default=None), "seed": Key((int,), 0),
    "mode": replace(SCHEMA["fill.mode"], flag=""), "audio": replace(SCHEMA["fill.audio"], flag=""),
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
    where: str
    audio: str = "crossfade"  # under an inserted transition: the two sides' sound crossfaded, or silence


@dataclass(frozen=True)
class ShotSpec:
    kind: str  # "image" or "video"
    path: Path
    start: Position | None
    stop: Position | None
    duration: Position | None
    slowmo: int
    transition: TransitionSpec | None
    where: str


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
    shots: list[ShotSpec]
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
    shots = [_shot(reader, shot, index, defaults) for index, shot in enumerate(shots_data)]
    if shots[-1].transition is not None:
        raise reader.fail(("shot", len(shots) - 1, "transition"),
                          "the last shot has a transition but no shot follows it; remove it or add a shot")
    return Recipe(path, shots, output)


def _output(reader: _Reader, data: Any, override: Path | None) -> OutputSpec:
    from sfi_cli.ffmpeg import parse_rate
    from sfi_cli.images import parse_size

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
        _check_quality(reader, values["quality"], path, values.get("codec"))
    return OutputSpec(path, fps, size, values.get("fit", "cover"), values.get("codec"), values.get("quality"),
                      values.get("preset"), values.get("audio", "shots"))


def _check_quality(reader: _Reader, quality: int, output: Path, codec: str | None) -> None:
    """``quality`` must suit the codec the output will get (CRF 0-51, or a ProRes profile 0-3)."""
    from sfi_cli.plan import output_codec

    codec = output_codec(output, codec)
    key = PRORES_QUALITY if codec == "prores" else CRF_QUALITY
    problem = check_value(key, quality)
    if problem:
        meaning = "the ProRes profile" if codec == "prores" else f"the {codec} CRF"
        raise reader.fail(("output", "quality"), f"'output.quality' ({meaning}) must be {expected(key)}, {problem}")


def with_engine(recipe: Recipe, engine: str) -> Recipe:
    """``recipe`` with every transition made by ``engine`` (``render --engine`` wins over the recipe)."""
    shots = [shot if shot.transition is None else replace(shot, transition=replace(shot.transition, engine=engine))
             for shot in recipe.shots]
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
                          merged.get("seed", 0), merged.get("mode", "insert"), reader.where(length_path + (
                              ("frames",) if "frames" in merged else ("seconds",))), merged.get("audio", "crossfade"))


def check_recipe_path(path: str | Path) -> None:
    """A path written into a recipe must read back as the same file: TOML holds only Unicode, so a name
    with bytes that are not UTF-8 is refused up front (instead of a recipe naming a file that is not there)."""
    text = str(path)
    if unicode_text(text) != text:
        raise SfiError(f"path '{unicode_text(text)}' is not valid UTF-8, so a recipe cannot name it; "
                       f"rename it, or choose a name that is")


def cut_recipe_text(video: str, cuts: list, frame_count: int, *, frames: int, mode: str, output: str,
                    header: str, prompt: str = "", negative_prompt: str = "", seed: int = 0,
                    engine: str | None = None, audio: str = "crossfade") -> str:
    """A recipe joining the shots between ``cuts`` (``detect.Cut``s) with one transition per cut.

    This is what ``sfi detect --recipe`` writes for the editor to fill in, and what
    ``sfi fill`` renders.
    """
    check_recipe_path(video)
    check_recipe_path(output)
    defaults = [f"mode = {toml_string(mode)}  # insert: add frames at each cut; replace: overwrite frames around it",
                f"seed = {seed}",
                f"audio = {toml_string(audio)}  # under inserted transitions: crossfade (both sides' sound) or silence"]
    if engine:
        defaults.append(f"engine = {toml_string(engine)}")
    if negative_prompt:
        defaults.append(f"negative_prompt = {toml_string(negative_prompt)}")
    lines = [*map(toml_comment, header.splitlines()),
             "# Positions are frame numbers; 'out' is the first frame NOT in the shot.", "",
             "[output]", f"path = {toml_string(output)}", "", "[defaults]", *defaults]
    bounds = [0, *(cut.frame for cut in cuts), frame_count]
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        lines += ["", "[[shot]]", f"video = {toml_string(video)}", f"in = {start}", f"out = {stop}"]
        if index < len(cuts):
            cut = cuts[index]
            score = "" if cut.score is None else f", score {cut.score}"
            lines += ["", f"# cut {index + 1} at frame {cut.frame} ({cut.timecode}){score}", "[shot.transition]",
                      f"frames = {frames}", f"prompt = {toml_string(prompt)}"]
    return "\n".join(lines) + "\n"
