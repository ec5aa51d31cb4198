"""The SMTP password and the database password never leave the process in anything a
person or another system reads: CLI output, settings dumps, logs, the outbox, the
dispatcher's report, Prefect's logs, states and artifacts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import smtp_server
from smtp_server import SmtpServer
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from hnte import synthetic
from hnte.config.city import load_city
from hnte.config.settings import Settings, get_settings, redact_url
from hnte.models.db import get_engine, make_engine, unit_of_work
from hnte.models.tables import OutboxMessage
from hnte.notifications import outbox
from hnte.notifications.smtp import dispatch
from hnte.services.importing import import_applications
from hnte.services.setup import init_database

ROOT = Path(__file__).resolve().parents[2]
SMTP_SECRET = "S3cr3tPa55wordX9"
DB_SECRET = "DbPa55wordY7"
SECRETS = (SMTP_SECRET, DB_SECRET)
UNREACHABLE = f"postgresql+psycopg://hnte:{DB_SECRET}@127.0.0.1:1/nope"
T0 = datetime(2021, 6, 1, 1, 0, tzinfo=UTC)


def assert_no_secret(text: str, secrets: Sequence[str] = SECRETS) -> None:
    found = [s for s in secrets if s in text]
    assert not found, f"{found} in: {text[:3000]}"


def queue_notices(engine: Engine, count: int = 2) -> None:
    with unit_of_work(engine) as session:
        for n in range(count):
            assert outbox.enqueue(
                session, kind="behind_target", dedupe_key=f"behind_target|370211||2021-W{n:02d}",
                recipients=[f"liaison{n}@huangdao.example"], subject=f"进度提醒 {n}",
                text="正文", html="<p>正文</p>", message_id=f"<n{n}@kjj.qingdao.example>",
                period=f"2021-W{n:02d}", district_code="370211", now=T0,
            )
        session.commit()


# --- the CLI, as a person runs it ----------------------------------------------------------


def hnte(cwd: Path, env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        HNTE_SMTP_USERNAME="hnte",
        HNTE_SMTP_PASSWORD=SMTP_SECRET,
        HNTE_SMTP_TIMEOUT="5",
        PREFECT_HOME=str(cwd / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


FAILING = [
    ("init",),
    ("status",),
    ("outbox", "send"),
    ("outbox", "list"),
    ("batch", "run", "2021-1"),
    ("history", "91370211MA3C5QXX1K"),
    ("backup", "hnte.dump"),
]


@pytest.mark.parametrize("command", FAILING, ids=" ".join)
def test_a_command_that_cannot_reach_the_database_prints_neither_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    run = hnte(tmp_path, {"HNTE_DATABASE_URL": UNREACHABLE}, *command)
    assert run.returncode in (1, 2), run.stderr
    assert "Traceback" not in run.stderr and "错误" in run.stderr
    assert_no_secret(run.stdout + run.stderr)


def test_help_prints_neither_password(tmp_path: Path) -> None:
    run = hnte(tmp_path, {"HNTE_DATABASE_URL": UNREACHABLE}, "--help")
    assert run.returncode == 0 and "Usage:" in run.stdout
    assert_no_secret(run.stdout + run.stderr)


@pytest.fixture
def pg_with_password(pg_url: str) -> tuple[str, str]:
    """The test PostgreSQL URL with a password in it, and that password.

    A server that trusts local connections ignores the password, so any value works;
    a server that checks it has its own, which is then the secret to look for.
    """
    url = make_url(pg_url)
    if url.password:
        return pg_url, str(url.password)
    with_password = url.set(password=DB_SECRET).render_as_string(hide_password=False)
    engine = make_engine(with_password)
    try:
        engine.connect().close()
    except Exception:  # noqa: BLE001
        pytest.skip("the test server checks passwords and HNTE_TEST_DATABASE_URL has none")
    finally:
        engine.dispose()
    return with_password, DB_SECRET


def test_commands_on_a_password_protected_database_and_mail_server_print_neither_password(
    tmp_path: Path, pg_with_password: tuple[str, str]
) -> None:
    url, db_secret = pg_with_password
    secrets = (SMTP_SECRET, db_secret)
    # This server refuses the login and quotes the password it was given in the refusal.
    with SmtpServer(credentials=("hnte", "the-right-one"), echo_password_on_failure=True) as mail:
        env = {
            "HNTE_DATABASE_URL": url,
            "HNTE_SMTP_HOST": mail.host,
            "HNTE_SMTP_PORT": str(mail.port),
        }
        init = hnte(tmp_path, env, "init")
        assert init.returncode == 0, init.stderr
        assert "***@" in init.stdout  # the URL is shown, its password masked
        engine = make_engine(url)
        try:
            queue_notices(engine)
        finally:
            engine.dispose()
        runs = [
            init,
            hnte(tmp_path, env, "status"),
            hnte(tmp_path, env, "outbox", "send"),
            hnte(tmp_path, env, "outbox", "send", "--json"),
            hnte(tmp_path, env, "outbox", "list"),
            hnte(tmp_path, env, "outbox", "list", "--json"),
            hnte(tmp_path, env, "backup", "hnte.dump"),
        ]
    assert mail.received == []
    sent = runs[2]
    assert "535" in sent.stdout + sent.stderr and "***" in sent.stdout + sent.stderr
    for run in runs:
        assert "Traceback" not in run.stderr, run.args
        assert_no_secret(run.stdout + run.stderr, secrets)


# --- settings --------------------------------------------------------------------------------


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HNTE_SMTP_PASSWORD", SMTP_SECRET)
    monkeypatch.setenv("HNTE_DATABASE_URL", UNREACHABLE)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_settings_never_show_either_password(secret_env: None) -> None:
    settings = Settings()
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == SMTP_SECRET  # really loaded
    assert DB_SECRET in settings.database_url.get_secret_value()
    for shown in (
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json"), ensure_ascii=False),
        repr(settings.model_dump()),
        redact_url(settings.database_url.get_secret_value()),
    ):
        assert_no_secret(shown)


def test_the_cli_scrubs_both_passwords_from_an_error_line(secret_env: None) -> None:
    from hnte.flows.cli import scrub

    line = scrub(f"login failed for {SMTP_SECRET}; url postgresql://hnte:{DB_SECRET}@h/db")
    assert_no_secret(line)
    assert line.count("***") == 2


# --- the dispatcher ------------------------------------------------------------------------


def env_settings(monkeypatch: pytest.MonkeyPatch, server: SmtpServer) -> Settings:
    """Settings read from the environment, as the scheduler's dispatcher reads them."""
    for name, value in {
        "HNTE_SMTP_HOST": server.host,
        "HNTE_SMTP_PORT": str(server.port),
        "HNTE_SMTP_USERNAME": "hnte",
        "HNTE_SMTP_PASSWORD": SMTP_SECRET,
        "HNTE_SMTP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()


def outbox_rows(engine: Engine) -> list[OutboxMessage]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(OutboxMessage)).scalars())  # type: ignore[call-overload]


@pytest.mark.parametrize("echo", [False, True], ids=["plain refusal", "refusal quoting it"])
def test_a_refused_login_leaves_the_password_out_of_logs_report_and_outbox(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, echo: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    queue_notices(engine)
    with SmtpServer(credentials=("hnte", "the-right-one"), echo_password_on_failure=echo) as mail:
        report = dispatch(engine, env_settings(monkeypatch, mail), now=T0)
    assert report.attempted == 0 and len(report.errors) == 1 and "535" in report.errors[0]
    assert_no_secret(repr(report))
    # aiosmtpd logs the test server's own replies under "mail.log"; a server that quotes
    # the password is outside hnte, so only hnte's (and everyone else's) lines count.
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert any(r.name.startswith("hnte") for r in ours)
    assert_no_secret("\n".join(r.getMessage() for r in ours))
    if not echo:
        assert_no_secret(caplog.text)  # then not even the server's log has it
    assert all(r.status == "queued" for r in outbox_rows(engine))
    assert_no_secret(" ".join(r.last_error or "" for r in outbox_rows(engine)))


def test_server_replies_quoting_the_password_are_stored_and_reported_scrubbed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue_notices(engine, 2)
    careless = f"550 5.1.1 no such user (you logged in with {SMTP_SECRET})"
    monkeypatch.setattr(smtp_server, "REJECT_REPLY", careless)
    with SmtpServer(credentials=("hnte", SMTP_SECRET)) as mail:
        mail.reject_addresses = {"liaison0@huangdao.example", "liaison1@huangdao.example"}
        report = dispatch(engine, env_settings(monkeypatch, mail), now=T0)
    assert mail.logins == ["hnte"] and report.failed == 2
    rows = outbox_rows(engine)
    assert [r.status for r in rows] == ["failed", "failed"]
    assert all("***" in (r.last_error or "") for r in rows)  # the reply is kept, scrubbed
    assert_no_secret(" ".join(r.last_error or "" for r in rows))
    assert_no_secret(repr(report))
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert_no_secret("\n".join(r.getMessage() for r in ours))


# --- Prefect -----------------------------------------------------------------------------------


def _prefect_records(flow_run_id: str) -> str:
    """Everything Prefect's API holds about one flow run, as one text to search."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        # Raw filters: prefect 3.8.8's read_artifacts sends nulls its own server refuses.
        def post(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
            response = client.request("POST", path, json=body)
            response.raise_for_status()
            return response.json()

        run = client.request("GET", f"/flow_runs/{flow_run_id}").json()
        tasks = post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        logs = post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}})
        artifacts = post(
            "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
        )
        states = client.request("GET", "/flow_run_states/", params={"flow_run_id": flow_run_id})
    assert logs, "the flow run's logs reached the API"
    return json.dumps(
        {"run": run, "tasks": tasks, "logs": logs, "artifacts": artifacts,
         "states": states.json()},
        ensure_ascii=False,
    )


@pytest.fixture
def prefect_env(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[pytest.MonkeyPatch]:
    """The secrets in the environment; INFO logs of flow and task runs sent to the API."""
    monkeypatch.setenv("HNTE_SMTP_USERNAME", "hnte")
    monkeypatch.setenv("HNTE_SMTP_PASSWORD", SMTP_SECRET)
    monkeypatch.delenv("HNTE_FAULT_AT", raising=False)
    import hnte.flows.batch_review  # noqa: F401 - importing prefect's flow configures its logging

    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)  # tests/conftest.py keeps Prefect at WARNING
    yield monkeypatch
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    get_engine.cache_clear()
    get_settings.cache_clear()


def test_a_batch_review_flow_run_keeps_the_passwords_out_of_prefect(
    prefect_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hnte.flows.batch_review import batch_review

    url = f"sqlite:///{tmp_path / 'hnte.db'}"
    prefect_env.setenv("HNTE_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    engine = make_engine(url)
    city = load_city()
    init_database(engine, city)
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(20, seed=3, districts=shares, year=2021)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(tmp_path / "apps.csv", apps)
        import_applications(session, source, batch_code="2021-1", today=date(2021, 5, 20))
        session.commit()
    engine.dispose()

    state = batch_review("2021-1", as_of=date(2021, 6, 10), return_state=True)
    get_engine().dispose()
    assert state.is_completed()
    assert state.result()["transitions"]  # it moved something, so the artifact has rows
    text = _prefect_records(str(state.state_details.flow_run_id))
    assert "batch 2021-1 as of 2021-06-10" in text  # the flow's own log line is there
    assert "批次 2021-1 审核流转" in text and "batch-review-2021-1" in text  # so is the artifact
    assert_no_secret(text)


def test_a_failed_flow_run_keeps_the_database_password_out_of_prefect(
    prefect_env: pytest.MonkeyPatch,
) -> None:
    from hnte.flows.batch_review import batch_review

    prefect_env.setenv("HNTE_DATABASE_URL", UNREACHABLE)
    get_settings.cache_clear()
    get_engine.cache_clear()
    state = batch_review("2021-1", as_of=date(2021, 6, 10), return_state=True)
    get_engine().dispose()
    assert state.is_failed()
    text = _prefect_records(str(state.state_details.flow_run_id))
    assert "OperationalError" in text  # the failure is recorded, and with it…
    assert_no_secret(text)  # …neither password
