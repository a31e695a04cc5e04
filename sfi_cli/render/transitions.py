"""Pass 1: make every transition the work folder does not hold yet, each as an independent job.

A ``TransitionJob`` carries all a worker needs and nothing of the video: the gap's two
boundary frames (or a retimed chunk's every real frame) in the engines' RGB (16-bit for deep
footage), the engine's name and settings, the gap's parameters and its work-folder key. The
driver reads the real frames of all jobs in timeline order through the plan's own readers (one forward-reading
decoder per source, seeking only across long stretches), converting them to RGB exactly
as the splice converts its frames, and hands the jobs to an executor as workers free up.
``make_transition`` runs anywhere: it builds the engine once per process, makes the
frames and stores them in the work folder, published only when complete (or, on a farm whose
nodes do not share the work folder, returns its files for the driver to store). A worker may be
``placed`` on a device (``--devices``, a farm node's GPU): its engines' settings get it. Gaps of one
``Engine.job_group`` are made one after another, so a worker keeps its SemFi expert loaded.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from sfi_cli.errors import SfiError
from sfi_cli.render.workdir import GapCache, gap_params, plan_gap_key
from sfi_cli.timeline.model import Gap, Plan

if TYPE_CHECKING:
    import numpy as np

    from sfi_cli.render import RenderOptions


@dataclass(frozen=True)
class TransitionJob:
    """One gap to make: picklable, self-contained."""

    name: str  # "gap 2/5 (label)" for messages
    key: str
    engine: str
    settings: dict[str, dict[str, Any]]  # every engine's section: an engine may use another (SemFi retimes with flow)
    params: dict[str, Any]  # count, prompt, negative_prompt, seed
    meta: dict[str, Any]  # written to the gap's gap.json
    work_dir: Path
    ffmpeg: str
    frames: tuple[np.ndarray, ...]  # the real frames it is made from (``Gap.real_frames``): two ends, or a chunk
    group: tuple = ()  # the engine's ``job_group``: what a worker keeps loaded between jobs

    @property
    def first(self) -> np.ndarray:
        return self.frames[self.params["shots"]["ends"][0] if "shots" in self.params else 0]

    @property
    def last(self) -> np.ndarray:
        return self.frames[self.params["shots"]["ends"][1] if "shots" in self.params else -1]

    def shot_frames(self):
        """The two shots' frames and places for an engine that keeps them playing (``Gap.shot_places``)."""
        from engines.base import ShotFrames

        places = self.params["shots"]
        split = places["outgoing"]
        return ShotFrames(self.frames[:split], self.frames[split:], places["outgoing_at"], places["incoming_at"])


_placement: dict[str, str | None] = {"device": None}  # per process: the device a worker was given, if any


def place(device: str | None) -> None:
    """In a worker: the device its engines compute on (None: as their settings say)."""
    _placement["device"] = device


@contextmanager
def placed(device: str | None):
    """``place`` for a while, in a process that goes on to do other things (the serial executor)."""
    before = _placement["device"]
    place(device)
    try:
        yield
    finally:
        place(before)


def placed_settings(settings: dict[str, dict[str, Any]], name: str, device: str | None) -> dict[str, dict[str, Any]]:
    """Every engine's settings, engine ``name`` and those it uses moved to ``device`` (unchanged for None)."""
    from engines import engine_class

    if device is None:
        return settings
    cls = engine_class(name)
    moved = {**settings, name: cls.on_device(settings.get(name, {}), device)}
    for used in cls.uses:
        moved = placed_settings(moved, used, device)
    return moved


_engines: dict[tuple[str, str], Any] = {}  # per process: engines are built once and reused across jobs


def _engine(name: str, settings: dict[str, dict[str, Any]]):
    import json

    from engines import load_engine

    tag = (name, json.dumps(settings, sort_keys=True, default=str))
    if tag not in _engines:
        _engines[tag] = load_engine(name, settings)
    return _engines[tag]


def counted(frames, expected: int, engine_name: str) -> Iterator[np.ndarray]:
    """Pass frames through, failing loudly if an engine returns the wrong number."""
    produced = 0
    for frame in frames:
        produced += 1
        if produced > expected:
            break
        yield frame
    if produced != expected:
        raise SfiError(f"engine '{engine_name}' returned {produced} frames instead of {expected}; this is a bug, please report it")


def make_transition(job: TransitionJob, progress=None) -> dict[str, Any]:
    """Make one gap's frames and store them in the work folder; returns its manifest record."""
    from engines import engine_class

    started = time.monotonic()
    settings = placed_settings(job.settings, job.engine, _placement["device"])
    engine = _engine(job.engine, settings)
    params = job.params
    notes = dict(engine.notes(params["count"]))  # and what the engine finds out while making the frames
    if "times" in params:
        frames = retimed_frames(engine, job.frames, params["times"], progress, notes)
    else:
        frames = engine.generate(job.first, job.last, params["count"], prompt=params["prompt"],
                                 negative_prompt=params["negative_prompt"], seed=params["seed"], progress=progress,
                                 notes=notes, **({"shots": job.shot_frames()} if "shots" in params else {}))
    cache = GapCache(job.work_dir, job.ffmpeg, tidy=False)
    try:
        cache.store(job.key, counted(frames, params["count"], engine.name), {"engine": engine.cache_key(), **job.meta},
                    notes=notes)
    except SfiError:
        if not cache.has(job.key):
            raise  # else another worker published the same job as this one was renaming its copy: that one is whole
    return {"key": job.key, "cached": False, "seconds": round(time.monotonic() - started, 3),
            "host": socket.gethostname(), "device": engine_class(job.engine).device(settings.get(job.engine, {})),
            "pid": os.getpid(), **notes}


def retimed_frames(engine, real: tuple[np.ndarray, ...], times: list[list], progress,
                   notes: dict[str, Any]) -> Iterator[np.ndarray]:
    """A retimed chunk's frames: for each pair of neighbouring real frames, the engine's frames at the times
    that fall between them (its motion measured once per pair). ``notes`` ends up saying how many pairs fell
    back to a dissolve and why the first did."""
    import itertools

    done, pairs, fell_back = 0, 0, []
    for pair, places in itertools.groupby(times, key=lambda place: place[0]):
        found: dict[str, Any] = {}
        wanted = [t for _, t in places]
        for frame in engine.generate_at(real[pair], real[pair + 1], wanted, notes=found):
            done += 1
            if progress:
                progress(done, len(times))
            yield frame
        pairs += 1
        if found.get("fallback"):
            fell_back.append(found)
    if fell_back:
        notes.update(fallback=fell_back[0]["fallback"],
                     fallback_reason=f"{len(fell_back)} of {pairs} frame pairs; the first: {fell_back[0]['fallback_reason']}")


def make_transition_sent_back(job: TransitionJob, progress=None) -> dict[str, Any]:
    """``make_transition`` on a node that does not share the work folder: the gap is made in a private
    folder there and its files come back in the record (``files``) for the driver to ``adopt``."""
    import dataclasses
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sfi-gap-") as private:
        record = make_transition(dataclasses.replace(job, work_dir=Path(private)), progress)
        folder = GapCache(Path(private), job.ffmpeg, tidy=False).folder(job.key)
        files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
                 if path.is_file()}
    return {**record, "files": files}


def adopt(cache: GapCache, key: str, files: dict[str, bytes]) -> None:
    """Store a gap's files as a worker sent them back, published whole like a gap made here."""
    import shutil

    from sfi_cli.media.publish import Publication, writing

    with Publication() as results:
        staging = results.stage(cache.folder(key), folder=True)
        for name, data in files.items():
            with writing(staging / name):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
        shutil.rmtree(cache.folder(key), ignore_errors=True)  # a damaged or concurrent copy of this gap: replaced


def gap_keys(plan: Plan) -> list[str]:
    """Every gap's work-folder key, from the plan alone (no engine, no decoding)."""
    return [plan_gap_key(plan, gap) for gap in plan.gaps]


def _jobs(plan: Plan, missing: list[Gap], keys: list[str], options: RenderOptions, work_dir: Path) -> Iterator[TransitionJob]:
    """The jobs of the ``missing`` gaps, their boundary frames read in timeline order as each is asked for."""
    from sfi_cli.media.ffmpeg import convert_frames
    from sfi_cli.media.readers import StillReader
    from sfi_cli.render.footage import Readers

    readers = Readers(plan, options.ffmpeg)
    try:
        for gap in missing:
            rgb: dict[int, np.ndarray] = {}
            raw: dict[int, np.ndarray] = {}
            for side, (source, index) in enumerate(gap.real_frames):
                reader = readers[source]
                if isinstance(reader, StillReader):
                    rgb[side] = reader.rgb  # the image itself, not its round trip through YUV
                else:
                    raw[side] = reader.frame(index).copy()
            if raw:
                converted = convert_frames(list(raw.values()), plan.size, from_pix_fmt=plan.pix_fmt,
                                           pix_fmt=plan.rgb_pix_fmt, video_filter=plan.output_to_rgb(options.ffmpeg),
                                           ffmpeg=options.ffmpeg)
                rgb.update(zip(raw, converted))
            yield TransitionJob(
                name=f"{'chunk' if gap.times else 'gap'} {gap.index + 1}/{len(plan.gaps)} ({gap.label}, {gap.count} frames, "
                     f"{gap.engine})",
                key=keys[gap.index], engine=gap.engine, settings=options.engine_settings, params=gap_params(gap),
                meta={"label": gap.label, **gap_params(gap)}, work_dir=work_dir, ffmpeg=options.ffmpeg,
                frames=tuple(rgb[side] for side in sorted(rgb)), group=job_group(plan, gap, options.engine_settings))
    finally:
        readers.close()


def job_group(plan: Plan, gap: Gap, engine_settings: dict[str, dict[str, Any]]) -> tuple:
    """The gap's engine and what a worker keeps loaded for it (``Engine.job_group``)."""
    from engines import engine_class

    return (gap.engine, *engine_class(gap.engine).job_group(engine_settings.get(gap.engine, {}), gap.count, plan.size))


def grouped(gaps: list[Gap], groups: list[tuple]) -> list[Gap]:
    """``gaps`` with those of one group together, groups in the order they first appear, each in timeline order."""
    first_seen = {group: rank for rank, group in reversed(list(enumerate(groups)))}
    return [gap for _, gap in sorted(zip(groups, gaps), key=lambda pair: (first_seen[pair[0]], pair[1].index))]


def check_engines(names: set[str], engine_settings: dict[str, dict[str, Any]]) -> None:
    """A missing model or package fails here, in one line, before any worker starts."""
    from engines import require_available

    for name in sorted(names):
        require_available(name, engine_settings)


def make_transitions(plan: Plan, options: RenderOptions, executor, *,
                     between_jobs: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Pass 1: make the gaps the work folder lacks through ``executor``; returns one record per gap, in order.
    ``between_jobs`` runs after each finished job; an error it raises stops the pass."""
    from functools import partial

    from sfi_cli.render import work_dir_for

    work_dir = work_dir_for(plan.output, options.work_dir).absolute()  # a farm's workers run in other folders
    cache = GapCache(work_dir, options.ffmpeg)
    keys = gap_keys(plan)
    wanted: dict[str, Gap] = {}  # two gaps alike (same key) are made once
    for gap in plan.gaps:
        if not cache.has(keys[gap.index]):
            wanted.setdefault(keys[gap.index], gap)
    missing = grouped(list(wanted.values()), [job_group(plan, gap, options.engine_settings) for gap in wanted.values()])
    made: dict[str, dict[str, Any]] = {}
    if plan.gaps:
        noun = "chunk" if plan.native_frames else "transition"  # a retimed clip's jobs are chunks of made frames
        options.reporter.message(f"{noun}s: {len(missing)} to make, {len(plan.gaps) - len(missing)} in the work folder")
    if missing:
        check_engines({gap.engine for gap in missing}, options.engine_settings)
        total = sum(gap.count for gap in missing)
        with options.reporter.task(f"making {len(missing)} {noun}{'s' * (len(missing) != 1)} ({total} frames)", total) as progress:
            done = 0

            def frame_progress(finished: int, count: int) -> None:
                progress(done + finished, total)

            started = time.monotonic()
            function = partial(make_transition, progress=frame_progress) if executor.in_process else \
                make_transition_sent_back if getattr(executor, "sends_back", False) else make_transition
            try:
                for job, record in executor.map(function, _jobs(plan, missing, keys, options, work_dir)):
                    if "files" in record:
                        adopt(cache, job.key, record.pop("files"))
                    made[job.key] = record
                    done += job.params["count"]
                    progress(done, total)
                    elapsed = time.monotonic() - started
                    options.reporter.message(
                        f"{job.name}: made in {record['seconds']:.1f}s on {record['host']} ({record['device']}); "
                        f"{len(made)}/{len(missing)} done, ETA {elapsed / done * (total - done):.0f}s{fallback_note(record)}")
                    del job, record  # its boundary frames go before the next job's are read
                    between_jobs()
            finally:
                from sfi_cli.media.publish import remove_stale

                remove_stale(cache.gaps)  # whatever a stopped worker could not tidy itself
    return [made.pop(keys[gap.index], None) or stored_record(cache, keys[gap.index]) for gap in plan.gaps]


def fallback_note(notes: dict[str, Any]) -> str:
    """"; fell back to a dissolve: <why>" when the engine did, so no fallback goes unseen; then the engine's remark
    on how it made the gap, when it has one (SemFi: the DiT passes its step cache skipped)."""
    fallback = f"; fell back to a {notes['fallback']}: {notes['fallback_reason']}" if notes.get("fallback") else ""
    return fallback + (f"; {notes['remark']}" if notes.get("remark") else "")


def stored_record(cache: GapCache, key: str) -> dict[str, Any]:
    """The manifest record of a gap the work folder already held."""
    return {"key": key, "cached": True, "seconds": 0.0, **cache.notes(key)}
