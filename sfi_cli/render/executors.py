"""Where pass 1's jobs run: ``map(function, jobs)`` yields ``(job, result)`` as each finishes.

``LocalExecutor`` runs them one after another in this process; ``ProcessExecutor`` in
worker processes on this machine (spawned, so a worker starts clean of the parent's
threads and pipes), one per device when given devices; ``farm.RayExecutor`` in Ray
actors across machines. The pooled ones share ``Pool``: jobs are taken from the
iterable only as workers free up (a job that carries frames costs memory only while it
waits), a free worker is handed a job of the group it ran last (``job.group``: SemFi's
expert and working size) when one is waiting, and each job is tried up to ``attempts``
times (a worker that died is restarted first). A job that fails that often stops the
hand-out; the jobs under way finish, then the run ends as one line naming the gap, the
reason and the host. Jobs and results must be picklable and each job names itself
(``job.name``) for messages.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from engines.errors import EngineError
from sfi_cli.errors import SfiError

LOOKAHEAD = 2  # jobs waiting per worker: enough to pick one of a worker's group, few enough to hold little memory


class LocalExecutor:
    """Serial, in-process: errors reach the caller unchanged. ``device`` (one of ``--devices``) is where the
    engines compute meanwhile."""

    in_process = True

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        from sfi_cli.render.transitions import placed

        with placed(self.device):
            for job in jobs:
                result = function(job)
                yield job, result
                del job, result  # the next job's frames are read while nothing holds this one's


@dataclass
class Outcome:
    """How one try of a job ended, as a worker reports it: its result, or one line of why not; ``restart``
    when the worker should not be trusted with another job (a CUDA error leaves a process unusable)."""

    result: Any = None
    reason: str = ""
    restart: bool = False
    final: bool = False  # the executor already retried it (Ray retries a job whose worker died)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def ok(self) -> bool:
        return not self.reason


def run_job(function: Callable[[Any], Any], job: Any) -> Outcome:
    """Run one job in a worker; a failure becomes an ``Outcome`` with its one-line reason."""
    try:
        return Outcome(result=function(job))
    except (SfiError, EngineError) as error:  # already one line the user can act on
        return Outcome(reason=str(error))
    except Exception as error:
        message = " ".join(str(error).split())  # one line, whatever the library wrote (CUDA errors span many)
        return Outcome(reason=f"{type(error).__name__}: {message}", restart=True)


class Pool:
    """The hand-out, grouping and retries the pooled executors share; subclasses start the workers
    (``_start``: how many), run a job on one (``_submit``), report the tries that ended (``_wait``), restart
    one (``_restart``) and stop them all (``_close``)."""

    in_process = False

    def __init__(self, workers: int, *, attempts: int = 3, reporter=None) -> None:
        self.workers = workers
        self.attempts = attempts
        self.reporter = reporter

    def label(self, worker: int) -> str:
        """How messages name a worker: its number, host, device and process."""
        return f"worker {worker + 1}"

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        jobs = iter(jobs)
        waiting: list[tuple[Any, int]] = []  # (job, tries so far)
        busy: dict[int, tuple[Any, int]] = {}
        last_group: dict[int, Any] = {}
        done: dict[int, int] = {}
        failed: list[str] = []
        finished = False
        try:
            workers = self._start()
            idle = list(range(workers))
            while True:
                while not failed and len(waiting) < LOOKAHEAD * workers and (job := next(jobs, None)) is not None:
                    waiting.append((job, 0))
                while idle and waiting and not failed:
                    worker = idle.pop(0)
                    job, tries = waiting.pop(_pick(waiting, last_group.get(worker, ())))
                    busy[worker], last_group[worker] = (job, tries), getattr(job, "group", ())
                    self._submit(worker, function, job)
                    self._say(f"{self.label(worker)}: {job.name} started ({done.get(worker, 0)} done"
                              f"{f', try {tries + 1} of {self.attempts}' if tries else ''})")
                if not busy:
                    break
                for worker, outcome in self._wait(busy):
                    job, tries = busy.pop(worker)
                    if outcome.ok:
                        idle.append(worker)
                        done[worker] = done.get(worker, 0) + 1
                        yield job, outcome.result
                        continue
                    tries = self.attempts if outcome.final else tries + 1
                    if outcome.restart:
                        self._restart(worker)
                    idle.append(worker)
                    if tries < self.attempts:
                        self._say(f"{self.label(worker)}: {job.name} failed ({outcome.reason}); trying again")
                        waiting.insert(0, (job, tries))
                    else:
                        failed.append(f"{job.name} failed {tries} time{'s' * (tries != 1)} (last on {outcome.host}): "
                                      f"{outcome.reason}")
            finished = True
        finally:
            self._close(finished)
        if failed:
            others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise SfiError(f"{failed[0]}{others}; nothing was published; the transitions made are kept in the work "
                           f"folder, run again to make only the missing ones")

    def _say(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.message(text)

    def _start(self) -> int:
        raise NotImplementedError

    def _submit(self, worker: int, function: Callable[[Any], Any], job: Any) -> None:
        raise NotImplementedError

    def _wait(self, busy: dict[int, Any]) -> list[tuple[int, Outcome]]:
        raise NotImplementedError

    def _restart(self, worker: int) -> None:
        raise NotImplementedError

    def _close(self, finished: bool) -> None:
        raise NotImplementedError


def _pick(waiting: list[tuple[Any, int]], group: Any) -> int:
    """The waiting job a worker that last ran ``group`` should take: the first of that group, else the first."""
    return next((index for index, (job, _) in enumerate(waiting) if getattr(job, "group", ()) == group), 0)


class _Stopped(BaseException):
    """A signal reached a worker in the middle of a job."""


_busy = False


def _on_signal(signum, frame) -> None:
    """In a worker: a job under way unwinds (its cleanup deletes what it half wrote), an idle worker just ends."""
    if _busy:
        raise _Stopped(signum)
    os._exit(1)


def _worker(connection, device: str | None) -> None:
    """A local worker process: jobs in, outcomes out, until told to stop (None) or its parent is gone."""
    import signal

    from sfi_cli.render.transitions import place

    global _busy
    for number in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        signal.signal(number, _on_signal)
    place(device)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        _busy = True
        try:
            outcome = run_job(*message)
        except _Stopped:
            os._exit(1)  # the job's own cleanup has run on the way here
        finally:
            _busy = False
        connection.send(outcome)


class ProcessExecutor(Pool):
    """``workers`` local processes (one per device of ``devices`` when given, each device reaching its
    engines' settings); an error or signal in the parent stops every worker (each deletes its unfinished
    work first)."""

    def __init__(self, workers: int, *, devices: tuple[str, ...] = (), attempts: int = 3, reporter=None) -> None:
        super().__init__(len(devices) or workers, attempts=attempts, reporter=reporter)
        self.devices = devices
        self.processes: list[Any] = []
        self.connections: list[Any] = []

    def label(self, worker: int) -> str:
        device = self.devices[worker] if self.devices else "cpu"
        return f"worker {worker + 1} ({socket.gethostname()}, {device}, pid {self.processes[worker].pid})"

    def _start(self) -> int:
        for worker in range(self.workers):
            self.processes.append(None)
            self.connections.append(None)
            self._spawn(worker)
        return self.workers

    def _spawn(self, worker: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs, self.devices[worker] if self.devices else None),
                                  daemon=True)
        process.start()
        theirs.close()
        self.processes[worker], self.connections[worker] = process, ours

    def _submit(self, worker: int, function: Callable[[Any], Any], job: Any) -> None:
        try:
            self.connections[worker].send((function, job))
        except (BrokenPipeError, EOFError, OSError):
            pass  # the worker died between jobs: _wait sees its process gone and the job is tried again

    def _wait(self, busy: dict[int, Any]) -> list[tuple[int, Outcome]]:
        from multiprocessing.connection import wait

        handles = {self.connections[w]: w for w in busy} | {self.processes[w].sentinel: w for w in busy}
        ended: dict[int, Outcome] = {}
        for handle in wait(list(handles)):
            worker = handles[handle]
            if worker in ended:
                continue
            connection = self.connections[worker]
            try:
                ended[worker] = connection.recv() if connection.poll() else None
            except (EOFError, OSError):
                ended[worker] = None
            if ended[worker] is None:  # no outcome: the process died under the job
                self.processes[worker].join(5)
                code = self.processes[worker].exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                ended[worker] = Outcome(reason=f"its worker process died ({how})")
                self._restart(worker)
        return list(ended.items())

    def _restart(self, worker: int) -> None:
        process = self.processes[worker]
        if process.is_alive():
            process.terminate()
            process.join(30)
            if process.is_alive():
                process.kill()
        process.join()
        self.connections[worker].close()
        self._spawn(worker)

    def _close(self, finished: bool) -> None:
        """Stop every worker (at once unless all is done) and wait for them, so nothing they half wrote outlives this."""
        for process, connection in zip(self.processes, self.connections):
            try:
                if finished:
                    connection.send(None)
                elif process.is_alive():
                    process.terminate()
            except OSError:
                pass
        for process, connection in zip(self.processes, self.connections):
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()
