"""The batch review flow: one Prefect task per stage, each a set-based service call."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from hnte.config.city import load_city
from hnte.config.settings import get_settings
from hnte.flows.workers import launch
from hnte.models.db import get_engine
from hnte.models.stages import Stage, require_transition
from hnte.services import chunks, review
from hnte.services.review import ReviewPolicy, StepContext, StepReport


def _context(batch: str, as_of: date) -> StepContext:
    settings = get_settings()
    policy = ReviewPolicy.from_city(load_city(settings.city_file))
    run_id = flow_run.get_id()
    return StepContext(
        get_engine(), batch, as_of, str(run_id) if run_id else None, policy, settings.review_chunk
    )


@task
def review_step(batch: str, as_of: date, step: str) -> StepReport:
    """One review step over the whole batch, in set-based units (``review.STEPS``)."""
    return review.RUN[step](_context(batch, as_of))


# One Prefect task per step, named as the README's table names them (district-review, …).
STEP_TASKS = {
    name: review_step.with_options(name=name.replace("_", "-")) for name, _ in review.STEPS
}


@task(name="review-step-with-workers")
def shared_step(batch: str, as_of: date, plan: str, step: str) -> StepReport:
    """One step with its windows shared out to the plan's workers (and done here too)."""
    return chunks.coordinate_step(_context(batch, as_of), plan, step)


def _with_workers(batch: str, as_of: date, workers: int) -> list[StepReport]:
    """The six steps in order, each step's windows shared with ``workers`` worker flow
    runs started from the work pool; the plan is closed however the run ends."""
    ctx = _context(batch, as_of)
    chunks.require_postgres(ctx.engine)
    plan = chunks.open_plan(ctx)
    outcome = "failed"
    try:
        started = launch(plan, workers, batch)
        get_run_logger().info("plan %s: started %d worker flow runs", plan, len(started))
        reports = [shared_step(batch, as_of, plan, name) for name in review.WINDOWED]
        outcome = "done"
        return reports
    finally:
        chunks.close_plan(ctx.engine, plan, outcome)


def transition_rows(reports: list[StepReport], district_names: dict[str, str]) -> list[dict]:
    """One row per (transition, district) with its count, in stage-table order."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for report in reports:
        for m in report.moves:
            for district, n in m.by_district.items():
                counts[(m.source.value, m.target.value, district)] += n
    rows = []
    for (source, target, district), n in counts.items():
        transition = require_transition(Stage(source), Stage(target))
        rows.append(
            {
                "from": source,
                "to": target,
                "transition": transition.label_zh,
                "district_code": district,
                "district": district_names.get(district, district),
                "count": n,
            }
        )
    order = list(district_names)
    rows.sort(
        key=lambda r: (
            list(Stage).index(Stage(r["from"])),
            r["to"],
            order.index(r["district_code"]) if r["district_code"] in order else 0,
        )
    )
    return rows


@flow(name="batch-review", flow_run_name="batch-review {batch}", log_prints=True)
def batch_review(batch: str, as_of: date | None = None, workers: int = 0) -> dict[str, Any]:
    """Advance every application of a batch that is ready, and report what moved.

    With ``workers`` (PostgreSQL and a Prefect server with the ``review-worker``
    deployment, see ``hnte deploy``) each step's windows are shared with that many
    worker flow runs; the result is the same as alone.
    """
    settings = get_settings()
    as_of = as_of or datetime.now(settings.tz).date()
    city = load_city(settings.city_file)
    names = {d.code: d.name for d in city.districts}
    if workers:
        reports = _with_workers(batch, as_of, workers)
    else:
        reports = [run(batch, as_of, name) for name, run in STEP_TASKS.items()]
    rows = transition_rows(reports, names)
    notes = {f"{r.step}.{k}": v for r in reports for k, v in r.notes.items()}
    create_table_artifact(
        key=f"batch-review-{batch.lower()}",
        table=[{k: r[k] for k in ("transition", "from", "to", "district", "count")} for r in rows]
        or [
            {
                "transition": "无变化 / nothing moved",
                "from": "",
                "to": "",
                "district": "",
                "count": 0,
            }
        ],
        description=f"批次 {batch} 审核流转（{as_of}）/ transitions of batch {batch} as of {as_of}",
    )
    steps = [{"step": r.step, "seconds": round(r.seconds, 3), "moved": r.moved} for r in reports]
    get_run_logger().info(
        "batch %s as of %s: %d moved; %s; %s",
        batch,
        as_of,
        sum(r["count"] for r in rows),
        notes,
        steps,
    )
    return {
        "batch": batch,
        "as_of": as_of.isoformat(),
        "transitions": rows,
        "steps": steps,
        "notes": notes,
    }
