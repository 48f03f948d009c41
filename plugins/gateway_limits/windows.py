"""Budget windows: the id and the end of the window a moment falls in.

Calendar windows are UTC (``day`` → ``YYYY-MM-DD``, ``week`` → the ISO Monday's date,
``month`` → ``YYYY-MM``); a duration window (``6h``) is ``floor(epoch / seconds)``. The arithmetic
is the integer days-from-civil algorithm, the same one the Redis script runs in Lua, so that a
replica's memory limiter and the shared one name and end windows identically.
"""

from __future__ import annotations

import math

from gateway.governance.records import window_seconds

DAY_S = 86_400


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of the proleptic Gregorian date ``y-m-d``."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """The date ``(y, m, d)`` that is ``z`` days after 1970-01-01."""
    z += 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return y + (m <= 2), m, d


def window_at(window: str, now: float) -> tuple[str, float]:
    """The id of the ``window`` that ``now`` (Unix seconds) falls in, and when it ends.

    Raises:
        ValueError: not a budget window (see :func:`gateway.governance.records.window_seconds`).
    """
    seconds = window_seconds(window)
    if seconds is not None:
        index = math.floor(now / seconds)
        return str(index), float((index + 1) * seconds)
    days = math.floor(now / DAY_S)
    if window == "day":
        y, m, d = civil_from_days(days)
        return f"{y:04d}-{m:02d}-{d:02d}", float((days + 1) * DAY_S)
    if window == "week":
        monday = days - (days + 3) % 7  # 1970-01-01 was a Thursday
        y, m, d = civil_from_days(monday)
        return f"{y:04d}-{m:02d}-{d:02d}", float((monday + 7) * DAY_S)
    y, m, _ = civil_from_days(days)  # month
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return f"{y:04d}-{m:02d}", float(days_from_civil(ny, nm, 1) * DAY_S)
