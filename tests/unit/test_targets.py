from __future__ import annotations

import math
from datetime import date
from itertools import pairwise

import pytest

from hnte.models.stages import PIPELINE, Stage, find_transition
from hnte.models.targets import (
    FORWARD_PATH,
    CityFigures,
    DistrictFigures,
    chance_of_certification,
    project,
    rank,
    rates_from_history,
    year_share,
)

# Round numbers so each expected value can be worked out by hand.
RATES = {
    "submitted": 1.0,
    "district_review": 0.9,
    "formal_check": 0.8,
    "expert_review": 0.5,
    "onsite_inspection": 0.6,
    "approval": 1.0,
    "public_notice": 0.9,
    "objection_review": 0.5,
}


def figures(**overrides: object) -> DistrictFigures:
    values: dict[str, object] = dict(
        code="370202",
        name="市南区",
        stock=400,
        start_stock=395,
        net_increase=5,
        new_recognitions=10,
        re_recognitions=20,
        expiring_unrenewed=7,
        pipeline={},
        projection=420.0,
        target_net=25,
        target_stock=420,
    )
    values.update(overrides)
    return DistrictFigures(**values)  # type: ignore[arg-type]


def test_forward_path_follows_the_stage_table() -> None:
    assert FORWARD_PATH == tuple(s.value for s in PIPELINE if s != Stage.OBJECTION_REVIEW)
    for source, target in pairwise(FORWARD_PATH):
        if target != "onsite_inspection":
            assert find_transition(Stage(source), Stage(target)) is not None
    assert find_transition(Stage.EXPERT_REVIEW, Stage.APPROVAL) is not None
    assert find_transition(Stage.PUBLIC_NOTICE, Stage.CERTIFIED) is not None
    assert find_transition(Stage.OBJECTION_REVIEW, Stage.PUBLIC_NOTICE) is not None


@pytest.mark.parametrize(
    ("as_of", "share"),
    [
        (date(2021, 1, 1), 1 / 365),
        (date(2021, 7, 2), 183 / 365),
        (date(2021, 12, 31), 1.0),
        (date(2024, 12, 31), 1.0),  # leap year: day 366 of 366
        (date(2024, 3, 1), 61 / 366),
    ],
)
def test_year_share_is_day_of_year_over_days_in_year(as_of: date, share: float) -> None:
    assert year_share(as_of) == pytest.approx(share)


@pytest.mark.parametrize(
    ("stage", "share", "chance"),
    [
        ("public_notice", 1.0, 0.9),
        ("approval", 1.0, 0.9),
        ("onsite_inspection", 1.0, 0.6 * 0.9),
        ("onsite_inspection", 0.2, 0.6 * 0.9),  # already selected: the share is moot
        ("expert_review", 1.0, 0.5 * 0.6 * 0.9),
        ("expert_review", 0.0, 0.5 * 0.9),  # nobody inspected: the step passes everyone
        ("expert_review", 0.25, 0.5 * (1 - 0.25 * 0.4) * 0.9),
        ("submitted", 1.0, 0.9 * 0.8 * 0.5 * 0.6 * 0.9),
        ("objection_review", 1.0, 0.5 * 0.9),
        ("certified", 1.0, 1.0),
        ("rejected", 1.0, 0.0),
        ("withdrawn", 1.0, 0.0),
    ],
)
def test_chance_of_certification_multiplies_the_rates_still_ahead(
    stage: str, share: float, chance: float
) -> None:
    assert chance_of_certification(stage, RATES, inspected_share=share) == pytest.approx(chance)


def test_chance_of_certification_refuses_an_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        chance_of_certification("lunch", RATES)


@pytest.mark.parametrize(
    ("stock", "pipeline", "unrenewed", "extra", "expected"),
    [
        (100, {}, 0, {}, 100.0),
        (100, {}, 7, {}, 93.0),
        (100, {"public_notice": 10}, 0, {}, 109.0),
        (100, {"public_notice": 10, "approval": 10}, 3, {}, 100 + 9 + 9 - 3),
        (100, {"objection_review": 2}, 0, {}, 100.9),
        # four of the ten in notice already hold a certificate: they renew in time
        (100, {"public_notice": 10}, 0, {"renewing": 4}, 100 + 9 - 4),
        # two already hold a certificate reaching past year end: they add nothing
        (100, {"public_notice": 10}, 0, {"covered": {"public_notice": 2}}, 100 + 8 * 0.9),
        (0, {"expert_review": 10}, 0, {"inspected_share": 0.0}, 10 * 0.5 * 0.9),
    ],
)
def test_project_adds_expected_certificates_and_takes_off_leavers(
    stock: int,
    pipeline: dict[str, int],
    unrenewed: int,
    extra: dict[str, object],
    expected: float,
) -> None:
    assert project(stock, pipeline, RATES, unrenewed, **extra) == pytest.approx(expected)  # type: ignore[arg-type]


def test_project_keeps_the_fraction() -> None:
    value = project(10, {"public_notice": 1}, RATES, 0)
    assert value == pytest.approx(10.9) and not float(value).is_integer()


def test_rates_from_history_need_30_exits_else_the_default_percent() -> None:
    defaults = {"approval": 98.0, "public_notice": 99.0, "expert_review": 70.0}
    table = rates_from_history(
        {"approval": (27, 30), "public_notice": (29, 29), "expert_review": (40, 50)},
        defaults,
        inspected=(10, 40),
    )
    assert table.rates == pytest.approx(
        {"approval": 0.9, "public_notice": 0.99, "expert_review": 0.8}
    )
    assert table.from_history == {
        "approval": True,
        "public_notice": False,
        "expert_review": True,
    }
    assert table.observed == {"approval": 30, "public_notice": 29, "expert_review": 50}
    assert table.inspected_share == pytest.approx(0.25) and table.inspected_from_history


def test_rates_from_history_without_history_are_the_defaults_and_everyone_inspected() -> None:
    table = rates_from_history({}, {"approval": 98.0}, inspected=(3, 10))
    assert table.rates == {"approval": pytest.approx(0.98)}
    assert table.inspected_share == 1.0 and not table.inspected_from_history


@pytest.mark.parametrize(
    ("target_stock", "projection", "gap", "behind"),
    [
        (420, 410.4, 9.6, True),
        (420, 420.0, 0.0, False),
        (420, 419.99, 0.01, True),
        (420, 431.0, -11.0, False),
        (0, 0.0, 0.0, False),
    ],
)
def test_gap_is_goal_minus_projection_and_behind_means_short(
    target_stock: int, projection: float, gap: float, behind: bool
) -> None:
    d = figures(target_stock=target_stock, projection=projection)
    assert d.gap == pytest.approx(gap)
    assert d.behind is behind


@pytest.mark.parametrize(
    ("net", "target", "progress"),
    [
        (5, 25, 20.0),
        (25, 25, 100.0),
        (30, 25, 120.0),
        (-5, 25, -20.0),
        (0, 0, 100.0),  # a zero target is met by holding the stock
        (3, 0, 100.0),
        (-1, 0, 0.0),
        (-4, -5, 100.0),  # a district allowed to shrink by 5
        (-6, -5, 0.0),
    ],
)
def test_progress_percent_against_the_target_net_increase(
    net: int, target: int, progress: float
) -> None:
    assert figures(net_increase=net, target_net=target).progress_percent == pytest.approx(progress)


# 2021-07-02 is day 183 of 365, so the share of the year is 0.50137; with a tolerance
# of 10 percent the bar is 40.137 percent of the target net increase.
@pytest.mark.parametrize(
    ("net", "target", "as_of", "tolerance", "late"),
    [
        (10, 25, date(2021, 7, 2), 10, True),  # 40.0% < 40.137%
        (11, 25, date(2021, 7, 2), 10, False),  # 44%
        (10, 25, date(2021, 7, 2), 11, False),  # bar 39.137%
        (0, 25, date(2021, 1, 31), 10, False),  # share 0.085 - 0.1 < 0: nobody late in January
        (-2, 25, date(2021, 1, 1), 10, False),  # -8% against a bar of -9.7%
        (-3, 25, date(2021, 2, 15), 10, True),  # share 0.126 - 0.1 > -0.12
        (24, 25, date(2021, 12, 31), 0, True),
        (25, 25, date(2021, 12, 31), 0, False),
        (0, 0, date(2021, 12, 31), 0, False),
        (-1, 0, date(2021, 2, 15), 10, True),
        (-1, 0, date(2021, 1, 31), 10, False),
    ],
)
def test_late_when_progress_trails_the_year_by_more_than_the_tolerance(
    net: int, target: int, as_of: date, tolerance: float, late: bool
) -> None:
    assert figures(net_increase=net, target_net=target).late(as_of, tolerance) is late


def test_rank_by_progress_descending_and_ties_by_name() -> None:
    rows = [
        figures(code="1", name="b", net_increase=10, target_net=20),  # 50%
        figures(code="2", name="a", net_increase=5, target_net=10),  # 50%
        figures(code="3", name="c", net_increase=30, target_net=20),  # 150%
        figures(code="4", name="d", net_increase=0, target_net=0),  # 100%
        figures(code="5", name="e", net_increase=-2, target_net=10),  # -20%
    ]
    assert [d.code for d in rank(rows)] == ["3", "4", "2", "1", "5"]


def test_city_figures_add_up_the_districts_and_take_the_city_target() -> None:
    a = figures(
        code="1",
        stock=10,
        start_stock=8,
        net_increase=2,
        pipeline={"approval": 2, "submitted": 1},
        projection=11.5,
        target_net=3,
        target_stock=11,
        expiring_ahead=1,
        renewing=2,
    )
    b = figures(
        code="2",
        stock=20,
        start_stock=21,
        net_increase=-1,
        pipeline={"approval": 1},
        projection=22.25,
        target_net=4,
        target_stock=25,
    )
    city = CityFigures.aggregate([a, b], year=2021, as_of=date(2021, 6, 30), name="青岛市")
    total = city.total
    assert (total.code, total.name) == ("city", "青岛市")
    assert (total.stock, total.start_stock, total.net_increase) == (30, 29, 1)
    assert total.pipeline == {"approval": 3, "submitted": 1}
    assert total.pipeline_total == 4
    assert math.isclose(total.projection, 33.75)
    assert (total.target_net, total.target_stock) == (7, 36)
    assert (total.expiring_ahead, total.renewing) == (1, 2)
    assert total.gap == pytest.approx(2.25) and total.behind
    assert [d.code for d in city.ranked()] == ["1", "2"]

    own = CityFigures.aggregate([a, b], year=2021, as_of=date(2021, 6, 30), target_stock=30)
    assert own.total.target_stock == 30 and not own.total.behind
