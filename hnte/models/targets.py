"""Target arithmetic (年度目标测算): progress, projection to year end, gap, ranking.

Pure: plain values in, plain values out; ``hnte.models.target_queries`` gathers the
figures with SQL. Stock counts enterprises (distinct credit codes), not certificates.
Pass rates are fractions 0..1 here; the city file writes them as percent.

The projection is a forecast, so it is a float: round it only for display.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

# The road to a certificate, in order. Kept as strings (this module imports nothing of
# hnte); a unit test checks them against the stage table.
FORWARD_PATH: tuple[str, ...] = (
    "submitted",
    "district_review",
    "formal_check",
    "expert_review",
    "onsite_inspection",
    "approval",
    "public_notice",
)
ONSITE = "onsite_inspection"
OBJECTION_REVIEW = "objection_review"
CERTIFIED = "certified"
DROPPED = ("rejected", "withdrawn")
MIN_HISTORY = 30  # exits from a stage before its own history replaces the default rate


def year_share(as_of: date) -> float:
    """Share of the calendar year elapsed at ``as_of``: day of year / days in year."""
    days = 366 if calendar.isleap(as_of.year) else 365
    return as_of.timetuple().tm_yday / days


def chance_of_certification(
    stage: str, pass_rates: Mapping[str, float], *, inspected_share: float = 1.0
) -> float:
    """P(certified | now at ``stage``): the product of the rates still ahead.

    An application before on-site inspection meets it only if selected, so that step
    counts as ``1 - inspected_share * (1 - rate)``; the default share 1.0 assumes every
    application is inspected (the cautious reading). Objection review is its own step,
    then public notice again.
    """
    if stage == CERTIFIED:
        return 1.0
    if stage in DROPPED:
        return 0.0
    if stage == OBJECTION_REVIEW:
        return pass_rates[OBJECTION_REVIEW] * pass_rates["public_notice"]
    if stage not in FORWARD_PATH:
        raise ValueError(f"未知阶段：{stage} / unknown stage: {stage}")
    chance = 1.0
    for step in FORWARD_PATH[FORWARD_PATH.index(stage) :]:
        rate = pass_rates[step]
        if step == ONSITE and stage != ONSITE:
            rate = 1.0 - inspected_share * (1.0 - rate)
        chance *= rate
    return chance


def project(
    stock: int,
    pipeline: Mapping[str, int],
    pass_rates: Mapping[str, float],
    unrenewed_expiring_after: int,
    *,
    renewing: int = 0,
    covered: Mapping[str, int] | None = None,
    inspected_share: float = 1.0,
) -> float:
    """Expected stock at year end.

    ``stock`` at D, plus each open application's chance of a certificate, minus the
    enterprises that will leave: those still to renew whose certificate runs out after D
    (``unrenewed_expiring_after``), and those ``renewing`` in time — already counted in
    ``stock``, an open renewal only keeps them, so each is -1 + its chance. Applications
    of enterprises whose certificate already reaches past year end (``covered``, by
    stage) add nothing.
    """
    covered = covered or {}
    expected = sum(
        (count - covered.get(stage, 0))
        * chance_of_certification(stage, pass_rates, inspected_share=inspected_share)
        for stage, count in pipeline.items()
    )
    return stock + expected - unrenewed_expiring_after - renewing


@dataclass(frozen=True)
class RateTable:
    """Pass rate per stage (0..1), how many exits it rests on, and where it came from."""

    rates: dict[str, float]
    observed: dict[str, int]
    from_history: dict[str, bool]
    inspected_share: float = 1.0
    inspected_from_history: bool = False


def rates_from_history(
    exits: Mapping[str, tuple[int, int]],
    defaults_percent: Mapping[str, float],
    *,
    inspected: tuple[int, int] = (0, 0),
    minimum: int = MIN_HISTORY,
) -> RateTable:
    """Each stage's rate from history when at least ``minimum`` applications left it.

    ``exits`` maps a stage to (left forward, left at all); ``inspected`` is (sent to
    on-site inspection, passed expert review). Below ``minimum`` the city file's default
    percent stands, and the inspected share stays 1.0.
    """
    rates, observed, from_history = {}, {}, {}
    for stage, default in defaults_percent.items():
        forward, left = exits.get(stage, (0, 0))
        observed[stage] = left
        from_history[stage] = left >= minimum
        rates[stage] = forward / left if left >= minimum else default / 100
    sent, passed = inspected
    share_known = passed >= minimum
    return RateTable(
        rates=rates,
        observed=observed,
        from_history=from_history,
        inspected_share=sent / passed if share_known else 1.0,
        inspected_from_history=share_known,
    )


@dataclass(frozen=True)
class DistrictFigures:
    """One district's (or the city's) figures at a date; ``projection`` is a forecast."""

    code: str
    name: str
    stock: int
    start_stock: int
    net_increase: int
    new_recognitions: int
    re_recognitions: int
    expiring_unrenewed: int  # still to renew this year, whether expired yet or not
    pipeline: dict[str, int]
    projection: float
    target_net: int
    target_stock: int
    expiring_ahead: int = 0  # of expiring_unrenewed, those still in the stock at D
    renewing: int = 0  # open applications of enterprises in the stock but not past year end

    @property
    def pipeline_total(self) -> int:
        return sum(self.pipeline.values())

    @property
    def gap(self) -> float:
        """Target stock minus projection; positive means short."""
        return self.target_stock - self.projection

    @property
    def progress_percent(self) -> float:
        """Net increase so far as a percent of the target net increase.

        A target of zero or less asks for no growth: 100 when the net increase so far
        is at least the target, else 0.
        """
        if self.target_net > 0:
            return 100 * self.net_increase / self.target_net
        return 100.0 if self.net_increase >= self.target_net else 0.0

    @property
    def behind(self) -> bool:
        """落后: the year-end projection falls short of the stock goal."""
        return self.projection < self.target_stock

    def late(self, as_of: date, tolerance_percent: float) -> bool:
        """滞后: progress trails the share of the year elapsed by more than the tolerance."""
        return self.progress_percent / 100 < year_share(as_of) - tolerance_percent / 100


def rank(districts: Iterable[DistrictFigures]) -> list[DistrictFigures]:
    """By progress percent, highest first; ties by name."""
    return sorted(districts, key=lambda d: (-d.progress_percent, d.name))


@dataclass(frozen=True)
class CityFigures:
    year: int
    as_of: date
    total: DistrictFigures
    districts: tuple[DistrictFigures, ...]
    rates: RateTable | None = None

    @classmethod
    def aggregate(
        cls,
        districts: Iterable[DistrictFigures],
        *,
        year: int,
        as_of: date,
        code: str = "city",
        name: str = "全市",
        target_net: int | None = None,
        target_stock: int | None = None,
        rates: RateTable | None = None,
    ) -> CityFigures:
        """Sum the districts; the city's own target, when given, replaces their sum."""
        rows = tuple(districts)
        pipeline: dict[str, int] = {}
        for d in rows:
            for stage, count in d.pipeline.items():
                pipeline[stage] = pipeline.get(stage, 0) + count

        def total(name: str) -> int:
            return sum(getattr(d, name) for d in rows)

        city = DistrictFigures(
            code=code,
            name=name,
            stock=total("stock"),
            start_stock=total("start_stock"),
            net_increase=total("net_increase"),
            new_recognitions=total("new_recognitions"),
            re_recognitions=total("re_recognitions"),
            expiring_unrenewed=total("expiring_unrenewed"),
            pipeline=pipeline,
            projection=sum(d.projection for d in rows),
            target_net=total("target_net") if target_net is None else target_net,
            target_stock=total("target_stock") if target_stock is None else target_stock,
            expiring_ahead=total("expiring_ahead"),
            renewing=total("renewing"),
        )
        return cls(year=year, as_of=as_of, total=city, districts=rows, rates=rates)

    def ranked(self) -> list[DistrictFigures]:
        return rank(self.districts)
