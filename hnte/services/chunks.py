"""A batch review's windows shared out to several workers, each window claimed once.

The coordinating run (``batch_review`` with workers) writes a *plan*, then for each step
in order: does the step's batch-wide part itself (screening, drawing panels), writes one
*chunk* per id window, works chunks like any worker, and waits until every chunk of the
step is done before the next step starts. Workers (``review_worker`` flow runs from a
Prefect work pool, on any machine that reaches the database) claim chunks of whatever
step is open.

A chunk is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and marked done in the same
transaction as its window's moves: a worker that dies mid-window loses its lock with its
connection, the window's moves roll back with it, and the chunk is free again. The moves
themselves stay version-checked, so even a chunk run twice would move nothing twice.
This needs row locks that outlive a statement: PostgreSQL only.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select, update
from sqlmodel import Session

from hnte.models.panel import PanelPolicy
from hnte.models.scoring import InspectionPolicy
from hnte.models.screening import ScreeningPolicy
from hnte.models.stages import Stage
from hnte.models.tables import ReviewChunk, ReviewPlan
from hnte.services import review
from hnte.services.review import ReviewPolicy, StepContext, StepReport
from hnte.services.transitions import MoveResult

# A worker that finds nothing to claim looks again after this long.
POLL_SECONDS = 0.2
# A plan whose coordinator has not been heard of for this long is given up by workers.
STALE_AFTER = timedelta(minutes=10)


class WorkersNeedPostgres(ValueError):
    """Sharing a batch's windows needs row locks, which SQLite does not have."""


class NeedsPrefectServer(RuntimeError):
    """Workers and deployments live on a Prefect server, not in a process's own API."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


def require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise WorkersNeedPostgres(
            "多个工作进程需要 PostgreSQL 数据库（SQLite 无行锁）/ "
            "several workers need a PostgreSQL database (SQLite has no row locks)"
        )


# --- the policy travels with the plan ---------------------------------------------------


def policy_to_json(policy: ReviewPolicy) -> str:
    return json.dumps(asdict(policy), ensure_ascii=False, sort_keys=True)


def policy_from_json(text: str) -> ReviewPolicy:
    d = json.loads(text)
    return ReviewPolicy(
        panel=PanelPolicy(**d.pop("panel")),
        inspection=InspectionPolicy(**d.pop("inspection")),
        screening=ScreeningPolicy(**d.pop("screening")),
        **d,
    )


# --- results of a window, kept on its chunk ----------------------------------------------


def _result_to_json(report: StepReport) -> str:
    return json.dumps(
        {
            "moves": [
                {
                    "from": m.source.value,
                    "to": m.target.value,
                    "moved": m.moved,
                    "skipped": m.skipped,
                    "by_district": m.by_district,
                }
                for m in report.moves
            ],
            "notes": report.notes,
        },
        ensure_ascii=False,
    )


def _add_result(report: StepReport, text: str) -> None:
    data = json.loads(text)
    for m in data["moves"]:
        report.add(
            MoveResult(Stage(m["from"]), Stage(m["to"]), m["moved"], m["skipped"], m["by_district"])
        )
    for key, value in data["notes"].items():
        report.notes[key] = report.notes.get(key, 0) + value


# --- the plan ---------------------------------------------------------------------------


def open_plan(ctx: StepContext, coordinator: str | None = None) -> str:
    """Write a plan for ``ctx``'s batch; returns its id. Closes the batch's stale plans."""
    require_postgres(ctx.engine)
    plan_id = str(uuid.uuid4())
    now = _now()
    with Session(ctx.engine) as session:
        # A plan left open by a coordinator that died: its workers may stop now.
        session.connection().execute(
            update(ReviewPlan)
            .where(
                ReviewPlan.batch_code == ctx.batch_code,
                ReviewPlan.closed_at.is_(None),  # type: ignore[union-attr]
                ReviewPlan.touched_at < now - STALE_AFTER,
            )
            .values(closed_at=now, outcome="abandoned")
        )
        session.add(
            ReviewPlan(
                id=plan_id,
                batch_code=ctx.batch_code,
                as_of=ctx.as_of,
                policy=policy_to_json(ctx.policy),
                coordinator=coordinator or worker_name(),
                flow_run_id=ctx.flow_run_id,
                created_at=now,
                touched_at=now,
            )
        )
        session.commit()
    return plan_id


def close_plan(engine: Engine, plan_id: str, outcome: str) -> None:
    with Session(engine) as session:
        session.connection().execute(
            update(ReviewPlan)
            .where(ReviewPlan.id == plan_id, ReviewPlan.closed_at.is_(None))  # type: ignore[union-attr]
            .values(closed_at=_now(), outcome=outcome)
        )
        session.commit()


def _touch(engine: Engine, plan_id: str) -> None:
    with Session(engine) as session:
        session.connection().execute(
            update(ReviewPlan).where(ReviewPlan.id == plan_id).values(touched_at=_now())
        )
        session.commit()


def _plan_windows(ctx: StepContext, plan_id: str, name: str) -> int:
    """One chunk per id window of the step's applications; returns how many."""
    step = review.WINDOWED[name]
    position = list(review.WINDOWED).index(name) + 1
    rows = [
        {"plan_id": plan_id, "step": name, "position": position, "low": low, "high": high}
        for low, high in review._windows(ctx, *step.stages)
    ]
    if rows:
        with Session(ctx.engine) as session:
            session.connection().execute(insert(ReviewChunk), rows)
            session.commit()
    return len(rows)


# --- claiming and working ---------------------------------------------------------------


def _claim(
    session: Session, plan_id: str, *, wait: bool, step: str | None = None
) -> ReviewChunk | None:
    """Lock the first open chunk of the plan (of ``step`` if given) for this transaction.

    ``wait=False`` skips chunks other workers hold; ``wait=True`` waits for them, which
    returns once each is done (and then not it) or its worker died (and then it)."""
    query = (
        select(ReviewChunk)
        .where(ReviewChunk.plan_id == plan_id, ReviewChunk.done_at.is_(None))  # type: ignore[union-attr]
        .order_by(ReviewChunk.position, ReviewChunk.low)
        .limit(1)
        .with_for_update(skip_locked=not wait)
    )
    if step is not None:
        query = query.where(ReviewChunk.step == step)
    return session.scalars(query).first()


def _work_one(
    ctx: StepContext, plan_id: str, worker: str, *, wait: bool, step: str | None
) -> bool:
    """Claim one chunk and work it in the claim's transaction; False when none was left."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        chunk = _claim(session, plan_id, wait=wait, step=step)
        if chunk is None:
            session.rollback()
            return False
        started = time.perf_counter()
        report = StepReport(chunk.step)
        review.WINDOWED[chunk.step].body(ctx)(session, (chunk.low, chunk.high), report)
        chunk.done_at = _now()
        chunk.worker = worker
        chunk.flow_run_id = ctx.flow_run_id
        chunk.seconds = round(time.perf_counter() - started, 4)
        chunk.result = _result_to_json(report)
        session.add(chunk)
        review._commit(session, chunk.step)
        return True


def _plan(engine: Engine, plan_id: str) -> ReviewPlan | None:
    with Session(engine) as session:
        return session.get(ReviewPlan, plan_id)


def work_plan(
    engine: Engine,
    plan_id: str,
    *,
    worker: str | None = None,
    flow_run_id: str | None = None,
    chunk: int = 20_000,
) -> int:
    """A worker's life: claim and work chunks of the plan until it is closed; returns how
    many chunks this worker did."""
    require_postgres(engine)
    worker = worker or worker_name()
    plan = _plan(engine, plan_id)
    if plan is None:
        raise LookupError(f"没有审核计划 {plan_id} / no review plan {plan_id}")
    ctx = StepContext(
        engine, plan.batch_code, plan.as_of, flow_run_id, policy_from_json(plan.policy), chunk
    )
    done = 0
    while True:
        # Stop as soon as the coordinator has closed the plan (or died): windows it left
        # open belong to a run that is over.
        plan = _plan(engine, plan_id)
        if plan is None or plan.closed_at is not None:
            return done
        if _now() - plan.touched_at > STALE_AFTER:
            return done
        if _work_one(ctx, plan_id, worker, wait=False, step=None):
            done += 1
        else:
            time.sleep(POLL_SECONDS)


def coordinate_step(
    ctx: StepContext, plan_id: str, name: str, worker: str | None = None
) -> StepReport:
    """The coordinator's part of one step: the batch-wide work, the chunks, a share of the
    windows, and the wait until every window is done; returns the whole step's report."""
    worker = worker or worker_name()
    step = review.WINDOWED[name]
    report = StepReport(name)
    started = time.perf_counter()
    _touch(ctx.engine, plan_id)
    if step.prepare is not None:
        step.prepare(ctx, report)
    _plan_windows(ctx, plan_id, name)
    _touch(ctx.engine, plan_id)
    # Work alongside the workers; then take over whatever a dead worker left.
    while _work_one(ctx, plan_id, worker, wait=False, step=name):
        pass
    while _work_one(ctx, plan_id, worker, wait=True, step=name):
        pass
    with Session(ctx.engine) as session:
        for (text,) in session.connection().execute(
            select(ReviewChunk.result).where(
                ReviewChunk.plan_id == plan_id, ReviewChunk.step == name
            )
        ):
            _add_result(report, text)
    report.seconds = time.perf_counter() - started
    return report


def chunk_counts(engine: Engine, plan_id: str) -> dict[str, int]:
    """How many chunks of the plan each worker did."""
    with Session(engine) as session:
        return {
            worker: n
            for worker, n in session.connection().execute(
                select(ReviewChunk.worker, func.count())
                .where(ReviewChunk.plan_id == plan_id)
                .group_by(ReviewChunk.worker)
            )
        }
