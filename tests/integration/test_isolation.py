"""A liaison hears about his or her own district only: every district notice, built from
random multi-district data, names no enterprise of another district and goes to that
district's liaisons alone (the city operators copied on overdue notices)."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine
from hnte.models.stages import FINAL_STAGES, Stage
from hnte.models.tables import (
    Application,
    BatchDeadline,
    Certificate,
    Enterprise,
    OutboxMessage,
    StageEvent,
)
from hnte.models.workdays import workdays_between
from hnte.notifications import notices
from hnte.notifications.outbox import split_addresses
from hnte.services.setup import init_database

CITY = load_city()
DISTRICTS = [d.code for d in CITY.districts]
LIAISONS = {d.code: list(d.liaison_emails) for d in CITY.districts}
OPERATORS = list(CITY.city.operator_emails)
OPEN_BATCH, FINISHED_BATCH = "2021-1", "2021-2"  # the second holds final stages only
REJECTION = "形式审查未通过：研发费用占比不足"
# A plausible way into each stage, so the weekly digest counts the event as a change.
CAME_FROM = {
    Stage.DISTRICT_REVIEW: Stage.SUBMITTED,
    Stage.FORMAL_CHECK: Stage.DISTRICT_REVIEW,
    Stage.EXPERT_REVIEW: Stage.FORMAL_CHECK,
    Stage.ONSITE_INSPECTION: Stage.EXPERT_REVIEW,
    Stage.APPROVAL: Stage.EXPERT_REVIEW,
    Stage.PUBLIC_NOTICE: Stage.APPROVAL,
    Stage.OBJECTION_REVIEW: Stage.PUBLIC_NOTICE,
    Stage.CERTIFIED: Stage.PUBLIC_NOTICE,
    Stage.REJECTED: Stage.FORMAL_CHECK,
    Stage.WITHDRAWN: Stage.SUBMITTED,
}


def _working_days_before(due: date, n: int) -> date:
    day = due
    while workdays_between(day, due) < n:
        day -= timedelta(days=1)
    return day


def _reminder_dates() -> list[date]:
    """Days on which some batch gets a deadline reminder (D-5, D-1) or an overdue notice."""
    days: set[date] = set()
    for batch in CITY.batches:
        for due in batch.deadlines.values():
            days |= {_working_days_before(due, 5), _working_days_before(due, 1)}
            days.add(due + timedelta(days=3))
    return sorted(days)


REMINDER_DATES = _reminder_dates()


@dataclass
class Firm:
    code: str
    name: str
    district: str
    batch: str | None = None
    stage: Stage | None = None
    expiring: bool = False  # holds a certificate issued in 2018 that expires in 2021
    certified_number: str | None = None
    issued_on: date | None = None  # of the expiring certificate
    moved_on: date | None = None  # business date of the event into ``stage``
    anchor: str | None = None  # a certificate valid all year (every district holds one)


@dataclass
class World:
    firms: list[Firm] = field(default_factory=list)

    def of(self, district: str) -> list[Firm]:
        return [f for f in self.firms if f.district == district]

    def others(self, district: str) -> list[Firm]:
        return [f for f in self.firms if f.district != district]


district = st.sampled_from(DISTRICTS)
applications = st.lists(
    st.tuples(district, st.just(OPEN_BATCH), st.sampled_from(list(Stage)), st.booleans()),
    max_size=20,
)
# At most 29 applications in all: fewer than 30 leave any stage, so the projections use
# the city file's pass rates, not the (city-wide) history, and a district's figures
# depend on its own data alone.
finished = st.lists(
    st.tuples(
        district, st.just(FINISHED_BATCH), st.sampled_from(sorted(FINAL_STAGES)), st.booleans()
    ),
    max_size=9,
)
lone_expiring = st.lists(district, max_size=8)  # expiring certificates without an application


def make_world(rows: list, lone: list[str], as_of: date, seed: int) -> World:
    """Random firms of every district; nothing written yet."""
    rng = random.Random(seed)
    world = World()
    codes: set[str] = set()

    def new_code(district_code: str) -> str:
        code = synthetic.credit_code(rng, district_code)
        while code in codes:
            code = synthetic.credit_code(rng, district_code)
        codes.add(code)
        return code

    for n, (code_of_district, batch, stage, expiring) in enumerate(
        [*rows, *((d, None, None, True) for d in lone)]
    ):
        firm = Firm(
            new_code(code_of_district),
            f"青岛测{n:04d}科技有限公司",
            code_of_district,
            batch,
            stage,
            expiring,
        )
        if expiring:
            firm.issued_on = date(2018, 1, 10) + timedelta(days=rng.randint(0, 340))
        if stage is not None and stage is not Stage.SUBMITTED:
            firm.moved_on = as_of - timedelta(days=rng.randint(0, 10))
        if stage is Stage.CERTIFIED:
            firm.certified_number = f"GR20213700{n:03d}"
        world.firms.append(firm)
    # Each district holds a certificate valid all year, so the start stock is read from
    # the certificates whatever else a district holds (with none at all, the city file
    # would supply every district's start stock instead).
    for k, code_of_district in enumerate(DISTRICTS):
        anchor = Firm(new_code(code_of_district), f"青岛锚{k:02d}科技有限公司", code_of_district)
        anchor.anchor = f"GR20193700{k:03d}"
        world.firms.append(anchor)
    return world


def write(session: Session, world: World, only: str | None = None) -> None:
    """The world's enterprises, applications, stage events and certificates, straight into
    the tables; with ``only``, that district's alone."""
    firms = [f for f in world.firms if only is None or f.district == only]
    for firm in firms:
        session.add(
            Enterprise(
                credit_code=firm.code,
                name=firm.name,
                district_code=firm.district,
                registered_on=date(2012, 3, 1),
                tech_field="电子信息",
            )
        )
    session.flush()
    for firm in firms:
        if firm.anchor:
            session.add(
                Certificate(
                    number=firm.anchor,
                    credit_code=firm.code,
                    district_code=firm.district,
                    issued_on=date(2019, 6, 1),
                    expires_on=date(2022, 6, 1),
                )
            )
        if firm.issued_on is not None:
            session.add(
                Certificate(
                    number=f"GR20183700{world.firms.index(firm):03d}",
                    credit_code=firm.code,
                    district_code=firm.district,
                    issued_on=firm.issued_on,
                    expires_on=firm.issued_on.replace(year=2021),
                )
            )
        if firm.batch is None or firm.stage is None:
            continue
        app = Application(
            batch_code=firm.batch,
            credit_code=firm.code,
            district_code=firm.district,
            kind="renewal" if firm.expiring else "first_time",
            stage=firm.stage.value,
            version=1 if firm.stage is Stage.SUBMITTED else 2,
            applied_on=date(2021, 5, 1),
            staff_total=100,
            staff_tech=20,
            revenue_y1_fen=100_000_00,
            rd_y1_fen=10_000_00,
            rd_domestic_fen=10_000_00,
            hightech_revenue_fen=80_000_00,
            decision_reason=REJECTION if firm.stage is Stage.REJECTED else None,
        )
        session.add(app)
        session.flush()
        if firm.moved_on is not None:
            on = firm.moved_on
            session.add(
                StageEvent(
                    application_id=app.id,  # type: ignore[arg-type]
                    from_stage=CAME_FROM[firm.stage].value,
                    to_stage=firm.stage.value,
                    at=datetime(on.year, on.month, on.day, 2, tzinfo=UTC),
                    business_date=on,
                    actor="测试 / test",
                )
            )
        if firm.certified_number:
            session.add(
                Certificate(
                    number=firm.certified_number,
                    credit_code=firm.code,
                    district_code=firm.district,
                    application_id=app.id,
                    issued_on=date(2021, 10, 20),
                    expires_on=date(2024, 10, 20),
                )
            )
    session.flush()


def waiting(world: World, district_code: str, batch: str, stage: str) -> list[Firm]:
    """Who a reminder about ``stage`` must list (the notices' own waiting rule, restated)."""
    if stage == Stage.DISTRICT_REVIEW.value:
        at = {Stage.SUBMITTED, Stage.DISTRICT_REVIEW}  # no district decision is ever recorded
    elif stage == Stage.PUBLIC_NOTICE.value:
        at = {Stage.OBJECTION_REVIEW}
    else:
        at = {Stage(stage)}
    return [f for f in world.of(district_code) if f.batch == batch and f.stage in at]


def still_to_renew(world: World, district_code: str) -> list[Firm]:
    dropped = {Stage.REJECTED, Stage.WITHDRAWN}
    return [
        f for f in world.of(district_code) if f.expiring and (f.stage is None or f.stage in dropped)
    ]


@dataclass(frozen=True)
class Scenario:
    world: World
    reminder_days: list[date]
    as_of: date
    language: str
    finished_batch: bool  # the second batch holds applications (final stages only)


@st.composite
def scenarios(draw: st.DrawFn, *, max_reminder_days: int) -> Scenario:
    rows, done = draw(applications), draw(finished)
    as_of = draw(st.dates(date(2021, 6, 1), date(2021, 12, 20)))
    world = make_world([*rows, *done], draw(lone_expiring), as_of, draw(st.integers(0, 2**32)))
    days = st.sampled_from(REMINDER_DATES)
    return Scenario(
        world,
        draw(st.lists(days, min_size=1, max_size=max_reminder_days, unique=True)),
        as_of,
        draw(st.sampled_from(["zh", "en"])),
        bool(done),
    )


def queue_notices(
    template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    scenario: Scenario,
    only: str | None = None,
) -> tuple[list[OutboxMessage], dict[tuple[str, str], date]]:
    """Every kind of notice queued for the scenario's world (or its district ``only``) in
    a fresh database: deadline reminders and overdue notices on its reminder days, then
    on its ``as_of`` behind-target notices, weekly digests, batch results and the city
    summary."""
    world, as_of, language = scenario.world, scenario.as_of, scenario.language
    path = tmp_path_factory.mktemp("isolation") / "hnte.db"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            write(session, world, only)
            session.commit()
            for day in scenario.reminder_days:
                notices.deadline_reminders(session, CITY, as_of=day, language=language)
            notices.behind_target_notices(session, CITY, as_of=as_of, language=language)
            notices.weekly_digests(session, CITY, as_of=as_of, language=language)
            for batch in (OPEN_BATCH, FINISHED_BATCH):
                notices.batch_results(
                    session, CITY, batch_code=batch, as_of=as_of, language=language
                )
            notices.city_summary(session, CITY, as_of=as_of, language=language)
            session.commit()
            queued = list(session.exec(select(OutboxMessage)).scalars())  # type: ignore[call-overload]
            deadlines = {
                (b, s): due for b, s, due in session.connection().execute(
                    select(BatchDeadline.batch_code, BatchDeadline.stage, BatchDeadline.due_on)
                )
            }
    finally:
        engine.dispose()
    return queued, deadlines


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised database with the city loaded, copied for every example."""
    path = tmp_path_factory.mktemp("isolation-template") / "hnte.db"
    engine = make_engine(f"sqlite:///{path}")
    init_database(engine, CITY)
    engine.dispose()
    return path


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_reminder_days=4))
def test_every_district_notice_names_only_its_own_enterprises_and_goes_to_its_own_liaisons(
    template: Path, tmp_path_factory: pytest.TempPathFactory, scenario: Scenario
) -> None:
    world = scenario.world
    queued, deadlines = queue_notices(template, tmp_path_factory, scenario)
    kinds = {row.kind for row in queued}
    assert {"weekly_digest", "city_summary"} <= kinds  # every district, every week
    if scenario.finished_batch:
        assert "batch_results" in kinds
    for row in queued:
        if row.kind == "city_summary":
            assert row.district_code is None
            assert split_addresses(row.recipients) == OPERATORS
            continue
        x = row.district_code
        assert x in DISTRICTS, row.dedupe_key
        assert split_addresses(row.recipients) == LIAISONS[x], row.dedupe_key
        assert split_addresses(row.cc) == (OPERATORS if row.kind == "overdue_notice" else [])
        everything = "\n".join((row.subject, row.body_text, row.body_html))
        leaked = [
            (f.district, f.code, f.name)
            for f in world.others(x)
            if f.code in everything
            or f.name in everything
            or (f.certified_number and f.certified_number in everything)
        ]
        assert not leaked, (row.kind, x, leaked)
        # …and the check has teeth: the district's own enterprises are there, by code and name.
        if row.kind in ("deadline_reminder", "overdue_notice"):
            stage = row.period.split(":", 1)[0]
            assert (row.batch_code, stage) in deadlines
            expected = waiting(world, x, row.batch_code or "", stage)
        elif row.kind == "batch_results":
            expected = [
                f for f in world.of(x) if f.batch == row.batch_code and f.certified_number
            ]
        elif row.kind == "behind_target":
            expected = still_to_renew(world, x)
        else:
            expected = []
        assert expected or row.kind not in ("deadline_reminder", "overdue_notice"), row.dedupe_key
        for f in expected:
            assert f.code in row.body_text and f.name in row.body_text, (row.kind, f)
            assert f.code in row.body_html and f.name in row.body_html, (row.kind, f)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_reminder_days=3))
def test_a_districts_notices_read_the_same_whatever_the_other_districts_hold(
    template: Path, tmp_path_factory: pytest.TempPathFactory, scenario: Scenario
) -> None:
    """Not only names: no count, total, percentage or rejection reason in a district's
    notice may come from another district. So each district's notices, built beside
    everyone else's data, must be exactly those built from its own data alone."""
    world = scenario.world
    queued, _ = queue_notices(template, tmp_path_factory, scenario)
    by_district: dict[str, dict[str, OutboxMessage]] = {}
    for row in queued:
        if row.district_code is not None:
            by_district.setdefault(row.district_code, {})[row.dedupe_key] = row
    assert set(by_district) == set(DISTRICTS)  # a weekly digest each, at least
    busy = {f.district for f in world.firms if not f.anchor}
    # Every district with data of its own, and one without (its notices must be empty
    # of everyone else's figures too).
    idle = sorted(set(DISTRICTS) - busy)[:1]
    for x in sorted(busy) + idle:
        alone, _ = queue_notices(template, tmp_path_factory, scenario, only=x)
        own = {row.dedupe_key: row for row in alone if row.district_code == x}
        # Batch results wait for the whole city's batch to finish: alone, a district may
        # get them sooner. Everything else is sent, or not, on its own data.
        assert set(by_district[x]) <= set(own), (x, set(by_district[x]) - set(own))
        for key, row in by_district[x].items():
            mine = own[key]
            assert (row.subject, row.body_text, row.body_html) == (
                mine.subject,
                mine.body_text,
                mine.body_html,
            ), (key, _first_difference(row.body_text, mine.body_text))


def _first_difference(a: str, b: str) -> str:
    for line_a, line_b in zip(a.splitlines(), b.splitlines(), strict=False):
        if line_a != line_b:
            return f"{line_a!r} != {line_b!r}"
    return "lengths differ"
