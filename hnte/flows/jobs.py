"""The scheduled jobs. Each takes the business date and is safe to run twice.

The scheduler calls ``run_job(name)``; the demo and ``hnte remind`` call the same
functions with a simulated ``as_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from hnte.config.city import CityConfig, load_city
from hnte.config.settings import get_settings
from hnte.models.db import get_engine
from hnte.models.stages import Stage
from hnte.models.tables import Application, Batch
from hnte.notifications import notices
from hnte.notifications.notices import Queued


def _city() -> CityConfig:
    return load_city(get_settings().city_file)


def _language(city: CityConfig) -> str:
    return city.city.language


def _in_unit(engine: Engine, build: Callable[[Session], Queued], *, dry_run: bool) -> Queued:
    """Queue notices in one transaction; a dry run rolls it back after counting."""
    with Session(engine) as session:
        result = build(session)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return result


def deadline_reminders(
    as_of: date, *, engine: Engine | None = None, dry_run: bool = False
) -> Queued:
    """Queue deadline reminders and overdue notices for every open batch."""
    city = _city()
    return _in_unit(
        engine or get_engine(),
        lambda s: notices.deadline_reminders(s, city, as_of=as_of, language=_language(city)),
        dry_run=dry_run,
    )


def target_check(as_of: date, *, engine: Engine | None = None, dry_run: bool = False) -> Queued:
    """Queue 催办通知 for districts behind target or late against the calendar."""
    city = _city()
    return _in_unit(
        engine or get_engine(),
        lambda s: notices.behind_target_notices(s, city, as_of=as_of, language=_language(city)),
        dry_run=dry_run,
    )


def weekly_digest(as_of: date, *, engine: Engine | None = None, dry_run: bool = False) -> Queued:
    """Queue every district's weekly status digest."""
    city = _city()
    return _in_unit(
        engine or get_engine(),
        lambda s: notices.weekly_digests(s, city, as_of=as_of, language=_language(city)),
        dry_run=dry_run,
    )


def city_summary(as_of: date, *, engine: Engine | None = None, dry_run: bool = False) -> Queued:
    """Queue the weekly ranking of districts to the city operators."""
    city = _city()
    return _in_unit(
        engine or get_engine(),
        lambda s: notices.city_summary(s, city, as_of=as_of, language=_language(city)),
        dry_run=dry_run,
    )


def close_notices(as_of: date, *, engine: Engine | None = None, dry_run: bool = False) -> Queued:
    """Run the batch flow for batches whose notices have ended; queue finished batches' results."""
    engine = engine or get_engine()
    city = _city()
    with Session(engine) as session:
        due = list(
            session.connection()
            .execute(
                select(Application.batch_code)
                .distinct()
                .where(
                    Application.stage.in_(
                        [
                            Stage.PUBLIC_NOTICE.value,  # type: ignore[attr-defined]
                            Stage.OBJECTION_REVIEW.value,
                        ]
                    ),
                    Application.notice_ends < as_of,  # type: ignore[operator]
                )
            )
            .scalars()
        )
        batches = list(
            session.connection()
            .execute(
                select(Batch.code).where(Batch.year == city.city.year, Batch.closed.is_(False))  # type: ignore[attr-defined]
            )
            .scalars()
        )
    if not dry_run and due:
        from hnte.flows.batch_review import batch_review

        for batch_code in sorted(due):
            batch_review(batch_code, as_of=as_of)
    result = Queued()
    for batch_code in batches:
        result.extend(
            _in_unit(
                engine,
                lambda s, b=batch_code: notices.batch_results(
                    s, city, batch_code=b, as_of=as_of, language=_language(city)
                ),
                dry_run=dry_run,
            )
        )
    return result


def outbox_dispatch(
    as_of: date | None = None, *, engine: Engine | None = None, dry_run: bool = False
) -> Any:
    """Send queued notices over SMTP."""
    if dry_run:
        return Queued()
    from hnte.notifications.smtp import dispatch

    return dispatch(engine or get_engine(), get_settings())


JOBS: dict[str, Callable[..., Any]] = {
    "deadline_reminders": deadline_reminders,
    "target_check": target_check,
    "weekly_digest": weekly_digest,
    "city_summary": city_summary,
    "close_notices": close_notices,
    "outbox_dispatch": outbox_dispatch,
}
# What `hnte remind` runs: the jobs that remind people of deadlines and targets.
REMINDER_JOBS = ("deadline_reminders", "target_check")


def today() -> date:
    return datetime.now(get_settings().tz).date()


def run_job(name: str) -> None:
    """The scheduler's entry point: run one job for today, if this process holds the lease."""
    from hnte.flows.scheduling import holds_lease

    if not holds_lease():
        return
    JOBS[name](today())
