"""The transactional outbox: notices written with their cause, read and marked by the dispatcher.

Nothing here commits. ``enqueue`` joins the caller's transaction, so a notice exists
exactly when the change that caused it does; the dispatcher commits each status change
itself, one message at a time. Timestamps are aware datetimes (stored as UTC).

A row is *due* when it is queued and its ``next_attempt_at`` has passed. The dispatcher
``claim``s due rows by pushing ``next_attempt_at`` a while into the future before it
sends them, so a second dispatcher (the scheduler and an operator's ``hnte outbox send``
at once) never picks up the same rows, and rows held by a dispatcher that crashed become
due again by themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Connection, Select, Update, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from hnte.models.tables import OutboxMessage, OutboxStatus

outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
c = outbox.c


class InvalidNotice(ValueError):
    """A notice that can never be sent as given (bad address, line break in a header)."""


def backoff_seconds(attempts: int, base: float = 30, cap: float = 3600) -> float:
    """Wait before the next try after ``attempts`` failed ones: 30 s, 60 s, 2 min … 1 h."""
    if attempts <= 1:
        return min(base, cap)
    if attempts > 64:  # 2**64 × base is far past any cap; skip the huge arithmetic
        return cap
    return min(base * 2 ** (attempts - 1), cap)


def split_addresses(value: str) -> list[str]:
    """The stored comma-separated list back into addresses."""
    return [part.strip() for part in value.split(",") if part.strip()]


def check_address(address: str) -> str:
    """One address (``a@b`` or ``名字 <a@b>``) fit to store in a comma-separated list."""
    address = address.strip()
    if "\r" in address or "\n" in address:
        raise InvalidNotice(f"地址含换行符 / line break in address: {address!r}")
    if "," in address:
        raise InvalidNotice(f"一项只能有一个地址 / one address per item: {address!r}")
    name, spec = parseaddr(address)
    local, at, domain = spec.rpartition("@")
    if not (local and at and domain) or " " in spec:
        raise InvalidNotice(f"邮件地址无效 / invalid email address: {address!r}")
    return address


def _check_header(name: str, value: str, column: str) -> None:
    if "\r" in value or "\n" in value:
        raise InvalidNotice(f"{name} 含换行符 / line break in {name}: {value[:80]!r}")
    length = c[column].type.length
    if length is not None and len(value) > length:
        raise InvalidNotice(f"{name} 超过 {length} 个字符 / {name} longer than {length}")


def enqueue(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    recipients: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    text: str,
    html: str,
    message_id: str,
    period: str,
    district_code: str | None = None,
    batch_code: str | None = None,
    now: datetime,
) -> bool:
    """Queue a notice in the caller's transaction; False if ``dedupe_key`` is already queued.

    The first notice for a key wins: a job that runs twice writes one row, and a second
    call with different content changes nothing.
    """
    to = [check_address(a) for a in recipients]
    if not to:
        raise InvalidNotice(f"没有收件人 / no recipients: {dedupe_key}")
    copies = [check_address(a) for a in cc]
    _check_header("Subject", subject, "subject")
    _check_header("Message-ID", message_id, "message_id")
    _check_header("dedupe_key", dedupe_key, "dedupe_key")
    values: dict[str, Any] = {
        "dedupe_key": dedupe_key, "kind": kind, "district_code": district_code,
        "batch_code": batch_code, "period": period, "recipients": ",".join(to),
        "cc": ",".join(copies), "subject": subject, "body_text": text, "body_html": html,
        "message_id": message_id, "status": OutboxStatus.QUEUED.value, "attempts": 0,
        "next_attempt_at": now, "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        statement: Any = sqlite.insert(outbox)
    elif dialect == "postgresql":
        statement = postgresql.insert(outbox)
    else:  # pragma: no cover - hnte runs on SQLite and PostgreSQL only
        raise NotImplementedError(f"outbox on {dialect}")
    statement = (
        statement.values(values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(c.id)  # rowcount is not reliable here across drivers; a returned id is
    )
    return session.connection().execute(statement).first() is not None


def _due(now: datetime) -> Any:
    return (c.status == OutboxStatus.QUEUED.value) & or_(
        c.next_attempt_at.is_(None), c.next_attempt_at <= now
    )


def _rows(session: Session, query: Select[Any]) -> list[OutboxMessage]:
    result = session.exec(query.execution_options(populate_existing=True))  # type: ignore[call-overload]
    return list(result.scalars())


def due(session: Session, *, now: datetime, limit: int) -> list[OutboxMessage]:
    """Queued rows whose time has come, oldest first (read only; see ``claim``)."""
    query = (
        select(OutboxMessage)
        .where(_due(now))
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
    )
    return _rows(session, query)


def claim(
    session: Session, *, now: datetime, limit: int, hold: timedelta
) -> list[OutboxMessage]:
    """Take up to ``limit`` due rows for sending: they stop being due until ``now + hold``.

    The caller commits the claim before it sends. Only rows still due at the ``UPDATE``
    are taken, so two dispatchers racing for the same rows split them, never share them.
    """
    pick = select(c.id).where(_due(now)).order_by(c.next_attempt_at, c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    # A CTE runs once; a plain ``IN (subquery … LIMIT)`` may be rescanned by PostgreSQL's
    # planner and then take more than ``limit`` rows.
    picked = pick.cte("picked")
    taken = session.connection().execute(
        update(outbox)
        .where(c.id.in_(select(picked.c.id)), _due(now))
        .values(next_attempt_at=now + hold)
        .returning(c.id)
    )
    ids = [row.id for row in taken]
    if not ids:
        return []
    return _rows(session, select(OutboxMessage).where(c.id.in_(ids)).order_by(c.id))


def release(db: Session | Connection, ids: Sequence[int], *, now: datetime) -> int:
    """Give claimed rows back unsent and due at once (the server could not be reached)."""
    if not ids:
        return 0
    result = _connection(db).execute(
        update(outbox)
        .where(c.id.in_(list(ids)), c.status == OutboxStatus.QUEUED.value)
        .values(next_attempt_at=now)
    )
    return int(result.rowcount)


def _connection(db: Session | Connection) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def _marking(**values: Any) -> Update:
    # Only a queued row changes: an operator may have edited it while it was in flight.
    return (
        update(outbox)
        .where(c.id == bindparam("row_id"), c.status == OutboxStatus.QUEUED.value)
        .values(attempts=c.attempts + 1, **values)
    )


# Built once: the dispatcher marks every message it sends, and building and hashing a
# fresh UPDATE each time cost more than running it.
_SENT = _marking(
    status=OutboxStatus.SENT.value, sent_at=bindparam("at"), last_error=bindparam("error")
)
_RETRY = _marking(next_attempt_at=bindparam("at"), last_error=bindparam("error"))
_FAILED = _marking(status=OutboxStatus.FAILED.value, last_error=bindparam("error"))


def _mark(db: Session | Connection, statement: Update, **params: Any) -> bool:
    result = _connection(db).execute(statement, params)
    return bool(result.rowcount == 1)


def mark_sent(
    db: Session | Connection, row_id: int, *, now: datetime, note: str | None = None
) -> bool:
    """The server accepted the message (``note``: recipients it refused, if any)."""
    return _mark(db, _SENT, row_id=row_id, at=now, error=note)


def mark_retry(
    db: Session | Connection, row_id: int, *, now: datetime, error: str, backoff: float
) -> bool:
    """A temporary failure: try again ``backoff`` seconds after ``now``."""
    return _mark(db, _RETRY, row_id=row_id, at=now + timedelta(seconds=backoff), error=error)


def mark_failed(db: Session | Connection, row_id: int, *, error: str) -> bool:
    """A permanent failure, kept with the reason until an operator calls ``retry_failed``."""
    return _mark(db, _FAILED, row_id=row_id, error=error)


def retry_failed(
    session: Session, ids: Sequence[int] | None = None, *, now: datetime | None = None
) -> int:
    """Failed rows (all, or those of ``ids``) back to the queue with a fresh attempt budget.

    The reason stays in ``last_error`` until the next attempt replaces it.
    """
    query = update(outbox).where(c.status == OutboxStatus.FAILED.value)
    if ids is not None:
        if not ids:
            return 0
        query = query.where(c.id.in_(list(ids)))
    result = session.connection().execute(
        query.values(
            status=OutboxStatus.QUEUED.value, attempts=0,
            next_attempt_at=now or datetime.now(UTC),
        )
    )
    return int(result.rowcount)


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    district_code: str | None = None,
    limit: int | None = 50,
) -> list[OutboxMessage]:
    """Newest first, for the operator's listing."""
    query = select(OutboxMessage).order_by(c.id.desc())
    if status is not None:
        query = query.where(c.status == status)
    if district_code is not None:
        query = query.where(c.district_code == district_code)
    if limit is not None:
        query = query.limit(limit)
    return _rows(session, query)
