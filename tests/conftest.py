"""Shared fixtures: real databases (SQLite file, PostgreSQL when HNTE_TEST_DATABASE_URL is
set), the bundled city loaded, and Prefect kept offline inside the work tree."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".work" / "prefect-test"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PG_URL = os.environ.get("HNTE_TEST_DATABASE_URL")


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database URL: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hnte.db'}"
        return
    if not PG_URL:
        pytest.skip("HNTE_TEST_DATABASE_URL not set")
    yield from _pg_schema(PG_URL)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("HNTE_TEST_DATABASE_URL not set")
    yield from _pg_schema(PG_URL)


def _pg_schema(base: str) -> Iterator[str]:
    from hnte.models.db import make_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(base, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hnte.db'}"


def _initialised(url: str) -> Engine:
    from hnte.config.city import load_city
    from hnte.models.db import make_engine
    from hnte.services.setup import init_database

    engine = make_engine(url)
    init_database(engine, load_city())
    return engine


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An initialised SQLite database with the bundled Qingdao city loaded."""
    eng = _initialised(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def any_engine(any_db_url: str) -> Iterator[Engine]:
    """An initialised database, once on SQLite and once on PostgreSQL when available."""
    eng = _initialised(any_db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    """Point get_settings()/get_engine() at the test database, and restore them after."""
    from hnte.config.settings import get_settings
    from hnte.models.db import get_engine

    monkeypatch.setenv("HNTE_DATABASE_URL", db_url)
    monkeypatch.setenv("HNTE_OPERATOR", "测试操作员")
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield db_url
    get_engine.cache_clear()
    get_settings.cache_clear()
