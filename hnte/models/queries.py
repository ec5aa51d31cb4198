"""Read-only queries shared by the CLI, reports and emails. They never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import Session, col

from hnte.models.tables import Application, District, Enterprise, StageEvent


@dataclass(frozen=True)
class ApplicationLine:
    id: int
    batch_code: str
    credit_code: str
    name: str
    district_code: str
    district_name: str
    kind: str
    stage: str
    reason: str | None
    score: str | None
    flags: str


def districts(session: Session) -> list[District]:
    query = select(District).order_by(col(District.position))
    return list(session.execute(query).scalars())


def resolve_district(session: Session, value: str | None) -> str | None:
    """A district given by name or division code → its code (None passes through)."""
    if value is None:
        return None
    for d in districts(session):
        if value in (d.code, d.name):
            return d.code
    raise LookupError(f"未知区市：{value} / unknown district: {value}")


def stage_counts(
    session: Session, *, batch_code: str | None = None, district_code: str | None = None
) -> dict[tuple[str, str], int]:
    """(district code, stage) → number of applications."""
    query = select(col(Application.district_code), col(Application.stage), func.count()).group_by(
        Application.district_code, Application.stage
    )
    if batch_code:
        query = query.where(col(Application.batch_code) == batch_code)
    if district_code:
        query = query.where(col(Application.district_code) == district_code)
    return {(d, s): n for d, s, n in session.connection().execute(query)}


def application_lines(
    session: Session,
    *,
    batch_code: str | None = None,
    stage: str | None = None,
    district_code: str | None = None,
    limit: int | None = None,
) -> list[ApplicationLine]:
    query = (
        select(  # type: ignore[call-overload]
            Application.id,
            Application.batch_code,
            Application.credit_code,
            Enterprise.name,
            Application.district_code,
            District.name,
            Application.kind,
            Application.stage,
            Application.decision_reason,
            Application.score,
            Application.screening_flags,
        )
        .join(Enterprise, Enterprise.credit_code == Application.credit_code)
        .join(District, District.code == Application.district_code)
        .order_by(District.position, Application.id)
    )
    if batch_code:
        query = query.where(Application.batch_code == batch_code)
    if stage:
        query = query.where(Application.stage == stage)
    if district_code:
        query = query.where(Application.district_code == district_code)
    if limit:
        query = query.limit(limit)
    return [
        ApplicationLine(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            None if r[9] is None else f"{r[9]:.2f}",
            r[10] or "",
        )
        for r in session.connection().execute(query)
    ]


def events_for(session: Session, application_ids: Sequence[int]) -> list[StageEvent]:
    query = (
        select(StageEvent)
        .where(StageEvent.application_id.in_(application_ids))  # type: ignore[attr-defined]
        .order_by(StageEvent.id)  # type: ignore[arg-type]
    )
    return list(session.exec(query).scalars())  # type: ignore[call-overload]
