"""Soak runs for ``make soak`` (HNTE_SOAK=1): the hostile-file property of
tests/integration/test_hostile_input.py over hundreds of examples, kill-and-rerun at 100
commit points drawn from a real year, and the standalone fuzzer.

HNTE_SOAK_SECONDS (default 600) bounds the whole run. A part that runs out of time
stops where it is, checks what it did, and says how far it got in a warning.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "tests" / "integration"
sys.path.insert(0, str(INTEGRATION))
import test_hostile_input as hostile  # noqa: E402
from year_script import run_year, snapshot  # noqa: E402

from hnte.models.db import make_engine  # noqa: E402
from hnte.services import review  # noqa: E402

SOAK = os.environ.get("HNTE_SOAK") == "1"
SECONDS = float(os.environ.get("HNTE_SOAK_SECONDS", "600"))
STARTED = time.monotonic()  # at collection, which starts the run
DEADLINE = STARTED + SECONDS
SEED = int(os.environ.get("HNTE_SOAK_SEED", "2021"))
FUZZ_DEADLINE = STARTED + min(300, SECONDS / 2)  # the hostile-file property's share
SCRIPT_RESERVE = min(60, SECONDS / 10)  # kept for the standalone fuzzer at the end
FAULT_POINTS = 100
CHUNK = 20  # smaller windows than the integration test's: about 130 commits in the year

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not SOAK, reason="soak runs only with HNTE_SOAK=1 (make soak)"),
]


def _left() -> float:
    return DEADLINE - time.monotonic()


@pytest.fixture(autouse=True)
def hard_stop() -> Iterator[None]:
    """Whatever hangs, the run ends at its deadline (plus a minute to report)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the soak run is past HNTE_SOAK_SECONDS={SECONDS:g}")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, int(_left()) + 60))
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- the hostile-file property, longer ------------------------------------------------------


EXAMPLES = {"applications": 500, **{kind: 100 for kind in hostile.RECORD_KINDS}}


@pytest.mark.parametrize("target", hostile.TARGETS)
def test_any_mix_of_good_and_bad_rows_over_hundreds_of_files(
    template: hostile.Template, target: str
) -> None:
    ran = 0

    @settings(max_examples=EXAMPLES[target], deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data(), suffix=st.sampled_from(hostile.SUFFIXES), strict=st.booleans())
    def check(data: st.DataObject, suffix: str, strict: bool) -> None:
        nonlocal ran
        if time.monotonic() > FUZZ_DEADLINE:
            return
        plan = hostile._plan(data, target, template)
        with hostile.copy_of(template) as (engine, folder):
            hostile._check_property(engine, folder, target, plan, suffix, strict)
        ran += 1

    check()
    print(f"{target}: {ran} files")
    if ran < EXAMPLES[target]:
        warnings.warn(
            f"{target}: the time budget allowed {ran} of {EXAMPLES[target]} files", stacklevel=1
        )
    assert ran > 0


# --- kill and rerun at 100 commits ------------------------------------------------------------


# The year of year_script.py, resumable: a rerun starts again at the run that was cut short,
# as an operator reruns the same day's command, instead of replaying the year from its
# first date (which would apply decisions recorded for later dates at earlier ones).
RESUMABLE_YEAR = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[4])
    from sqlalchemy import text

    from hnte.models.db import make_engine
    from hnte.services import review
    from hnte.services.review import ReviewPolicy, StepContext
    from year_script import BATCH, DECISIONS, RUN_DATES

    engine = make_engine(sys.argv[1])
    chunk, progress = int(sys.argv[2]), Path(sys.argv[3])
    start = int(progress.read_text()) if progress.exists() else 0
    for index in range(start, len(RUN_DATES)):
        with engine.begin() as connection:
            for statement in DECISIONS[index]:
                connection.execute(text(statement))
        ctx = StepContext(engine, BATCH, RUN_DATES[index], f"run-{index}", ReviewPolicy(), chunk)
        for _, step in review.STEPS:
            step(ctx)
        progress.write_text(str(index + 1))
    """
)


@pytest.fixture(scope="module")
def year(
    prepared: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], dict[str, object]]:
    """Every commit point of the year (STEP:N) and the year's end state, from one run."""
    folder = tmp_path_factory.mktemp("soak-reference")
    shutil.copy(prepared, folder / "hnte.db")
    engine = make_engine(f"sqlite:///{folder / 'hnte.db'}")
    counts: dict[str, int] = {}
    commit = review._commit

    def counting(session: Any, step: str) -> None:
        counts[step] = counts.get(step, 0) + 1
        commit(session, step)

    review._commit = counting  # type: ignore[assignment]
    try:
        run_year(engine, CHUNK)
    finally:
        review._commit = commit  # type: ignore[assignment]
    state = snapshot(engine)
    engine.dispose()
    points = [f"{step}:{n}" for step, total in counts.items() for n in range(1, total + 1)]
    return points, state


def _run(url: str, progress: Path, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNTE_")}
    if fault:
        env["HNTE_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, "-c", RESUMABLE_YEAR, url, str(CHUNK), str(progress), str(INTEGRATION)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=progress.parent,
    )


SKIPPED = "skipped: out of time"


def _kill_and_rerun(
    fault: str, prepared: Path, folder: Path, reference: dict[str, object]
) -> str | None:
    """None if a kill at ``fault`` and a rerun end as the uninterrupted year; else why not."""
    if _left() < SCRIPT_RESERVE:
        return SKIPPED
    folder.mkdir()
    shutil.copy(prepared, folder / "hnte.db")
    url = f"sqlite:///{folder / 'hnte.db'}"
    progress = folder / "progress"
    killed = _run(url, progress, fault)
    if killed.returncode != -9:
        return f"the killed run exited {killed.returncode}: {killed.stderr[-800:]}"
    rerun = _run(url, progress, None)
    if rerun.returncode != 0:
        return f"the rerun exited {rerun.returncode}: {rerun.stderr[-800:]}"
    engine = make_engine(url)
    try:
        state = snapshot(engine)
    finally:
        engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    for key, rows in reference.items():
        ours, theirs = set(state[key]), set(rows)  # type: ignore[call-overload]
        if ours != theirs:
            return f"{key}: extra {sorted(ours - theirs)[:2]}, missing {sorted(theirs - ours)[:2]}"
    numbers = [int(r[0][-5:]) for r in state["certificates"]]  # type: ignore[union-attr]
    if numbers != list(range(1, len(numbers) + 1)):
        return "certificate numbers skip or repeat"
    if any(r[3] != "1" for r in state["events"]):  # type: ignore[union-attr]
        return "a transition has more than one event"
    return None


def test_a_kill_at_any_of_a_hundred_commits_then_a_rerun_ends_as_the_uninterrupted_year(
    year: tuple[list[str], dict[str, object]], prepared: Path, tmp_path: Path
) -> None:
    points, reference = year
    chosen = random.Random(SEED).sample(points, min(FAULT_POINTS, len(points)))
    if len(chosen) < FAULT_POINTS:
        warnings.warn(f"the year has only {len(points)} commits", stacklevel=1)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        outcomes = list(
            pool.map(
                lambda n: _kill_and_rerun(chosen[n], prepared, tmp_path / f"p{n}", reference),
                range(len(chosen)),
            )
        )
    checked = sum(outcome != SKIPPED for outcome in outcomes)
    print(
        f"kill-and-rerun: {checked} of {len(chosen)} commit points checked "
        f"(the year has {len(points)})"
    )
    if checked < len(chosen):
        warnings.warn(
            f"the time budget allowed {checked} of {len(chosen)} commit points", stacklevel=1
        )
    assert checked > 0
    failures = [
        (fault, outcome)
        for fault, outcome in zip(chosen, outcomes, strict=True)
        if outcome not in (None, SKIPPED)
    ]
    assert not failures, failures


# --- the standalone fuzzer ------------------------------------------------------------------


def test_the_standalone_fuzzer_finds_nothing_but_reports_and_refusals(tmp_path: Path) -> None:
    seconds = max(10.0, min(120.0, _left() - 15))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "fuzz_import.py"),
            "--seconds",
            f"{seconds:.0f}",
            "--seed",
            str(SEED),
            "--out",
            str(tmp_path / "fuzz"),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    print(done.stdout.splitlines()[-1] if done.stdout else done.stderr[-2000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
