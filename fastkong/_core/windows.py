"""Calendar-aligned fixed windows, as Kong's rate-limiting plugin counts them (UTC).

Kong (``kong/tools/timestamp.lua`` ``get_timestamps``) starts each window at the beginning of the
current UTC second, minute, hour, day, month or year; the counter key carries that start. The
arithmetic here is integer-only (civil-date conversion after Howard Hinnant's ``days_from_civil``)
so it is exact for any timestamp, including before 1970, and needs no ``datetime`` object.

:data:`PERIOD_SECONDS` is Kong's TTL table (``EXPIRATION`` in ``rate-limiting/handler.lua``): a
month is 30 days and a year 365, whatever the calendar says. Kong uses it for the counter's TTL and
for ``RateLimit-Reset``. A counter must live until its calendar window ends, which for a 31-day
month or a leap year is longer: :func:`window_length` gives that true length.
"""

from __future__ import annotations

import math

__all__ = ["PERIODS", "PERIOD_SECONDS", "window_length", "window_start"]

PERIOD_SECONDS: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 2592000,
    "year": 31536000,
}
PERIODS: tuple[str, ...] = tuple(PERIOD_SECONDS)

_DAY = 86400
_FIXED = {"second": 1, "minute": 60, "hour": 3600, "day": _DAY}


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int]:
    """(year, month) of day number ``z`` (days since 1970-01-01)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m


def window_start(period: str, now_s: float) -> int:
    """Start, in whole UTC seconds since the epoch, of the ``period`` window holding ``now_s``.

    Parameters
    ----------
    period:
        ``second``, ``minute``, ``hour``, ``day``, ``month`` or ``year``.
    now_s:
        The clock, in seconds since the epoch (``time.time()``); never read here.
    """
    s = math.floor(now_s)
    step = _FIXED.get(period)
    if step is not None:
        return s - s % step
    if period == "month":
        y, m = _civil_from_days(s // _DAY)
        return _days_from_civil(y, m, 1) * _DAY
    if period == "year":
        y, _ = _civil_from_days(s // _DAY)
        return _days_from_civil(y, 1, 1) * _DAY
    raise ValueError(f"unknown rate-limiting period {period!r}; expected one of {PERIODS}")


def window_length(period: str, start_s: int) -> int:
    """Seconds from ``start_s`` (a :func:`window_start`) to the start of the next window.

    Equal to :data:`PERIOD_SECONDS` except for months (28 to 31 days) and leap years. This is the
    ``ttl`` to give ``CounterTable.hit_windows``, so a counter lives exactly as long as its window.
    """
    step = _FIXED.get(period)
    if step is not None:
        return step
    day = start_s // _DAY
    if period == "month":
        y, m = _civil_from_days(day)
        nxt = _days_from_civil(y + 1, 1, 1) if m == 12 else _days_from_civil(y, m + 1, 1)
        return (nxt - day) * _DAY
    if period == "year":
        y, _ = _civil_from_days(day)
        return (_days_from_civil(y + 1, 1, 1) - day) * _DAY
    raise ValueError(f"unknown rate-limiting period {period!r}; expected one of {PERIODS}")
