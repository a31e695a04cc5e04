"""The ``sfi`` command: a thin Click layer over the library in ``sfi_cli``.

Only Click and the standard library are imported at start-up; engines, numpy and
media code load inside the commands, so ``sfi --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from engines.errors import EngineError
from sfi_cli import __version__
from sfi_cli.errors import SfiError

class Context:
    """What every command needs: the validated config and how to report progress."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._file_config = None

    @property
    def config(self):
        """The config file's settings (read once) with the running command's keyed flags laid over them."""
        from sfi_cli.config import load_config
        from sfi_cli.config.options import flag_values

        if self._file_config is None:
            self._file_config = load_config(self.config_path)
        return self._file_config.with_flags(flag_values(click.get_current_context()))

    def ffmpeg(self) -> str:
        from sfi_cli.media.ffmpeg import find_ffmpeg

        return find_ffmpeg(self.config["ffmpeg"] or None)

    @staticmethod
    def reporter(quiet: bool, machine_output: bool):
        from sfi_cli.progress import Reporter

        # With --json, stdout carries only the summary: progress goes to stderr as lines.
        return Reporter(quiet=quiet, interactive=False if machine_output else None)


def option_group(*options):
    """One decorator for options several commands share, applied so they show in ``--help`` in the order given."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sfi")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: ./sfi.toml, then the user config folder).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Fill the gap between two frames with generated in-between video."""
    ctx.obj = Context(config_path)


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP, raised where the program is, so every cleanup (``except BaseException``,
    ``finally``) runs; not a KeyboardInterrupt, which Click would turn into an Abort with a blank line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


@contextlib.contextmanager
def signals_as_interrupts():
    """While a command runs, SIGTERM and SIGHUP (a farm stopping a job, a closed terminal) stop it as Ctrl-C
    does: partial output deleted, finished gaps kept, exit 128 + the signal's number. The previous handlers
    come back afterwards."""
    import signal

    def stop(signum, frame):
        for number in wanted:  # cleanup is not interrupted by a second signal
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signum)

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    try:
        previous = {number: signal.signal(number, stop) for number in wanted}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit."""
    try:
        with signals_as_interrupts():
            cli.main(args=argv, prog_name="sfi", standalone_mode=False)
    except Interrupted as stopped:
        click.echo("sfi: interrupted", err=True)
        sys.exit(stopped.exit_code)
    except (SfiError, EngineError) as error:
        click.echo(f"sfi: error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        command = f" {error.ctx.info_name}" if getattr(error, "ctx", None) and error.ctx.parent else ""
        click.echo(f"sfi{command}: error: {error.format_message()} (see 'sfi{command} --help')", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("sfi: interrupted", err=True)
        sys.exit(130)
    except OSError as error:  # what sfi's own writers do not name: printing to a full disk (>/dev/full), ...
        where = f" ({error.filename})" if error.filename else ""
        with contextlib.suppress(OSError):
            click.echo(f"sfi: error: cannot write{where}: {error.strerror or error}; choose another path, or check "
                       f"free space and where output is redirected", err=True)
        sys.exit(1)


# The commands register themselves on ``cli``.
from sfi_cli.commands import calibrate, doctor, evaluate, interpolate, precompile, timeline  # noqa: E402,F401
