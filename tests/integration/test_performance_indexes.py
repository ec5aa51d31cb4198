"""Migration 0002 (performance indexes) on SQLite and PostgreSQL: up, down and up again, and
the schema it builds is the one the models declare."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from hnte.models import migrate
from hnte.models.db import make_engine

NEW = {
    ("certificate", "ix_certificate_stock"),
    ("certificate", "ix_certificate_expiry"),
    ("certificate", "ix_certificate_holder"),
    ("certificate", "ix_certificate_issued"),
    ("stage_event", "ix_stage_event_exit"),
}
OLD = {
    ("certificate", "ix_certificate_credit_code"),
    ("certificate", "ix_certificate_expires_on"),
    ("certificate", "ix_certificate_validity"),
}


def _indexes(engine: Engine) -> set[tuple[str, str]]:
    found = inspect(engine)
    return {
        (table, index["name"])
        for table in ("application", "certificate", "stage_event")
        for index in found.get_indexes(table)
        if index["name"]
    }


def _index_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        diff = compare_metadata(context, SQLModel.metadata)
    return [d for d in diff if isinstance(d, tuple) and d[0] in ("add_index", "remove_index")]


def test_0002_goes_up_down_and_up_and_matches_the_models(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    try:
        migrate.upgrade(engine)
        assert NEW <= _indexes(engine) and not OLD & _indexes(engine)
        assert _index_differences(engine) == []

        _downgrade(engine, "0001")
        assert OLD <= _indexes(engine) and not NEW & _indexes(engine)

        migrate.upgrade(engine)
        assert NEW <= _indexes(engine) and not OLD & _indexes(engine)
    finally:
        engine.dispose()


def _downgrade(engine: Engine, revision: str) -> None:
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
