"""The two time formats of Lead Intake: records show ISO-8601 UTC with milliseconds, and every
place that reads a time from a person (admin API parameters, ``lead-intake replay --since``)
reads it with :func:`parse_time`."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

MAX_TIME = 1e11
"""Unix seconds beyond this (the year 5138) are taken for a mistake (milliseconds?)."""

_UNIX = re.compile(r"^\d{1,12}(\.\d{1,9})?$")
# ``+02:00`` written unencoded in a URL arrives as `` 02:00``: put the plus back.
_OFFSET_AS_SPACE = re.compile(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")

_SECONDS: dict[int, str] = {}


def iso(ts: float) -> str:
    """Unix seconds → ISO-8601 UTC with milliseconds, the one time format of records.

    The same text as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")``
    with ``Z``, at a third of the cost: the whole second's text is kept for the few seconds
    in use (every history event of every submission formats a time)."""
    if ts < 0:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    fraction, whole = math.modf(ts)
    second = int(whole)
    micros = round(fraction * 1e6)  # rounded to microseconds first, as datetime does
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    text = _SECONDS.get(second)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        if len(_SECONDS) >= 8:
            _SECONDS.clear()
        _SECONDS[second] = text
    return f"{text}.{micros // 1000:03d}Z"


class BadTime(ValueError):
    """A time that cannot be read; the message says what is accepted."""


NOT_A_TIME = "not a time: give ISO-8601 (2024-05-01T12:00:00Z) or unix seconds"
OUT_OF_RANGE = "out of range: unix seconds (not milliseconds) from 1970 on"


def parse_time(value: object) -> float:
    """An ISO-8601 time (UTC when it names no offset) or unix seconds → unix seconds.

    Raises :class:`BadTime` for anything else, for non-finite values and for times before 1970
    or past :data:`MAX_TIME`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadTime(NOT_A_TIME)
    if isinstance(value, str):
        text = value.strip()
        if _UNIX.match(text):
            seconds = float(text)
        else:
            try:
                when = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"\1+\2", text))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = when.timestamp()
            except (ValueError, OverflowError, OSError):
                raise BadTime(NOT_A_TIME) from None
    else:
        try:
            seconds = float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            seconds = math.inf
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIME:
        raise BadTime(OUT_OF_RANGE)
    return seconds
