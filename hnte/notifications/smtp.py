"""The dispatcher: send due outbox rows over one SMTP connection and record each outcome.

Rows are claimed in chunks (``outbox.claim``: not due again for ``HOLD``), so two
dispatchers never send the same row. Each message's status is committed once the server
has answered for it and before the next message's DATA (on PostgreSQL the commit runs
while the next envelope, MAIL and RCPT, goes), so a crash never loses a message and can
resend at most the one whose answer it was writing (with the same Message-ID, which mail
clients use to drop the copy); unsent claimed rows are given back at once, or become due
after ``HOLD``.

Outcomes, from the server's answer:
- accepted (2xx) → sent;
- a 4xx reply, a dropped connection or a timeout → tried again later with exponential
  backoff, until ``max_attempts`` such tries, then failed with the last reply;
- a 5xx reply → failed at once, with the server's code and text, until an operator
  calls ``retry_failed``.
If the server cannot be reached (or refuses the login) nothing is attempted: the rows
stay queued and due.

The SMTP password is never logged or reported: every text that leaves this module
passes ``_scrub`` first, in case a server quotes it back.
"""

from __future__ import annotations

import binascii
import logging
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine
from sqlmodel import Session

from hnte.config.settings import Settings
from hnte.models.db import unit_of_work
from hnte.models.tables import OutboxMessage
from hnte.notifications import outbox

log = logging.getLogger(__name__)

CHUNK = 200  # rows claimed per round trip to the database
HOLD = timedelta(minutes=10)  # a claimed row is not due again before this
_MAX_ERROR = 2000
STAYS_QUEUED = "未发送的邮件留在队列中 / unsent mail stays queued"


class Unsendable(ValueError):
    """The row cannot become a valid message (e.g. a line break in a header)."""


class SmtpUnavailable(Exception):
    """Could not connect, start TLS or log in; nothing was sent on this connection."""


@dataclass
class DispatchReport:
    attempted: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0  # seconds

    @property
    def rate(self) -> float:
        """Messages attempted per second."""
        return self.attempted / self.elapsed if self.elapsed > 0 else 0.0


# -- the message ---------------------------------------------------------------------


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise Unsendable(f"{name} 含换行符，拒绝发送 / line break in {name}: {value[:80]!r}")
    return value


def _checked(row: OutboxMessage, sender: str) -> tuple[list[str], list[str], str]:
    """(To, Cc, Message-ID) of the row, refusing what no message may carry."""
    to = [_header("To", a) for a in outbox.split_addresses(row.recipients)]
    cc = [_header("Cc", a) for a in outbox.split_addresses(row.cc)]
    if not to:
        raise Unsendable("没有收件人 / no recipients")
    message_id = _header("Message-ID", row.message_id.strip())
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    _header("From", sender)
    _header("Subject", row.subject)
    return to, cc, message_id


def _date(row: OutboxMessage, tz: ZoneInfo) -> str:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return format_datetime(created.astimezone(tz))  # fixed: a resend is the same mail


def build_mime(row: OutboxMessage, *, sender: str, tz: ZoneInfo) -> EmailMessage:
    """The row as a multipart/alternative message (text, then HTML), UTF-8."""
    to, cc, message_id = _checked(row, sender)
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = row.subject
    msg["Date"] = _date(row, tz)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: out-of-office replies stay away
    msg.set_content(row.body_text, charset="utf-8", cte=_cte(row.body_text))
    msg.add_alternative(row.body_html, subtype="html", charset="utf-8", cte=_cte(row.body_html))
    return msg


def _cte(body: str) -> str | None:
    # 8bit would need the server's 8BITMIME; base64 passes any relay and is compact for CJK.
    return None if body.isascii() else "base64"


# The SMTP policy's line length, and the base64 it writes: 57 bytes to a 76-character line.
_MAX_LINE = SMTP_POLICY.max_line_length or 78
_BASE64_CHUNK = _MAX_LINE // 4 * 3


def build_wire(row: OutboxMessage, *, sender: str, tz: ZoneInfo) -> bytes | None:
    """``build_mime(row)`` as the bytes sent, written directly; None when it must go through
    the email package instead.

    The email package spends ~3 ms a message parsing and refolding headers it was handed
    as text; here each header is encoded once, with the same encoders (``Header``,
    ``formataddr``), and each body is base64 exactly as ``set_content`` writes it. The
    package still writes the rare rest: an address outside ASCII (it needs SMTPUTF8), an
    ASCII body (whose transfer encoding it picks), text that would read as an encoded word
    and a subject with white space at an end. tests/unit/test_smtp_wire.py holds both to
    the same parsed message.
    """
    to, cc, message_id = _checked(row, sender)
    subject, text, html = row.subject, row.body_text, row.body_html
    if (
        text.isascii()
        or html.isascii()
        or "=?" in subject
        or subject != subject.strip()  # the package drops leading white space
        or not _plain(message_id)
    ):
        return None
    from_line, to_line = _addresses([sender]), _addresses(to)
    cc_line = _addresses(cc) if cc else ""
    if from_line is None or to_line is None or cc_line is None:
        return None
    charset = "us-ascii" if subject.isascii() else "utf-8"
    subject_line = Header(subject, charset, header_name="Subject").encode(
        linesep="\r\n", maxlinelen=_MAX_LINE
    )
    boundary = f"==============={secrets.randbelow(10**19):019d}=="
    headers = [
        f"From: {from_line}",
        f"To: {to_line}",
        *([f"Cc: {cc_line}"] if cc else []),
        f"Subject: {subject_line}",
        f"Date: {_date(row, tz)}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
    ]
    head = "\r\n".join(headers)
    if not head.isascii() or any(len(line) > 998 for line in head.split("\r\n")):
        return None  # RFC 5322's hard limit; base64 lines are 76
    body = [
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(text),
        "",
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "MIME-Version: 1.0",
        "",
        _base64_lines(html),
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join([head, *body]).encode("ascii")


def _plain(value: str) -> bool:
    """Printable ASCII without spaces: written into a header as it is."""
    return value.isascii() and value.isprintable() and " " not in value


def _addresses(items: list[str]) -> str | None:
    """An address list header value, or None if an address is outside plain ASCII."""
    formatted: list[str] = []
    for item in items:
        address = _address(item)
        if address is None:
            return None
        formatted.append(address)
    line = ", ".join(formatted)
    return line if len(line) <= _MAX_LINE - len("From: ") else ",\r\n ".join(formatted)


@lru_cache(maxsize=4096)  # the same liaisons, over and over
def _address(item: str) -> str | None:
    name, address = _parse(item)
    if not address or not _plain(address) or "=?" in name:
        return None
    return formataddr((name, address), charset="utf-8")


def _base64_lines(body: str) -> str:
    # What set_content(cte="base64") writes: line ends made CRLF, one at the end, then
    # base64 in 76-character lines (57 bytes each, so one pass and slicing is the same).
    data = b"\r\n".join(body.encode("utf-8").splitlines()) + b"\r\n"
    encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
    width = _BASE64_CHUNK // 3 * 4
    return "\r\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))


def envelope_recipients(row: OutboxMessage) -> list[str]:
    addresses = outbox.split_addresses(row.recipients) + outbox.split_addresses(row.cc)
    return [_parse(a)[1] if "<" in a else a for a in addresses]


@lru_cache(maxsize=4096)  # parsed once for the To header and once for RCPT TO
def _parse(item: str) -> tuple[str, str]:
    return parseaddr(item)


# -- the connection ------------------------------------------------------------------


class _BeforeData:
    """smtplib's client with a hook run just before DATA: up to there the server has taken
    nothing of the message (MAIL and RCPT only announce it), so work that must finish
    before it goes, such as committing the previous outcome, can overlap the envelope."""

    before_data: Callable[[], object] | None = None

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        hook, self.before_data = self.before_data, None
        if hook is not None:
            hook()
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_BeforeData, smtplib.SMTP):
    pass


class _SMTP_SSL(_BeforeData, smtplib.SMTP_SSL):  # noqa: N801 - smtplib's name
    pass


class Connection:
    """One SMTP session, opened on first use and reused for every message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp: _SMTP | _SMTP_SSL | None = None
        self.opened = 0
        self.drops_in_a_row = 0

    @property
    def alive(self) -> bool:
        return self.smtp is not None and self.smtp.sock is not None

    def open(self) -> _SMTP | _SMTP_SSL:
        s = self.settings
        # The sender's domain as the EHLO name: socket.getfqdn() can stall on DNS here.
        helo = s.smtp_sender.rpartition("@")[2] or "localhost"
        # Building a TLS context reads the CA bundle (~15 ms); only when TLS is on.
        context = ssl.create_default_context() if s.smtp_ssl or s.smtp_starttls else None
        try:
            if s.smtp_ssl:
                smtp: _SMTP | _SMTP_SSL = _SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    local_hostname=helo,
                    timeout=s.smtp_timeout,
                    context=context,
                )
            else:
                smtp = _SMTP(s.smtp_host, s.smtp_port, local_hostname=helo, timeout=s.smtp_timeout)
        except (smtplib.SMTPException, OSError) as e:
            raise SmtpUnavailable(
                f"无法连接邮件服务器 / cannot connect to {s.smtp_host}:{s.smtp_port}: "
                f"{_describe(e)}"
            ) from None
        step = "EHLO"  # a refused greeting or login fails the connection, not the mail
        try:
            smtp.ehlo_or_helo_if_needed()
            if s.smtp_starttls and not s.smtp_ssl:
                step = "STARTTLS"
                smtp.starttls(context=context)
            if s.smtp_username:
                step = "AUTH"
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                smtp.login(s.smtp_username, password)
        except UnicodeEncodeError:
            # smtplib sends credentials as ASCII only; the exception object holds them.
            _quietly_close(smtp)
            raise SmtpUnavailable(
                "SMTP 用户名或密码含非 ASCII 字符，无法登录 / the SMTP username or password "
                "has non-ASCII characters, which smtplib cannot send"
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            _quietly_close(smtp)
            raise SmtpUnavailable(
                f"邮件服务器拒绝 {step} / {s.smtp_host}:{s.smtp_port} refused {step}: "
                f"{_describe(e)}"
            ) from None
        self.smtp = smtp
        self.opened += 1
        return smtp

    def send(
        self,
        msg: EmailMessage | bytes,
        sender: str,
        recipients: Sequence[str],
        *,
        before_data: Callable[[], object] | None = None,
    ) -> dict:
        """Send one message (built, or already the bytes to send); returns the recipients
        the server refused while taking it. ``before_data`` runs after RCPT, before DATA
        (not at all if the server refuses the envelope); what it raises ends the send."""
        smtp = self.smtp if self.alive else self.open()
        assert smtp is not None
        smtp.before_data = before_data
        try:
            if isinstance(msg, bytes):
                # What send_message does once it has flattened a message with ASCII addresses.
                return smtp.sendmail(sender, list(recipients), msg)
            return smtp.send_message(msg, from_addr=sender, to_addrs=list(recipients))
        finally:
            smtp.before_data = None

    def close(self) -> None:
        if self.smtp is not None:
            _quietly_close(self.smtp)
            self.smtp = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


# -- classifying the answer ----------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _describe(e: BaseException) -> str:
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in e.recipients.items()
        )
    if isinstance(e, smtplib.SMTPResponseException):
        return f"{e.smtp_code} {_text(e.smtp_error)}"
    if isinstance(e, TimeoutError):
        return f"超时 / timed out: {e}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def is_permanent(e: BaseException) -> bool:
    """True for a refusal that will not change by itself (a 5xx reply, no SMTPUTF8)."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return bool(e.recipients) and all(code >= 500 for code, _ in e.recipients.values())
    if isinstance(e, smtplib.SMTPResponseException):
        return e.smtp_code >= 500
    return isinstance(e, smtplib.SMTPNotSupportedError)


# -- the dispatcher ------------------------------------------------------------------


# Databases a round trip away: there, committing an outcome is mostly waiting (for the
# server, and PostgreSQL's WAL flush), which a worker thread can do while the next
# envelope goes. SQLite commits in this process (WAL, synchronous=NORMAL: no fsync), so
# handing it to a thread only adds the hand-over.
OVERLAPPED = frozenset({"postgresql"})


class _Outcomes:
    """Commits each message's outcome, on PostgreSQL while the next envelope goes.

    ``wait`` is the barrier: ``dispatch`` passes it as the next message's ``before_data``
    and calls it before any other use of the database, so an outcome is always committed
    before the next message's DATA (a crash still resends at most the one message whose
    outcome was being written), yet its round trip to the database overlaps MAIL and RCPT.
    """

    def __init__(self, db: DbConnection) -> None:
        self.db = db
        self.worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-outcomes")
            if db.dialect.name in OVERLAPPED
            else None
        )
        self.pending: Future[None] | None = None
        self.committed = 0  # outcomes known to be committed

    def record(self, mark: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run ``mark(db, *args, **kwargs)`` and commit it, after the previous outcome."""
        self.wait()
        if self.worker is None:
            self._commit(mark, args, kwargs)
            self.committed += 1
        else:
            self.pending = self.worker.submit(self._commit, mark, args, kwargs)

    def _commit(self, mark: Callable[..., object], args: Any, kwargs: Any) -> None:
        mark(self.db, *args, **kwargs)
        self.db.commit()

    def wait(self) -> None:
        """Return once the last outcome is committed; raise what committing it raised."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()
            self.committed += 1

    def settle(self) -> None:
        """Wait for the last outcome without raising (the run is failing already)."""
        try:
            self.wait()
        except BaseException:  # noqa: BLE001 - the original error is what matters
            pass

    def close(self) -> None:
        self.settle()
        if self.worker is not None:
            self.worker.shutdown()


def dispatch(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = 10_000,
    max_attempts: int = 8,
) -> DispatchReport:
    """Send up to ``limit`` due messages over one connection; commit each outcome before
    the next message goes.

    ``now`` pins the clock (tests); by default each timestamp is the real time it happened.
    """

    def clock() -> datetime:
        return now or datetime.now(UTC)

    secret = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    report = DispatchReport()
    started = time.perf_counter()
    with unit_of_work(engine) as session:
        if not outbox.due(session, now=clock(), limit=1):
            return report  # nothing due: no connection to the mail server at all
    # One database connection for the whole run, in autocommit: every statement here (a
    # claim, a mark, a release) is one UPDATE, committed by the time it returns, so there
    # is no BEGIN and COMMIT round trip, nor a pool checkout (and PostgreSQL's pre-ping),
    # per message.
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db,
        Session(db, expire_on_commit=False) as session,
        Connection(settings) as connection,
    ):
        outcomes = _Outcomes(db)
        try:
            remaining, stop = limit, False
            while remaining > 0 and not stop:
                rows = outbox.claim(
                    session, now=clock(), limit=min(CHUNK, remaining), hold=HOLD
                )
                session.commit()
                if not rows:
                    break
                claimed_at, before = time.monotonic(), outcomes.committed
                try:
                    for row in rows:
                        # Stop well before the claim runs out, or another dispatcher could
                        # take these rows; the next claim picks them up again.
                        if time.monotonic() - claimed_at > HOLD.total_seconds() / 2:
                            break
                        try:
                            stop = _send_one(
                                outcomes, connection, row, settings, clock, max_attempts,
                                report, secret,
                            )
                        except SmtpUnavailable as e:
                            error = f"{_scrub(str(e), secret)}；{STAYS_QUEUED}"
                            log.warning("%s", error)
                            report.errors.append(error)
                            stop = True
                            break
                        if stop:
                            break
                    outcomes.wait()
                except BaseException:
                    outcomes.settle()  # Ctrl-C, a database error
                    _give_back(db, rows[outcomes.committed - before :], clock())
                    raise
                done = outcomes.committed - before  # rows whose outcome is committed
                remaining -= done
                if done < len(rows):
                    outbox.release(db, [r.id for r in rows[done:] if r.id], now=clock())
                    db.commit()
        finally:
            outcomes.close()
    report.elapsed = time.perf_counter() - started
    log.info(
        "outbox dispatch: %d attempted, %d sent, %d to retry, %d failed in %.2f s",
        report.attempted,
        report.sent,
        report.retried,
        report.failed,
        report.elapsed,
    )
    return report


def _send_one(
    outcomes: _Outcomes,
    connection: Connection,
    row: OutboxMessage,
    settings: Settings,
    clock: Callable[[], datetime],
    max_attempts: int,
    report: DispatchReport,
    secret: str,
) -> bool:
    """Send ``row`` and record its outcome; True when the run should stop."""
    assert row.id is not None
    label = f"#{row.id} {row.kind} {row.district_code or '-'}"
    msg: EmailMessage | bytes | None
    try:
        msg = build_wire(row, sender=settings.smtp_sender, tz=settings.tz)
        if msg is None:
            msg = build_mime(row, sender=settings.smtp_sender, tz=settings.tz)
    except ValueError as e:  # Unsendable, or a header the email package refuses
        error = _scrub(f"拒绝发送 / refused to send: {e}", secret)[:_MAX_ERROR]
        outcomes.record(outbox.mark_failed, row.id, error=error)
        report.failed += 1
        report.errors.append(f"{label}: {error}")
        log.warning("outbox %s: %s", label, error)
        return False
    if not connection.alive:
        connection.open()  # SmtpUnavailable: nothing attempted, the caller stops the run
    report.attempted += 1
    try:
        refused = connection.send(
            msg, settings.smtp_sender, envelope_recipients(row), before_data=outcomes.wait
        )
    except (smtplib.SMTPException, OSError) as e:
        error = _scrub(_describe(e), secret)[:_MAX_ERROR]
        if is_permanent(e):
            outcomes.record(outbox.mark_failed, row.id, error=error)
            report.failed += 1
        elif row.attempts + 1 >= max_attempts:
            error = f"gave up after {row.attempts + 1} attempts: {error}"[:_MAX_ERROR]
            outcomes.record(outbox.mark_failed, row.id, error=error)
            report.failed += 1
        else:
            outcomes.record(
                outbox.mark_retry,
                row.id,
                now=clock(),
                error=error,
                backoff=outbox.backoff_seconds(row.attempts + 1),
            )
            report.retried += 1
        report.errors.append(f"{label}: {error}")
        log.warning("outbox %s: %s", label, error)
        if connection.alive:
            connection.drops_in_a_row = 0
            return False
        connection.close()
        connection.drops_in_a_row += 1
        # Reconnect once: if the new connection dies too, the server is unwell and the
        # rest waits, untouched, for the next run.
        return connection.drops_in_a_row >= 2
    connection.drops_in_a_row = 0
    note = None
    if refused:
        note = _scrub(
            "部分收件人被拒 / some recipients refused: "
            + "; ".join(
                f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in refused.items()
            ),
            secret,
        )[:_MAX_ERROR]
        report.errors.append(f"{label}: {note}")
        log.warning("outbox %s: %s", label, note)
    outcomes.record(outbox.mark_sent, row.id, now=clock(), note=note)
    report.sent += 1
    return False


def _give_back(db: DbConnection, rows: Sequence[OutboxMessage], now: datetime) -> None:
    """Make claimed rows due again at once; if even that fails they are due after HOLD."""
    try:
        db.rollback()
        outbox.release(db, [r.id for r in rows if r.id], now=now)
        db.commit()
    except Exception:  # noqa: BLE001 - already failing; the original error is what matters
        log.warning("outbox: %d claimed rows stay held until their claim runs out", len(rows))


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
