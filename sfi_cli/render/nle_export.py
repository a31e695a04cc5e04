"""Results for an editor beside a render: an NLE timeline (``--timeline``) or the transitions alone as clips
(``--transitions-only``).

Both are extras of a render (``RenderOptions.extras``): checked with the plan before any work, made
after the passes from what the work folder holds. Each transition's media is a ProRes .mov of the
gap with ``handles`` real frames either side, spliced by pass 2's own code from a plan of just those
segments (so its frames, colours and pixel format are the output's), named by the incoming source's
timecode. Everything is staged and published together: a failure leaves none of it.
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

MEDIA_SUFFIX = ".mov"  # ProRes: what both Premiere and Resolve cut without transcoding
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
        """No clip may be an input, nor replace a file unasked."""
        files = [self.folder / name for name in names]
        refuse_inputs([*files, self.folder / MARKER, *self._earlier()], inputs, "transition clip")
        existing = next((file for file in files if os.path.lexists(file)), None)
        if existing is not None and not self.force:
            raise SfiError(f"transition clip '{existing}' already exists; pass --force to overwrite it")

    def _earlier(self) -> list[Path]:
        try:
            names = json.loads((self.folder / MARKER).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [self.folder / name for name in names if isinstance(name, str) and name == Path(name).name
                and name not in (".", "..") and not (self.folder / name).is_dir()]

    def writer(self, results: Publication, names: list[str]):
        """Where each named file is to be written for ``results`` to publish."""
        if not self.folder.exists():
            staging = results.stage(self.folder, folder=True)
            where = staging.joinpath
        else:
            where = lambda name: results.stage(self.folder / name)  # noqa: E731
            for old in self._earlier():
                if old.name not in names:
                    results.retire(old)
        marker = where(MARKER)
        with writing(marker):
            marker.write_text(json.dumps({"sfi": __version__, "files": names}) + "\n")
        return where


def render_transitions(plan: Plan, summary: dict[str, Any], options: RenderOptions, handles: int, folder: Path,
                       where) -> dict:
    """Each transition of ``plan`` as its own .mov with handles, written at ``where(file name)`` to be published
    into ``folder``; by gap index, as they will lie there."""
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
            segments, before, after = handle_segments(plan, gap, handles)
            one = _media_plan(plan, where(name + MEDIA_SUFFIX), segments)
            splice(one, cache, keys, quiet, progress=lambda written, total: None)
            made[gap] = TransitionMedia(gap, folder / (name + MEDIA_SUFFIX), before, after, one.total_frames)
            task(done, len(names))
    return made


def _media_plan(plan: Plan, path: Path, segments: tuple) -> Plan:
    """``plan`` cut down to ``segments`` into a ProRes .mov at ``path``: no sound, subtitles or chapters,
    timecode 00:00:00:00 (so clip marker positions count from the clip's first frame everywhere)."""
    primary = plan.primary
    if primary is not None:
        primary = replace(primary, info=replace(primary.info, timecode="00:00:00:00"))
    return replace(plan, output=path, codec="prores", pix_fmt=formats.output_pix_fmt("prores", primary.info if primary else None),
                   quality=formats.quality_for("prores", plan.quality), primary=primary, segments=segments, audio=(),
                   subtitles=(), subtitle_shifts=(), attachments=(), chapters=(), warnings=())


class TimelineExport:
    """``--timeline PATH``: after the splice, the result as an NLE timeline with its transitions' media in
    ``<timeline stem>-transitions/`` beside it."""

    def __init__(self, path: Path, *, handles: int, force: bool) -> None:
        from sfi_cli.timeline.nle_files import timeline_adapter

        self.path, self.handles, self.force = Path(path), handles, force
        timeline_adapter(self.path)
        if self.path.is_dir():
            raise SfiError(f"timeline '{self.path}' is a folder; give a file name such as {self.path / 'cut.otio'}")
        require_writable_folder(self.path.parent, "the timeline")
        if os.path.lexists(self.path) and not force:
            raise SfiError(f"timeline '{self.path}' already exists; pass --force to overwrite it")
        self.media = MediaFolder(self.path.with_name(f"{self.path.stem}-transitions"), force)

    def check(self, plan: Plan, options: RenderOptions) -> None:
        from sfi_cli.render.workdir import manifest_path
        from sfi_cli.timeline.nle import transition_names

        refuse_inputs([self.path], _inputs(plan), "timeline")
        for other in (plan.output, manifest_path(plan.output), options.sheet):
            if other is not None and same_file(self.path, other):
                raise SfiError(f"timeline '{self.path}' is also another result of this run ('{other}'); choose another path")
        self.media.check([name + MEDIA_SUFFIX for name in transition_names(plan).values()], _inputs(plan))

    def finish(self, plan: Plan, summary: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
        from sfi_cli.timeline.nle import build_timeline, transition_names
        from sfi_cli.timeline.nle_files import timeline_text

        names = [name + MEDIA_SUFFIX for name in transition_names(plan).values()]
        with Publication() as results:
            where = self.media.writer(results, names)
            made = render_transitions(plan, summary, options, self.handles, self.media.folder, where)
            text = timeline_text(build_timeline(plan, summary["gaps"], made, plan.output.stem), self.path)
            staged = results.stage(self.path)
            with writing(self.path):
                staged.write_text(text, encoding="utf-8")
        options.reporter.message(f"timeline: {self.path} (transition clips in {self.media.folder})")
        return {**summary, "timeline": str(self.path), "timeline_media": str(self.media.folder)}


class TransitionClips:
    """``--transitions-only DIR``: pass 1 alone, then each transition as its own clip with handles in DIR."""

    def __init__(self, folder: Path, *, handles: int, force: bool) -> None:
        self.media, self.handles = MediaFolder(folder, force), handles

    def check(self, plan: Plan, options: RenderOptions) -> None:
        from sfi_cli.timeline.nle import transition_names

        self.media.check([name + MEDIA_SUFFIX for name in transition_names(plan).values()], _inputs(plan))

    def finish(self, plan: Plan, summary: dict[str, Any], options: RenderOptions) -> dict[str, Any]:
        from sfi_cli.timeline.nle import transition_names

        names = [name + MEDIA_SUFFIX for name in transition_names(plan).values()]
        if not names:
            options.reporter.message("no transitions in the plan, so no transition clips were written")
            return {**summary, "transition_clips": []}
        with Publication() as results:
            made = render_transitions(plan, summary, options, self.handles, self.media.folder,
                                      self.media.writer(results, names))
        return {**summary, "transition_clips": [str(media.path) for media in made.values()]}
