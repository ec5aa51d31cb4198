"""Backups of a live SQLite database: taken again and again while a year of review steps
writes to it, each copy is consistent, and a copy taken mid-year, restored and finished,
ends exactly as an uninterrupted year. PostgreSQL is refused with the pg_dump command."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine
from hnte.services.backup import BackupError, backup_sqlite, pg_dump_command
from hnte.services.experts import upsert_experts
from hnte.services.importing import import_applications
from hnte.services.setup import init_database

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from year_script import run_year, snapshot  # noqa: E402

# Small windows mean many commits, so the year runs long enough (~4 s) to be backed up
# dozens of times. The reference must use the same chunk: the random inspection sample
# is drawn per window.
CHUNK = 5
DB_PASSWORD = "DbPa55wordY7"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with 200 imported applications and an expert pool, before any review."""
    folder = tmp_path_factory.mktemp("backup-prepared")
    path = folder / "hnte.db"
    engine = make_engine(f"sqlite:///{path}")
    city = load_city()
    init_database(engine, city)
    districts = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(200, seed=7, districts=districts, year=2021, fakes=3)
    with Session(engine) as session:
        source = synthetic.write_csv(folder / "apps.csv", apps)
        report = import_applications(session, source, batch_code="2021-1", today=date(2021, 5, 1))
        assert report.inserted == 200
        pool = synthetic.experts(60, 15, seed=7, enterprise_codes=[a.credit_code for a in apps])
        upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
        session.commit()
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def reference(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The state an uninterrupted year ends in."""
    path = tmp_path_factory.mktemp("backup-reference") / "hnte.db"
    shutil.copy(prepared, path)
    engine = make_engine(f"sqlite:///{path}")
    run_year(engine, CHUNK)
    state = snapshot(engine)
    engine.dispose()
    return state


def _year_process(url: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNTE_")}
    return subprocess.Popen(
        [sys.executable, str(HERE / "year_script.py"), url, str(CHUNK)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def inconsistencies(path: Path) -> list[str]:
    """Everything about this copy that a half-written transaction would leave wrong."""
    with closing(sqlite3.connect(path)) as c:
        problems = [f"integrity: {r[0]}" for r in c.execute("PRAGMA integrity_check")]
        problems = [p for p in problems if p != "integrity: ok"]
        problems += [f"foreign key: {r}" for r in c.execute("PRAGMA foreign_key_check")]
        trail: dict[int, list[tuple[str, str]]] = {}
        for app_id, source, target in c.execute(
            "SELECT application_id, from_stage, to_stage FROM stage_event ORDER BY id"
        ):
            trail.setdefault(app_id, []).append((source, target))
        for app_id, stage, version in c.execute("SELECT id, stage, version FROM application"):
            events = trail.get(app_id, [])
            if (events[-1][1] if events else "submitted") != stage:
                problems.append(f"application {app_id} at {stage}, last event {events[-1:]}")
            if len(events) != version - 1:
                problems.append(f"application {app_id}: {len(events)} events, version {version}")
            stages = ["submitted", *(t for _, t in events)]
            if [s for s, _ in events] != stages[:-1]:
                problems.append(f"application {app_id}: broken trail {events}")
        problems += [
            f"certified application {app_id} has {n} certificates"
            for app_id, n in c.execute(
                "SELECT a.id, count(c.number) FROM application a "
                "LEFT JOIN certificate c ON c.application_id = a.id "
                "WHERE a.stage = 'certified' GROUP BY a.id HAVING count(c.number) != 1"
            )
        ]
        problems += [
            f"certificate {number} for application {app_id} at {stage}"
            for number, app_id, stage in c.execute(
                "SELECT c.number, c.application_id, a.stage FROM certificate c "
                "LEFT JOIN application a ON a.id = c.application_id "
                "WHERE c.application_id IS NOT NULL AND a.stage IS NOT 'certified'"
            )
        ]
    return problems


def _events(path: Path) -> int:
    with closing(sqlite3.connect(path)) as c:
        return c.execute("SELECT count(*) FROM stage_event").fetchone()[0]


@dataclass
class LiveRun:
    backups: int
    event_counts: list[int]  # stage events in each copy, in the order they were taken
    problems: dict[int, list[str]]  # copy number -> what was wrong with it
    mid_year: Path  # a copy taken about half-way through the year
    final: dict[str, object]  # the live database's own end state
    seconds: float


@pytest.fixture(scope="module")
def live(
    prepared: Path, reference: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> LiveRun:
    """Back the database up in a loop for as long as the year script writes to it."""
    folder = tmp_path_factory.mktemp("backup-live")
    database = folder / "hnte.db"
    shutil.copy(prepared, database)
    url = f"sqlite:///{database}"
    total = sum(int(r[3]) for r in reference["events"])  # type: ignore[union-attr]
    counts: list[int] = []
    problems: dict[int, list[str]] = {}
    mid_year: Path | None = None
    started = time.monotonic()
    process = _year_process(url, folder)
    try:
        while True:
            running = process.poll() is None
            copy = backup_sqlite(url, folder / "copy.db", force=True)
            counts.append(_events(copy))
            found = inconsistencies(copy)
            if found:
                problems[len(counts)] = found[:5]
            if mid_year is None and total // 2 <= counts[-1] < total:
                mid_year = copy.rename(folder / "mid-year.db")
            if not running:
                break  # this last copy was taken after the year had ended
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert mid_year is not None, counts
    engine = make_engine(url)
    final = snapshot(engine)
    engine.dispose()
    return LiveRun(len(counts), counts, problems, mid_year, final, time.monotonic() - started)


def test_backups_taken_while_the_year_runs_see_it_at_many_points(
    live: LiveRun, reference: dict[str, object]
) -> None:
    total = sum(int(r[3]) for r in reference["events"])  # type: ignore[union-attr]
    assert live.backups >= 10, live
    assert len({n for n in live.event_counts if 0 < n < total}) >= 5, live.event_counts
    assert live.event_counts == sorted(live.event_counts)  # no copy went back in time
    assert live.event_counts[-1] == total


def test_every_backup_taken_while_the_year_runs_is_consistent(live: LiveRun) -> None:
    assert live.problems == {}


def test_backing_up_does_not_disturb_the_writer(
    live: LiveRun, reference: dict[str, object]
) -> None:
    assert live.final == reference


def test_restoring_a_mid_year_backup_and_finishing_the_year_ends_as_an_uninterrupted_run(
    live: LiveRun, reference: dict[str, object], tmp_path: Path
) -> None:
    restored = tmp_path / "hnte.db"
    shutil.copy(live.mid_year, restored)  # a copy has no -wal or -shm beside it
    assert not Path(f"{live.mid_year}-wal").exists()
    url = f"sqlite:///{restored}"
    process = _year_process(url, tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    engine = make_engine(url)
    state = snapshot(engine)
    engine.dispose()
    for key, rows in reference.items():
        assert state[key] == rows, key
    assert inconsistencies(restored) == []


# --- refusals ---------------------------------------------------------------------------


def test_a_backup_refuses_to_overwrite_a_file_without_force(
    prepared: Path, tmp_path: Path
) -> None:
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    with pytest.raises(BackupError, match="--force"):
        backup_sqlite(prepared, target)
    assert target.read_text() == "an older backup"

    Path(f"{target}-wal").write_bytes(b"a log that belongs to the file being replaced")
    assert backup_sqlite(prepared, target, force=True) == target
    assert not Path(f"{target}-wal").exists()
    assert inconsistencies(target) == []
    assert _events(target) == _events(prepared)
    assert [p.name for p in tmp_path.iterdir()] == ["backup.db"]  # no partial file left


def test_a_missing_database_is_refused_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="不存在"):
        backup_sqlite(f"sqlite:///{tmp_path / 'typo.db'}", tmp_path / "backup.db")
    assert list(tmp_path.iterdir()) == []


def test_backing_up_onto_the_database_itself_is_refused(prepared: Path, tmp_path: Path) -> None:
    database = tmp_path / "hnte.db"
    shutil.copy(prepared, database)
    with pytest.raises(BackupError, match="自身"):
        backup_sqlite(database, database, force=True)
    assert inconsistencies(database) == []


def test_a_postgresql_url_is_refused_with_the_pg_dump_command_and_never_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://hnte:{DB_PASSWORD}@db.kjj.example:6543/hnte_prod"
    target = tmp_path / "hnte.dump"
    with pytest.raises(BackupError) as refused:
        backup_sqlite(url, target)
    message = str(refused.value)
    assert "\n" not in message and DB_PASSWORD not in message
    assert f"pg_dump -Fc -h db.kjj.example -p 6543 -U hnte hnte_prod > {target}" in message
    assert not target.exists()
    assert pg_dump_command("postgresql://me@localhost/hnte", "a b.dump") == (
        "pg_dump -Fc -h localhost -p 5432 -U me hnte > 'a b.dump'"
    )


# --- hnte backup ------------------------------------------------------------------------


def _hnte(cwd: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        HNTE_DATABASE_URL=database_url,
        PREFECT_HOME=str(cwd / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hnte_backup_prints_the_copy_and_its_size_and_needs_force_to_overwrite(
    prepared: Path, tmp_path: Path
) -> None:
    shutil.copy(prepared, tmp_path / "hnte.db")
    url = "sqlite:///hnte.db"  # the default form: a file in the working folder

    first = _hnte(tmp_path, url, "backup", "备份.db")
    assert first.returncode == 0, first.stderr
    size = (tmp_path / "备份.db").stat().st_size
    assert first.stdout.startswith("已备份到 备份.db（")
    assert f"backup written: 备份.db ({size:,} bytes)" in first.stdout
    assert inconsistencies(tmp_path / "备份.db") == []

    again = _hnte(tmp_path, url, "backup", "备份.db")
    assert again.returncode == 1 and again.stdout == ""
    assert "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    forced = _hnte(tmp_path, url, "backup", "备份.db", "--force")
    assert forced.returncode == 0, forced.stderr


def test_hnte_backup_on_postgresql_prints_the_pg_dump_command_without_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://hnte:{DB_PASSWORD}@127.0.0.1:5432/hnte"
    run = _hnte(tmp_path, url, "backup", "hnte.dump")
    assert run.returncode == 1
    assert "pg_dump -Fc -h 127.0.0.1 -p 5432 -U hnte hnte > hnte.dump" in run.stderr
    assert DB_PASSWORD not in run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "hnte.dump").exists()
