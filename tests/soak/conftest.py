"""The soak suite (``make soak``): long fuzz runs and kill-and-rerun at many commits.

Skipped unless HNTE_SOAK=1; HNTE_SOAK_SECONDS (default 600) bounds the whole run. It
reuses the integration tests' fixtures: the hostile-file template database and the
prepared year of 200 applications.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_hostile_input import template  # noqa: E402, F401 - a fixture for test_soak
from test_resumable_review import prepared  # noqa: E402, F401 - a fixture for test_soak


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: long fuzz and crash runs, only with HNTE_SOAK=1 (make soak)"
    )
