"""Create or migrate the database and load the city file into it (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlmodel import Session

from hnte.config.city import CityConfig
from hnte.models import migrate
from hnte.models.tables import Batch, BatchDeadline, District, Target

CITY = "city"  # the district_code of the city-wide target row


@dataclass(frozen=True)
class InitReport:
    created: bool
    districts: int
    batches: int


def init_database(engine: Engine, city: CityConfig) -> InitReport:
    """Migrate to head, then upsert districts, targets and batch calendars from ``city``."""
    created = not migrate.is_initialised(engine)
    migrate.upgrade(engine)
    with Session(engine) as session:
        load_city(session, city)
        session.commit()
    return InitReport(created, len(city.districts), len(city.batches))


def load_city(session: Session, city: CityConfig) -> None:
    """Upsert the city file's districts, targets and batches; the caller commits.

    A batch's seed is kept once stored: changing it later would redraw panels that
    experts are already scoring.
    """
    year = city.city.year
    for position, d in enumerate(city.districts):
        session.merge(
            District(
                code=d.code,
                name=d.name,
                liaison_emails=",".join(d.liaison_emails),
                position=position,
            )
        )
        session.merge(
            Target(
                year=year,
                district_code=d.code,
                net_increase=d.net_increase,
                stock_goal=d.stock_goal,
            )
        )
    session.merge(
        Target(
            year=year,
            district_code=CITY,
            net_increase=city.target.net_increase,
            stock_goal=city.target.stock_goal,
        )
    )
    for b in city.batches:
        existing = session.get(Batch, b.code)
        seed = existing.seed if existing else b.seed
        session.merge(
            Batch(
                code=b.code,
                year=year,
                sequence=b.sequence,
                title=b.title,
                seed=seed,
                application_deadline=b.application_deadline,
                closed=existing.closed if existing else False,
            )
        )
        session.flush()
        session.execute(delete(BatchDeadline).where(BatchDeadline.batch_code == b.code))  # type: ignore[arg-type]
        for stage, due in b.deadlines.items():
            session.add(BatchDeadline(batch_code=b.code, stage=stage, due_on=due))
    session.flush()
