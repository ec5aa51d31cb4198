"""The batch's yes/no fast path agrees with the rules that explain themselves."""

from __future__ import annotations

from datetime import date

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hnte.models.eligibility import (
    RD_TIERS,
    Figures,
    failed_reasons,
    formal_check,
    passes_formal_check,
)
from hnte.models.enums import TechField

TIER_BOUNDS = [upper for upper, _ in RD_TIERS]
# Amounts that sit on, just beside and far from the revenue tier bounds, plus small ones
# whose ratios land exactly on a threshold now and then.
amounts = st.one_of(
    st.integers(-2, 1_000),
    st.integers(0, 10**11),
    st.sampled_from([b + d for b in TIER_BOUNDS for d in (-1, 0, 1)]),
)
years = st.integers(0, 4)


@st.composite
def figures(draw: st.DrawFn) -> Figures:
    n = draw(years)
    revenue = tuple(draw(st.lists(amounts, min_size=n, max_size=n)))
    rd_years = draw(st.sampled_from([n, n, n, max(0, n - 1), n + 1]))
    rd = tuple(draw(st.lists(amounts, min_size=rd_years, max_size=rd_years)))
    total_rd = sum(rd)
    domestic = draw(
        st.one_of(
            amounts,
            st.integers(0, max(0, total_rd)),
            st.just(total_rd * 60 // 100),
            st.just(-(-total_rd * 60 // 100)),
        )
    )
    recent = revenue[0] if revenue else 0
    hightech = draw(st.one_of(amounts, st.just(recent * 60 // 100), st.just(-(-recent * 3 // 5))))
    staff_total = draw(st.integers(-1, 500))
    staff_tech = draw(st.one_of(st.integers(-1, 501), st.just(-(-staff_total // 10))))
    applied = draw(st.dates(date(2016, 1, 1), date(2030, 12, 31)))
    registered = draw(st.dates(date(2000, 1, 1), date(2031, 1, 1)))
    return Figures(
        registered_on=registered,
        applied_on=applied,
        tech_field=draw(st.sampled_from([*(f.value for f in TechField), "人工智能", ""])),
        staff_total=staff_total,
        staff_tech=staff_tech,
        revenue_fen=revenue,
        rd_fen=rd,
        rd_domestic_fen=domestic,
        hightech_revenue_fen=hightech,
        ip_class1=draw(st.integers(0, 3)),
        ip_class2=draw(st.integers(0, 3)),
        major_incident=draw(st.booleans()),
    )


PASSING = Figures(
    registered_on=date(2015, 3, 1),
    applied_on=date(2021, 5, 1),
    tech_field=TechField.ELECTRONIC_INFORMATION.value,
    staff_total=100,
    staff_tech=10,  # exactly 10%
    revenue_fen=(100, 100, 100),
    rd_fen=(5, 5, 5),  # exactly 5%
    rd_domestic_fen=9,  # exactly 60%
    hightech_revenue_fen=60,  # exactly 60%
    ip_class1=0,
    ip_class2=1,
    major_incident=False,
)


@settings(max_examples=3_000, deadline=None)
@given(figures())
@example(PASSING)
def test_the_fast_path_passes_exactly_what_formal_check_passes(f: Figures) -> None:
    assert passes_formal_check(f) is (failed_reasons(formal_check(f)) == "")


def test_figures_exactly_on_every_threshold_pass_both_ways() -> None:
    assert passes_formal_check(PASSING)
    assert failed_reasons(formal_check(PASSING)) == ""
