from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from hnte.models.eligibility import (
    RULE_CODES,
    Figures,
    RuleResult,
    check_field,
    check_hightech_revenue,
    check_incident,
    check_ip,
    check_rd,
    check_registration,
    check_score,
    check_staff,
    failed_reasons,
    formal_check,
    rd_threshold_percent,
)
from hnte.models.enums import TechField

CNY = 100  # fen
MILLION = 1_000_000 * CNY

PASSING = Figures(
    registered_on=date(2015, 3, 1),
    applied_on=date(2021, 5, 1),
    tech_field=TechField.ELECTRONIC_INFORMATION.value,
    staff_total=100,
    staff_tech=20,
    revenue_fen=(10 * MILLION, 8 * MILLION, 6 * MILLION),
    rd_fen=(1 * MILLION, 8 * MILLION // 10, 6 * MILLION // 10),
    rd_domestic_fen=2 * MILLION,
    hightech_revenue_fen=8 * MILLION,
    ip_class1=1,
    ip_class2=5,
    major_incident=False,
)

FAILING_EVERYTHING = replace(
    PASSING,
    registered_on=PASSING.applied_on,
    tech_field="人工智能",
    staff_tech=1,
    rd_fen=(0, 0, 0),
    rd_domestic_fen=0,
    hightech_revenue_fen=0,
    ip_class1=0,
    ip_class2=0,
    major_incident=True,
)


def figures(**changes: Any) -> Figures:
    return replace(PASSING, **changes)


def test_the_baseline_figures_pass_every_formal_rule() -> None:
    assert all(r.passed for r in formal_check(PASSING))


# R1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered_on", "applied_on", "passed"),
    [
        pytest.param(date(2020, 5, 1), date(2021, 5, 1), True, id="exactly-one-year"),
        pytest.param(date(2020, 5, 2), date(2021, 5, 1), False, id="one-day-short"),
        pytest.param(date(2010, 1, 1), date(2021, 5, 1), True, id="long-established"),
        pytest.param(date(2021, 6, 1), date(2021, 5, 1), False, id="registered-after-applying"),
        pytest.param(date(2020, 2, 29), date(2021, 2, 28), False, id="feb29-reg-day-before"),
        pytest.param(date(2020, 2, 29), date(2021, 3, 1), True, id="feb29-reg-march-first"),
        pytest.param(date(2023, 2, 28), date(2024, 2, 29), True, id="feb29-applied-feb28-reg"),
        pytest.param(date(2023, 3, 1), date(2024, 2, 29), False, id="feb29-applied-mar1-reg"),
    ],
)
def test_registration_needs_one_calendar_year_before_applying(
    registered_on: date, applied_on: date, passed: bool
) -> None:
    result = check_registration(figures(registered_on=registered_on, applied_on=applied_on))
    assert result.code == "R1_REGISTRATION"
    assert result.passed is passed
    assert registered_on.isoformat() in result.reason_zh
    assert ("不满一年" in result.reason_zh) is not passed


# R2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class1", "class2", "passed"),
    [
        pytest.param(0, 0, False, id="no-ip"),
        pytest.param(1, 0, True, id="one-class1"),
        pytest.param(0, 1, True, id="one-class2"),
    ],
)
def test_ip_needs_at_least_one_class1_or_class2_right(
    class1: int, class2: int, passed: bool
) -> None:
    result = check_ip(figures(ip_class1=class1, ip_class2=class2))
    assert (result.code, result.passed) == ("R2_IP", passed)


# R3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [pytest.param(f.value, id=f.name) for f in TechField])
def test_each_national_key_field_passes(field: str) -> None:
    assert check_field(figures(tech_field=field)).passed


@pytest.mark.parametrize(
    "field",
    [
        pytest.param("人工智能", id="unknown-chinese"),
        pytest.param("ELECTRONIC_INFORMATION", id="enum-name-not-value"),
        pytest.param("", id="empty"),
        pytest.param("电子信息 ", id="trailing-space"),
    ],
)
def test_unknown_field_fails_and_names_the_field(field: str) -> None:
    result = check_field(figures(tech_field=field))
    assert (result.code, result.passed) == ("R3_FIELD", False)
    assert f"「{field}」" in result.reason_zh


# R4 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("staff_total", "staff_tech", "passed"),
    [
        pytest.param(100, 10, True, id="exactly-10pct"),
        pytest.param(100, 9, False, id="9pct"),
        pytest.param(1000, 99, False, id="9.9pct-just-below"),
        pytest.param(7, 1, True, id="14.28pct"),
        pytest.param(11, 1, False, id="9.09pct"),
        pytest.param(0, 0, False, id="no-staff"),
        pytest.param(10, 11, False, id="more-tech-than-total"),
        pytest.param(10, -1, False, id="negative-tech"),
    ],
)
def test_tech_staff_must_be_at_least_a_tenth_of_all_staff(
    staff_total: int, staff_tech: int, passed: bool
) -> None:
    result = check_staff(figures(staff_total=staff_total, staff_tech=staff_tech))
    assert (result.code, result.passed) == ("R4_STAFF", passed)


def test_staff_reason_shows_the_share_with_two_decimals() -> None:
    result = check_staff(figures(staff_total=1000, staff_tech=99))
    assert result.reason_zh == "科技人员占职工总数 9.90%，低于 10%"


# R5: thresholds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent_revenue_fen", "percent"),
    [
        pytest.param(0, 5, id="zero"),
        pytest.param(50 * MILLION, 5, id="exactly-50M"),
        pytest.param(50 * MILLION + 1, 4, id="50M-and-one-fen"),
        pytest.param(200 * MILLION, 4, id="exactly-200M"),
        pytest.param(200 * MILLION + 1, 3, id="200M-and-one-fen"),
        pytest.param(10_000 * MILLION, 3, id="10-billion"),
    ],
)
def test_rd_threshold_follows_most_recent_revenue_tier(
    recent_revenue_fen: int, percent: int
) -> None:
    assert rd_threshold_percent(recent_revenue_fen) == percent


# R5: ratio ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revenue_fen", "rd_fen", "passed"),
    [
        # ≤ 50M -> 5%
        pytest.param((10 * MILLION,), (500_000 * CNY,), True, id="1y-5.00pct-passes"),
        pytest.param((10 * MILLION,), (499_000 * CNY,), False, id="1y-4.99pct-fails"),
        pytest.param((10 * MILLION,), (500_000 * CNY - 1,), False, id="1y-one-fen-short"),
        pytest.param((50 * MILLION,), (2_500_000 * CNY,), True, id="50M-at-5pct"),
        pytest.param((50 * MILLION,), (2_000_000 * CNY,), False, id="50M-at-4pct-fails"),
        # (50M, 200M] -> 4%
        pytest.param((50 * MILLION + 1,), (2 * MILLION + 1,), True, id="50M+1fen-at-4pct"),
        pytest.param((50 * MILLION + 1,), (2 * MILLION,), False, id="50M+1fen-below-4pct"),
        pytest.param((200 * MILLION,), (8 * MILLION,), True, id="200M-at-4pct"),
        pytest.param((200 * MILLION,), (6 * MILLION,), False, id="200M-at-3pct-fails"),
        # > 200M -> 3%
        pytest.param((200 * MILLION + 100,), (6 * MILLION + 3,), True, id="200M+-at-3pct"),
        pytest.param((200 * MILLION + 100,), (6 * MILLION + 2,), False, id="200M+-below-3pct"),
        # 2 years: ratio on the sums
        pytest.param(
            (30 * MILLION, 10 * MILLION), (1 * MILLION, 1 * MILLION), True, id="2y-5.00pct"
        ),
        pytest.param(
            (30 * MILLION, 10 * MILLION), (1 * MILLION, 1 * MILLION - 1), False, id="2y-short"
        ),
        # 3 years: tier from the most recent year, ratio on the sums
        pytest.param(
            (60 * MILLION, 40 * MILLION, 20 * MILLION),
            (500_000 * CNY, 2 * MILLION, 2_300_000 * CNY),
            True,
            id="3y-4.00pct-in-4pct-tier",
        ),
        pytest.param(
            (60 * MILLION, 40 * MILLION, 20 * MILLION),
            (500_000 * CNY, 2 * MILLION, 2_300_000 * CNY - 1),
            False,
            id="3y-one-fen-short",
        ),
        pytest.param(
            (40 * MILLION, 300 * MILLION, 300 * MILLION),
            (2 * MILLION, 10 * MILLION, 10 * MILLION),
            False,
            id="3y-recent-year-small-so-5pct-though-older-years-large",
        ),
        # most recent first: the same figures in the other order change the tier
        pytest.param(
            (60 * MILLION, 10 * MILLION), (2_800_000 * CNY, 0), True, id="recent-first-4pct"
        ),
        pytest.param(
            (10 * MILLION, 60 * MILLION), (0, 2_800_000 * CNY), False, id="recent-first-5pct"
        ),
    ],
)
def test_rd_ratio_over_the_years_given_against_the_tier(
    revenue_fen: tuple[int, ...], rd_fen: tuple[int, ...], passed: bool
) -> None:
    result = check_rd(figures(revenue_fen=revenue_fen, rd_fen=rd_fen, rd_domestic_fen=sum(rd_fen)))
    assert (result.code, result.passed) == ("R5_RD", passed)


def test_rd_ratio_exactly_on_threshold_passes() -> None:
    result = check_rd(
        figures(revenue_fen=(10 * MILLION,), rd_fen=(500_000 * CNY,), rd_domestic_fen=300_000 * CNY)
    )
    assert result.passed
    assert result.reason_zh == (
        "近一年研发费用占比 5.00%，不低于 5%（最近一年销售收入 ≤ 5000 万元），"
        "且境内研发费用占比 60.00%，不低于 60%"
    )


def test_rd_failure_names_only_the_failing_condition() -> None:
    result = check_rd(
        figures(revenue_fen=(10 * MILLION,), rd_fen=(500_000 * CNY,), rd_domestic_fen=0)
    )
    assert not result.passed
    assert result.reason_zh == "境内研发费用占比 0.00%，低于 60%"


def test_rd_ratio_just_below_threshold_gives_the_documented_reason() -> None:
    result = check_rd(
        figures(
            revenue_fen=(10 * MILLION, 10 * MILLION, 10 * MILLION),
            rd_fen=(499_000 * CNY, 499_000 * CNY, 499_000 * CNY),
            rd_domestic_fen=3 * 499_000 * CNY,
        )
    )
    assert result.reason_zh == "近三年研发费用占比 4.99%，低于 5%（最近一年销售收入 ≤ 5000 万元）"
    assert result.reason_en == (
        "R&D expense over the last 3 years is 4.99% of revenue, below 5% "
        "(most recent year revenue ≤ CNY 50 million)"
    )


def test_rd_percent_is_truncated_so_a_failure_never_shows_the_threshold() -> None:
    # 4.9999% would round to 5.00%; the reason must not claim the threshold was met
    result = check_rd(
        figures(revenue_fen=(10 * MILLION,), rd_fen=(499_990 * CNY,), rd_domestic_fen=0)
    )
    assert "近一年研发费用占比 4.99%，低于 5%" in result.reason_zh


@pytest.mark.parametrize(
    ("years", "phrase_zh"),
    [
        pytest.param(1, "近一年", id="1y"),
        pytest.param(2, "近两年", id="2y"),
        pytest.param(3, "近三年", id="3y"),
    ],
)
def test_rd_reason_names_how_many_years_were_counted(years: int, phrase_zh: str) -> None:
    result = check_rd(
        figures(
            revenue_fen=(10 * MILLION,) * years,
            rd_fen=(MILLION,) * years,
            rd_domestic_fen=years * MILLION,
        )
    )
    assert result.passed
    assert result.reason_zh.startswith(f"{phrase_zh}研发费用占比 10.00%，不低于 5%")


# R5: domestic share ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domestic_fen", "passed"),
    [
        pytest.param(600_000 * CNY, True, id="exactly-60pct"),
        pytest.param(599_900 * CNY, False, id="59.99pct"),
        pytest.param(600_000 * CNY - 1, False, id="one-fen-short"),
        pytest.param(1 * MILLION, True, id="all-domestic"),
    ],
)
def test_domestic_rd_must_be_at_least_60_percent_of_all_rd(domestic_fen: int, passed: bool) -> None:
    result = check_rd(
        figures(revenue_fen=(10 * MILLION,), rd_fen=(1 * MILLION,), rd_domestic_fen=domestic_fen)
    )
    assert result.passed is passed
    if not passed:
        assert result.reason_zh.startswith("境内研发费用占比 ")
        assert "低于 60%" in result.reason_zh


def test_rd_reports_both_failures_in_one_reason() -> None:
    result = check_rd(
        figures(revenue_fen=(10 * MILLION,), rd_fen=(499_000 * CNY,), rd_domestic_fen=0)
    )
    assert not result.passed
    assert result.reason_zh == (
        "近一年研发费用占比 4.99%，低于 5%（最近一年销售收入 ≤ 5000 万元），"
        "且境内研发费用占比 0.00%，低于 60%"
    )
    assert "below 5%" in result.reason_en and "below 60%" in result.reason_en


# R5: bad input fails with a reason, never an exception ----------------------------------


@pytest.mark.parametrize(
    ("revenue_fen", "rd_fen", "domestic_fen", "fragment_zh"),
    [
        pytest.param((0, 0), (0, 0), 0, "销售收入合计为 0", id="zero-revenue"),
        pytest.param((), (), 0, "未提供", id="empty"),
        pytest.param((MILLION,), (), 0, "未提供", id="no-rd"),
        pytest.param((MILLION, MILLION), (MILLION,), 0, "年数不一致", id="length-mismatch"),
        pytest.param((MILLION,) * 4, (MILLION,) * 4, 0, "最多应为近三年", id="four-years"),
        pytest.param((MILLION,), (-1,), 0, "负数", id="negative-rd"),
        pytest.param((MILLION,), (100,), 101, "境内研发费用大于", id="domestic-above-total"),
        pytest.param((10 * MILLION,), (0,), 0, "研发费用占比 0.00%", id="no-rd-spent"),
    ],
)
def test_rd_fails_with_a_reason_on_unusable_figures(
    revenue_fen: tuple[int, ...], rd_fen: tuple[int, ...], domestic_fen: int, fragment_zh: str
) -> None:
    result = check_rd(figures(revenue_fen=revenue_fen, rd_fen=rd_fen, rd_domestic_fen=domestic_fen))
    assert (result.code, result.passed) == ("R5_RD", False)
    assert fragment_zh in result.reason_zh
    assert result.reason_en


# R6 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revenue_fen", "hightech_fen", "passed"),
    [
        pytest.param((10 * MILLION,), 6 * MILLION, True, id="exactly-60pct"),
        pytest.param((10 * MILLION,), 6 * MILLION - 1, False, id="one-fen-short"),
        pytest.param((10 * MILLION,), 5_999_000 * CNY, False, id="59.99pct"),
        pytest.param((10 * MILLION, 100 * MILLION), 6 * MILLION, True, id="recent-year-only"),
        pytest.param((0, 10 * MILLION), 0, False, id="no-revenue-recent-year"),
        pytest.param((), 0, False, id="no-revenue-figures"),
    ],
)
def test_hightech_revenue_must_be_60_percent_of_most_recent_revenue(
    revenue_fen: tuple[int, ...], hightech_fen: int, passed: bool
) -> None:
    result = check_hightech_revenue(
        figures(revenue_fen=revenue_fen, rd_fen=revenue_fen, hightech_revenue_fen=hightech_fen)
    )
    assert (result.code, result.passed) == ("R6_HIGHTECH_REVENUE", passed)


def test_hightech_reason_shows_the_share() -> None:
    result = check_hightech_revenue(figures(hightech_revenue_fen=5_999_000 * CNY))
    assert result.reason_zh == "最近一年高新技术产品（服务）收入占比 59.99%，低于 60%"


# R7 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "passed", "fragment_zh"),
    [
        pytest.param(71, True, "71.00 分，不低于 71 分", id="71"),
        pytest.param(Decimal("71"), True, "71.00 分", id="decimal-71"),
        pytest.param(100, True, "100.00 分", id="100"),
        pytest.param(Decimal("70.99"), False, "70.99 分，低于 71 分", id="70.99"),
        pytest.param(Decimal("70.999"), False, "70.99 分，低于 71 分", id="70.999-truncated"),
        pytest.param(70, False, "低于 71 分", id="70"),
        pytest.param(None, False, "尚无专家评分", id="no-score-yet"),
        pytest.param(101, False, "不在 0 至 100 分之间", id="above-100"),
        pytest.param(-1, False, "不在 0 至 100 分之间", id="negative"),
        pytest.param(Decimal("NaN"), False, "不在 0 至 100 分之间", id="nan"),
    ],
)
def test_innovation_score_must_reach_71(
    score: Decimal | int | None, passed: bool, fragment_zh: str
) -> None:
    result = check_score(score)
    assert (result.code, result.passed) == ("R7_SCORE", passed)
    assert fragment_zh in result.reason_zh


# R8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("incident", "passed"),
    [pytest.param(True, False, id="incident"), pytest.param(False, True, id="clean")],
)
def test_major_incident_fails(incident: bool, passed: bool) -> None:
    result = check_incident(figures(major_incident=incident))
    assert (result.code, result.passed) == ("R8_INCIDENT", passed)


# formal_check and failed_reasons --------------------------------------------------------


def test_formal_check_returns_every_rule_but_the_score_in_code_order() -> None:
    results = formal_check(PASSING)
    assert [r.code for r in results] == [c for c in RULE_CODES if c != "R7_SCORE"]
    assert len(results) == 7
    assert failed_reasons(results) == ""
    assert failed_reasons(results, language="en") == ""


def test_failed_reasons_joins_every_failure_in_code_order() -> None:
    results = formal_check(FAILING_EVERYTHING)
    assert len(results) == 7
    assert not any(r.passed for r in results)
    assert failed_reasons(results) == "；".join(r.reason_zh for r in results)
    assert failed_reasons(results, language="en") == "; ".join(r.reason_en for r in results)


def test_failed_reasons_leaves_out_passed_rules() -> None:
    results = formal_check(figures(ip_class1=0, ip_class2=0, major_incident=True))
    assert failed_reasons(results) == (
        "未拥有支持主要产品（服务）的Ⅰ类或Ⅱ类知识产权；"
        "申请认定前一年内发生过重大安全、重大质量事故或严重环境违法行为"
    )


def test_failed_reasons_accepts_any_iterable_including_the_score() -> None:
    results = (r for r in [*formal_check(PASSING), check_score(None)])
    assert failed_reasons(results) == "尚无专家评分"


def test_failed_reasons_refuses_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        failed_reasons([RuleResult("R2_IP", False, "x", "x")], language="fr")
