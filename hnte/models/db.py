"""Engines and the unit of work.

The unit of work rolls back unless the caller commits: a step that fails half-way
leaves nothing behind, which is what makes every step safe to run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from hnte.config.settings import get_settings


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the per-dialect settings hnte relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (reports, the scheduler) run beside a batch flow's writes.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "checkout")
        def _begin_immediate(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            # The sqlite3 module opens a transaction before the first INSERT/UPDATE/DELETE
            # (reads stay outside one, so they never block); "IMMEDIATE" makes that BEGIN
            # IMMEDIATE, which takes the write lock at once. A plain BEGIN takes it only at
            # the first write to the database file, after the unit may have read it (every
            # review move does); if another writer is busy then, SQLite cannot wait and
            # fails at once with "database is locked" (a review window beside the
            # scheduler's outbox marks). With IMMEDIATE the unit waits (busy_timeout).
            # Set at every checkout: SQLAlchemy resets a connection that ran in AUTOCOMMIT
            # (the outbox dispatcher's) to a plain BEGIN when it returns to the pool.
            dbapi_connection.isolation_level = "IMMEDIATE"

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # Plain postgresql:// would pick psycopg2, which is not installed; psycopg 3 is.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, **kwargs)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url.get_secret_value())


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """A session that rolls back on exit unless ``session.commit()`` was called."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
    finally:
        # close() ends an uncommitted transaction (the pool rolls it back) without
        # expiring objects already loaded, so callers may still read them.
        session.close()
