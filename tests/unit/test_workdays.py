from __future__ import annotations

from datetime import date, datetime

import pytest

from hnte.models.workdays import (
    add_workdays,
    is_workday,
    notice_end,
    workdays_before,
    workdays_between,
)

D = date


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2021, 9, 24), True),  # Friday
        (D(2021, 9, 25), False),  # Saturday
        (D(2021, 9, 26), True),  # Sunday, swapped workday for National Day
        (D(2021, 10, 1), False),  # National Day
        (D(2021, 10, 7), False),  # last day of the holiday (a Thursday)
        (D(2021, 10, 8), True),  # Friday
        (D(2021, 10, 9), True),  # Saturday, swapped workday
        (D(2021, 10, 10), False),  # Sunday
        (D(2021, 2, 7), True),  # Sunday, swapped workday before Spring Festival
        (D(2021, 2, 11), False),  # Spring Festival eve (Thursday)
        (D(2021, 2, 17), False),  # last day of the Spring Festival holiday (Wednesday)
        (D(2021, 2, 20), True),  # Saturday, swapped workday
        (D(2021, 3, 3), True),  # plain Wednesday
    ],
)
def test_is_workday_follows_the_2021_calendar(day: date, expected: bool) -> None:
    assert is_workday(day) is expected


def test_year_outside_the_installed_calendar_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"不含 1999 年.*does not cover 1999"):
        is_workday(D(1999, 6, 1))


def test_datetime_is_refused() -> None:
    with pytest.raises(TypeError):
        is_workday(datetime(2021, 9, 24, 12))


@pytest.mark.parametrize(
    ("opened_on", "days", "end"),
    [
        # National Day 2021: Sep 23, 24, 26 (swapped Sunday), 27, 28, 29, 30,
        # Oct 1–7 holiday, Oct 8, 9 (swapped Saturday), 11 → the 10th day is Oct 11.
        (D(2021, 9, 23), 10, D(2021, 10, 11)),
        # Opened on the holiday: starts Oct 8; Oct 8, 9, 11, 12, 13, 14, 15, 18, 19, 20.
        (D(2021, 10, 3), 10, D(2021, 10, 20)),
        # Spring Festival 2021: Feb 8, 9, 10, holiday Feb 11–17, Feb 18, 19,
        # 20 (swapped Saturday), 22, 23, 24, 25 → Feb 25.
        (D(2021, 2, 8), 10, D(2021, 2, 25)),
        # Opened Saturday Feb 6 (not a workday): starts Sunday Feb 7 (swapped workday):
        # Feb 7, 8, 9, 10, 18, 19, 20, 22, 23, 24 → Feb 24.
        (D(2021, 2, 6), 10, D(2021, 2, 24)),
        # A plain fortnight: Mon Mar 1 … Fri Mar 5, Mon Mar 8 … Fri Mar 12.
        (D(2021, 3, 1), 10, D(2021, 3, 12)),
        # Opened Saturday Mar 6: Mar 8–12, 15–19 → Mar 19.
        (D(2021, 3, 6), 10, D(2021, 3, 19)),
        (D(2021, 3, 3), 1, D(2021, 3, 3)),
        (D(2021, 3, 6), 1, D(2021, 3, 8)),
    ],
)
def test_notice_end_counts_working_days_from_opening(opened_on: date, days: int, end: date) -> None:
    assert notice_end(opened_on, days) == end


def test_notice_end_defaults_to_ten_working_days() -> None:
    assert notice_end(D(2021, 9, 23)) == D(2021, 10, 11)


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (D(2021, 3, 1), 0, D(2021, 3, 1)),
        (D(2021, 3, 1), 1, D(2021, 3, 2)),
        (D(2021, 3, 5), 1, D(2021, 3, 8)),  # Friday → Monday
        (D(2021, 3, 1), 5, D(2021, 3, 8)),
        (D(2021, 9, 24), 1, D(2021, 9, 26)),  # Friday → swapped Sunday
        (D(2021, 9, 30), 1, D(2021, 10, 8)),  # over the National Day holiday
        (D(2021, 10, 8), 1, D(2021, 10, 9)),  # swapped Saturday
        (D(2021, 10, 9), 1, D(2021, 10, 11)),
        (D(2021, 2, 10), 1, D(2021, 2, 18)),  # over Spring Festival
        (D(2021, 10, 2), 1, D(2021, 10, 8)),  # from inside the holiday
    ],
)
def test_add_workdays_skips_holidays_and_counts_swapped_days(
    start: date, n: int, expected: date
) -> None:
    assert add_workdays(start, n) == expected


@pytest.mark.parametrize(
    ("deadline", "n", "expected"),
    [
        (D(2021, 3, 12), 0, D(2021, 3, 12)),
        (D(2021, 3, 12), 5, D(2021, 3, 5)),
        (D(2021, 3, 8), 1, D(2021, 3, 5)),  # Monday → Friday
        (D(2021, 10, 8), 1, D(2021, 9, 30)),  # back over National Day
        (D(2021, 10, 11), 2, D(2021, 10, 8)),  # Oct 9 (swapped Saturday) counts
        (D(2021, 9, 27), 1, D(2021, 9, 26)),  # swapped Sunday
        (D(2021, 2, 18), 1, D(2021, 2, 10)),  # back over Spring Festival
        # Feb 24, 23, 22, 20 (swapped Saturday), 19, 18, holiday Feb 11–17, 10, 9, 8, 7.
        (D(2021, 2, 25), 10, D(2021, 2, 7)),
    ],
)
def test_workdays_before(deadline: date, n: int, expected: date) -> None:
    assert workdays_before(deadline, n) == expected


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        (D(2021, 3, 1), D(2021, 3, 1), 0),
        (D(2021, 3, 1), D(2021, 3, 8), 5),  # Tue–Fri + Mon; start excluded, end included
        (D(2021, 3, 5), D(2021, 3, 7), 0),  # weekend only
        (D(2021, 9, 30), D(2021, 10, 7), 0),  # the whole National Day holiday
        (D(2021, 9, 22), D(2021, 10, 11), 10),  # Sep 23 … Oct 11 (the notice above)
        (D(2021, 2, 10), D(2021, 2, 21), 3),  # Feb 18, 19, 20
        (D(2021, 3, 8), D(2021, 3, 1), -5),
    ],
)
def test_workdays_between_counts_half_open_interval(start: date, end: date, count: int) -> None:
    assert workdays_between(start, end) == count


@pytest.mark.parametrize("n", [1, 3, 10, 30])
def test_add_and_before_are_inverse_on_workdays(n: int) -> None:
    for start in (D(2021, 9, 23), D(2021, 2, 8), D(2021, 10, 9)):
        forward = add_workdays(start, n)
        assert workdays_before(forward, n) == start
        assert workdays_between(start, forward) == n


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        add_workdays(D(2021, 3, 1), -1)
    with pytest.raises(ValueError):
        workdays_before(D(2021, 3, 1), -1)
    with pytest.raises(ValueError):
        notice_end(D(2021, 3, 1), 0)
