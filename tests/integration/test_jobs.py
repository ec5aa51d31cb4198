"""The scheduled jobs over four simulated weeks of a small city year, on a real database
and a real SMTP server: who is told what, nothing queued twice, everything sent once.

The world: batch 2021-1 (district review due 2021-06-11) with a few applications in every
district; eight districts recommend theirs on 2021-06-07, 平度市 and 莱西市 never do.
市北区, 西海岸新区 and 莱西市 are behind their targets; the other seven have already met
theirs with a certificate issued this year. The jobs run on the days the city's crons
fire (``demo._job_days``), each job twice, as a restarted scheduler would.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.message import EmailMessage

import pytest
from smtp_server import SmtpServer, parse
from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.config.settings import Settings, use_settings
from hnte.flows import jobs
from hnte.flows.demo import _job_days
from hnte.models.tables import Certificate, Enterprise, OutboxMessage, OutboxStatus, Target
from hnte.models.workdays import workdays_between
from hnte.notifications.notices import Queued
from hnte.services.decisions import recommend_all

CITY = load_city()
YEAR = CITY.city.year
BATCH = "2021-1"
DISTRICTS = {d.code: d for d in CITY.districts}
NAMES = {d.code: d.name for d in CITY.districts}
OPERATORS = list(CITY.city.operator_emails)
DEADLINE = CITY.batches[0].deadlines["district_review"]  # 2021-06-11, a Friday

START, END = date(2021, 5, 31), date(2021, 6, 27)  # four weeks, Monday to Sunday
MONDAYS = [START + timedelta(weeks=n) for n in range(4)]
DECIDED_ON = date(2021, 6, 7)  # after the 5-days reminder, before the 1-day one
NEVER_DECIDE = {"370283", "370285"}  # 平度市, 莱西市
BEHIND = {"370203", "370211", "370285"}  # 市北区, 西海岸新区, 莱西市
SENDER = "gaoqi@kjj.qingdao.example"
PROGRESS_KINDS = {"behind_target", "weekly_digest", "city_summary"}  # carry the chart
# What the four weeks send, by kind (worked out in the first test below).
EXPECTED = Counter(
    deadline_reminder=10 + 2,
    overdue_notice=2 * 3,
    behind_target=3 * 4,
    weekly_digest=10 * 4,
    city_summary=4,
)


def week(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


# -- the world --------------------------------------------------------------------------


@dataclass
class World:
    engine: Engine
    # district code → {(credit code, name)} of every enterprise the database knows
    enterprises: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


def build_world(engine: Engine) -> World:
    """Applications, last year's certificates, this year's targets; nothing decided yet."""
    rng = random.Random("hnte-jobs-test")
    shares = [synthetic.DistrictShare(d.code, d.name, 1) for d in CITY.districts]
    apps = synthetic.applications(40, seed=7, districts=shares, year=YEAR)
    assert {a.district_code for a in apps} == set(DISTRICTS)  # every district applied
    stock = synthetic.starting_stock({code: 6 for code in DISTRICTS}, seed=7, year=YEAR)
    # On-track districts renew nothing this year; the behind ones have certificates to chase.
    stock = [s for s in stock if s.district_code in BEHIND or s.expires_on.year > YEAR]
    assert {s.district_code for s in stock if s.expires_on.year == YEAR} == BEHIND
    new = [
        synthetic.StockCertificate(
            number=f"GR{YEAR}37{n:05d}",
            credit_code=synthetic.credit_code(rng, code),
            name=f"青岛{NAMES[code]}新认定科技有限公司",
            district_code=code,
            registered_on=date(2012, 3, 1),
            tech_field="电子信息",
            issued_on=date(YEAR, 3, 15),
            expires_on=date(YEAR + 3, 3, 15),
        )
        for n, code in enumerate(sorted(set(DISTRICTS) - BEHIND), start=1)
    ]
    start_stock = Counter(s.district_code for s in stock)
    with engine.begin() as c:
        synthetic.load_applications(c, apps, batch_code=BATCH, applied_on=date(YEAR, 5, 28))
        certified = stock + new
        c.execute(
            insert(Enterprise),
            [
                {
                    "credit_code": s.credit_code,
                    "name": s.name,
                    "district_code": s.district_code,
                    "registered_on": s.registered_on,
                    "tech_field": s.tech_field,
                }
                for s in certified
            ],
        )
        c.execute(
            insert(Certificate),
            [
                {
                    "number": s.number,
                    "credit_code": s.credit_code,
                    "district_code": s.district_code,
                    "issued_on": s.issued_on,
                    "expires_on": s.expires_on,
                }
                for s in certified
            ],
        )
        for code in DISTRICTS:  # targets a city this small can be measured against
            net = 5 if code in BEHIND else 1
            c.execute(
                update(Target)
                .where(Target.year == YEAR, Target.district_code == code)
                .values(net_increase=net, stock_goal=start_stock[code] + net)
            )
        world = World(engine)
        for code, credit, name in c.execute(
            select(Enterprise.district_code, Enterprise.credit_code, Enterprise.name)
        ):
            world.enterprises.setdefault(code, set()).add((credit, name))
    return world


def recommend(engine: Engine, day: date) -> None:
    """Every district but the two that never decide recommends all its applications."""
    for code in sorted(set(DISTRICTS) - NEVER_DECIDE):
        with Session(engine) as session:
            recommend_all(
                session, batch_code=BATCH, district_code=code, operator="区市联络员", today=day
            )


@dataclass
class Run:
    """What each job queued on each day, and what its second run the same day found."""

    queued: dict[tuple[date, str], Queued] = field(default_factory=dict)
    again: dict[tuple[date, str], Queued] = field(default_factory=dict)


def simulate(engine: Engine, *, twice: bool = False, dispatch: bool = False) -> Run:
    """Each simulated day: the jobs at their fire times, then the day's decisions, then
    (when ``dispatch``) the outbox, as the every-minute dispatch job would by evening."""
    run = Run()
    fires = _job_days(CITY, START, END)
    day = START
    while day <= END:
        for name in fires.get(day, []):
            run.queued[(day, name)] = jobs.JOBS[name](day, engine=engine)
            if twice:
                run.again[(day, name)] = jobs.JOBS[name](day, engine=engine)
        if day == DECIDED_ON:
            recommend(engine, day)
        if dispatch:
            jobs.JOBS["outbox_dispatch"](day, engine=engine)
        day += timedelta(days=1)
    return run


def outbox_rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())  # type: ignore[call-overload]


def queued_by_kind(engine: Engine) -> dict[str, set[tuple[str | None, str]]]:
    """kind → {(district, period)} over the whole outbox."""
    by_kind: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    for row in outbox_rows(engine):
        by_kind[row.kind].add((row.district_code, row.period))
    return dict(by_kind)


def message_ids(server: SmtpServer) -> Counter[str]:
    return Counter(str(parse(e)["Message-ID"]) for e in server.received)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def point_at(server: SmtpServer, engine: Engine) -> None:
    use_settings(
        Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_sender=SENDER,
            smtp_timeout=2.0,
        )
    )


@pytest.fixture
def mail_settings() -> Iterator[None]:
    """Undo ``point_at`` after the test: the process goes back to its environment."""
    yield
    use_settings(None)


# -- who is told what -------------------------------------------------------------------


def test_the_calendar_puts_the_reminders_where_the_test_expects_them() -> None:
    assert workdays_between(date(2021, 6, 4), DEADLINE) == 5
    assert workdays_between(date(2021, 6, 10), DEADLINE) == 1
    assert date(2021, 6, 4) < DECIDED_ON < date(2021, 6, 10)
    assert CITY.reminders.working_days_before == [5, 1]
    assert all(d.weekday() == 0 for d in MONDAYS)


def test_over_four_weeks_each_district_is_told_only_what_concerns_it(any_engine: Engine) -> None:
    build_world(any_engine)
    run = simulate(any_engine, twice=True)
    every = set(DISTRICTS)
    weeks = [week(m) for m in MONDAYS]

    assert (
        queued_by_kind(any_engine)
        == {
            # five working days before: every district still has applications waiting
            "deadline_reminder": {(d, "district_review:D-5") for d in every}
            # one working day before: only the districts that have not decided
            | {(d, "district_review:D-1") for d in NEVER_DECIDE},
            # after the deadline (Friday of the second week): once a week to those two
            "overdue_notice": {
                (d, f"district_review:{w}") for d in NEVER_DECIDE for w in weeks[1:]
            },
            "behind_target": {(d, w) for d in BEHIND for w in weeks},
            "weekly_digest": {(d, w) for d in every for w in weeks},
            "city_summary": {(None, w) for w in weeks},
        }
    )
    assert len(outbox_rows(any_engine)) == EXPECTED.total()
    for row in outbox_rows(any_engine):
        assert row.status == OutboxStatus.QUEUED
        if row.district_code is None:
            assert row.recipients.split(",") == OPERATORS and row.cc == ""
            continue
        assert row.recipients.split(",") == DISTRICTS[row.district_code].liaison_emails
        assert NAMES[row.district_code] in row.subject
        # only an overdue notice copies the city's operators
        assert row.cc.split(",") == (OPERATORS if row.kind == "overdue_notice" else [""])

    # every job ran twice a day; the second run found everything already queued
    for key, first in run.queued.items():
        again = run.again[key]
        assert again.notices == [], key
        assert again.duplicates == len(first.notices) + first.duplicates, key
    weekly = {name for (day, name), q in run.queued.items() if q.notices and day in MONDAYS}
    assert weekly >= {"target_check", "weekly_digest", "city_summary", "deadline_reminders"}


def test_a_dry_run_reports_the_notices_and_queues_nothing(world: World) -> None:
    engine = world.engine
    days = (date(2021, 6, 4), MONDAYS[1])  # a reminder day; a Monday
    dry = {
        (day, name): jobs.JOBS[name](day, engine=engine, dry_run=True)
        for day in days
        for name in jobs.JOBS
    }
    assert sum(len(q.notices) for q in dry.values()) > 30
    assert outbox_rows(engine) == []

    # the dry run said exactly what the real run then queues
    for (day, name), would in dry.items():
        if name == "outbox_dispatch":
            continue
        done = jobs.JOBS[name](day, engine=engine)
        assert [n[3] for n in done.notices] == [n[3] for n in would.notices], (day, name)
    assert len(outbox_rows(engine)) == sum(
        len(q.notices) for (_, name), q in dry.items() if name != "outbox_dispatch"
    )


# -- sending: exactly once --------------------------------------------------------------


@pytest.mark.usefixtures("mail_settings")
def test_a_crash_between_queueing_and_sending_loses_nothing_and_sends_nothing_twice(
    world: World, smtp: SmtpServer
) -> None:
    engine, monday = world.engine, MONDAYS[1]
    point_at(smtp, engine)
    weekly = ("target_check", "weekly_digest", "city_summary")
    first = [jobs.JOBS[name](monday, engine=engine) for name in weekly]
    queued = outbox_rows(engine)
    assert len(queued) == sum(len(q.notices) for q in first) == len(BEHIND) + 10 + 1
    # ... the process dies here, before the dispatch job runs. After the restart:
    again = [jobs.JOBS[name](monday, engine=engine) for name in weekly]
    assert [q.notices for q in again] == [[], [], []]
    assert outbox_rows(engine) == queued

    report = jobs.JOBS["outbox_dispatch"](monday, engine=engine)
    assert (report.sent, report.failed, report.retried) == (len(queued), 0, 0)
    assert jobs.JOBS["outbox_dispatch"](monday, engine=engine).attempted == 0
    assert message_ids(smtp) == Counter({row.message_id: 1 for row in queued})
    assert all(row.status == OutboxStatus.SENT for row in outbox_rows(engine))


@pytest.mark.usefixtures("mail_settings")
def test_with_the_mail_server_down_every_notice_waits_and_goes_out_once_it_is_back(
    world: World,
) -> None:
    engine = world.engine
    server = SmtpServer()  # its port is chosen; nothing listens on it yet
    point_at(server, engine)
    simulate(engine, dispatch=True)  # 28 days of the dispatch job failing to connect
    rows = outbox_rows(engine)
    assert len(rows) == EXPECTED.total()
    assert all(r.status == OutboxStatus.QUEUED and r.attempts == 0 for r in rows)

    with server:
        report = jobs.JOBS["outbox_dispatch"](END, engine=engine)
        assert (report.sent, report.failed) == (len(rows), 0)
        assert jobs.JOBS["outbox_dispatch"](END, engine=engine).attempted == 0
    assert message_ids(server) == Counter({row.message_id: 1 for row in rows})
    assert all(r.status == OutboxStatus.SENT for r in outbox_rows(engine))


# -- what arrives -----------------------------------------------------------------------


def _parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    return text.get_content(), html.get_content()  # type: ignore[union-attr]


def _district_of(recipients: tuple[str, ...]) -> str | None:
    found = {code for code, d in DISTRICTS.items() if set(d.liaison_emails) & set(recipients)}
    assert len(found) <= 1, recipients  # a message never goes to two districts
    return found.pop() if found else None


@pytest.mark.usefixtures("mail_settings")
def test_each_district_receives_its_own_mail_with_both_parts_and_no_other_districts_enterprise(
    world: World, smtp: SmtpServer
) -> None:
    point_at(smtp, world.engine)
    simulate(world.engine, dispatch=True)
    rows = {row.message_id: row for row in outbox_rows(world.engine)}
    assert len(smtp.received) == len(rows)
    kinds: Counter[str] = Counter()

    for envelope in smtp.received:
        message = parse(envelope)
        row = rows[str(message["Message-ID"])]
        kinds[row.kind] += 1
        text, html = _parts(message)
        assert envelope.mail_from == SENDER and message["From"] == SENDER
        district = _district_of(envelope.rcpt_tos)
        assert district == row.district_code
        if district is None:  # the city summary: to the operators only, every district in it
            assert list(envelope.rcpt_tos) == OPERATORS
            assert all(name in text and name in html for name in NAMES.values())
        else:
            liaisons = DISTRICTS[district].liaison_emails
            copied = OPERATORS if row.kind == "overdue_notice" else []
            assert list(envelope.rcpt_tos) == liaisons + copied
            assert message["To"] == ", ".join(liaisons)
            assert message.get("Cc") == (", ".join(copied) if copied else None)
            assert NAMES[district] in str(message["Subject"])
            assert NAMES[district] in text and NAMES[district] in html
            _assert_names_no_other_district(world, district, text + html)
        if row.kind in PROGRESS_KINDS:  # the progress chart: table bars and text bars
            assert 'class="chart"' in html and ("bar-fill" in html or "bar-rest" in html)
            assert re.search(r"[█░]{20} \d", text), text
        if row.kind in ("deadline_reminder", "overdue_notice", "behind_target"):
            # the list of its own enterprises (waiting, or to renew) is there
            own = {code for code, _ in world.enterprises[district or ""]}
            assert any(code in text and code in html for code in own)

    assert kinds == EXPECTED


def _assert_names_no_other_district(world: World, district: str, body: str) -> None:
    own = world.enterprises[district]
    own_names = {name for _, name in own}
    for other, enterprises in world.enterprises.items():
        if other == district:
            continue
        for code, name in enterprises:
            assert code not in body, (district, other, code)
            if name not in own_names:  # two enterprises may share a made-up name
                assert name not in body, (district, other, name)
