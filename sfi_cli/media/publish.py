"""How every result reaches its final name: written under a hidden temporary name, then renamed.

One naming scheme for every temporary file and folder sfi makes,
``.<stem>.sfi-partial-<host>-<pid><suffix>`` beside its final name, so that an
interrupted run never leaves a half-written result under a real name, and the next
run on the same machine can tell what a dead process left (and delete it) from
another run's work in progress. The suffix is kept so ffmpeg picks the right muxer.

Inputs are protected here too: ``refuse_inputs`` stops any write, rename or delete
of a path that is (by file identity: hard links and symlinks count) one of the run's
inputs, with or without ``--force``. ``output_lock`` keeps two runs from writing the
same output at once: the second is refused, naming the first.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from sfi_cli.errors import SfiError

MARK = ".sfi-partial-"


def _host() -> str:
    return socket.gethostname() or "localhost"


NAME_BYTES = 255  # the longest file name common file systems take


def hidden_name(final: Path, stem: str, tail: str) -> Path:
    """``.<stem><tail>`` beside ``final``; a stem too long for a file name with the tail is shortened and a hash of it
    added, so any name a user may give can be staged and locked (the tail, with pid and suffix, is kept)."""
    name = f".{stem}{tail}"
    if len(os.fsencode(name)) > NAME_BYTES:
        digest = hashlib.sha1(os.fsencode(stem)).hexdigest()[:12]
        room = NAME_BYTES - len(os.fsencode(f".~{digest}{tail}"))
        short = os.fsencode(stem)[:room].decode("utf-8", "ignore")
        name = f".{short}~{digest}{tail}"
    return Path(final).with_name(name)


def temporary_path(final: Path) -> Path:
    """The hidden name beside ``final`` that this process writes it under."""
    final = Path(final)
    return hidden_name(final, final.stem, f"{MARK}{_host()}-{os.getpid()}{final.suffix}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def remove_stale(folder: Path) -> None:
    """Delete the temporary files and folders that dead processes of this machine left in ``folder``
    (a SIGKILL or power loss leaves no chance to tidy up); another machine's are left alone."""
    pattern = re.compile(rf"^\..*{re.escape(MARK + _host())}-(\d+)(\.[^.]*)?$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _running(int(match.group(1))):
            _remove(Path(entry.path))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard links and symlinks count); paths that do not exist compare resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # realpath, unlike Path.resolve, does not raise on a symlink loop
        return os.path.realpath(a) == os.path.realpath(b)


def _special(look, path: Path) -> bool:
    """Whether ``look`` (``os.stat`` or ``os.lstat``) finds a pipe, device or socket at ``path``."""
    try:
        mode = look(path).st_mode
    except (OSError, ValueError):  # not there, a dangling link: nothing special to replace
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[Path], what: str = "output") -> None:
    """One error if any of ``outputs`` (files sfi would write, replace or delete) is one of ``inputs``, or is (or
    links to) a pipe, device or socket (``--report /dev/stdout``), which a rename would replace with a file, even
    with --force."""
    inputs = [Path(p) for p in inputs if p is not None]
    for output in outputs:
        if any(_special(look, output) for look in (os.lstat, os.stat)):
            raise SfiError(f"{what} '{output}' is not a regular file (a pipe, device or socket); sfi writes files "
                           f"and never replaces one of those: choose another {what} path")
        for source in inputs:
            if same_file(output, source):
                raise SfiError(f"{what} '{output}' is also an input ('{source}'); sfi never overwrites an input: "
                               f"choose another {what} path")


def require_writable_folder(folder: Path, what: str) -> None:
    """One error, before any work, if files cannot be made in ``folder`` (read-only or no permission)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SfiError(f"folder '{folder}' for {what} does not exist; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SfiError(f"cannot write to folder '{folder}' for {what}: it is read-only or you lack permission; "
                       f"choose another path")


def make_folder(folder: Path, what: str) -> Path:
    """``folder``, created if missing and checked writable."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SfiError(f"cannot create {what} '{folder}': {error.strerror}; choose another path") from None
    require_writable_folder(folder, what)
    return Path(folder)


@contextmanager
def writing(final: Path) -> Iterator[None]:
    """Around writing (or renaming onto) ``final``: a failure of the file system becomes one error naming it."""
    try:
        yield
    except OSError as error:
        raise SfiError(f"cannot write '{final}': {error.strerror or error}; check the folder and free space") from None


class Publication:
    """Results staged under temporary names and renamed onto their final names together.

    Used as a context manager: a clean exit publishes everything in the order staged, an
    error (or Ctrl-C, SIGTERM) deletes every staged temporary instead.
    ``retire`` names earlier results to delete once the new ones are in place (one that is a folder in the
    way of its replacement is set aside meanwhile, and put back if publishing fails).
    """

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []
        self.retired: list[Path] = []
        self.tidied: set[Path] = set()

    def stage(self, final: Path, *, folder: bool = False) -> Path:
        """A temporary path to write ``final`` under (an empty folder already made when ``folder``)."""
        final = Path(final)
        if final.parent not in self.tidied:
            remove_stale(final.parent)
            self.tidied.add(final.parent)
        temporary = temporary_path(final)
        _remove(temporary)
        if folder:
            with writing(final):
                temporary.mkdir()
        self.staged.append((temporary, final))
        return temporary

    def retire(self, path: Path) -> None:
        self.retired.append(Path(path))

    def publish(self) -> None:
        aside: list[tuple[Path, Path]] = []  # retired folders in the way of their replacements, and where they went
        try:
            for temporary, final in self.staged:
                with writing(final):
                    if final in self.retired and final.is_dir() and not final.is_symlink():
                        # an earlier result's folder (of frames) with the same name: set aside until the new one is in
                        aside.append((temporary_path(final.with_name(f"{final.name}-earlier")), final))
                        os.replace(final, aside[-1][0])
                    os.replace(temporary, final)  # never onto a folder with files: that fails, it deletes nothing
        except SfiError:
            for moved, final in aside:
                if not os.path.lexists(final):
                    os.replace(moved, final)
            self.discard()
            raise
        self.retired = [moved for moved, _ in aside] + [path for path in self.retired if path not in
                                                         {final for _, final in aside}]
        self.staged.clear()
        for path in self.retired:
            _remove(path)
        self.retired.clear()

    def discard(self) -> None:
        for temporary, _ in self.staged:
            _remove(temporary)
        self.staged.clear()
        self.retired.clear()

    def __enter__(self) -> "Publication":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def write_text(final: Path, text: str) -> None:
    """Publish a small text file (recipe, manifest) in one step."""
    with Publication() as results:
        temporary = results.stage(final)
        with writing(final):
            temporary.write_text(text, encoding="utf-8")


def lock_path(output: Path) -> Path:
    output = Path(output)
    return hidden_name(output, output.name, ".sfi-lock")


_held: dict[Path, int] = {}


def _claim(claim: Path, lock: Path) -> None:
    """Make ``lock`` hold ``claim``'s text, failing with FileExistsError if it exists: a hard link is atomic
    (never seen empty); file systems without hard links get an exclusive create instead."""
    try:
        os.link(claim, lock)
    except FileExistsError:
        raise
    except OSError:
        descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(claim.read_text())


def _read_owner(lock: Path) -> tuple[str, str, str]:
    """``(host, " ", pid)`` of a lock's holder; empty when it vanished meanwhile."""
    try:
        return lock.read_text(errors="replace").strip().partition(" ")
    except FileNotFoundError:
        return "", "", ""


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold the lock of ``output`` for the whole run: a second run to the same output is refused with
    the first one's pid and host; a lock left by a dead process of this machine is taken over.
    Re-entrant within one process (``fill`` holds it around detection and the render)."""
    lock = lock_path(output).absolute()
    require_writable_folder(lock.parent, "the output")
    if lock in _held:
        _held[lock] += 1
        try:
            yield
        finally:
            _held[lock] -= 1
        return
    claim = temporary_path(lock)
    try:
        claim.write_text(f"{_host()} {os.getpid()}\n")
        for attempt in itertools.count():
            try:
                _claim(claim, lock)
                break
            except FileExistsError:
                host, _, pid = _read_owner(lock)
                if (host == _host() and pid.isdigit() and not _running(int(pid))) or (not host and attempt > 100):
                    lock.unlink(missing_ok=True)  # its run was killed: take over
                    continue
                if not host:
                    time.sleep(0.01)  # vanished, or its owner is still writing its name
                else:
                    raise SfiError(f"output '{output}' is being written by another sfi run (pid {pid} on {host}); "
                                   f"wait for it to finish, or delete '{lock}' if that run is gone") from None
    except OSError as error:
        raise SfiError(f"cannot write next to output '{output}': {error.strerror}; choose another path") from None
    finally:
        claim.unlink(missing_ok=True)
    _held[lock] = 1
    try:
        yield
    finally:
        del _held[lock]
        lock.unlink(missing_ok=True)
