"""The APScheduler wiring, guarded by a database lease so one scheduler fires each job.

APScheduler 3.x cannot share a job store between processes (two schedulers on one store
fire a job many times). So every ``hnte serve`` process competes for one lease row; only
the holder starts its scheduler on the shared SQLAlchemy job store, renews the lease
while it runs, and checks it again before each job (a fence against a stale holder).
A process that loses the lease stops its scheduler; a standby takes over once the lease
expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hnte.config.city import CityConfig, load_city
from hnte.config.settings import get_settings
from hnte.models.db import get_engine
from hnte.models.tables import Lease

log = logging.getLogger("hnte.scheduler")
LEASE = "scheduler"
TTL = timedelta(seconds=60)
RENEW_EVERY = 15.0
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def try_acquire(
    engine: Engine,
    *,
    holder: str = HOLDER,
    name: str = LEASE,
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> bool:
    """Take or renew the lease for ``ttl`` (default ``TTL``, read at call time like
    ``RENEW_EVERY``); True if ``holder`` holds it afterwards."""
    now = now or datetime.now(UTC)
    ttl = ttl or TTL
    with engine.begin() as c:
        taken = c.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
    if taken:
        return True
    try:
        with engine.begin() as c:
            c.execute(insert(Lease).values(name=name, holder=holder, expires_at=now + ttl))
        return True
    except IntegrityError:
        return False


def release(engine: Engine, *, holder: str = HOLDER, name: str = LEASE) -> None:
    with engine.begin() as c:
        c.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
        )


def current_holder(engine: Engine, *, name: str = LEASE) -> str | None:
    now = datetime.now(UTC)
    with engine.connect() as c:
        row = c.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name)).first()
    if row is None:
        return None
    expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC)
    return row[0] if expires > now else None


def holds_lease(engine: Engine | None = None) -> bool:
    return current_holder(engine or get_engine()) == HOLDER


def build_scheduler(engine: Engine, city: CityConfig):  # type: ignore[no-untyped-def]
    """A BackgroundScheduler on the application database's job store, jobs from the city file."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    tz = city.city.timezone
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        timezone=tz,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": city.schedules.misfire_grace_seconds,
        },
    )
    for name, cron in city.schedules.crons().items():
        scheduler.add_job(
            "hnte.flows.jobs:run_job",
            CronTrigger.from_crontab(cron, timezone=tz),
            args=[name],
            id=name,
            name=name,
            replace_existing=True,
        )
    return scheduler


def start_scheduler(
    engine: Engine | None = None, city: CityConfig | None = None
) -> Callable[[], None]:
    """Compete for the lease in the background; run the scheduler while holding it.
    Returns a function that stops everything and releases the lease."""
    engine = engine or get_engine()
    city = city or load_city(get_settings().city_file)
    stop = threading.Event()
    state: dict[str, object] = {"scheduler": None}

    def loop() -> None:
        while not stop.is_set():
            try:
                held = try_acquire(engine)
            except Exception:  # noqa: BLE001 - the database may be away; keep competing
                log.exception("scheduler lease check failed; treating the lease as lost")
                held = False
            running = state["scheduler"]
            if held and running is None:
                scheduler = build_scheduler(engine, city)
                scheduler.start()
                state["scheduler"] = scheduler
                log.warning("scheduler lease taken by %s", HOLDER)
            elif not held and running is not None:
                running.shutdown(wait=False)  # type: ignore[attr-defined]
                state["scheduler"] = None
                log.warning("scheduler lease lost by %s", HOLDER)
            stop.wait(RENEW_EVERY)

    thread = threading.Thread(target=loop, name="hnte-scheduler-lease", daemon=True)
    thread.start()

    def shutdown() -> None:
        stop.set()
        thread.join(timeout=RENEW_EVERY + 5)
        running = state["scheduler"]
        if running is not None:
            running.shutdown(wait=False)  # type: ignore[attr-defined]
        release(engine)

    return shutdown
