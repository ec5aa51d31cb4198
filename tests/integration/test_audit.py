"""The audit trail: stage events cannot be changed or removed, ``hnte history`` prints an
enterprise's whole trail, and each event names the person who decided (HNTE_OPERATOR,
else the OS user)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine
from hnte.models.stages import Stage
from hnte.models.tables import Application, StageEvent
from hnte.services import review
from hnte.services.importing import import_applications
from hnte.services.review import SYSTEM, ReviewPolicy, StepContext
from hnte.services.setup import init_database
from hnte.services.transitions import move

ROOT = Path(__file__).resolve().parents[2]
BATCH = "2021-1"
CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
FLOW_RUN = "7c0ffee5-1d2e-4f3a-9b8c-0123456789ab"
REVIEWED_ON = date(2021, 6, 10)
WITHDRAWN_ON = "2021-06-15"
WITHDRAW_REASON = "企业因搬迁主动撤回"


def _import(engine: Engine, folder: Path, count: int) -> list[str]:
    """``count`` eligible applications in batch 2021-1, at submitted; their credit codes."""
    apps = synthetic.applications(count, seed=11, districts=SHARES, year=2021, fakes=0)
    with Session(engine) as session:
        source = synthetic.write_csv(folder / "apps.csv", apps)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 20))
        assert report.inserted == count
        session.commit()
    return [a.credit_code for a in apps]


# --- append-only --------------------------------------------------------------------------


@pytest.fixture
def trail(any_engine: Engine, tmp_path: Path) -> Engine:
    """Two applications, each with one stage event."""
    _import(any_engine, tmp_path, 2)
    with Session(any_engine) as session:
        ids = list(session.exec(select(Application.id)).scalars())  # type: ignore[call-overload]
        result = move(
            session,
            source=Stage.SUBMITTED,
            target=Stage.DISTRICT_REVIEW,
            candidates=[(i, None) for i in ids],
            actor="测试 / test",
            as_of=REVIEWED_ON,
        )
        assert result.moved == 2
        session.commit()
    return any_engine


def _events(engine: Engine) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(select(StageEvent.__table__).order_by(StageEvent.id))]  # type: ignore[attr-defined]


TAMPERING = [
    "UPDATE stage_event SET actor = '伪造者'",
    "UPDATE stage_event SET to_stage = 'certified' WHERE id = (SELECT min(id) FROM stage_event)",
    "UPDATE stage_event SET reason = NULL WHERE reason IS NULL",  # even a no-op change
    "DELETE FROM stage_event",
    "DELETE FROM stage_event WHERE id = (SELECT max(id) FROM stage_event)",
]


@pytest.mark.parametrize("statement", TAMPERING)
def test_a_raw_update_or_delete_of_a_stage_event_fails_and_changes_nothing(
    trail: Engine, statement: str
) -> None:
    before = _events(trail)
    with pytest.raises(DBAPIError, match="append-only"), trail.begin() as c:
        c.execute(text(statement))
    assert _events(trail) == before


def test_an_orm_delete_of_a_stage_event_fails_too(trail: Engine) -> None:
    before = _events(trail)
    with Session(trail) as session:
        event = session.exec(select(StageEvent)).scalars().first()  # type: ignore[call-overload]
        session.delete(event)
        with pytest.raises(DBAPIError, match="append-only"):
            session.commit()
    assert _events(trail) == before


def test_new_events_can_still_be_appended(trail: Engine) -> None:
    before = _events(trail)
    with Session(trail) as session:
        app_id = session.exec(select(Application.id)).scalars().first()  # type: ignore[call-overload]
        move(
            session,
            source=Stage.DISTRICT_REVIEW,
            target=Stage.WITHDRAWN,
            candidates=[(app_id, "测试")],
            actor="测试 / test",
            as_of=REVIEWED_ON,
        )
        session.commit()
    after = _events(trail)
    assert after[: len(before)] == before and len(after) == len(before) + 1


def test_replace_into_cannot_overwrite_a_stage_event_on_sqlite(
    engine: Engine, tmp_path: Path
) -> None:
    _import(engine, tmp_path, 1)
    with Session(engine) as session:
        app_id = session.exec(select(Application.id)).scalars().one()  # type: ignore[call-overload]
        move(session, source=Stage.SUBMITTED, target=Stage.DISTRICT_REVIEW,
             candidates=[(app_id, None)], actor="系统", as_of=REVIEWED_ON)
        session.commit()
    before = _events(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
        c.execute(text(
            "REPLACE INTO stage_event (id, application_id, from_stage, to_stage, at, "
            "business_date, actor) SELECT id, application_id, from_stage, 'certified', at, "
            "business_date, '伪造者' FROM stage_event"
        ))
    assert _events(engine) == before


def test_truncate_cannot_empty_the_trail_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    try:
        init_database(engine, CITY)
        _import(engine, tmp_path, 1)
        with Session(engine) as session:
            app_id = session.exec(select(Application.id)).scalars().one()  # type: ignore[call-overload]
            move(session, source=Stage.SUBMITTED, target=Stage.DISTRICT_REVIEW,
                 candidates=[(app_id, None)], actor="系统", as_of=REVIEWED_ON)
            session.commit()
        before = _events(engine)
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
            c.execute(text("TRUNCATE stage_event"))
        assert _events(engine) == before
    finally:
        engine.dispose()


# --- hnte history and the operator ----------------------------------------------------------


def _hnte(
    cwd: Path, db: Path, operator: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        HNTE_DATABASE_URL=f"sqlite:///{db}",
        PREFECT_HOME=str(cwd / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="250",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if operator is not None:
        env["HNTE_OPERATOR"] = operator
    run = subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    return run


def _a_reviewed_year(tmp_path: Path, operator: str | None) -> tuple[Path, str]:
    """Recommend with ``hnte record`` as ``operator``, run the district review step as the
    flow would (run id FLOW_RUN), then withdraw one with ``hnte withdraw``."""
    db = tmp_path / "hnte.db"
    engine = make_engine(f"sqlite:///{db}")
    init_database(engine, CITY)
    codes = _import(engine, tmp_path, 3)
    recorded = _hnte(tmp_path, db, operator, "record", "recommendations", "--batch", BATCH, "--all")
    assert recorded.returncode == 0, recorded.stderr
    ctx = StepContext(engine, BATCH, REVIEWED_ON, flow_run_id=FLOW_RUN, policy=ReviewPolicy())
    review.RUN["district_review"](ctx)
    engine.dispose()
    code = codes[0]
    withdrawn = _hnte(
        tmp_path, db, operator, "withdraw", code, "--batch", BATCH,
        "--reason", WITHDRAW_REASON, "--as-of", WITHDRAWN_ON,
    )
    assert withdrawn.returncode == 0, withdrawn.stderr
    return db, code


def test_hnte_history_prints_the_trail_with_labels_dates_actor_reason_and_flow_run(
    tmp_path: Path,
) -> None:
    db, code = _a_reviewed_year(tmp_path, "张三")

    as_json = _hnte(tmp_path, db, "张三", "history", code, "--json")
    assert as_json.returncode == 0, as_json.stderr
    events = json.loads(as_json.stdout)
    assert [(e["from_stage"], e["to_stage"]) for e in events] == [
        ("submitted", "district_review"),
        ("district_review", "formal_check"),
        ("formal_check", "withdrawn"),
    ]
    assert [e["actor"] for e in events] == [SYSTEM, "张三", "张三"]
    assert [e["business_date"] for e in events] == ["2021-06-10", "2021-06-10", WITHDRAWN_ON]
    assert [e["flow_run_id"] for e in events] == [FLOW_RUN, FLOW_RUN, None]
    assert events[-1]["reason"] == WITHDRAW_REASON
    assert {e["batch_code"] for e in events} == {BATCH}
    assert all(e["at"] for e in events)

    table = _hnte(tmp_path, db, "张三", "history", code)
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if BATCH in line]
    assert len(lines) == 3, table.stdout
    for line, (source, target) in zip(
        lines,
        [(Stage.SUBMITTED, Stage.DISTRICT_REVIEW), (Stage.DISTRICT_REVIEW, Stage.FORMAL_CHECK),
         (Stage.FORMAL_CHECK, Stage.WITHDRAWN)],
        strict=True,
    ):
        assert source.label_zh in line and target.label_zh in line, line
    assert "2021-06-10" in lines[0] and FLOW_RUN[:8] in lines[0]
    assert "张三" in lines[1] and FLOW_RUN[:8] in lines[1]
    assert WITHDRAWN_ON in lines[2] and "张三" in lines[2] and WITHDRAW_REASON in lines[2]

    lower = _hnte(tmp_path, db, "张三", "history", f"  {code.lower()} ", "--json")
    assert json.loads(lower.stdout) == events  # typed in lower case, pasted with spaces


def test_hnte_history_of_an_unknown_enterprise_is_one_line_and_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "hnte.db"
    engine = make_engine(f"sqlite:///{db}")
    init_database(engine, CITY)
    engine.dispose()
    run = _hnte(tmp_path, db, None, "history", "91370200MA00000000")
    assert run.returncode == 1 and run.stdout == ""
    assert "91370200MA00000000" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def _district_actors(db: Path) -> set[str]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as c:
            return set(
                c.execute(
                    select(StageEvent.actor).where(
                        StageEvent.from_stage == Stage.DISTRICT_REVIEW.value
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def test_the_operator_named_in_hnte_operator_is_the_actor_of_the_district_transition(
    tmp_path: Path,
) -> None:
    db, _ = _a_reviewed_year(tmp_path, "张三")
    assert _district_actors(db) == {"张三"}


def test_without_hnte_operator_the_os_user_is_the_actor(tmp_path: Path) -> None:
    db, code = _a_reviewed_year(tmp_path, None)
    user = getpass.getuser()  # the child saw the same LOGNAME/USER as this process
    assert _district_actors(db) == {user}
    events = json.loads(_hnte(tmp_path, db, None, "history", code, "--json").stdout)
    assert events[-1]["actor"] == user  # the manual withdrawal too
