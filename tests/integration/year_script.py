"""A batch's whole review, step by step, with decisions recorded idempotently between runs.

Used in-process for the reference state and in a subprocess that the crash tests kill at
a chosen commit (HNTE_FAULT_AT). Run as: python year_script.py DATABASE_URL CHUNK
"""

from __future__ import annotations

import sys
from datetime import date

from sqlalchemy import Engine, text

from hnte.services import review
from hnte.services.review import ReviewPolicy, StepContext

BATCH = "2021-1"
RUN_DATES = (
    date(2021, 6, 10),
    date(2021, 7, 20),
    date(2021, 9, 1),
    date(2021, 9, 10),
    date(2021, 10, 20),
)

# Each decision is written only where none exists yet, so replaying is harmless.
DECISIONS = {
    0: [
        "UPDATE application SET district_decision = CASE WHEN id % 23 = 0 THEN 'returned' "
        "ELSE 'recommended' END, district_reason = CASE WHEN id % 23 = 0 THEN '材料不全' END, "
        "district_decided_by = '区联络员' WHERE district_decision IS NULL",
    ],
    1: [
        "INSERT INTO expert_score (application_id, expert_id, ip_score, conversion_score, "
        "rd_management_score, growth_score, total, recorded_by) "
        "SELECT s.application_id, s.expert_id, 20 + s.application_id % 11, 25, 15, 10, "
        "70 + s.application_id % 11, '评审专家' FROM panel_seat s WHERE NOT EXISTS "
        "(SELECT 1 FROM expert_score e WHERE e.application_id = s.application_id "
        "AND e.expert_id = s.expert_id)",
    ],
    # Keyed on facts fixed by earlier runs (score, selection), not on the current stage,
    # so a rerun that replays the year records exactly the same decisions.
    2: [
        "UPDATE application SET inspection_outcome = CASE WHEN id % 4 = 0 THEN 'failed' "
        "ELSE 'passed' END, inspection_note = '现场核查', inspection_decided_by = '考察组' "
        "WHERE selected_for_inspection AND inspection_outcome IS NULL",
        "UPDATE application SET approval = 'approved', approval_decided_by = '局领导' "
        "WHERE NOT selected_for_inspection AND score >= 71 AND approval IS NULL",
    ],
    3: [
        "UPDATE application SET approval = 'approved', approval_decided_by = '局领导' "
        "WHERE selected_for_inspection AND inspection_outcome = 'passed' AND approval IS NULL",
    ],
    4: [],
}


def run_year(engine: Engine, chunk: int) -> None:
    for index, as_of in enumerate(RUN_DATES):
        with engine.begin() as connection:
            for statement in DECISIONS[index]:
                connection.execute(text(statement))
        ctx = StepContext(engine, BATCH, as_of, f"run-{index}", ReviewPolicy(), chunk)
        for _, step in review.STEPS:
            step(ctx)


def snapshot(engine: Engine) -> dict[str, object]:
    """What must be equal between an interrupted-and-rerun year and an uninterrupted one."""
    with engine.connect() as c:
        apps = c.execute(
            text(
                "SELECT credit_code, stage, decision_reason, score, screening_flags, "
                "selected_for_inspection, notice_ends FROM application ORDER BY credit_code"
            )
        ).all()
        events = c.execute(
            text(
                "SELECT a.credit_code, e.from_stage, e.to_stage, count(*) FROM stage_event e "
                "JOIN application a ON a.id = e.application_id "
                "GROUP BY a.credit_code, e.from_stage, e.to_stage ORDER BY 1, 2, 3"
            )
        ).all()
        panels = c.execute(
            text(
                "SELECT a.credit_code, s.expert_id, s.seat FROM panel_seat s "
                "JOIN application a ON a.id = s.application_id ORDER BY 1, 3"
            )
        ).all()
        certificates = c.execute(
            text("SELECT number, credit_code, issued_on FROM certificate ORDER BY number")
        ).all()
    return {
        "applications": [tuple(map(str, r)) for r in apps],
        "events": [tuple(map(str, r)) for r in events],
        "panels": [tuple(map(str, r)) for r in panels],
        "certificates": [tuple(map(str, r)) for r in certificates],
    }


if __name__ == "__main__":
    from hnte.models.db import make_engine

    run_year(make_engine(sys.argv[1]), int(sys.argv[2]))
