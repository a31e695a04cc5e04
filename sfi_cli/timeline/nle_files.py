"""NLE timeline files, read and written by OpenTimelineIO's adapter plugins, chosen by extension.

``.otio`` is OTIO's own JSON, ``.xml`` Final Cut Pro 7 XML (what Premiere and Resolve exchange),
``.edl`` CMX 3600. The model on either side is in ``timeline.nle``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from sfi_cli.errors import SfiError, require_input_file
from sfi_cli.timeline.nle import INSTALL_HINT, otio

FORMATS = {".otio": "otio_json", ".xml": "fcp_xml", ".edl": "cmx_3600"}
FORMAT_NAMES = ".otio (OpenTimelineIO), .xml (Final Cut Pro 7 XML: Premiere, Resolve) or .edl (CMX 3600)"


def is_timeline(path: Path) -> bool:
    return Path(path).suffix.lower() in FORMATS


def timeline_adapter(path: Path) -> str:
    """The adapter for ``path``'s extension, checked to be installed (one line saying what to install if not)."""
    adapter = FORMATS.get(Path(path).suffix.lower())
    if adapter is None:
        raise SfiError(f"timeline '{path}' has an unknown extension '{Path(path).suffix}': use {FORMAT_NAMES}")
    lib = otio()
    try:
        lib.adapters.from_name(adapter)
    except Exception:  # the plugin is not installed (OTIO raises its own NotSupportedError)
        raise SfiError(f"timeline '{path}' needs OpenTimelineIO's '{adapter}' adapter: {INSTALL_HINT}") from None
    return adapter


# Reading an EDL only to find its media: any timecode's frame part fits, record lengths are not checked.
SCOUTING_RATE = Fraction(60000, 1001)


def read_timeline(path: Path, rate: Fraction | None = None, *, scouting: bool = False):
    """The timeline in ``path``; an EDL holds no frame rate, so it is read at ``rate`` (24 if None), or with
    ``scouting`` at one that reads any EDL, to learn which media it plays."""
    path = Path(path)
    adapter = timeline_adapter(path)
    require_input_file(path, "a timeline")
    options = {}
    if adapter == "cmx_3600":
        options = ({"rate": float(SCOUTING_RATE), "ignore_timecode_mismatch": True} if scouting
                   else {"rate": float(rate or 24)})
    try:
        result = otio().adapters.read_from_file(str(path), adapter_name=adapter, **options)
    except Exception as error:  # adapters raise their own kinds (EDLParseError, XML and JSON errors, ...)
        detail = " ".join(str(error).split()) or type(error).__name__
        raise SfiError(f"cannot read timeline '{path}' as {Path(path).suffix.lower()[1:].upper()}: {detail}") from None
    if not isinstance(result, otio().schema.Timeline):
        raise SfiError(f"timeline '{path}' holds a {type(result).__name__}, not one timeline; export a single sequence")
    return result


def timeline_text(timeline, path: Path) -> str:
    """``timeline`` as the text of ``path``'s format."""
    adapter = timeline_adapter(path)
    lib = otio()
    if adapter == "cmx_3600":
        # An EDL's record timecode counts from the track's start: OTIO's EDL reader puts the first record
        # timecode there as a negative track start, so the writer is given the timeline that way.
        timeline = timeline.clone()
        for track in timeline.tracks:
            track.source_range = lib.opentime.TimeRange(-timeline.global_start_time, track.available_range().duration)
    try:
        return lib.adapters.write_to_string(timeline, adapter_name=adapter)
    except Exception as error:
        raise SfiError(f"cannot write timeline '{path}': {' '.join(str(error).split())}") from None


def load_cut_list(path: Path, sources: list[Path], output: Path | None):
    """The recipe an NLE's cut list stands for, with its warnings and its videos' ``MediaInfo`` (by resolved
    path). Each clip plays the one ``--source`` given, the one of several whose file name its media, name or
    reel names, or else its own media reference (relative to the cut list's folder)."""
    from sfi_cli.media.probe import probe
    from sfi_cli.timeline.nle import media_path, recipe_from_timeline

    path = Path(path)
    probed: dict[Path, object] = {}

    def probe_media(file: Path):
        key = file.resolve()
        if key not in probed:
            probed[key] = probe(file)
        return probed[key]

    def media_for(clip, where: str) -> Path:
        # EDLs often name the file only as the clip's name (FROM CLIP NAME).
        named = media_path(clip, where) or (Path(clip.name) if clip.name and Path(clip.name).suffix else None)
        if len(sources) == 1:
            return sources[0]
        if sources:
            reel = str(clip.metadata.get("cmx_3600", {}).get("reel") or "")
            wanted = {text for text in (named.name if named else "", clip.name, reel) if text}
            for source in sources:
                if {source.name, source.stem} & wanted or (reel and source.stem.startswith(reel)):
                    return source
            raise SfiError(f"{where}: none of the --source files matches clip '{clip.name}' (media "
                           f"'{named.name if named else '-'}', reel '{reel or '-'}'); name its file with --source")
        if named is None:
            raise SfiError(f"{where}: clip '{clip.name}' names no media file; pass --source FILE")
        file = named if named.is_absolute() else path.parent / named
        if not file.is_file():
            raise SfiError(f"{where}: the media of clip '{clip.name}', '{file}', does not exist; pass --source FILE")
        return file

    rate = None
    if timeline_adapter(path) == "cmx_3600":  # an EDL has no rate of its own: it runs at its footage's
        first = sources[0] if sources else next(iter(read_timeline(path, scouting=True).find_clips()), None)
        if first is not None:
            rate = probe_media(first if sources else media_for(first, f"{path}: item 1")).rate
    recipe, warnings = recipe_from_timeline(read_timeline(path, rate), path, media_for, probe_media=probe_media,
                                            output=output)
    return recipe, warnings, probed
