"""``hnte remind`` as an operator runs it: a real process on a prepared SQLite file.

The database holds batch 2021-1 (district review due Friday 2021-06-11) with applications
in every district and no district decision yet, and no certificate register, so every
district is behind its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine
from hnte.models.tables import OutboxMessage
from hnte.services.setup import init_database

ROOT = Path(__file__).resolve().parents[2]
CITY = load_city()
NAMES = {d.code: d.name for d in CITY.districts}
LIAISONS = {",".join(d.liaison_emails): d.code for d in CITY.districts}


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "hnte.db"
    engine = make_engine(f"sqlite:///{path}")
    init_database(engine, CITY)
    shares = [synthetic.DistrictShare(d.code, d.name, 1) for d in CITY.districts]
    apps = synthetic.applications(40, seed=7, districts=shares, year=CITY.city.year)
    assert {a.district_code for a in apps} == set(NAMES)
    with engine.begin() as c:
        synthetic.load_applications(c, apps, batch_code="2021-1", applied_on=date(2021, 5, 28))
    engine.dispose()
    return path


def remind(tmp_path: Path, db_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        HNTE_DATABASE_URL=f"sqlite:///{db_file}",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", "remind", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def remind_json(tmp_path: Path, db_file: Path, *args: str) -> dict[str, Any]:
    run = remind(tmp_path, db_file, *args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # --json: the output is JSON and nothing else


def queued(db_file: Path) -> list[str]:
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as c:
            return list(
                c.execute(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.id)).scalars()
            )
    finally:
        engine.dispose()


def test_a_dry_run_prints_what_would_be_sent_and_queues_nothing(
    tmp_path: Path, db_file: Path
) -> None:
    report = remind_json(tmp_path, db_file, "--as-of", "2021-06-08", "--dry-run")

    assert (report["as_of"], report["dry_run"], report["already_queued"]) == (
        "2021-06-08",
        True,
        0,
    )
    notices = report["notices"]
    # three working days before the deadline is no reminder day; every district is behind
    assert {(n["job"], n["kind"]) for n in notices} == {("target_check", "behind_target")}
    assert sorted(LIAISONS[n["to"]] for n in notices) == sorted(NAMES)
    for n in notices:
        code = LIAISONS[n["to"]]
        assert NAMES[code] in n["subject"]
        assert n["key"] == f"behind_target|{code}||2021-W23"
    assert queued(db_file) == []

    table = remind(tmp_path, db_file, "--as-of", "2021-06-08", "--dry-run")
    assert table.returncode == 0, table.stderr
    assert "将发送 10 封" in table.stdout and "西海岸新区" in table.stdout
    assert queued(db_file) == []


def test_remind_queues_the_notices_once_and_a_second_run_queues_nothing_new(
    tmp_path: Path, db_file: Path
) -> None:
    first = remind_json(tmp_path, db_file, "--as-of", "2021-06-08")
    assert first["dry_run"] is False and first["already_queued"] == 0
    assert sorted(n["key"] for n in first["notices"]) == sorted(
        f"behind_target|{code}||2021-W23" for code in NAMES
    )
    assert queued(db_file) == [n["key"] for n in first["notices"]]

    second = remind_json(tmp_path, db_file, "--as-of", "2021-06-08")
    assert second["notices"] == []
    assert second["already_queued"] == len(first["notices"]) == 10
    assert queued(db_file) == [n["key"] for n in first["notices"]]


def test_five_working_days_before_the_deadline_every_waiting_district_is_reminded(
    tmp_path: Path, db_file: Path
) -> None:
    report = remind_json(tmp_path, db_file, "--as-of", "2021-06-04")
    reminders = [n for n in report["notices"] if n["job"] == "deadline_reminders"]
    assert {n["kind"] for n in reminders} == {"deadline_reminder"}
    assert sorted(n["key"] for n in reminders) == sorted(
        f"deadline_reminder|{code}|2021-1|district_review:D-5" for code in NAMES
    )
    assert all("区市推荐" in n["subject"] for n in reminders)
    engine = make_engine(f"sqlite:///{db_file}")
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == len(
            report["notices"]
        )
    engine.dispose()
