"""Integration fixtures: one real Prefect API server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database; starting one costs 8–17 s, so only once.

    tests/conftest.py has already pointed PREFECT_HOME into the work tree and turned
    analytics off before prefect is imported.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
