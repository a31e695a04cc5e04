"""``sfi doctor``: is everything SemFi (or rife) needs here, and if not, the one thing to do about it.

The engine's checks come from its ``diagnose`` (thorough): the same checks, in the same order,
whose first failure is the reason ``--engine semfi`` (``rife``) and ``auto`` give. Doctor adds what
every run needs besides the engine (ffmpeg) and prints them. Each check is ok, warn (works, but
note this) or FAIL (SemFi will not run) with a fix.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from typing import Any

from engines.base import Check
from sfi_cli.errors import SfiError


def check_ffmpeg(configured: str) -> list[Check]:
    from sfi_cli.media.ffmpeg import find_ffmpeg

    try:
        exe = find_ffmpeg(configured or None)
        answer = subprocess.run([exe, "-version"], capture_output=True, text=True, errors="replace", timeout=30)
    except SfiError as error:
        return [Check("fail", "ffmpeg", str(error), "install ffmpeg or clear the 'ffmpeg' key")]
    except (OSError, subprocess.SubprocessError) as error:
        return [Check("fail", "ffmpeg", f"cannot run it ({error})", "install a working ffmpeg or clear the 'ffmpeg' key")]
    version = next(iter(answer.stdout.splitlines()), "")
    if answer.returncode != 0 or not version.startswith("ffmpeg version"):
        return [Check("fail", "ffmpeg", f"{exe} is not ffmpeg ('-version' gave exit {answer.returncode}: "
                                        f"'{version or 'no output'}')", "install a working ffmpeg or clear the 'ffmpeg' key")]
    return [Check("ok", "ffmpeg", f"{exe} ({version})")]


DISPLAY_NAMES = {"semfi": "SemFi", "rife": "RIFE"}


def run_checks(settings: dict[str, Any], ffmpeg: str, engine: str = "semfi") -> list[Check]:
    """Every check for ``engine``'s ``[engines.<engine>]`` ``settings`` and the configured ffmpeg."""
    from engines import engine_class

    return engine_class(engine).diagnose(settings, thorough=True) + check_ffmpeg(ffmpeg)


def report(checks: list[Check], engine: str = "semfi") -> str:
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper() if check.failed else check.status:5s} {check.item}: {check.detail}")
        if check.fix:
            lines.append(f"      -> {check.fix}")
    failed = sum(c.failed for c in checks)
    name = DISPLAY_NAMES[engine]
    lines.append(f"{name} is ready." if not failed else f"{failed} problem(s): {name} cannot run until they are fixed.")
    return "\n".join(lines)


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
