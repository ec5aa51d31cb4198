"""Everything a report shows, read from the database as plain dataclasses. Never commits.

The summary is the target figures at ``as_of`` (``hnte.models.target_queries``); the
pipeline and the lists are one aggregate or joined query each over the year's batches,
so a report costs the same handful of statements whatever the number of applications.
Like the target figures, applications are read at their current stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, func, select
from sqlmodel import Session, col

from hnte.config.city import CityConfig
from hnte.models.screening import describe
from hnte.models.stages import Stage
from hnte.models.tables import Application, Batch, District, Enterprise, StageEvent
from hnte.models.target_queries import city_figures, still_to_renew
from hnte.models.targets import DistrictFigures, rank, year_share

# Every stage, in the stage table's order: the pipeline table's columns.
STAGES: tuple[Stage, ...] = tuple(Stage)


@dataclass(frozen=True)
class SummaryRow:
    """One district's (or the city's) progress against its target."""

    code: str
    name: str
    stock: int
    start_stock: int
    net_increase: int
    target_net: int
    target_stock: int
    projection: float  # a forecast: round only for display
    gap: float  # target stock minus projection; positive means short
    progress_percent: float
    expiring_unrenewed: int
    behind: bool  # 落后: projection short of the stock goal
    late: bool  # 滞后: progress trails the share of the year elapsed
    rank: int | None = None  # by progress, 1 = best; None for the city

    @property
    def status(self) -> str:
        return status_zh(self.behind, self.late)


def status_zh(behind: bool, late: bool) -> str:
    """落后 / 滞后 / both / 正常, as ``hnte targets`` prints it."""
    marks = [label for label, on in (("落后", behind), ("滞后", late)) if on]
    return "、".join(marks) or "正常"


@dataclass(frozen=True)
class PipelineRow:
    code: str
    name: str
    counts: tuple[int, ...]  # one per STAGES entry

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Pipeline:
    """Applications of the year's batches, district × stage."""

    stages: tuple[Stage, ...]
    rows: tuple[PipelineRow, ...]
    total: PipelineRow

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(stage.label_zh for stage in self.stages)


@dataclass(frozen=True)
class RenewalLine:
    district: str
    credit_code: str
    name: str
    certificate_number: str
    expires_on: date
    expired: bool  # already out of the stock at as_of

    @property
    def state(self) -> str:
        return "已到期" if self.expired else "即将到期"


@dataclass(frozen=True)
class RejectionLine:
    batch_code: str
    district: str
    credit_code: str
    name: str
    rejected_at: str  # label of the stage it left, "" when no event records it
    reason: str


@dataclass(frozen=True)
class FlagLine:
    batch_code: str
    district: str
    credit_code: str
    name: str
    flags: tuple[str, ...]  # human labels, FLAG_CODES order
    stage: str  # label of its current stage


@dataclass(frozen=True)
class ReportData:
    city_name: str
    year: int
    as_of: date
    year_share: float  # share of the year elapsed at as_of, 0..1
    late_tolerance_percent: float
    districts: tuple[SummaryRow, ...]  # city file order
    city: SummaryRow
    pipeline: Pipeline
    renewals: tuple[RenewalLine, ...]
    rejections: tuple[RejectionLine, ...]
    flags: tuple[FlagLine, ...]

    @property
    def title(self) -> str:
        return f"{self.city_name} {self.year} 年度高新技术企业认定工作报告"

    @property
    def as_of_zh(self) -> str:
        return f"截至 {self.as_of.year}年{self.as_of.month}月{self.as_of.day}日"


def gather(session: Session, *, year: int, as_of: date, city: CityConfig) -> ReportData:
    """Everything the report shows for ``year`` at ``as_of`` (which must fall in it)."""
    figures = city_figures(session, year=year, as_of=as_of, city=city)
    tolerance = city.projection.late_tolerance_percent
    ranks = {d.code: i for i, d in enumerate(rank(figures.districts), start=1)}
    names = {d.code: d.name for d in city.districts}

    def row(d: DistrictFigures, position: int | None) -> SummaryRow:
        return SummaryRow(
            code=d.code,
            name=d.name,
            stock=d.stock,
            start_stock=d.start_stock,
            net_increase=d.net_increase,
            target_net=d.target_net,
            target_stock=d.target_stock,
            projection=d.projection,
            gap=d.gap,
            progress_percent=d.progress_percent,
            expiring_unrenewed=d.expiring_unrenewed,
            behind=d.behind,
            late=d.late(as_of, tolerance),
            rank=position,
        )

    # The query sorts by division code; the report follows the city file (a stable sort
    # keeps expiry order within a district).
    order = {code: i for i, code in enumerate(names)}
    due = sorted(
        still_to_renew(session, year=year, as_of=as_of),
        key=lambda r: order.get(r.district_code, len(order)),
    )
    renewals = tuple(
        RenewalLine(
            names.get(r.district_code, r.district_code),
            r.credit_code,
            r.name,
            r.certificate_number,
            r.expires_on,
            expired=r.expires_on <= as_of,
        )
        for r in due
    )
    return ReportData(
        city_name=city.city.name,
        year=year,
        as_of=as_of,
        year_share=year_share(as_of),
        late_tolerance_percent=tolerance,
        districts=tuple(row(d, ranks[d.code]) for d in figures.districts),
        city=row(figures.total, None),
        pipeline=pipeline(session, year=year, districts=names),
        renewals=renewals,
        rejections=tuple(rejections(session, year=year)),
        flags=tuple(flagged(session, year=year)),
    )


def pipeline(session: Session, *, year: int, districts: dict[str, str]) -> Pipeline:
    """District × stage counts of applications in the year's batches.

    ``districts`` (code → name, in report order) fixes the rows; a district that is not
    in it still counts in the total row, so the total is the whole year.
    """
    query = (
        select(col(Application.district_code), col(Application.stage), func.count())
        .join(Batch, col(Batch.code) == col(Application.batch_code))
        .where(col(Batch.year) == year)
        .group_by(col(Application.district_code), col(Application.stage))
    )
    counts = {(d, s): n for d, s, n in session.connection().execute(query)}
    rows = tuple(
        PipelineRow(code, name, tuple(counts.get((code, s.value), 0) for s in STAGES))
        for code, name in districts.items()
    )
    total = PipelineRow(
        "city",
        "全市合计",
        tuple(sum(n for (_, stage), n in counts.items() if stage == s.value) for s in STAGES),
    )
    return Pipeline(STAGES, rows, total)


def _label(stage: str | None) -> str:
    if not stage:
        return ""
    try:
        return Stage(stage).label_zh
    except ValueError:
        return stage


def rejections(session: Session, *, year: int) -> list[RejectionLine]:
    """Rejected applications of the year's batches, the stage each left, and why.

    The stage comes from the last event into "rejected"; the reason is the one stored
    on the application, else that event's.
    """
    last = (
        select(
            col(StageEvent.application_id).label("application_id"),
            func.max(col(StageEvent.id)).label("event_id"),
        )
        .where(col(StageEvent.to_stage) == Stage.REJECTED.value)
        .group_by(col(StageEvent.application_id))
        .subquery()
    )
    query = (
        select(
            col(Application.batch_code),
            col(District.name),
            col(Application.credit_code),
            col(Enterprise.name),
            col(StageEvent.from_stage),
            func.coalesce(col(Application.decision_reason), col(StageEvent.reason), ""),
        )
        .join(Batch, col(Batch.code) == col(Application.batch_code))
        .join(District, col(District.code) == col(Application.district_code))
        .join(Enterprise, col(Enterprise.credit_code) == col(Application.credit_code))
        .outerjoin(last, last.c.application_id == col(Application.id))
        .outerjoin(StageEvent, col(StageEvent.id) == last.c.event_id)
        .where(col(Batch.year) == year, col(Application.stage) == Stage.REJECTED.value)
        .order_by(col(District.position), col(Application.batch_code), col(Application.id))
    )
    return [
        RejectionLine(batch, district, code, name, _label(source), reason)
        for batch, district, code, name, source, reason in session.connection().execute(query)
    ]


def flagged(session: Session, *, year: int) -> list[FlagLine]:
    """Applications of the year's batches that big-data screening flagged."""
    query = (
        select(
            col(Application.batch_code),
            col(District.name),
            col(Application.credit_code),
            col(Enterprise.name),
            col(Application.screening_flags),
            col(Application.stage),
        )
        .join(Batch, col(Batch.code) == col(Application.batch_code))
        .join(District, col(District.code) == col(Application.district_code))
        .join(Enterprise, col(Enterprise.credit_code) == col(Application.credit_code))
        .where(
            and_(
                col(Batch.year) == year,
                col(Application.screening_flags).is_not(None),
                col(Application.screening_flags) != "",
            )
        )
        .order_by(col(District.position), col(Application.batch_code), col(Application.id))
    )
    return [
        FlagLine(batch, district, code, name, tuple(describe(codes)), _label(stage))
        for batch, district, code, name, codes, stage in session.connection().execute(query)
    ]
