"""Pass 1 on a Ray cluster: each worker a long-lived actor that builds its engines once.

``RayExecutor`` is a ``Pool`` (``executors``): the same hand-out, grouping and retries as the
local worker processes, the workers Ray actors. With no address it starts a Ray instance on
this machine; with ``[farm] address`` (``--ray-address``) it joins a cluster started with
``ray start --head`` / ``ray start --address ...``. An engine that computes on "cuda" gets one
actor per GPU of the cluster (``num_gpus=1``: Ray shows each actor its own GPU, as cuda:0); one
on the CPU gets ``--workers`` actors of one CPU each. A job carries its two boundary frames and
its settings, never the video. A worker that dies is restarted by Ray and its job tried again
(``max_restarts=-1``: restarted as often as needed, each job bounded by ``max_task_retries``); a
job that raises is tried again by the pool, on a restarted actor when the error may have left
the process unusable. Results reach the work folder by atomic publish, either written there
by the workers (``storage = "shared"``: every node mounts it at the same path, checked before
the first job) or sent back to this machine, which stores them (``"send"``). ``ray`` is
imported only here, and only when a run asks for it.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sfi_cli.errors import SfiError
from sfi_cli.render.executors import Outcome, Pool, run_job

if TYPE_CHECKING:
    from sfi_cli.render import RenderOptions
    from sfi_cli.timeline.model import Plan

START_TIMEOUT = 300.0  # seconds for every actor to start (a node may first have to build its environment)


def require_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SfiError("--executor ray needs Ray, which is not installed: run 'bash scripts/install.sh farm' "
                       "(or pip install 'sfi[farm]'), or use --executor local") from None
    return ray


def gpu_engines(plan: Plan, engine_settings: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """The engines of ``plan``'s gaps that compute on cuda (``Engine.device``): their workers each need a GPU."""
    from engines import engine_class

    return tuple(sorted({gap.engine for gap in plan.gaps
                         if engine_class(gap.engine).device(engine_settings.get(gap.engine, {})).startswith("cuda")}))


def _reports_to_stderr(ray) -> None:
    """Ray prints what its raylets report (e.g. "a worker died") on stdout, where ``--json`` puts its summary:
    send those to stderr with the progress lines (Ray has no setting for it; without the hook they stay on stdout)."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "sfi_to_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.sfi_to_stderr = True
    worker.print_to_stdstream = to_stderr


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class TransitionWorker:
    """A Ray actor: one process that makes transitions for the whole run, its engines built once."""

    def __init__(self, gpu: bool) -> None:
        import ray

        from sfi_cli.render.transitions import place

        ids = [str(number) for number in ray.get_gpu_ids()] if gpu else []
        place("cuda:0" if ids else None)  # Ray makes only the actor's own GPU visible
        self.host = socket.gethostname()
        self.device = f"cuda:{ids[0]}" if ids else "cpu"  # the node's own numbering, as nvidia-smi shows it

    def where(self) -> tuple[str, str, int]:
        return self.host, self.device, os.getpid()

    def sees(self, check: str, token: str) -> bool:
        """Whether this node reads the driver's check file in the work folder (shared storage)."""
        try:
            return Path(check).read_text() == token
        except OSError:
            return False

    def run(self, function: Callable[[Any], Any], job: Any) -> Outcome:
        outcome = run_job(function, job)
        if outcome.ok and isinstance(outcome.result, dict) and self.device != "cpu":
            outcome.result["device"] = self.device
        return outcome


class RayExecutor(Pool):
    """Pass 1's jobs on Ray actors; see the module's docstring."""

    def __init__(self, options: RenderOptions, *, work_dir: Path | None = None, gpu_engines: tuple[str, ...] = ()) -> None:
        """``work_dir``: the folder whose sharing is checked (None: not checked); ``gpu_engines``: the engines of
        the run that compute on cuda (none: CPU workers)."""
        super().__init__(options.workers, attempts=options.attempts, reporter=options.reporter)
        self.address = options.farm.get("address", "")
        self.sends_back = options.farm.get("storage", "shared") == "send"
        self.work_dir = work_dir.absolute() if work_dir is not None else None
        self.gpu_engines = gpu_engines
        self.actors: list[Any] = []
        self.where: list[tuple[str, str, int]] = []
        self.running: dict[int, Any] = {}
        self.owns_ray = False
        self.ray = None
        self.ready_seconds = 0.0  # joining or starting Ray and every actor, measured by _start

    def label(self, worker: int) -> str:
        host, device, pid = self.where[worker]
        return f"worker {worker + 1} ({host}, {device}, pid {pid})"

    def _start(self) -> int:
        ray = self.ray = require_ray()
        started = time.monotonic()
        _reports_to_stderr(ray)
        if not ray.is_initialized():
            self._connect(ray)
        resources = ray.cluster_resources()
        gpu = bool(self.gpu_engines)
        if gpu:
            count = int(resources.get("GPU", 0))
            if count == 0:
                raise SfiError(f"engine {', '.join(self.gpu_engines)} computes on cuda but the Ray cluster has no GPU: "
                               f"start its nodes on GPU machines (ray start ... --num-gpus N) or set the engine's "
                               f"device to cpu")
        else:
            count = min(self.workers, max(1, int(resources.get("CPU", 1))))
            if count < self.workers:
                self._say(f"warning: the Ray cluster has {count} CPUs, so {count} workers instead of {self.workers}")
        worker_class = ray.remote(TransitionWorker).options(
            num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1,
            max_restarts=-1, max_task_retries=self.attempts - 1)
        self.actors = [worker_class.remote(gpu) for _ in range(count)]
        try:
            self.where = list(ray.get([actor.where.remote() for actor in self.actors], timeout=START_TIMEOUT))
        except ray.exceptions.GetTimeoutError:
            raise SfiError(f"the Ray workers did not start within {START_TIMEOUT:.0f}s: check 'ray status' for free "
                           f"{'GPUs' if gpu else 'CPUs'} and that sfi is installed on every node") from None
        if not self.sends_back and self.work_dir is not None:
            self._check_storage(ray)
        hosts = sorted({host for host, _, _ in self.where})
        self.ready_seconds = time.monotonic() - started
        self._say(f"ray: {count} worker{'s' * (count != 1)} on {', '.join(hosts)} ready in "
                  f"{self.ready_seconds:.1f}s (results {'sent back' if self.sends_back else 'in the shared work folder'})")
        return count

    def _connect(self, ray) -> None:
        import logging

        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(num_cpus=max(self.workers, os.cpu_count() or 1), include_dashboard=False, **quiet)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError, depending on the cause
            where = f"join the Ray cluster at '{self.address}'" if self.address else "start a local Ray instance"
            raise SfiError(f"cannot {where}: {one_line(error)}; start the cluster with 'ray start --head' "
                           f"(docs/farm.md) or correct --ray-address") from None
        self.owns_ray = True

    def _check_storage(self, ray) -> None:
        """One line, before any job, when a node does not see the work folder this machine writes to."""
        from sfi_cli.media.publish import temporary_path

        check = temporary_path(self.work_dir / "farm-check")  # hidden, named for this process: tidied if left behind
        token = secrets.token_hex(16)
        check.write_text(token)
        try:
            seen = ray.get([actor.sees.remote(str(check), token) for actor in self.actors])
        finally:
            check.unlink(missing_ok=True)
        blind = sorted({self.where[worker][0] for worker, ok in enumerate(seen) if not ok})
        if blind:
            raise SfiError(f"the work folder '{self.work_dir}' is not shared with the farm: {', '.join(blind)} "
                           f"cannot see this run's files there; mount it at the same path on every node, or set "
                           f"[farm] storage = \"send\" (--farm-storage send) to have the results sent back")

    def _submit(self, worker: int, function: Callable[[Any], Any], job: Any) -> None:
        self.running[worker] = self.actors[worker].run.remote(function, job)

    def _wait(self, busy: dict[int, Any]) -> list[tuple[int, Outcome]]:
        ray = self.ray
        workers = {self.running[worker]: worker for worker in busy}
        ready, _ = ray.wait(list(workers), num_returns=1)
        ended = []
        for reference in ready:
            worker = workers[reference]
            del self.running[worker]
            host = self.where[worker][0]
            try:
                outcome = ray.get(reference)
                self.where[worker] = (outcome.host, self.where[worker][1], outcome.pid)  # a restarted actor: new pid
            except ray.exceptions.RayActorError as error:  # Ray has already restarted it and retried the job
                outcome = Outcome(reason=f"its worker died on every try ({one_line(error)[:200]})", final=True, host=host)
            except ray.exceptions.RayError as error:
                outcome = Outcome(reason=f"Ray could not run it: {one_line(error)[:200]}", host=host)
            ended.append((worker, outcome))
        return ended

    def _restart(self, worker: int) -> None:
        self.ray.kill(self.actors[worker], no_restart=False)  # Ray starts it afresh: a clean process for the next job

    def _close(self, finished: bool) -> None:
        ray = self.ray
        if ray is None:
            return
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass  # already gone
        if self.owns_ray:
            ray.shutdown()
