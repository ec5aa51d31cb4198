"""On SQLite, a unit of work that reads before it writes waits for another writer.

Every review move reads the database (into a scratch table) before it updates it. With a
plain BEGIN, SQLite cannot let such a unit wait for a writer that is busy: it fails at
once with "database is locked". hnte opens write transactions with BEGIN IMMEDIATE, so
the unit takes its turn instead, also on a pooled connection the outbox dispatcher used
in autocommit mode before.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from hnte.models.db import make_engine

WRITER_HOLDS_SECONDS = 1.5


def _read_then_write(engine: Engine, done: threading.Event, failures: list[BaseException]) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("CREATE TEMP TABLE IF NOT EXISTS seen (n INTEGER)"))
            # The first data statement opens the transaction and reads the main database…
            connection.execute(text("INSERT INTO seen SELECT count(*) FROM counter"))
            # …then the unit writes to it, as a review move does.
            connection.execute(text("UPDATE counter SET n = n + 1"))
            connection.commit()
    except BaseException as e:  # reported by the test's thread
        failures.append(e)
    finally:
        done.set()


@pytest.mark.parametrize("after_autocommit", [False, True], ids=["fresh", "after autocommit"])
def test_a_unit_that_reads_before_it_writes_waits_for_a_busy_writer(
    tmp_path: Path, after_autocommit: bool
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/writers.db")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE counter (n INTEGER)"))
            connection.execute(text("INSERT INTO counter VALUES (0)"))
        failures: list[BaseException] = []
        done = threading.Event()
        with engine.connect() as writer:
            writer.execute(text("UPDATE counter SET n = n + 10"))  # holds the write lock
            if after_autocommit:
                # The only idle pooled connection, next for the other unit, goes through
                # autocommit as the outbox dispatcher's does.
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("SELECT count(*) FROM counter"))
            other = threading.Thread(target=_read_then_write, args=(engine, done, failures))
            other.start()
            assert not done.wait(WRITER_HOLDS_SECONDS), f"did not wait: {failures}"
            writer.commit()
        other.join(60)
        assert done.is_set() and not failures, failures
        with engine.connect() as connection:
            assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 11
    finally:
        engine.dispose()
