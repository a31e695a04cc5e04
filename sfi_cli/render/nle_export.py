"""Results for an editor beside a render: an NLE timeline (``--timeline``) or the transitions alone as clips
(``--transitions-only``).

Both are extras of a render (``RenderOptions.extras``): checked with the plan before any work, made
after the passes from what the work folder holds. Each transition's media is a ProRes .mov of the
gap with ``handles`` real frames either side (or, with ``--timeline-media png``, a folder of its
frames as PNGs), spliced by pass 2's own code from a plan of just those segments (so its frames,
colours and pixel format are the output's), named by the incoming source's timecode. Everything is
staged and published together: a failure leaves none of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfi_cli import __version__
from sfi_cli.errors import SfiError
from sfi_cli.media import formats
from sfi_cli.media.publish import Publication, refuse_inputs, require_writable_folder, same_file, writing
from sfi_cli.timeline.model import Plan

if TYPE_CHECKING:
    from sfi_cli.render import RenderOptions

# By media kind: the clip's suffix and codec. ProRes .mov is what both Premiere and Resolve cut without
# transcoding; a PNG sequence (a folder of frame_00001.png ...) suits a finishing or VFX pipeline.
MEDIA = {"prores": (".mov", "prores"), "png": ("", "png")}
MARKER = ".sfi-media.json"  # in a media folder: the files sfi wrote there


def _inputs(plan: Plan) -> list[Path]:
    return [*(source.path for source in plan.sources.values()), plan.recipe]


class MediaFolder:
    """A folder of transition clips: a new one appears whole; into an existing one only the clips' own
    names are written (an existing clip replaced only with --force), and clips an earlier sfi run listed
    there that this run does not write are removed."""

    def __init__(self, folder: Path, force: bool) -> None:
        """Checks at once (before a long detection or render) that the folder can be made or written."""
        self.folder, self.force = Path(folder), force
        if os.path.lexists(self.folder):
            if not self.folder.is_dir():
                raise SfiError(f"'{self.folder}' is a file, not a folder for transition clips; choose another path")
            require_writable_folder(self.folder, "the transition clips")
        else:
            require_writable_folder(self.folder.parent, "the transition clips")

    def check(self, names: list[str], inputs: list[Path]) -> None:
        """No clip may be an input, nor replace a file unasked (nor, ever, a folder: a PNG clip is one)."""
        files = [self.folder / name for name in names]
        refuse_inputs([*files, self.folder / MARKER, *self._earlier()], inputs, "transition clip")
        existing = next((file for file in files if os.path.lexists(file)), None)
        if existing is not None and existing.is_dir() and existing not in self._earlier():
            raise SfiError(f"'{existing}' is a folder sfi did not write, where a transition clip would go; move it "
                           f"or write the clips elsewhere")
        if existing is not None and not self.force:
            raise SfiError(f"transition clip '{existing}' already exists; pass --force to overwrite it")

    def _earlier(self) -> list[Path]:
        try:
            names = json.loads((self.folder / MARKER).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [self.folder / name for name in names if isinstance(name, str) and name == Path(name).name
                and name not in (".", "..") and (not (self.folder / name).is_dir() or _frames_only(self.folder / name))]

    def writer(self, results: Publication, names: list[str]):
        """Where each named file is to be written for ``results`` to publish."""
        if not self.folder.exists():
            staging = results.stage(self.folder, folder=True)
            where = staging.joinpath
        else:
            where = lambda name: results.stage(self.folder / name)  # noqa: E731
            for old in self._earlier():
                if old.name not in names or old.is_dir():  # a PNG clip's folder is replaced whole
                    results.retire(old)
        marker = where(MARKER)
        with writing(marker):
            marker.write_text(json.dumps({"sfi": __version__, "files": names}) + "\n")
        return where


def _frames_only(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but the frames of a PNG clip sfi wrote (frame_00001.png ..., its marker)."""
    import re

    from sfi_cli.media.targets import MARKER as FRAMES_MARKER

    if folder.is_symlink():
        return False
    return all((re.fullmatch(r"frame_\d{5,}\.png", entry.name) or entry.name == FRAMES_MARKER) and entry.is_file()
               for entry in os.scandir(folder))


def clip_names(plan: Plan, media: str) -> list[str]:
    """The names the transition clips of ``plan`` take in their folder."""
    from sfi_cli.timeline.nle import transition_names

    return [name + MEDIA[media][0] for name in transition_names(plan).values()]


def render_transitions(plan: Plan, summary: dict[str, Any], options: RenderOptions, handles: int, folder: Path,
                       where, media: str) -> dict:
    """Each transition of ``plan`` as its own clip (``media``: a key of ``MEDIA``) with handles, written at
    ``where(file name)`` to be published into ``folder``; by gap index, as they will lie there."""
    from sfi_cli.render import work_dir_for
    from sfi_cli.render.splice import splice
    from sfi_cli.render.workdir import GapCache
    from sfi_cli.timeline.nle import TransitionMedia, handle_segments, transition_names

    names = transition_names(plan)
    keys = [record["key"] for record in summary["gaps"]]
    cache = GapCache(work_dir_for(plan.output, options.work_dir), options.ffmpeg)
    quiet = replace(options, sheet=None)
    made = {}
    with options.reporter.task(f"writing {len(names)} transition clip{'s' * (len(names) != 1)}", len(names)) as task:
        for done, (gap, name) in enumerate(names.items(), start=1):
            suffix, codec = MEDIA[media]
            segments, before, after = handle_segments(plan, gap, handles)
            one = _media_plan(plan, where(name + suffix), segments, codec)
            splice(one, cache, keys, quiet, progress=lambda written, total: None)
            made[gap] = TransitionMedia(gap, folder / (name + suffix), before, after, one.total_frames, codec == "png")
            task(done, len(names))
    return made


def _media_plan(plan: Plan, path: Path, segments: tuple, codec: str) -> Plan:
    """``plan`` cut down to ``segments`` into a ProRes .mov (or PNG sequence) at ``path``: no sound, subtitles or
    chapters, timecode 00:00:00:00 (so clip marker positions count from the clip's first frame everywhere)."""
    primary = plan.primary
    if primary is not None:
        primary = replace(primary, info=replace(primary.info, timecode="00:00:00:00"))
    pix_fmt = formats.output_pix_fmt(codec, primary.info if primary else None)
    return replace(plan, output=path, codec=codec, pix_fmt=pix_fmt, quality=formats.quality_for(codec, plan.quality), primary=primary, segments=segments, audio=(),
                   subtitles=(), subtitle_shifts=(), attachments=(), chapters=(), warnings=())


class TimelineExport:
    """``--timeline PATH``: after the splice, the result as an NLE timeline with its transitions' media in
    ``<timeline stem>-transitions/`` beside it."""

    def __init__(self, path: Path, *, handles: int, force: bool, media: str = "prores") -> None:
        from sfi_cli.timeline.nle_files import timeline_adapter

        self.path, self.handles, self.force, self.kind = Path(path), handles, force, media
        timeline_adapter(self.path)
        if self.path.is_dir():
            raise SfiError(f"timeline '{self.path}' is a folder; give a file name such as {self.path / 'cut.otio'}")
        require_writable_folder(self.path.parent, "the timeline")
        if os.path.lexists(self.path) and not force:
            raise SfiError(f"timeline '{self.path}' already exists; pass --force to overwrite it")
        self.media = MediaFolder(self.path.with_name(f"{self.path.stem}-transitions"), force)

    def check(self, plan: Plan, options: RenderOptions) -> None:
        from sfi_cli.render.workdir import manifest_path

        refuse_inputs([self.path], _inputs(plan), "timeline")
        for other in (plan.output, manifest_path(plan.output), options.sheet):
            if other is not None and same_file(self.path, other):
                raise SfiError(f"timeline '{self.path}' is also another result of this run ('{other}'); choose another path")
        self.media.check(clip_names(plan, self.kind), _inputs(plan))

    def finish(self, plan: Plan, summary: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
        from sfi_cli.timeline.nle import build_timeline
        from sfi_cli.timeline.nle_files import timeline_text

        names = clip_names(plan, self.kind)
        with Publication() as results:
            where = self.media.writer(results, names)
            made = render_transitions(plan, summary, options, self.handles, self.media.folder, where, self.kind)
            # FCP 7 XML (its adapter) knows no image sequences: there a PNG clip is named by its first frame.
            timeline = build_timeline(plan, summary["gaps"], made, plan.output.stem,
                                      image_sequences=self.path.suffix.lower() != ".xml")
            text = timeline_text(timeline, self.path)
            staged = results.stage(self.path)
            with writing(self.path):
                staged.write_text(text, encoding="utf-8")
        options.reporter.message(f"timeline: {self.path} (transition clips in {self.media.folder})")
        return {**summary, "timeline": str(self.path), "timeline_media": str(self.media.folder)}


class TransitionClips:
    """``--transitions-only DIR``: pass 1 alone, then each transition as its own clip with handles in DIR."""

    def __init__(self, folder: Path, *, handles: int, force: bool, media: str = "prores") -> None:
        self.media, self.handles, self.kind = MediaFolder(folder, force), handles, media

    def check(self, plan: Plan, options: RenderOptions) -> None:
        self.media.check(clip_names(plan, self.kind), _inputs(plan))

    def finish(self, plan: Plan, summary: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
        names = clip_names(plan, self.kind)
        if not names:
            options.reporter.message("no transitions in the plan, so no transition clips were written")
            return {**summary, "transition_clips": []}
        with Publication() as results:
            made = render_transitions(plan, summary, options, self.handles, self.media.folder,
                                      self.media.writer(results, names), self.kind)
        return {**summary, "transition_clips": [str(media.path) for media in made.values()]}
