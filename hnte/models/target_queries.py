"""The figures behind the target report, as aggregate SQL. Queries never commit.

Each figure is one GROUP BY over certificates or applications, so the report costs a
handful of statements whatever the number of certificates. Dates are business dates;
``as_of`` (D) must fall in ``year`` (Y).

Applications are read at their current stage: for a past ``as_of`` the pipeline is
today's, not D's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, case, distinct, exists, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from hnte.config.city import CityConfig
from hnte.models.enums import ApplicationKind
from hnte.models.stages import PIPELINE, Stage
from hnte.models.tables import Application, Batch, Certificate, Enterprise, StageEvent, Target
from hnte.models.targets import (
    CityFigures,
    DistrictFigures,
    RateTable,
    project,
    rates_from_history,
)

CITY = "city"  # Target.district_code of the city-wide row
OPEN = tuple(s.value for s in PIPELINE)
DROPPED = (Stage.REJECTED.value, Stage.WITHDRAWN.value)


@dataclass(frozen=True)
class RenewalDue:
    """A certificate expiring this year whose enterprise has not applied to renew."""

    district_code: str
    credit_code: str
    name: str
    certificate_number: str
    expires_on: date


def _check(year: int, as_of: date) -> None:
    if as_of.year != year:
        raise ValueError(f"统计日期 {as_of} 不在 {year} 年内 / as_of {as_of} is not in {year}")


def _valid_on(day: date) -> ColumnElement[bool]:
    """The certificate counts in the stock on ``day``."""
    return and_(
        col(Certificate.issued_on) <= day,
        col(Certificate.expires_on) > day,
        or_(col(Certificate.revoked_on).is_(None), col(Certificate.revoked_on) > day),
    )


def stock_by_district(session: Session, *, on: date) -> dict[str, int]:
    """District code -> enterprises holding a valid certificate on ``on``."""
    query = (
        select(col(Certificate.district_code), func.count(distinct(col(Certificate.credit_code))))
        .where(_valid_on(on))
        .group_by(col(Certificate.district_code))
    )
    return {code: n for code, n in session.connection().execute(query)}


def stock_on_two_days(
    session: Session, *, days: tuple[date, date]
) -> tuple[dict[str, int], dict[str, int]]:
    """``stock_by_district`` on each of two days.

    PostgreSQL counts both in one pass over the certificates alive on either day
    (``count(DISTINCT)`` sorts; a hash of district and credit code does not). SQLite is
    faster with two ordered passes over ``ix_certificate_stock``, whose order makes
    ``count(DISTINCT)`` free.
    """
    if session.get_bind().dialect.name == "sqlite":
        first, second = days
        return stock_by_district(session, on=first), stock_by_district(session, on=second)
    holders = (
        select(
            col(Certificate.district_code).label("district"),
            *(func.bool_or(_valid_on(day)).label(f"on_{i}") for i, day in enumerate(days)),
        )
        .where(
            col(Certificate.issued_on) <= max(days), col(Certificate.expires_on) > min(days)
        )
        .group_by(col(Certificate.district_code), col(Certificate.credit_code))
        .subquery()
    )
    query = select(
        holders.c.district,
        func.count().filter(holders.c.on_0),
        func.count().filter(holders.c.on_1),
    ).group_by(holders.c.district)
    stocks: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for code, first_n, second_n in session.connection().execute(query):
        for stock, n in zip(stocks, (first_n, second_n), strict=True):
            if n:
                stock[code] = n
    return stocks


def recognitions_by_district(
    session: Session, *, year: int, as_of: date
) -> dict[str, tuple[int, int]]:
    """District code -> (new recognitions, re-recognitions) issued in ``year`` up to D."""
    _check(year, as_of)
    renewal = col(Application.kind) == ApplicationKind.RENEWAL.value
    query = (
        select(
            col(Certificate.district_code),
            func.count(distinct(case((renewal, None), else_=col(Certificate.credit_code)))),
            func.count(distinct(case((renewal, col(Certificate.credit_code)), else_=None))),
        )
        .select_from(Certificate)
        .outerjoin(Application, col(Application.id) == col(Certificate.application_id))
        .where(
            col(Certificate.issued_on) >= date(year, 1, 1),
            col(Certificate.issued_on) <= as_of,
        )
        .group_by(col(Certificate.district_code))
    )
    return {code: (new, renewed) for code, new, renewed in session.connection().execute(query)}


def _still_to_renew(session: Session, year: int, as_of: date) -> ColumnElement[bool]:
    """Valid at the start of ``year``, expires in it, and nothing has replaced it."""
    newer = aliased(Certificate)
    applying = (
        select(col(Application.credit_code))
        .join(Batch, col(Batch.code) == col(Application.batch_code))
        .where(col(Batch.year) == year, col(Application.stage).not_in(DROPPED))
    )
    applied: ColumnElement[bool]
    if session.get_bind().dialect.name == "sqlite":
        # SQLite builds the year's applicants once and probes it; the correlated form
        # reads an application row per certificate. Both credit codes are NOT NULL, so
        # NOT IN means NOT EXISTS. (PostgreSQL plans NOT EXISTS as an anti-join, and a
        # NOT IN too big for work_mem as a rescan per row: it keeps the correlated form.)
        applied = col(Certificate.credit_code).in_(applying)
    else:
        applied = exists(
            applying.where(col(Application.credit_code) == col(Certificate.credit_code))
        ).correlate(Certificate)
    replaced = (
        select(col(newer.issued_on))
        .where(
            col(newer.credit_code) == col(Certificate.credit_code),
            col(newer.issued_on) > col(Certificate.issued_on),
            col(newer.issued_on) <= as_of,
        )
        .correlate(Certificate)
        .exists()
    )
    return and_(
        _valid_on(date(year - 1, 12, 31)),
        col(Certificate.expires_on) <= date(year, 12, 31),
        or_(col(Certificate.revoked_on).is_(None), col(Certificate.revoked_on) > as_of),
        ~applied,
        ~replaced,
    )


def still_to_renew(
    session: Session, *, year: int, as_of: date, district_code: str | None = None
) -> list[RenewalDue]:
    """Certificates expiring in ``year`` whose enterprise has neither applied nor renewed.

    "Applied" means any application in a batch of ``year`` not rejected or withdrawn.
    Sorted by district, expiry date, credit code.
    """
    _check(year, as_of)
    query = (
        select(
            col(Certificate.district_code),
            col(Certificate.credit_code),
            func.coalesce(col(Enterprise.name), ""),
            col(Certificate.number),
            col(Certificate.expires_on),
        )
        .select_from(Certificate)
        .outerjoin(Enterprise, col(Enterprise.credit_code) == col(Certificate.credit_code))
        .where(_still_to_renew(session, year, as_of))
        .order_by(
            col(Certificate.district_code),
            col(Certificate.expires_on),
            col(Certificate.credit_code),
        )
    )
    if district_code:
        query = query.where(col(Certificate.district_code) == district_code)
    return [RenewalDue(*row) for row in session.connection().execute(query)]


def still_to_renew_counts(
    session: Session, *, year: int, as_of: date
) -> dict[str, tuple[int, int]]:
    """District code -> (still to renew this year, of which expiring after D)."""
    _check(year, as_of)
    ahead = case((col(Certificate.expires_on) > as_of, 1), else_=0)
    query = (
        select(col(Certificate.district_code), func.count(), func.sum(ahead))
        .where(_still_to_renew(session, year, as_of))
        .group_by(col(Certificate.district_code))
    )
    return {code: (n, int(a)) for code, n, a in session.connection().execute(query)}


def renewal_counts(due: Iterable[RenewalDue], *, as_of: date) -> dict[str, tuple[int, int]]:
    """``still_to_renew_counts`` from the list itself, for a caller that has it anyway."""
    counts: dict[str, tuple[int, int]] = {}
    for line in due:
        n, ahead = counts.get(line.district_code, (0, 0))
        counts[line.district_code] = (n + 1, ahead + (line.expires_on > as_of))
    return counts


@dataclass(frozen=True)
class Pipeline:
    """Open applications of one district by stage, and which of them change the stock."""

    by_stage: dict[str, int]
    covered: dict[str, int]  # enterprise already holds a certificate valid past year end
    renewing: int  # enterprise in the stock at D, its certificate ends before year end


def pipeline_by_district(session: Session, *, year: int, as_of: date) -> dict[str, Pipeline]:
    """District code -> its open applications in batches of ``year``."""
    _check(year, as_of)
    year_end = date(year, 12, 31)
    past_year_end = and_(
        col(Certificate.expires_on) > year_end,
        or_(col(Certificate.revoked_on).is_(None), col(Certificate.revoked_on) > year_end),
    )
    # One probe of the enterprise's certificates valid at D: none (NULL) is a new
    # enterprise, 1 one renewing, 2 one already covered past year end.
    status = (
        select(func.max(case((past_year_end, 2), else_=1)))
        .where(col(Certificate.credit_code) == col(Application.credit_code), _valid_on(as_of))
        .correlate(Application)
        .scalar_subquery()
    )
    apps = (
        select(
            col(Application.district_code).label("district"),
            col(Application.stage).label("stage"),
            status.label("status"),
        )
        .join(Batch, col(Batch.code) == col(Application.batch_code))
        .where(col(Batch.year) == year, col(Application.stage).in_(OPEN))
        .subquery()
    )
    query = select(apps.c.district, apps.c.stage, apps.c.status, func.count()).group_by(
        apps.c.district, apps.c.stage, apps.c.status
    )
    by_stage: dict[str, dict[str, int]] = {}
    covered_by: dict[str, dict[str, int]] = {}
    renewing: dict[str, int] = {}
    for district, stage, held, n in session.connection().execute(query):
        stages = by_stage.setdefault(district, {})
        stages[stage] = stages.get(stage, 0) + n
        if held == 2:
            covered_by.setdefault(district, {})[stage] = n
        elif held == 1:
            renewing[district] = renewing.get(district, 0) + n
    return {
        code: Pipeline(stages, covered_by.get(code, {}), renewing.get(code, 0))
        for code, stages in by_stage.items()
    }


def rate_table(session: Session, *, year: int, defaults: Mapping[str, float]) -> RateTable:
    """Pass rates from every stage exit recorded up to the end of ``year``.

    ``defaults`` is the city file's percent per stage, used where fewer than 30
    applications left a stage. Business dates, not batch years, bound the history: it
    spares a join over the whole trail and means the same thing.
    """
    # Grouped by the index's own leading columns and summed here: no expression per event.
    query = (
        select(col(StageEvent.from_stage), col(StageEvent.to_stage), func.count())
        .where(col(StageEvent.business_date) <= date(year, 12, 31))
        .group_by(col(StageEvent.from_stage), col(StageEvent.to_stage))
    )
    exits: dict[str, tuple[int, int]] = {}
    sent = 0
    for stage, to_stage, n in session.connection().execute(query):
        ahead, left = exits.get(stage, (0, 0))
        exits[stage] = (ahead + (0 if to_stage in DROPPED else n), left + n)
        if (stage, to_stage) == (Stage.EXPERT_REVIEW.value, Stage.ONSITE_INSPECTION.value):
            sent = n
    passed = exits.get(Stage.EXPERT_REVIEW.value, (0, 0))[0]
    return rates_from_history(exits, defaults, inspected=(sent, passed))


def pass_rates(session: Session, *, year: int, defaults: Mapping[str, float]) -> dict[str, float]:
    """Stage -> pass rate (0..1): history where there is enough, else the default."""
    return rate_table(session, year=year, defaults=defaults).rates


def targets_for(session: Session, *, year: int) -> dict[str, tuple[int, int]]:
    """District code (and "city") -> (target net increase, stock goal) for ``year``."""
    query = select(
        col(Target.district_code), col(Target.net_increase), col(Target.stock_goal)
    ).where(col(Target.year) == year)
    return {code: (net, goal) for code, net, goal in session.connection().execute(query)}


def district_figures(
    session: Session,
    *,
    year: int,
    as_of: date,
    city: CityConfig,
    rates: RateTable | None = None,
    due: Sequence[RenewalDue] | None = None,
) -> list[DistrictFigures]:
    """Every district of the city file, in file order, with its figures at ``as_of``.

    Start stock is last year-end's stock from the certificates. When no certificate at
    all was valid then (the register was never loaded), each district's target row
    supplies it (stock goal - net increase, which is the city file's start stock), and
    today's stock is that plus what the certificates add.

    ``due``, when the caller already has ``still_to_renew`` for the same year and D (all
    districts), supplies the still-to-renew counts instead of a second pass.
    """
    _check(year, as_of)
    rates = rates or rate_table(
        session, year=year, defaults=city.projection.default_pass_rate_percent
    )
    targets = targets_for(session, year=year)
    stock, start = stock_on_two_days(session, days=(as_of, date(year - 1, 12, 31)))
    fallback = not start
    recognised = recognitions_by_district(session, year=year, as_of=as_of)
    unrenewed = (
        still_to_renew_counts(session, year=year, as_of=as_of)
        if due is None
        else renewal_counts(due, as_of=as_of)
    )
    pipelines = pipeline_by_district(session, year=year, as_of=as_of)
    rows = []
    for d in city.districts:
        target_net, target_stock = targets.get(
            d.code, (d.net_increase, d.stock_goal) if year == city.city.year else (0, 0)
        )
        begin = target_stock - target_net if fallback else start.get(d.code, 0)
        now = stock.get(d.code, 0) + (begin if fallback else 0)
        new, renewed = recognised.get(d.code, (0, 0))
        expiring, ahead = unrenewed.get(d.code, (0, 0))
        pipe = pipelines.get(d.code, Pipeline({}, {}, 0))
        by_stage = {s.value: pipe.by_stage.get(s.value, 0) for s in PIPELINE}
        rows.append(
            DistrictFigures(
                code=d.code,
                name=d.name,
                stock=now,
                start_stock=begin,
                net_increase=now - begin,
                new_recognitions=new,
                re_recognitions=renewed,
                expiring_unrenewed=expiring,
                pipeline=by_stage,
                projection=project(
                    now,
                    by_stage,
                    rates.rates,
                    ahead,
                    renewing=pipe.renewing,
                    covered=pipe.covered,
                    inspected_share=rates.inspected_share,
                ),
                target_net=target_net,
                target_stock=target_stock,
                expiring_ahead=ahead,
                renewing=pipe.renewing,
            )
        )
    return rows


def city_figures(
    session: Session,
    *,
    year: int,
    as_of: date,
    city: CityConfig,
    rates: RateTable | None = None,
    due: Sequence[RenewalDue] | None = None,
) -> CityFigures:
    """The districts' figures and their city total (against the city's own target row).

    ``due`` as in ``district_figures``.
    """
    rates = rates or rate_table(
        session, year=year, defaults=city.projection.default_pass_rate_percent
    )
    rows = district_figures(session, year=year, as_of=as_of, city=city, rates=rates, due=due)
    own = targets_for(session, year=year).get(CITY)
    if own is None and year == city.city.year:
        own = (city.target.net_increase, city.target.stock_goal)
    return CityFigures.aggregate(
        rows,
        year=year,
        as_of=as_of,
        name=city.city.name,
        target_net=own[0] if own else None,
        target_stock=own[1] if own else None,
        rates=rates,
    )
