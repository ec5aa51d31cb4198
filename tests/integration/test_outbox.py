"""The outbox and its SMTP dispatcher, against a real aiosmtpd server on loopback.

The enqueue/claim tests and two dispatcher tests also run on PostgreSQL (``any_engine``);
the other dispatcher tests run on SQLite, the embedded default.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import smtp_server
from smtp_server import (
    REJECT_DATA_REPLY,
    REJECT_REPLY,
    REJECT_SENDER_REPLY,
    Behaviour,
    SmtpServer,
    parse,
)
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import OperationalError

from hnte.config.settings import Settings
from hnte.models.db import unit_of_work
from hnte.models.tables import OutboxMessage, OutboxStatus
from hnte.notifications import outbox
from hnte.notifications import smtp as dispatcher
from hnte.notifications.smtp import HOLD, dispatch

T0 = datetime(2021, 6, 1, 1, 0, tzinfo=UTC)  # 09:00 in Qingdao
SENDER = "hnte@kjj.qingdao.gov.cn"
PASSWORD = "S3cret-p@ss-x7Q!"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(params=["inline", "overlapped"])
def commits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a dispatcher test with outcomes committed inline and overlapping the next
    envelope (a worker thread), whatever the database's default."""
    overlapped = {"sqlite", "postgresql"} if request.param == "overlapped" else set()
    monkeypatch.setattr(dispatcher, "OVERLAPPED", frozenset(overlapped))
    return str(request.param)


def settings_for(server: SmtpServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": server.host, "smtp_port": server.port, "smtp_sender": SENDER,
        "smtp_timeout": 1.0, "smtp_username": None, "smtp_password": None,
    }
    return Settings(**(values | overrides))


def notice(n: int = 0, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "behind_target", "dedupe_key": f"behind_target:370211:2021-W{n:05d}",
        "recipients": [f"liaison{n}@huangdao.gov.cn"], "cc": ["city@kjj.qingdao.gov.cn"],
        "subject": f"黄岛区高企认定进度提醒（第 {n} 号）",
        "text": f"黄岛区：截至 6 月 1 日，净增 12 家，目标 60 家。编号 {n}。",
        "html": f"<p>黄岛区：截至 6 月 1 日，净增 <b>12</b> 家，目标 60 家。编号 {n}。</p>",
        "message_id": f"<behind-target.370211.{n}@kjj.qingdao.gov.cn>",
        "period": "2021-W22", "district_code": "370211", "batch_code": "2021-1", "now": T0,
    }
    return values | overrides


def queue(engine: Engine, count: int = 1, **overrides: Any) -> None:
    with unit_of_work(engine) as session:
        for n in range(count):
            assert outbox.enqueue(session, **notice(n, **overrides))
        session.commit()


def rows(engine: Engine) -> list[OutboxMessage]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())  # type: ignore[call-overload]


def message_ids(server: SmtpServer) -> Counter[str]:
    return Counter(str(parse(e)["Message-ID"]) for e in server.received)


# -- enqueue and claim, on SQLite and PostgreSQL ----------------------------------------


def test_enqueuing_the_same_key_twice_writes_one_row(any_engine: Engine) -> None:
    with unit_of_work(any_engine) as session:
        assert outbox.enqueue(session, **notice(1)) is True
        assert outbox.enqueue(session, **notice(1, subject="另一个主题")) is False
        session.commit()
    with unit_of_work(any_engine) as session:  # and again in a later transaction
        assert outbox.enqueue(session, **notice(1)) is False
        session.commit()
    [row] = rows(any_engine)
    assert row.subject == notice(1)["subject"]
    assert row.status == OutboxStatus.QUEUED and row.attempts == 0
    assert row.recipients == "liaison1@huangdao.gov.cn" and row.cc == "city@kjj.qingdao.gov.cn"
    assert row.created_at == T0 and row.next_attempt_at == T0


def test_a_notice_enqueued_in_a_rolled_back_transaction_leaves_nothing(
    any_engine: Engine,
) -> None:
    with unit_of_work(any_engine) as session:
        assert outbox.enqueue(session, **notice(1))
        # no commit: the change that caused the notice failed, so there is no notice
    assert rows(any_engine) == []


def test_enqueue_refuses_line_breaks_and_bad_addresses(any_engine: Engine) -> None:
    with unit_of_work(any_engine) as session:
        with pytest.raises(outbox.InvalidNotice, match="Subject"):
            outbox.enqueue(session, **notice(1, subject="提醒\r\nBcc: all@example.com"))
        with pytest.raises(outbox.InvalidNotice, match="invalid email"):
            outbox.enqueue(session, **notice(1, recipients=["not an address"]))
        with pytest.raises(outbox.InvalidNotice, match="one address"):
            outbox.enqueue(session, **notice(1, cc=["a@x.cn, b@x.cn"]))
        with pytest.raises(outbox.InvalidNotice, match="no recipients"):
            outbox.enqueue(session, **notice(1, recipients=[]))


def test_two_dispatchers_never_claim_the_same_rows(any_engine: Engine) -> None:
    queue(any_engine, 5)
    with unit_of_work(any_engine) as first, unit_of_work(any_engine) as second:
        mine = outbox.claim(first, now=T0, limit=3, hold=HOLD)
        first.commit()
        theirs = outbox.claim(second, now=T0, limit=10, hold=HOLD)
        second.commit()
        assert len(mine) == 3 and len(theirs) == 2
        assert not {r.id for r in mine} & {r.id for r in theirs}
        assert outbox.due(first, now=T0, limit=10) == []
        # a crashed dispatcher's claim runs out by itself: nothing is lost
        assert len(outbox.due(first, now=T0 + HOLD, limit=10)) == 5


def test_a_claim_held_open_is_not_shared_with_a_second_dispatcher(any_engine: Engine) -> None:
    """Two dispatchers at the same moment: the first has claimed rows and not yet
    committed when the second claims. On PostgreSQL the second skips the locked rows and
    goes on at once; on SQLite it waits for the database lock. Either way no row is
    claimed twice (claimed twice means sent twice)."""
    queue(any_engine, 5)
    second: list[int] = []
    finished = threading.Event()

    def claim_second() -> None:
        with unit_of_work(any_engine) as session:
            second.extend(r.id for r in outbox.claim(session, now=T0, limit=10, hold=HOLD))
            session.commit()
        finished.set()

    with unit_of_work(any_engine) as session:
        first = [r.id for r in outbox.claim(session, now=T0, limit=3, hold=HOLD)]
        assert len(first) == 3
        thread = threading.Thread(target=claim_second, daemon=True)
        thread.start()
        if any_engine.dialect.name == "postgresql":
            went_on = finished.wait(10)  # while the first claim is still open
        session.commit()
    thread.join(30)
    assert finished.is_set()
    assert not set(first) & set(second), "a row was claimed by both dispatchers"
    assert sorted(first + second) == [r.id for r in rows(any_engine)]
    if any_engine.dialect.name == "postgresql":
        assert went_on, "the second dispatcher waited for the first one's claim"
    with unit_of_work(any_engine) as session:
        assert outbox.due(session, now=T0, limit=10) == []


def test_backoff_doubles_from_30_seconds_up_to_an_hour() -> None:
    assert [outbox.backoff_seconds(n) for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]
    assert outbox.backoff_seconds(10_000) == 3600


# -- dispatching ----------------------------------------------------------------------


def test_dispatch_delivers_headers_and_both_parts(engine: Engine, smtp: SmtpServer) -> None:
    queue(engine, 1)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.sent, report.retried, report.failed) == (1, 1, 0, 0)
    assert report.errors == []

    [envelope] = smtp.received
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ("liaison0@huangdao.gov.cn", "city@kjj.qingdao.gov.cn")
    message = parse(envelope)
    assert message["From"] == SENDER
    assert message["To"] == "liaison0@huangdao.gov.cn"
    assert message["Cc"] == "city@kjj.qingdao.gov.cn"
    assert message["Subject"] == "黄岛区高企认定进度提醒（第 0 号）"
    assert message["Message-ID"] == "<behind-target.370211.0@kjj.qingdao.gov.cn>"
    assert message["Date"].datetime == T0
    assert message["Date"].endswith("+0800")
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8"
    assert text.get_content().strip() == notice(0)["text"]
    assert html.get_content().strip() == notice(0)["html"]
    assert b"\r\n" in envelope.content and b"\n\n" not in envelope.content.replace(b"\r\n", b"")

    [row] = rows(engine)
    assert row.status == OutboxStatus.SENT and row.sent_at == T0
    assert row.attempts == 1 and row.last_error is None


def test_one_connection_carries_many_messages(engine: Engine, smtp: SmtpServer) -> None:
    queue(engine, 50)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert report.sent == 50
    assert smtp.connections == 1
    assert len(message_ids(smtp)) == 50


def test_nothing_due_means_no_connection(engine: Engine, smtp: SmtpServer) -> None:
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert report.attempted == 0 and smtp.connections == 0


def test_a_4xx_reply_is_retried_after_backoff_then_delivered_once(
    any_engine: Engine, smtp: SmtpServer
) -> None:
    engine = any_engine
    queue(engine, 1)
    smtp.set(Behaviour.TEMP_FAIL_DATA)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.sent, report.retried, report.failed) == (1, 0, 1, 0)
    [row] = rows(engine)
    assert row.status == OutboxStatus.QUEUED and row.attempts == 1
    assert row.next_attempt_at == T0 + timedelta(seconds=30)
    assert row.last_error is not None and "451" in row.last_error and "try later" in row.last_error

    smtp.set(Behaviour.NORMAL)
    assert dispatch(engine, settings_for(smtp), now=T0 + timedelta(seconds=10)).attempted == 0
    report = dispatch(engine, settings_for(smtp), now=T0 + timedelta(seconds=30))
    assert report.sent == 1
    assert dispatch(engine, settings_for(smtp), now=T0 + timedelta(days=1)).attempted == 0
    assert len(smtp.received) == 1
    [row] = rows(engine)
    assert row.status == OutboxStatus.SENT and row.attempts == 2
    assert row.sent_at == T0 + timedelta(seconds=30)


def test_a_5xx_reply_fails_the_message_with_the_servers_reply_and_is_not_retried(
    engine: Engine, smtp: SmtpServer
) -> None:
    queue(engine, 2)
    smtp.reject_addresses = {"liaison0@huangdao.gov.cn", "city@kjj.qingdao.gov.cn"}
    report = dispatch(engine, settings_for(smtp), now=T0)
    # liaison1's message still goes to liaison1: only its cc copy was refused
    assert (report.attempted, report.sent, report.retried, report.failed) == (2, 1, 0, 1)
    failed, partly = rows(engine)
    assert failed.status == OutboxStatus.FAILED and failed.attempts == 1
    assert failed.last_error is not None and REJECT_REPLY in failed.last_error
    assert partly.status == OutboxStatus.SENT
    assert partly.last_error is not None and "city@kjj.qingdao.gov.cn: 550" in partly.last_error
    assert any("550" in e and f"#{failed.id}" in e for e in report.errors)

    smtp.reject_addresses = set()
    assert dispatch(engine, settings_for(smtp), now=T0 + timedelta(days=1)).attempted == 0
    assert [e.rcpt_tos for e in smtp.received] == [("liaison1@huangdao.gov.cn",)]


def test_a_5xx_reply_to_every_recipient_fails_the_message(
    engine: Engine, smtp: SmtpServer
) -> None:
    queue(engine, 1)
    smtp.set(Behaviour.REJECT_RCPT)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert report.failed == 1 and smtp.received == []
    [row] = rows(engine)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None and "550 5.1.1 no such user" in row.last_error


@pytest.mark.parametrize(
    ("behaviour", "reply"),
    [(Behaviour.REJECT_SENDER, REJECT_SENDER_REPLY), (Behaviour.REJECT_DATA, REJECT_DATA_REPLY)],
    ids=["to MAIL FROM", "after DATA"],
)
def test_a_5xx_reply_to_the_sender_or_the_data_fails_the_message_once_and_for_all(
    any_engine: Engine, smtp: SmtpServer, behaviour: Behaviour, reply: str
) -> None:
    engine = any_engine
    queue(engine, 2)
    smtp.set(behaviour, times=1)  # the first message is refused, the second goes
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.sent, report.retried, report.failed) == (2, 1, 0, 1)
    failed, sent = rows(engine)
    assert failed.status == OutboxStatus.FAILED and failed.attempts == 1
    assert failed.last_error is not None and reply in failed.last_error
    assert sent.status == OutboxStatus.SENT
    assert any(reply in e and f"#{failed.id}" in e for e in report.errors)
    # never tried again: a refusal does not change by itself
    assert dispatch(engine, settings_for(smtp), now=T0 + timedelta(days=1)).attempted == 0
    assert list(message_ids(smtp)) == [notice(1)["message_id"]]


def test_when_the_server_is_down_rows_stay_queued_and_are_delivered_once_it_is_up(
    any_engine: Engine,
) -> None:
    engine = any_engine
    queue(engine, 3)
    server = SmtpServer()  # its port, nobody listening yet
    report = dispatch(engine, settings_for(server), now=T0)
    assert (report.attempted, report.sent, report.retried, report.failed) == (0, 0, 0, 0)
    assert len(report.errors) == 1 and "cannot connect" in report.errors[0]
    assert all(r.status == OutboxStatus.QUEUED and r.attempts == 0 for r in rows(engine))
    assert all(r.next_attempt_at is not None and r.next_attempt_at <= T0 for r in rows(engine))

    with server:
        report = dispatch(engine, settings_for(server), now=T0)
        assert report.sent == 3
        assert dispatch(engine, settings_for(server), now=T0 + timedelta(days=1)).attempted == 0
    assert message_ids(server) == Counter({r.message_id: 1 for r in rows(engine)})


def test_a_connection_dropped_mid_data_is_retried_and_each_message_arrives_once(
    engine: Engine, smtp: SmtpServer, commits: str
) -> None:
    queue(engine, 3)
    smtp.set(Behaviour.DROP_IN_DATA, times=1)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.sent, report.retried, report.failed) == (3, 2, 1, 0)
    assert smtp.connections == 2  # reconnected once, then carried on
    dropped = rows(engine)[0]
    assert dropped.status == OutboxStatus.QUEUED and dropped.attempts == 1
    assert dropped.last_error is not None and "SMTPServerDisconnected" in dropped.last_error

    report = dispatch(engine, settings_for(smtp), now=T0 + timedelta(seconds=30))
    assert report.sent == 1
    assert message_ids(smtp) == Counter({r.message_id: 1 for r in rows(engine)})
    assert all(r.status == OutboxStatus.SENT for r in rows(engine))


def test_a_server_that_keeps_dropping_is_given_up_on_until_the_next_run(
    engine: Engine, smtp: SmtpServer
) -> None:
    queue(engine, 5)
    smtp.set(Behaviour.DROP_IN_DATA)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.retried) == (2, 2)  # the first, and one after reconnecting
    assert [r.attempts for r in rows(engine)] == [1, 1, 0, 0, 0]
    assert all(r.status == OutboxStatus.QUEUED for r in rows(engine))
    with unit_of_work(engine) as session:  # the rest is still due now
        assert len(outbox.due(session, now=T0, limit=10)) == 3


def test_a_server_slower_than_the_timeout_gets_the_message_again_later(
    engine: Engine,
) -> None:
    queue(engine, 1)
    with SmtpServer(slow_seconds=3) as server:
        server.set(Behaviour.SLOW, times=1)
        started = time.monotonic()
        report = dispatch(engine, settings_for(server, smtp_timeout=0.5), now=T0)
        assert time.monotonic() - started < 2.5
        assert (report.attempted, report.retried) == (1, 1)
        [row] = rows(engine)
        assert row.last_error is not None and "timed out" in row.last_error

        report = dispatch(engine, settings_for(server, smtp_timeout=0.5),
                          now=T0 + timedelta(seconds=30))
        assert report.sent == 1
    assert len(server.received) == 1


def test_a_message_failing_temporarily_max_attempts_times_is_failed(
    engine: Engine, smtp: SmtpServer
) -> None:
    queue(engine, 1)
    smtp.set(Behaviour.TEMP_FAIL_DATA)
    now = T0
    for attempt in (1, 2):
        assert dispatch(engine, settings_for(smtp), now=now, max_attempts=3).retried == 1
        now += timedelta(seconds=outbox.backoff_seconds(attempt))
    report = dispatch(engine, settings_for(smtp), now=now, max_attempts=3)
    assert (report.retried, report.failed) == (0, 1)
    [row] = rows(engine)
    assert row.status == OutboxStatus.FAILED and row.attempts == 3
    assert row.last_error is not None
    assert row.last_error.startswith("gave up after 3 attempts: 451 4.3.0 try later")
    assert dispatch(engine, settings_for(smtp), now=now + timedelta(days=1)).attempted == 0


def test_retry_failed_puts_failed_messages_back_in_the_queue(
    engine: Engine, smtp: SmtpServer
) -> None:
    queue(engine, 3)
    smtp.set(Behaviour.REJECT_RCPT)
    assert dispatch(engine, settings_for(smtp), now=T0, limit=2).failed == 2
    first, second, untouched = rows(engine)
    with unit_of_work(engine) as session:
        assert outbox.retry_failed(session, [first.id or 0, untouched.id or 0], now=T0) == 1
        session.commit()
    assert [r.status for r in rows(engine)] == ["queued", "failed", "queued"]
    assert rows(engine)[0].attempts == 0

    smtp.set(Behaviour.NORMAL)
    assert dispatch(engine, settings_for(smtp), now=T0).sent == 2
    with unit_of_work(engine) as session:
        assert outbox.retry_failed(session, now=T0) == 1  # all failed: the second one
        session.commit()
    assert dispatch(engine, settings_for(smtp), now=T0).sent == 1
    assert message_ids(smtp) == Counter({r.message_id: 1 for r in rows(engine)})


def test_a_row_with_a_line_break_in_a_header_is_failed_without_sending(
    engine: Engine, smtp: SmtpServer
) -> None:
    # enqueue refuses this; a row edited by hand in the database does not go through it
    with unit_of_work(engine) as session:
        values = notice(9, subject="提醒\r\nBcc: everyone@example.com")
        session.connection().execute(insert(OutboxMessage.__table__).values(  # type: ignore[attr-defined]
            dedupe_key=values["dedupe_key"], kind=values["kind"], period=values["period"],
            recipients=values["recipients"][0], cc="", subject=values["subject"],
            body_text="x", body_html="<p>x</p>", message_id=values["message_id"],
            status="queued", attempts=0, next_attempt_at=T0, created_at=T0,
        ))
        session.commit()
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.attempted, report.failed) == (0, 1)
    assert smtp.connections == 0 and smtp.received == []
    [row] = rows(engine)
    assert row.status == OutboxStatus.FAILED and "line break in Subject" in (row.last_error or "")


def test_the_smtp_password_never_appears_in_reports_or_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue(engine, 2)
    with SmtpServer(credentials=("hnte", PASSWORD)) as server:
        server.reject_addresses = {"liaison1@huangdao.gov.cn"}  # an error to report
        report = dispatch(engine, settings_for(server, smtp_username="hnte",
                                               smtp_password=PASSWORD), now=T0)
    assert (report.sent, report.failed) == (2, 0) and len(report.errors) == 1
    assert server.logins == ["hnte"]
    assert PASSWORD not in repr(report) and PASSWORD not in caplog.text
    assert all(PASSWORD not in (r.last_error or "") for r in rows(engine))


def test_a_refused_login_is_reported_without_the_password_and_sends_nothing(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue(engine, 2)
    # This server quotes the password it was given in its refusal; hnte must not repeat it.
    with SmtpServer(credentials=("hnte", "the-right-one"), echo_password_on_failure=True) as server:
        settings = settings_for(server, smtp_username="hnte", smtp_password=PASSWORD)
        report = dispatch(engine, settings, now=T0)
    assert report.attempted == 0 and server.received == []
    assert len(report.errors) == 1 and "535" in report.errors[0] and "***" in report.errors[0]
    assert PASSWORD not in repr(report)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert ours and not any(PASSWORD in line for line in ours)
    assert all(r.status == OutboxStatus.QUEUED and r.attempts == 0 for r in rows(engine))


@pytest.mark.parametrize(
    "crash",
    [KeyboardInterrupt, OperationalError("UPDATE outbox", {}, Exception("server closed"))],
    ids=["ctrl-c", "database-error"],
)
def test_a_crash_in_the_middle_gives_unsent_rows_back_at_once(
    engine: Engine,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    commits: str,
    crash: BaseException | type[BaseException],
) -> None:
    queue(engine, 4)
    real_mark_sent, calls = outbox.mark_sent, []

    def mark_sent_then_crash(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 2:
            raise crash  # Ctrl-C, or the database gone, while recording the second one
        return real_mark_sent(*args, **kwargs)

    monkeypatch.setattr(outbox, "mark_sent", mark_sent_then_crash)
    with pytest.raises(crash if isinstance(crash, type) else type(crash)):
        dispatch(engine, settings_for(smtp), now=T0)
    monkeypatch.setattr(outbox, "mark_sent", real_mark_sent)
    assert [r.status for r in rows(engine)] == ["sent", "queued", "queued", "queued"]
    assert all(r.next_attempt_at == T0 for r in rows(engine)[1:])  # due now, not after HOLD
    assert len(smtp.received) == 2  # the third message never went: no outcome, no DATA

    assert dispatch(engine, settings_for(smtp), now=T0).sent == 3
    # the second message reached the server before the crash, so it arrives twice, with
    # the same Message-ID: the one duplicate a crash can cause, and mail clients drop it
    assert sorted(message_ids(smtp).values()) == [1, 1, 1, 2]


def test_each_outcome_is_committed_before_the_next_message_is_accepted(
    any_engine: Engine, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, commits: str
) -> None:
    engine = any_engine
    queue(engine, 6)
    smtp.reject_addresses = {"liaison2@huangdao.gov.cn", "city@kjj.qingdao.gov.cn"}
    real_mark_sent, real_handle_data = outbox.mark_sent, smtp_server._Handler.handle_DATA
    recorded_at_acceptance: list[int] = []

    def slow_mark_sent(*args: Any, **kwargs: Any) -> bool:
        time.sleep(0.05)  # a slow database: the next message must wait for it, not race
        return real_mark_sent(*args, **kwargs)

    async def handle_data(handler: Any, server: Any, session: Any, envelope: Any) -> str:
        with engine.connect() as connection:  # what a crash at this instant would leave
            recorded_at_acceptance.append(
                connection.execute(
                    select(func.count()).where(OutboxMessage.status != "queued")  # type: ignore[arg-type]
                ).scalar_one()
            )
        return await real_handle_data(handler, server, session, envelope)

    monkeypatch.setattr(outbox, "mark_sent", slow_mark_sent)
    monkeypatch.setattr(smtp_server._Handler, "handle_DATA", handle_data)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert (report.sent, report.failed) == (5, 1)
    # message 3 was refused at RCPT (no DATA); every other message found all earlier
    # outcomes committed when the server took it
    assert recorded_at_acceptance == [0, 1, 3, 4, 5]
    assert [r.status for r in rows(engine)] == ["sent", "sent", "failed", "sent", "sent", "sent"]


def test_a_non_ascii_password_is_refused_with_a_clear_error_and_sends_nothing(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue(engine, 1)
    password = "口令-" + PASSWORD
    with SmtpServer(credentials=("hnte", password)) as server:
        settings = settings_for(server, smtp_username="hnte", smtp_password=password)
        report = dispatch(engine, settings, now=T0)
    assert report.attempted == 0 and server.received == []
    assert len(report.errors) == 1 and "non-ASCII" in report.errors[0]
    assert password not in repr(report) and password not in caplog.text
    assert [r.status for r in rows(engine)] == ["queued"]


@pytest.mark.slow
def test_dispatch_throughput_over_one_connection(engine: Engine, smtp: SmtpServer) -> None:
    count = 2_000
    queue(engine, count)
    report = dispatch(engine, settings_for(smtp), now=T0)
    assert report.sent == count and smtp.connections == 1
    with unit_of_work(engine) as session:
        sent = session.connection().execute(
            select(func.count()).where(OutboxMessage.status == "sent")  # type: ignore[arg-type]
        ).scalar_one()
    assert sent == count
    print(f"\noutbox dispatch: {count} messages in {report.elapsed:.2f} s "
          f"= {report.rate:.0f} messages/s")


def test_the_outbox_commands_list_send_and_retry(
    engine: Engine, smtp: SmtpServer, settings_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from hnte.config.settings import get_settings
    from hnte.flows.cli_outbox import outbox_app

    monkeypatch.setenv("HNTE_SMTP_HOST", smtp.host)
    monkeypatch.setenv("HNTE_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("HNTE_SMTP_TIMEOUT", "1")
    get_settings.cache_clear()
    app = typer.Typer()
    app.add_typer(outbox_app, name="outbox")
    cli = CliRunner()
    queue(engine, 2, now=datetime.now(UTC) - timedelta(minutes=1))
    smtp.reject_addresses = {"liaison0@huangdao.gov.cn", "city@kjj.qingdao.gov.cn"}

    sent = cli.invoke(app, ["outbox", "send", "--json"])
    assert sent.exit_code == 1, sent.output  # one refused: the operator must look
    assert json.loads(sent.output)["failed"] == 1

    listed = cli.invoke(app, ["outbox", "list", "--status", "failed", "--json"])
    [failed] = json.loads(listed.output)
    assert failed["status"] == "failed" and "550" in failed["last_error"]
    assert "body_html" not in failed

    table = cli.invoke(app, ["outbox", "list", "--district", "西海岸新区"])
    assert table.exit_code == 0 and "失败" in table.output and "已发送" in table.output

    assert cli.invoke(app, ["outbox", "retry"]).exit_code != 0  # ids or --all-failed
    smtp.reject_addresses = set()
    retried = cli.invoke(app, ["outbox", "retry", str(failed["id"]), "--json"])
    assert json.loads(retried.output) == {"requeued": 1}
    sent = cli.invoke(app, ["outbox", "send"])
    assert sent.exit_code == 0 and "已发送 1" in sent.output
    assert len(message_ids(smtp)) == 2
