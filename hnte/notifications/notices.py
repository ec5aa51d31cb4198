"""Build each kind of notice from the database and queue it in the outbox.

Every function here works inside the caller's session and never commits: the job that
calls it commits the notices together with whatever caused them. A notice's dedupe key
is (kind, district, batch, period), so running a job twice queues nothing new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from hnte.config.city import CityConfig
from hnte.config.settings import get_settings
from hnte.models import target_queries
from hnte.models.stages import PIPELINE, Stage, find_transition
from hnte.models.tables import (
    Application,
    Batch,
    BatchDeadline,
    Certificate,
    District,
    Enterprise,
    OutboxMessage,
    StageEvent,
)
from hnte.models.targets import DistrictFigures, year_share
from hnte.models.workdays import workdays_between
from hnte.notifications import contexts as c
from hnte.notifications.outbox import enqueue
from hnte.notifications.render import Rendered, make_message_id, render

LIST_LIMIT = 50


@dataclass
class Queued:
    """What a job queued (or, in a dry run, would queue)."""

    notices: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, to, subject, key
    duplicates: int = 0

    def extend(self, other: Queued) -> None:
        self.notices += other.notices
        self.duplicates += other.duplicates


def _domain(sender: str) -> str:
    return sender.rsplit("@", 1)[-1] or "hnte.local"


def queue(
    session: Session,
    rendered: Rendered,
    *,
    key_parts: tuple[str, str, str, str],
    to: Iterable[str],
    cc: Iterable[str] = (),
    now: datetime,
    result: Queued,
) -> None:
    kind, district, batch, period = key_parts
    key = f"{kind}|{district}|{batch}|{period}"
    recipients = [a for a in to if a]
    if not recipients:
        return
    written = enqueue(
        session,
        kind=kind,
        dedupe_key=key,
        recipients=recipients,
        cc=list(cc),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=make_message_id(key, _domain(get_settings().smtp_sender)),
        period=period,
        district_code=district or None,
        batch_code=batch or None,
        now=now,
    )
    if written:
        result.notices.append((kind, ",".join(recipients), rendered.subject, key))
    else:
        result.duplicates += 1


def _districts(session: Session) -> list[District]:
    return list(session.exec(select(District).order_by(District.position)).scalars())  # type: ignore[call-overload]


def _emails(d: District) -> list[str]:
    return [a.strip() for a in d.liaison_emails.split(",") if a.strip()]


def _now() -> datetime:
    return datetime.now(UTC)


# --- deadline reminders and overdue notices -------------------------------------------

def _waiting_condition(stage: str):  # type: ignore[no-untyped-def]
    if stage == Stage.DISTRICT_REVIEW.value:
        return (
            Application.stage.in_([Stage.SUBMITTED.value, Stage.DISTRICT_REVIEW.value])  # type: ignore[attr-defined]
            & Application.district_decision.is_(None)  # type: ignore[union-attr]
        )
    if stage == Stage.PUBLIC_NOTICE.value:
        return Application.stage == Stage.OBJECTION_REVIEW.value
    return Application.stage == stage


def deadline_reminders(
    session: Session, city: CityConfig, *, as_of: date, language: str = "zh"
) -> Queued:
    """Reminders N working days before each stage deadline of an open batch; an overdue
    notice (copying the city operators) each week after it, while applications wait."""
    result = Queued()
    days_before = set(city.reminders.working_days_before)
    operators = city.city.operator_emails if city.reminders.overdue_copy_operator else []
    districts = {d.code: d for d in _districts(session)}
    deadlines = session.connection().execute(
        select(Batch.code, Batch.title, BatchDeadline.stage, BatchDeadline.due_on)
        .join(BatchDeadline, BatchDeadline.batch_code == Batch.code)
        .where(Batch.year == city.city.year, Batch.closed.is_(False))  # type: ignore[attr-defined]
        .order_by(Batch.sequence, BatchDeadline.due_on)
    ).all()
    for batch_code, title, stage, due in deadlines:
        if as_of <= due:
            left = workdays_between(as_of, due)
            if left not in days_before:
                continue
            kind, period = "deadline_reminder", f"{stage}:D-{left}"
        else:
            iso = as_of.isocalendar()
            kind, period = "overdue_notice", f"{stage}:{iso.year}-W{iso.week:02d}"
        waiting = session.connection().execute(
            select(Application.district_code, Application.credit_code, Enterprise.name)
            .join(Enterprise, Enterprise.credit_code == Application.credit_code)
            .where(Application.batch_code == batch_code, _waiting_condition(stage))
            .order_by(Application.district_code, Application.credit_code)
        ).all()
        by_district: dict[str, list[c.EnterpriseLine]] = {}
        for district_code, code, name in waiting:
            by_district.setdefault(district_code, []).append(c.EnterpriseLine(code, name))
        for district_code, lines in by_district.items():
            district = districts[district_code]
            common = dict(
                city_name=city.city.name, year=city.city.year, as_of=as_of,
                district_name=district.name, district_code=district.code,
                batch_title=title, stage=Stage(stage), deadline=due,
                waiting_total=len(lines), waiting=tuple(lines[:LIST_LIMIT]),
            )
            if kind == "deadline_reminder":
                context: object = c.DeadlineReminder(**common, working_days_left=left)
                cc: list[str] = []
            else:
                overdue = workdays_between(due, as_of)
                context = c.OverdueNotice(**common, working_days_overdue=max(overdue, 1))
                cc = list(operators)
            queue(session, render(kind, context, language),
                  key_parts=(kind, district_code, batch_code, period), to=_emails(district),
                  cc=cc, now=_now(), result=result)
    return result


# --- targets: behind-target notices, digests, the city summary ------------------------

def _progress(f: DistrictFigures, as_of: date, tolerance: float) -> c.Progress:
    return c.Progress(
        net_increase_target=f.target_net,
        stock_goal=f.target_stock,
        current_stock=f.stock,
        net_increase=f.net_increase,
        projected_net_increase=round(f.projection) - f.start_stock,
        year_elapsed_percent=round(year_share(as_of) * 100, 1),
        behind=f.behind,
        late=f.late(as_of, tolerance),
    )


def _figures(session: Session, city: CityConfig, as_of: date) -> list[DistrictFigures]:
    return target_queries.district_figures(session, year=city.city.year, as_of=as_of, city=city)


def _week(as_of: date) -> str:
    iso = as_of.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def behind_target_notices(
    session: Session, city: CityConfig, *, as_of: date, language: str = "zh"
) -> Queued:
    """催办通知 to every district that is behind its target or late against the calendar."""
    result = Queued()
    tolerance = city.projection.late_tolerance_percent
    districts = {d.code: d for d in _districts(session)}
    for f in _figures(session, city, as_of):
        progress = _progress(f, as_of, tolerance)
        if not (progress.behind or progress.late):
            continue
        expiring = target_queries.still_to_renew(
            session, year=city.city.year, as_of=as_of, district_code=f.code
        )
        context = c.BehindTarget(
            city_name=city.city.name, year=city.city.year, as_of=as_of,
            district_name=f.name, district_code=f.code, progress=progress,
            expiring_total=len(expiring),
            expiring=tuple(
                c.ExpiringCertificate(e.credit_code, e.name, e.expires_on)
                for e in expiring[:LIST_LIMIT]
            ),
        )
        queue(session, render("behind_target", context, language),
              key_parts=("behind_target", f.code, "", _week(as_of)),
              to=_emails(districts[f.code]), now=_now(), result=result)
    return result


def weekly_digests(
    session: Session, city: CityConfig, *, as_of: date, language: str = "zh"
) -> Queued:
    """Each district's weekly status: progress, pipeline by stage, this week's changes."""
    result = Queued()
    tolerance = city.projection.late_tolerance_percent
    week_start = as_of - timedelta(days=6)
    districts = {d.code: d for d in _districts(session)}
    changes: dict[str, Counter[tuple[str, str]]] = {}
    for district_code, source, target, n in session.connection().execute(
        select(Application.district_code, StageEvent.from_stage, StageEvent.to_stage, func.count())
        .join(Application, Application.id == StageEvent.application_id)
        .where(StageEvent.business_date >= week_start, StageEvent.business_date <= as_of)
        .group_by(Application.district_code, StageEvent.from_stage, StageEvent.to_stage)
    ):
        changes.setdefault(district_code, Counter())[(source, target)] += n
    for f in _figures(session, city, as_of):
        pipeline = tuple(c.StageCount(s, f.pipeline.get(s.value, 0)) for s in PIPELINE)
        moved = tuple(
            c.ChangeCount(Stage(s), Stage(t), n)
            for (s, t), n in sorted(changes.get(f.code, Counter()).items())
            if find_transition(Stage(s), Stage(t))
        )
        context = c.WeeklyDigest(
            city_name=city.city.name, year=city.city.year, as_of=as_of,
            district_name=f.name, district_code=f.code, week_start=week_start,
            progress=_progress(f, as_of, tolerance), pipeline=pipeline, changes=moved,
        )
        queue(session, render("weekly_digest", context, language),
              key_parts=("weekly_digest", f.code, "", _week(as_of)),
              to=_emails(districts[f.code]), now=_now(), result=result)
    return result


def city_summary(
    session: Session, city: CityConfig, *, as_of: date, language: str = "zh"
) -> Queued:
    """The weekly summary to the city operators, ranking the districts by completion."""
    result = Queued()
    tolerance = city.projection.late_tolerance_percent
    figures = _figures(session, city, as_of)
    standings = tuple(
        c.DistrictStanding(f.name, f.code, _progress(f, as_of, tolerance)) for f in figures
    )
    total = target_queries.city_figures(session, year=city.city.year, as_of=as_of, city=city)
    context = c.CitySummary(
        city_name=city.city.name, year=city.city.year, as_of=as_of,
        progress=_progress(total.total, as_of, tolerance), districts=standings,
    )
    queue(session, render("city_summary", context, language),
          key_parts=("city_summary", "", "", _week(as_of)),
          to=city.city.operator_emails, now=_now(), result=result)
    return result


# --- batch results --------------------------------------------------------------------

def batch_results(
    session: Session, city: CityConfig, *, batch_code: str, as_of: date, language: str = "zh"
) -> Queued:
    """Once a batch has no open application left: each district's results, its own only."""
    result = Queued()
    connection = session.connection()
    batch = session.get(Batch, batch_code)
    if batch is None:
        return result
    if connection.execute(
        select(OutboxMessage.id).where(
            OutboxMessage.kind == "batch_results", OutboxMessage.batch_code == batch_code
        ).limit(1)
    ).first():
        return result  # sent once when the batch finished; nothing to render again
    open_left = connection.execute(
        select(func.count()).where(
            Application.batch_code == batch_code,
            Application.stage.in_([s.value for s in PIPELINE]),  # type: ignore[attr-defined]
        )
    ).scalar_one()
    if open_left:
        return result
    for district in _districts(session):
        counts = dict(connection.execute(
            select(Application.stage, func.count())
            .where(Application.batch_code == batch_code,
                   Application.district_code == district.code)
            .group_by(Application.stage)
        ).all())
        if not counts:
            continue
        reasons = Counter(
            (r or "").split("：", 1)[0]
            for r in connection.execute(
                select(Application.decision_reason).where(
                    Application.batch_code == batch_code,
                    Application.district_code == district.code,
                    Application.stage == Stage.REJECTED.value,
                )
            ).scalars()
        )
        certified = connection.execute(
            select(Application.credit_code, Enterprise.name, Certificate.number)
            .join(Enterprise, Enterprise.credit_code == Application.credit_code)
            .join(Certificate, Certificate.application_id == Application.id)
            .where(Application.batch_code == batch_code,
                   Application.district_code == district.code)
            .order_by(Certificate.number)
        ).all()
        context = c.BatchResults(
            city_name=city.city.name, year=city.city.year, as_of=as_of,
            district_name=district.name, district_code=district.code,
            batch_title=batch.title,
            certified_count=counts.get(Stage.CERTIFIED.value, 0),
            rejected_count=counts.get(Stage.REJECTED.value, 0),
            in_progress_count=0,
            top_rejection_reasons=tuple(c.ReasonCount(r, n) for r, n in reasons.most_common(5)),
            certified=tuple(c.CertifiedEnterprise(*row) for row in certified),
        )
        queue(session, render("batch_results", context, language),
              key_parts=("batch_results", district.code, batch_code, "final"),
              to=_emails(district), now=_now(), result=result)
    return result
