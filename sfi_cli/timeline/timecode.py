"""Positions in a clip as editors write them, and back.

A position is a frame count (``120`` or ``"120f"``), seconds (``2.5`` or ``"2.5s"``),
a clock time (``"00:01:02.500"``, ``"01:02.5"``) or an SMPTE timecode
(``"00:00:04:12"``; ``;`` before the frames means drop-frame, as NLEs show 29.97 fps).
Timecodes count from the clip's first frame (00:00:00:00), not from a start
timecode stored in the file. Parsing checks the syntax alone; turning a position
into a frame number needs the clip's frame rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sfi_cli.errors import SfiError

_SMPTE = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)([:;])(\d+)$")
_CLOCK = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]?\d(?:\.\d+)?)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)\s*s$")
_FRAMES = re.compile(r"^(\d+)\s*f?$")

POSITION_HELP = "frames (120 or \"120f\"), seconds (2.5 or \"2.5s\"), a clock time (\"00:01:02.5\") or a timecode (\"00:00:04:12\")"


@dataclass(frozen=True)
class Position:
    """A parsed position: exactly one of ``frames``, ``seconds`` or ``timecode`` is set."""

    text: str
    frames: int | None = None
    seconds: Fraction | None = None
    timecode: tuple[int, int, int, int, bool] | None = None  # hours, minutes, seconds, frames, drop-frame

    def to_frames(self, rate: Fraction) -> int:
        """The frame number at ``rate`` (seconds round to the nearest frame)."""
        if self.frames is not None:
            return self.frames
        if self.seconds is not None:
            return round(self.seconds * rate)
        hours, minutes, seconds, frames, drop = self.timecode
        nominal = round(rate)
        if frames >= nominal:
            raise SfiError(f"bad timecode '{self.text}': frame part {frames} must be below {nominal} at {format_rate(rate)} fps")
        total_minutes = hours * 60 + minutes
        count = (total_minutes * 60 + seconds) * nominal + frames
        if drop:
            dropped = drop_frames_per_minute(rate)
            count -= dropped * (total_minutes - total_minutes // 10)
        return count


def parse_position(value: int | float | str) -> Position:
    """Parse a position from a recipe or the command line; SfiError names what is accepted."""
    if isinstance(value, bool):
        raise SfiError(f"bad position {value!r}: use {POSITION_HELP}")
    if isinstance(value, int):
        if value < 0:
            raise SfiError(f"bad position {value}: frame numbers cannot be negative")
        return Position(str(value), frames=value)
    if isinstance(value, float):
        if not 0 <= value < float("inf"):
            raise SfiError(f"bad position {value}: seconds must be a finite number, 0 or more")
        return Position(str(value), seconds=Fraction(str(value)))
    text = str(value).strip()
    if match := _FRAMES.match(text):
        return Position(text, frames=int(match.group(1)))
    if match := _SECONDS.match(text):
        return Position(text, seconds=Fraction(match.group(1)))
    if match := _SMPTE.match(text):
        hours, minutes, seconds, separator, frames = match.groups()
        return Position(text, timecode=(int(hours), int(minutes), int(seconds), int(frames), separator == ";"))
    if match := _CLOCK.match(text):
        hours, minutes, seconds = match.groups()
        total = Fraction(int(hours or 0) * 3600 + int(minutes) * 60) + Fraction(seconds)
        return Position(text, seconds=total)
    raise SfiError(f"bad timecode '{text}': use {POSITION_HELP}")


def drop_frames_per_minute(rate: Fraction) -> int:
    """Frame numbers skipped each minute (except every tenth) in drop-frame timecode: 2 at 29.97, 4 at 59.94."""
    nominal = round(rate)
    if rate.denominator == 1 or nominal % 30:
        raise SfiError(f"drop-frame timecode (';') only exists for 29.97 and 59.94 fps, not {format_rate(rate)}")
    return nominal // 15


def uses_drop_frame(rate: Fraction) -> bool:
    return rate.denominator == 1001 and round(rate) % 30 == 0


def format_timecode(frame: int, rate: Fraction) -> str:
    """SMPTE timecode of ``frame`` counted from 00:00:00:00 (drop-frame at 29.97/59.94)."""
    nominal = round(rate)
    if uses_drop_frame(rate):
        dropped = drop_frames_per_minute(rate)
        per_ten_minutes = nominal * 600 - dropped * 9
        per_minute = nominal * 60 - dropped
        tens, rest = divmod(frame, per_ten_minutes)
        frame += dropped * 9 * tens + (dropped * ((rest - dropped) // per_minute) if rest > dropped else 0)
    seconds, frames = divmod(frame, nominal)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    separator = ";" if uses_drop_frame(rate) else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def format_rate(rate: Fraction) -> str:
    """``24`` or ``30000/1001``, with the decimal value for rates that are not whole."""
    if rate.denominator == 1:
        return str(rate.numerator)
    return f"{rate.numerator}/{rate.denominator} ({float(rate):.3f})"
