"""The scheduler's database lease and its APScheduler wiring, on SQLite and PostgreSQL:
one holder at a time, jobs persisted once under the city's ids, and with two scheduler
processes on one database only the lease holder fires jobs, until it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from hnte.config.city import load_city
from hnte.flows.scheduling import build_scheduler, current_holder, release, try_acquire

CITY = load_city()
TZ = ZoneInfo(CITY.city.timezone)
TTL = timedelta(seconds=60)
SCRIPT = Path(__file__).with_name("scheduler_script.py")


# -- the lease --------------------------------------------------------------------------


def test_a_second_holder_gets_the_lease_only_once_the_first_ones_expires(
    any_engine: Engine,
) -> None:
    t0 = datetime.now(UTC)

    def take(holder: str, seconds: float) -> bool:
        return try_acquire(any_engine, holder=holder, ttl=TTL, now=t0 + timedelta(seconds=seconds))

    assert take("a", 0) is True
    assert current_holder(any_engine) == "a"
    assert take("b", 10) is False
    assert take("a", 30) is True  # a renewal: now held until t0 + 90 s
    assert take("b", 70) is False  # past the first term, not past the renewed one
    assert current_holder(any_engine) == "a"
    assert take("b", 91) is True  # a stopped renewing: its lease ran out
    assert take("a", 92) is False
    assert current_holder(any_engine) == "b"


def test_releasing_the_lease_lets_the_other_holder_take_it_at_once(any_engine: Engine) -> None:
    assert try_acquire(any_engine, holder="a", ttl=TTL) is True
    assert try_acquire(any_engine, holder="b", ttl=TTL) is False
    release(any_engine, holder="b")  # not b's to release: nothing changes
    assert current_holder(any_engine) == "a"
    release(any_engine, holder="a")
    assert current_holder(any_engine) is None
    assert try_acquire(any_engine, holder="b", ttl=TTL) is True
    assert current_holder(any_engine) == "b"


def _race(engine: Engine, contenders: int, *, name: str, now: datetime) -> list[bool]:
    """``contenders`` threads call try_acquire at the same moment; their answers."""
    start = threading.Barrier(contenders)
    answers: list[bool] = [False] * contenders
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            start.wait()
            answers[i] = try_acquire(engine, holder=f"h{i}", name=name, ttl=TTL, now=now)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return answers


def test_of_eight_processes_contending_at_once_exactly_one_gets_the_lease(
    any_engine: Engine,
) -> None:
    t0 = datetime.now(UTC)
    for round_ in range(5):
        name = f"race-{round_}"
        # nobody has held it yet: all of them try to insert the row
        assert sum(_race(any_engine, 8, name=name, now=t0)) == 1
        # its holder died: all of them try to take over the expired row
        assert sum(_race(any_engine, 8, name=name, now=t0 + TTL * 2)) == 1


# -- the APScheduler wiring -------------------------------------------------------------


def _stored_jobs(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all()
    return {job_id: datetime.fromtimestamp(ts, TZ) for job_id, ts in rows}


def test_the_scheduler_stores_each_city_job_once_under_its_own_id(any_engine: Engine) -> None:
    crons = CITY.schedules.crons()
    for _ in range(2):  # a restart builds the scheduler again on the same job store
        scheduler = build_scheduler(any_engine, CITY)
        scheduler.start(paused=True)
        try:
            jobs = {job.id: job for job in scheduler.get_jobs()}
        finally:
            scheduler.shutdown(wait=False)
        stored = _stored_jobs(any_engine)
        assert set(jobs) == set(stored) == set(crons)

    for name, job in jobs.items():
        assert (job.func_ref, job.args) == ("hnte.flows.jobs:run_job", (name,))
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == CITY.schedules.misfire_grace_seconds
    hours = {"target_check": 9, "weekly_digest": 9, "city_summary": 10}
    for name, hour in hours.items():  # "… * * 1" in the city file: Monday, Beijing time
        assert stored[name].weekday() == 0 and stored[name].hour == hour, (name, stored[name])
    assert (stored["deadline_reminders"].hour, stored["close_notices"].hour) == (8, 7)
    soon = datetime.now(TZ) + timedelta(minutes=1, seconds=1)
    assert stored["outbox_dispatch"] <= soon  # every minute


# -- two scheduler processes, one database ----------------------------------------------


class Ticks:
    """The lines the scheduler processes' one-second job appends to a shared file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[tuple[str, float, bool]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [(holder, float(at), held == "1") for holder, at, held in map(str.split, lines)]


def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {within:.0f} s waiting for {what}")
        time.sleep(0.1)


Serve = Callable[[str, Path], subprocess.Popen[str]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a scheduler process (``scheduler_script.py``); kill any left at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(database_url: str, ticks: Path) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HNTE_")}
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), database_url, str(ticks)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _holder_name(process: subprocess.Popen[str]) -> str:
    """The lease holder name a scheduler process prints once it is competing."""
    assert process.stdout is not None
    holder = process.stdout.readline().strip()
    assert holder, f"the scheduler process did not start (exit code {process.poll()})"
    return holder


def test_two_scheduler_processes_on_one_database_fire_each_job_from_one_process_only(
    any_engine: Engine,
    tmp_path: Path,
    serve: Serve,
) -> None:
    url = any_engine.url.render_as_string(hide_password=False)
    ticks = Ticks(tmp_path / "ticks.txt")
    both = [serve(url, ticks.path) for _ in range(2)]  # started together, they race
    processes = {_holder_name(p): p for p in both}
    assert len(processes) == 2

    wait_until(lambda: len(ticks.read()) >= 3, within=30, what="three ticks")
    first = current_holder(any_engine)
    assert first in processes
    [second] = set(processes) - {first}
    before = ticks.read()
    # Only the holder's scheduler fires: no line from the standby, none fired unheld.
    assert {(holder, held) for holder, _, held in before} == {(first, True)}

    processes[first].send_signal(signal.SIGKILL)  # no goodbye: its lease must run out
    processes[first].wait(timeout=30)
    wait_until(
        lambda: sum(holder == second for holder, _, _ in ticks.read()) >= 3,
        within=30,
        what="the standby to take over and tick three times",
    )
    assert current_holder(any_engine) == second
    after = ticks.read()[len(before) :]
    dead = [at for holder, at, _ in after if holder == first]
    # at most the tick the killed process was writing; then only the new holder, held
    assert len(dead) <= 1
    assert {(holder, held) for holder, _, held in after if holder != first} == {(second, True)}
    assert all(at < min(at for holder, at, _ in after if holder == second) for at in dead)

    processes[second].send_signal(signal.SIGTERM)  # a clean stop releases the lease
    assert processes[second].wait(timeout=30) == 0
    assert current_holder(any_engine) is None
