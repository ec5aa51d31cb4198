"""Windows shared out as chunks: claimed once, and taken over when their worker dies."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import unit_of_work
from hnte.services import chunks, review
from hnte.services.importing import import_applications

CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
BATCH = "2021-1"


def _import(engine: Engine, folder: Path, n: int) -> None:
    apps = synthetic.applications(n, seed=5, districts=SHARES, year=2021)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(folder / "apps.csv", apps)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 1))
        assert report.inserted == n


def _ctx(engine: Engine, name: str) -> review.StepContext:
    policy = review.ReviewPolicy.from_city(CITY)
    return review.StepContext(engine, BATCH, date(2021, 6, 1), name, policy, 20)


def test_the_policy_travels_with_the_plan_unchanged() -> None:
    policy = review.ReviewPolicy.from_city(CITY)
    assert chunks.policy_from_json(chunks.policy_to_json(policy)) == policy


def test_sharing_windows_is_refused_on_sqlite_with_a_clear_reason(engine: Engine) -> None:
    with pytest.raises(chunks.WorkersNeedPostgres, match="PostgreSQL"):
        chunks.open_plan(_ctx(engine, "coordinator"))


def test_a_window_whose_worker_dies_is_taken_over_and_every_window_is_done_once(
    any_engine: Engine, tmp_path: Path
) -> None:
    if any_engine.dialect.name != "postgresql":
        pytest.skip("windows are shared on PostgreSQL")
    _import(any_engine, tmp_path, 200)
    ctx = _ctx(any_engine, "coordinator")
    plan = chunks.open_plan(ctx)
    assert chunks._plan_windows(ctx, plan, "district_review") == 10

    # A worker claims the first window and dies before committing it.
    dying = Session(any_engine)
    held = chunks._claim(dying, plan, wait=False)
    assert held is not None
    # Another process skips the held window and does the nine others.
    done = 0
    while chunks._work_one(_ctx(any_engine, "other"), plan, "other", wait=False,
                           step=None):  # fmt: skip
        done += 1
    assert done == 9
    dying.rollback()  # its connection ends: the lock goes, nothing of it was written
    dying.close()
    # The coordinator's waiting claim now gets the dead worker's window.
    assert chunks._work_one(ctx, plan, "coordinator", wait=True, step="district_review")
    assert not chunks._work_one(ctx, plan, "coordinator", wait=True, step=None)
    chunks.close_plan(any_engine, plan, "done")

    with any_engine.connect() as connection:
        workers = dict(
            connection.execute(
                text("SELECT worker, count(*) FROM review_chunk WHERE done_at IS NOT NULL "
                     "GROUP BY worker")  # fmt: skip
            ).all()
        )
        stages = dict(
            connection.execute(text("SELECT stage, count(*) FROM application GROUP BY 1")).all()
        )
        twice = connection.execute(
            text(
                "SELECT application_id FROM stage_event GROUP BY application_id, to_stage "
                "HAVING count(*) > 1"
            )
        ).all()
        outcome = connection.execute(text("SELECT outcome FROM review_plan")).scalar_one()
    assert workers == {"other": 9, "coordinator": 1}
    assert stages == {"district_review": 200}
    assert twice == []
    assert outcome == "done"


def test_a_worker_stops_when_its_plan_is_closed(any_engine: Engine, tmp_path: Path) -> None:
    if any_engine.dialect.name != "postgresql":
        pytest.skip("windows are shared on PostgreSQL")
    _import(any_engine, tmp_path, 50)
    ctx = _ctx(any_engine, "coordinator")
    plan = chunks.open_plan(ctx)
    chunks._plan_windows(ctx, plan, "district_review")
    chunks.close_plan(any_engine, plan, "done")
    # A closed plan's windows left open belong to a run that is over: none is worked.
    assert chunks.work_plan(any_engine, plan, worker="late", chunk=20) == 0
    with any_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM stage_event")).scalar_one() == 0
