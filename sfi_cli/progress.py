"""Progress that suits where it is shown.

On a terminal: a rich progress bar with ETA. Anywhere else (render boxes, farm logs,
CI): plain timestamped log lines on stderr, at most one per ``log_every`` seconds per
task plus its start and end, so logs stay readable. ``quiet`` shows nothing.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator


class Reporter:
    """Hands out per-task progress callbacks and prints one-off messages."""

    def __init__(self, *, quiet: bool = False, interactive: bool | None = None, log_every: float = 5.0) -> None:
        self.quiet = quiet
        # A closed stream (a job started with >&- or 2>&-) is None in Python: no bar, and no lines either,
        # which print() would otherwise send to stdout, into a --json summary.
        self.interactive = bool(sys.stdout and sys.stdout.isatty()) if interactive is None else interactive
        self.log_every = log_every
        self._rich = None

    def message(self, text: str) -> None:
        if self.quiet or sys.stderr is None:
            return
        if self._rich is not None:
            self._rich.console.print(text, highlight=False)
        else:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int, int], None]]:
        """A callback ``update(done, total)`` for one unit of work (e.g. one gap)."""
        if self.quiet:
            yield lambda done, total: None
        elif self.interactive:
            yield from self._rich_task(description, total)
        else:
            yield from self._plain_task(description, total)

    def _rich_task(self, description: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if self._rich is not None:  # a task within a task (a gap made mid-splice): a bar in the same display
            progress, started = self._rich, time.monotonic()
            task_id = progress.add_task(description, total=total)
            try:
                yield lambda done, total: progress.update(task_id, completed=done, total=total)
            finally:  # then a log line in its place, so hundreds of gaps do not pile up as live bars
                progress.remove_task(task_id)
                progress.console.print(f"{description}: done in {time.monotonic() - started:.1f}s", highlight=False)
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("ETA"), TimeRemainingColumn(), transient=False) as progress:
            self._rich = progress
            task_id = progress.add_task(description, total=total)
            try:
                yield lambda done, total: progress.update(task_id, completed=done, total=total)
            finally:
                self._rich = None

    def _plain_task(self, description: str, total: int):
        started = time.monotonic()
        last_print = [started]
        self.message(f"{description}: started ({total} steps)")

        def update(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last_print[0] < self.log_every:
                return
            last_print[0] = now
            elapsed = now - started
            eta = elapsed / done * (total - done) if done else 0.0
            self.message(f"{description}: {done}/{total} ({elapsed:.1f}s elapsed, ETA {eta:.1f}s)")

        yield update
