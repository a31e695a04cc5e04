"""Where pass 1's jobs run: ``map(function, jobs)`` yields ``(job, result)`` as each finishes.

``LocalExecutor`` runs them one after another in this process; ``ProcessExecutor`` in
worker processes on this machine (spawned, so a worker starts clean of the parent's
threads and pipes). A farm adds an executor with the same ``map``. Jobs and results
must be picklable and each job names itself (``job.name``) for error messages. Jobs
are taken from the iterable only as workers free up, so a job that carries frames
costs memory only while it waits to run.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from engines.errors import EngineError
from sfi_cli.errors import SfiError


class LocalExecutor:
    """Serial, in-process: errors reach the caller unchanged."""

    in_process = True

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            result = function(job)
            yield job, result
            del job, result  # the next job's frames are read while nothing holds this one's


class _Stopped(BaseException):
    """A signal reached a worker in the middle of a job."""


_busy = False


def _on_signal(signum, frame) -> None:
    """In a worker: a job under way unwinds (its cleanup deletes what it half wrote), an idle worker just ends."""
    if _busy:
        raise _Stopped(signum)
    os._exit(1)


def _start_worker() -> None:
    import signal

    for number in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        signal.signal(number, _on_signal)


def _run_job(function: Callable[[Any], Any], job: Any) -> Any:
    global _busy
    _busy = True
    try:
        return function(job)
    except _Stopped:
        os._exit(1)  # the job's own cleanup has run on the way here
    finally:
        _busy = False


class ProcessExecutor:
    """``workers`` local processes; a job's failure stops the run as one ``SfiError`` naming the job;
    an error or signal in the parent stops every worker (each deletes its unfinished work first)."""

    in_process = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker)
        waiting: dict[Any, Any] = {}
        jobs = iter(jobs)
        finished = False
        try:
            while True:
                while len(waiting) < 2 * self.workers and (job := next(jobs, None)) is not None:
                    waiting[pool.submit(_run_job, function, job)] = job
                if not waiting:
                    break
                done, _ = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    job = waiting.pop(future)
                    yield job, _result(future, job)
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:
                _stop(pool)


def _result(future, job) -> Any:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except (SfiError, EngineError) as error:  # already one line the user can act on
        raise SfiError(f"{job.name}: {error}") from None
    except BrokenProcessPool:
        raise SfiError(f"{job.name}: its worker process died; run again to make the transitions still missing") from None
    except Exception as error:
        message = " ".join(str(error).split())  # one line, whatever the library wrote (CUDA errors span many)
        raise SfiError(f"{job.name} failed in a worker: {type(error).__name__}: {message}") from None


def _stop(pool) -> None:
    """Stop every worker now and wait for them, so nothing they half wrote outlives this call."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
