"""Two ``hnte batch run 2021-1`` at the same time on one PostgreSQL database.

Each run is its own OS process with its own ephemeral Prefect API, as two operators (or
an operator and a deployment) would start them. Table locks hold both at their first
query, and again where expert review looks for applications without a panel, until both
are there, so their steps really overlap. Then both succeed, every application has moved
once per transition, no certificate is issued twice, and the database ends exactly as
one run alone leaves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine, unit_of_work
from hnte.services import review
from hnte.services.experts import upsert_experts
from hnte.services.importing import import_applications
from hnte.services.setup import init_database

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from year_script import BATCH, DECISIONS, RUN_DATES, snapshot  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
AS_OF = date(2021, 10, 20)
# Small windows: a dozen units of work per step, so the two runs interleave inside steps.
CHUNK = 25
STARTUP_SECONDS = 180  # two ephemeral Prefect servers starting at once on two cores


@pytest.fixture
def reference_url(pg_url: str) -> Iterator[str]:
    """A second fresh schema next to ``pg_url``'s, for the run alone."""
    base = os.environ["HNTE_TEST_DATABASE_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _prepare(engine: Engine, folder: Path) -> None:
    """About 300 applications of batch 2021-1 at every stage with their decisions recorded:
    200 taken through the year's first three runs (some in public notice since 1 September,
    some approved after inspection), then 100 new ones with district recommendations."""
    folder.mkdir(exist_ok=True)
    first = synthetic.applications(200, seed=7, districts=SHARES, year=2021, fakes=3)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(folder / "first.csv", first)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 1))
        assert report.inserted == 200
        pool = synthetic.experts(60, 15, seed=7, enterprise_codes=[a.credit_code for a in first])
        upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
        session.commit()
    policy = review.ReviewPolicy.from_city(CITY)
    for index in range(3):
        _decide(engine, index)
        ctx = review.StepContext(engine, BATCH, RUN_DATES[index], f"prepare-{index}", policy, CHUNK)
        for _, step in review.STEPS:
            step(ctx)
    _decide(engine, 3)
    later = synthetic.applications(100, seed=8, districts=SHARES, year=2021)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(folder / "later.csv", later)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 1))
    assert report.inserted == 100
    _decide(engine, 0)  # the new ones' district recommendations


def _decide(engine: Engine, index: int) -> None:
    with engine.begin() as connection:
        for statement in DECISIONS[index]:
            connection.execute(text(statement))


def _hnte(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hnte.flows.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _environment(url: str, prefect_home: Path, name: str = "hnte-test") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        PGAPPNAME=name,  # libpq's application_name: tells this run's sessions apart
        HNTE_DATABASE_URL=url,
        HNTE_REVIEW_CHUNK=str(CHUNK),
        PREFECT_HOME=str(prefect_home),  # its own ephemeral API and database
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(STARTUP_SECONDS),
    )
    return env


# Where the runs are held so that they meet: at their first query, and again where
# expert review first looks for applications without a panel (a read, then inserts).
GATES = ("application", "panel_seat")


def _close(gate: Engine, table: str) -> Connection:
    """Hold ``table`` locked until the returned connection's transaction ends."""
    holder = gate.connect()
    holder.begin()
    holder.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    return holder


def _open_when_all_wait(
    gate: Engine, holder: Connection, table: str, runs: dict[str, subprocess.Popen[str]]
) -> None:
    """Release ``table`` once every run waits on a lock: on this one, or on one that a
    run held here holds (were the product to serialise the step itself)."""
    deadline = time.monotonic() + STARTUP_SECONDS + 60
    try:
        while _waiting(gate, list(runs)) < len(runs):
            finished = [run.communicate() for run in runs.values() if run.poll() is not None]
            assert not finished, finished
            assert time.monotonic() < deadline, f"the runs never both reached {table}"
            time.sleep(0.1)
    finally:
        holder.rollback()
        holder.close()


def _waiting(gate: Engine, names: list[str]) -> int:
    """How many of the runs named ``names`` have a session waiting on a lock."""
    with gate.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                "WHERE application_name = ANY(:names) AND wait_event_type = 'Lock'"
            ),
            {"names": names},
        ).scalar_one()


def test_two_batch_runs_at_once_move_each_application_once_and_end_as_one_run_alone(
    pg_url: str, reference_url: str, tmp_path: Path
) -> None:
    init = _hnte("init", env=_environment(pg_url, tmp_path / "prefect-init"))
    _, err = init.communicate(timeout=120)
    assert init.returncode == 0, err
    target = make_engine(pg_url)
    _prepare(target, tmp_path / "target")

    # The run alone, on an identical database.
    alone = make_engine(reference_url)
    init_database(alone, CITY)
    _prepare(alone, tmp_path / "alone")
    ctx = review.StepContext(
        alone, BATCH, AS_OF, "alone", review.ReviewPolicy.from_city(CITY), CHUNK
    )
    moved_alone: Counter[tuple[str, str]] = Counter()
    for _, step in review.STEPS:
        for move in step(ctx).moves:
            moved_alone[(move.source.value, move.target.value)] += move.moved
    expected = snapshot(alone)
    alone.dispose()
    assert moved_alone[("public_notice", "certified")] > 20
    assert moved_alone[("formal_check", "expert_review")] > 50  # new panels to draw

    # The two runs at once, held at each gate until both are there.
    gate = make_engine(pg_url)
    holders = [_close(gate, table) for table in GATES]
    names = [f"hnte-race-{uuid.uuid4().hex[:8]}-{n}" for n in ("a", "b")]
    runs = {
        name: _hnte(
            "batch",
            "run",
            BATCH,
            "--as-of",
            AS_OF.isoformat(),
            "--json",
            env=_environment(pg_url, tmp_path / f"prefect-{name}", name),
        )
        for name in names
    }
    try:
        for holder, table in zip(holders, GATES, strict=True):
            _open_when_all_wait(gate, holder, table, runs)
        finished = {name: run.communicate(timeout=300) for name, run in runs.items()}
    finally:
        for holder in holders:
            holder.close()
        for run in runs.values():  # a failed assertion must not leave a run behind
            if run.poll() is None:
                run.kill()
                run.wait()
    failed = {name: finished[name][1][-3000:] for name, run in runs.items() if run.returncode}
    assert not failed, failed
    results = [json.loads(out) for out, _ in finished.values()]

    with target.connect() as connection:
        twice = connection.execute(
            text(
                "SELECT application_id, from_stage, to_stage, count(*) FROM stage_event "
                "GROUP BY application_id, from_stage, to_stage HAVING count(*) > 1"
            )
        ).all()
        certificates = connection.execute(
            text("SELECT number, application_id FROM certificate WHERE application_id IS NOT NULL")
        ).all()
    assert twice == []
    assert len({number for number, _ in certificates}) == len(certificates)
    assert len({app for _, app in certificates}) == len(certificates)
    numbers = sorted(int(number[-5:]) for number, _ in certificates)
    assert numbers == list(range(1, len(numbers) + 1))

    moved_together: Counter[tuple[str, str]] = Counter()
    by_run = []
    for result in results:
        mine: Counter[tuple[str, str]] = Counter()
        for row in result["transitions"]:
            mine[(row["from"], row["to"])] += row["count"]
        by_run.append(sum(mine.values()))
        moved_together.update(mine)
    assert moved_together == +moved_alone, by_run
    assert snapshot(target) == expected
    target.dispose()
    gate.dispose()
