"""Working days on the Chinese calendar (holidays and swapped workdays, 调休).

Business dates are Asia/Shanghai calendar dates; a ``datetime`` is refused rather than
silently truncated, because a UTC timestamp can fall on the previous Shanghai day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import chinese_calendar

_DAY = timedelta(days=1)


def is_workday(d: date) -> bool:
    """True on a Chinese working day (weekdays not on holiday, plus swapped weekend days)."""
    if isinstance(d, datetime):
        raise TypeError(f"expected a date in Asia/Shanghai, got a datetime {d!r}")
    return _is_workday(d)


@lru_cache(maxsize=8192)  # the calendar is fixed per installed release; lookups are slow
def _is_workday(d: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError as e:
        raise ValueError(
            f"已安装的节假日日历不含 {d.year} 年，请升级 chinesecalendar。"
            f" / The installed Chinese holiday calendar does not cover {d.year}; "
            f"upgrade chinesecalendar. ({e})"
        ) from e


def add_workdays(start: date, n: int) -> date:
    """The n-th working day after start (start itself not counted); n=0 gives start."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}; use workdays_before to go back")
    d = start
    while n:
        d += _DAY
        if is_workday(d):
            n -= 1
    return d


def workdays_before(deadline: date, n: int) -> date:
    """The n-th working day before deadline (deadline itself not counted); n=0 gives it."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}; use add_workdays to go forward")
    d = deadline
    while n:
        d -= _DAY
        if is_workday(d):
            n -= 1
    return d


def notice_end(opened_on: date, working_days: int = 10) -> date:
    """Last day of a public notice (公示) of working_days working days.

    The opening day counts when it is a working day; otherwise the notice starts on the
    next working day.
    """
    if working_days < 1:
        raise ValueError(f"a notice runs at least 1 working day, got {working_days}")
    first = opened_on if is_workday(opened_on) else add_workdays(opened_on, 1)
    return add_workdays(first, working_days - 1)


def workdays_between(start: date, end: date) -> int:
    """Working days in (start, end]; negative (days in (end, start]) when end < start."""
    if end < start:
        return -workdays_between(end, start)
    count = 0
    d = start
    while d < end:
        d += _DAY
        count += is_workday(d)
    return count
