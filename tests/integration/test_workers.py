"""Several workers on one batch: a `prefect server` on PostgreSQL, a process work pool, two
`prefect worker start` processes, and `hnte batch run --workers 2` through a whole year.

The same year is run alone on an identical database. The shared runs must end exactly
as the run alone (every application's stage, events, panels, the certificates' numbers
and holders), with no application moved twice, every window done once, and windows done
by more than one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine, unit_of_work
from hnte.services import review
from hnte.services.experts import upsert_experts
from hnte.services.importing import import_applications
from hnte.services.setup import init_database

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from year_script import BATCH, DECISIONS, snapshot  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
N = 2_000
CHUNK = 20  # a hundred windows a step, so the processes share every step
RUNS = (date(2021, 6, 10), date(2021, 7, 20), date(2021, 9, 1), date(2021, 10, 20))
STARTUP_SECONDS = 120
PG_BASE = os.environ.get("HNTE_TEST_DATABASE_URL", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A `prefect server` whose own database is a fresh PostgreSQL database."""
    if not PG_BASE:
        pytest.skip("HNTE_TEST_DATABASE_URL not set")
    name = f"hnte_prefect_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    host_part = PG_BASE.split("://", 1)[1].split("?", 1)[0].rsplit("/", 1)[0]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-services"],  # fmt: skip
        env=_clean_env(
            PREFECT_HOME=str(tmp_path / "prefect-server"),
            PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://{host_part}/{name}",
            PREFECT_UI_ENABLED="false",
        ),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        yield url
    finally:
        _stop(server)
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def reference_url(pg_url: str) -> Iterator[str]:
    """A second fresh schema next to ``pg_url``'s, for the year alone."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in PG_BASE else "?"
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _prepare(engine: Engine, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    apps = synthetic.applications(N, seed=11, districts=SHARES, year=2021, fakes=20)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(folder / "apps.csv", apps)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 1))
        assert report.inserted == N
        pool = synthetic.experts(120, 30, seed=11, enterprise_codes=[a.credit_code for a in apps])
        upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
        session.commit()


def _decide(engine: Engine, index: int) -> None:
    with engine.begin() as connection:
        for statement in DECISIONS[index]:
            connection.execute(text(statement))


def _hnte(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_two_workers_share_every_step_and_end_as_the_run_alone(
    prefect_server: str, pg_url: str, reference_url: str, tmp_path: Path
) -> None:
    client_env = _clean_env(
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path / "prefect-client"),
        HNTE_DATABASE_URL=pg_url,
        HNTE_REVIEW_CHUNK=str(CHUNK),
    )
    init = _hnte(client_env, "init")
    assert init.returncode == 0, init.stderr
    deployed = _hnte(client_env, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    target = make_engine(pg_url)
    _prepare(target, tmp_path / "target")

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "hnte-review",
             "--name", f"hnte-test-{n}", "--limit", "4"],  # fmt: skip
            env={
                **client_env,
                "PREFECT_HOME": str(tmp_path / f"prefect-worker-{n}"),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            },
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"worker-{n}.log").open("wb"),
        )
        for n in (1, 2)
    ]
    results = []
    try:
        for index, as_of in enumerate(RUNS):
            _decide(target, index)
            run = _hnte(client_env, "batch", "run", BATCH, "--as-of", as_of.isoformat(),
                        "--workers", "2", "--json")  # fmt: skip
            assert run.returncode == 0, run.stderr[-3000:]
            results.append(json.loads(run.stdout))
        runs = _worker_runs(prefect_server, tmp_path)
    finally:
        for worker in workers:
            _stop(worker)

    # The same year alone, in one process, on an identical database.
    alone = make_engine(reference_url)
    init_database(alone, CITY)
    _prepare(alone, tmp_path / "alone")
    policy = review.ReviewPolicy.from_city(CITY)
    for index, as_of in enumerate(RUNS):
        _decide(alone, index)
        ctx = review.StepContext(alone, BATCH, as_of, f"alone-{index}", policy, CHUNK)
        for _, step in review.STEPS:
            step(ctx)
    expected = snapshot(alone)
    alone.dispose()

    with target.connect() as connection:
        twice = connection.execute(
            text(
                "SELECT application_id, from_stage, to_stage, count(*) FROM stage_event "
                "GROUP BY application_id, from_stage, to_stage HAVING count(*) > 1"
            )
        ).all()
        plans = connection.execute(text("SELECT outcome FROM review_plan")).scalars().all()
        open_chunks = connection.execute(
            text("SELECT count(*) FROM review_chunk WHERE done_at IS NULL")
        ).scalar_one()
        by_worker = dict(
            connection.execute(
                text("SELECT flow_run_id, count(*) FROM review_chunk GROUP BY flow_run_id")
            ).all()
        )
    assert twice == []
    assert plans == ["done"] * len(RUNS)
    assert open_chunks == 0
    got = snapshot(target)
    assert got["applications"] == expected["applications"]
    assert got["events"] == expected["events"]
    assert got["panels"] == expected["panels"]
    # Numbers follow the order windows commit in, so which enterprise got which number
    # may differ; the numbers and the enterprises certified on each day may not.
    assert sorted(n for n, _, _ in got["certificates"]) == sorted(
        n for n, _, _ in expected["certificates"]
    )
    assert sorted((c, d) for _, c, d in got["certificates"]) == sorted(
        (c, d) for _, c, d in expected["certificates"]
    )
    assert len(expected["certificates"]) > N // 5
    # The windows were shared: worker flow runs from the pool did some of them, and every
    # one of those runs ended when its plan closed.
    assert len(runs) == 2 * len(RUNS)
    assert set(runs.values()) == {"COMPLETED"}, runs
    assert sum(by_worker.get(run_id, 0) for run_id in runs) > 0, by_worker
    assert len(by_worker) > 2, by_worker
    target.dispose()


def _worker_runs(api: str, tmp_path: Path) -> dict[str, str]:
    """The review-worker flow runs' final states, once every one has ended."""
    script = (
        "import json, time\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "from prefect.client.schemas.sorting import FlowRunSort\n"
        "with get_client(sync_client=True) as c:\n"
        "    for _ in range(240):\n"
        "        runs = c.read_flow_runs(\n"
        "            flow_filter=FlowFilter(name=FlowFilterName(any_=['review-worker'])),\n"
        # This server version refuses an unset limit or sort (422).
        "            limit=200, sort=FlowRunSort.ID_DESC)\n"
        "        states = {str(r.id): r.state.type.value for r in runs}\n"
        "        if states and all(r.state.is_final() for r in runs):\n"
        "            break\n"
        "        time.sleep(0.5)\n"
        "print(json.dumps(states))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_clean_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "prefect-client")),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
