"""Every persisted table of hnte, in one module.

Money is integer fen (1 CNY = 100 fen), never float. Dates are business dates in
Asia/Shanghai; timestamps are stored as UTC. The application table carries the
decisions people record (district, inspection, approval) as columns so that each stage
step is one set-based statement over a batch.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Numeric, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from hnte.models.enums import ApplicationKind
from hnte.models.stages import Stage


class District(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=6, description="administrative division code")
    name: str = Field(max_length=32, unique=True)
    liaison_emails: str = Field(default="", description="comma-separated addresses")
    position: int = 0


class Enterprise(SQLModel, table=True):
    credit_code: str = Field(primary_key=True, max_length=18)
    name: str = Field(max_length=200)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=6)
    registered_on: date
    tech_field: str = Field(max_length=16)
    intermediary: str | None = Field(default=None, max_length=200)


class Batch(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=16, description='e.g. "2021-1"')
    year: int = Field(index=True)
    sequence: int
    title: str = Field(max_length=64)
    seed: int = Field(description="seeds the panel draw and the inspection sample")
    application_deadline: date
    closed: bool = False


class BatchDeadline(SQLModel, table=True):
    """The batch calendar: the day each stage's work is due."""

    __tablename__ = "batch_deadline"
    batch_code: str = Field(foreign_key="batch.code", primary_key=True, max_length=16)
    stage: str = Field(primary_key=True, max_length=24)
    due_on: date


class Application(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("batch_code", "credit_code", name="uq_application_batch_enterprise"),
        Index("ix_application_batch_stage", "batch_code", "stage"),
        Index("ix_application_move", "move_token"),
    )

    id: int | None = Field(default=None, primary_key=True)
    batch_code: str = Field(foreign_key="batch.code", max_length=16)
    credit_code: str = Field(foreign_key="enterprise.credit_code", index=True, max_length=18)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=6)
    kind: str = Field(default=ApplicationKind.FIRST_TIME.value, max_length=16)
    stage: str = Field(default=Stage.SUBMITTED.value, max_length=24)
    stage_since: date | None = None
    version: int = Field(default=1, description="bumped by every transition; optimistic lock")
    move_token: str | None = Field(default=None, max_length=32)
    applied_on: date

    staff_total: int
    staff_tech: int
    # Most recent fiscal year first; None where the enterprise is younger than 3 years.
    # BIGINT: 21,474,836.47 yuan (2^31 fen) is a small enterprise's revenue.
    revenue_y1_fen: int = Field(sa_type=BigInteger)
    revenue_y2_fen: int | None = Field(default=None, sa_type=BigInteger)
    revenue_y3_fen: int | None = Field(default=None, sa_type=BigInteger)
    rd_y1_fen: int = Field(sa_type=BigInteger)
    rd_y2_fen: int | None = Field(default=None, sa_type=BigInteger)
    rd_y3_fen: int | None = Field(default=None, sa_type=BigInteger)
    rd_domestic_fen: int = Field(
        sa_type=BigInteger, description="R&D spent in China over the same years"
    )
    hightech_revenue_fen: int = Field(
        sa_type=BigInteger, description="high-tech products/services, recent year"
    )
    ip_class1: int = 0
    ip_class2: int = 0
    ip_numbers: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    major_incident: bool = False
    source_digest: str = Field(default="", max_length=64, description="hash of imported row")

    screening_flags: str = Field(default="", max_length=200, description="comma-separated codes")
    district_decision: str | None = Field(default=None, max_length=16)
    district_reason: str | None = None
    district_decided_by: str | None = Field(default=None, max_length=64)
    score: Decimal | None = Field(default=None, sa_column=Column(Numeric(5, 2)))
    selected_for_inspection: bool | None = None
    inspection_reason: str | None = Field(default=None, max_length=64)
    inspection_outcome: str | None = Field(default=None, max_length=16)
    inspection_note: str | None = None
    inspection_decided_by: str | None = Field(default=None, max_length=64)
    approval: str | None = Field(default=None, max_length=16)
    approval_note: str | None = None
    approval_decided_by: str | None = Field(default=None, max_length=64)
    notice_starts: date | None = None
    notice_ends: date | None = None
    decision_reason: str | None = None


class StageEvent(SQLModel, table=True):
    """Append-only trail: one row per transition, written with the stage change."""

    __tablename__ = "stage_event"
    # Pass rates read (from, to, business date) of the whole trail, from this index alone.
    __table_args__ = (Index("ix_stage_event_exit", "from_stage", "to_stage", "business_date"),)
    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    from_stage: str = Field(max_length=24)
    to_stage: str = Field(max_length=24)
    at: datetime = Field(description="UTC wall-clock time of the write")
    business_date: date = Field(description="the as_of date the step ran for")
    actor: str = Field(max_length=64)
    reason: str | None = None
    flow_run_id: str | None = Field(default=None, max_length=64)


class Expert(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    employer: str = Field(default="", max_length=200, description="credit code or name")
    active: bool = True


class ExpertConflict(SQLModel, table=True):
    """A declared conflict of interest between an expert and an enterprise."""

    __tablename__ = "expert_conflict"
    expert_id: str = Field(foreign_key="expert.id", primary_key=True, max_length=16)
    credit_code: str = Field(primary_key=True, max_length=18)


class PanelSeat(SQLModel, table=True):
    """One expert drawn onto one application's panel."""

    __tablename__ = "panel_seat"
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    expert_id: str = Field(foreign_key="expert.id", primary_key=True, max_length=16)
    seat: int


class ExpertScore(SQLModel, table=True):
    __tablename__ = "expert_score"
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    expert_id: str = Field(foreign_key="expert.id", primary_key=True, max_length=16)
    ip_score: int
    conversion_score: int
    rd_management_score: int
    growth_score: int
    total: int
    recorded_by: str = Field(max_length=64)


class Objection(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    raised_on: date
    reason: str
    resolution: str | None = Field(default=None, max_length=16, description="upheld|dismissed")
    resolved_on: date | None = None
    note: str | None = None
    recorded_by: str = Field(max_length=64)


class Certificate(SQLModel, table=True):
    # Covering indexes for the target report over a register of a million certificates:
    # the stock by district in one ordered pass, this year's expiries as one range, "does
    # this enterprise hold or renew one" by enterprise, the year's recognitions by date.
    __table_args__ = (
        Index(
            "ix_certificate_stock",
            "district_code",
            "credit_code",
            "expires_on",
            "issued_on",
            "revoked_on",
        ),
        Index(
            "ix_certificate_expiry",
            "expires_on",
            "issued_on",
            "revoked_on",
            "district_code",
            "credit_code",
        ),
        Index("ix_certificate_holder", "credit_code", "issued_on", "expires_on", "revoked_on"),
        Index(
            "ix_certificate_issued", "issued_on", "district_code", "credit_code", "application_id"
        ),
    )
    number: str = Field(primary_key=True, max_length=32)
    credit_code: str = Field(max_length=18)
    district_code: str = Field(foreign_key="district.code", max_length=6)
    application_id: int | None = Field(default=None, foreign_key="application.id", unique=True)
    issued_on: date
    expires_on: date = Field(description="issue date + 3 years")
    revoked_on: date | None = None


class Target(SQLModel, table=True):
    """Annual target: the city's (district_code == "city") and each district's share."""

    year: int = Field(primary_key=True)
    district_code: str = Field(primary_key=True, max_length=6)
    net_increase: int
    stock_goal: int


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # permanent: the server refused it; kept with the server's reply


class OutboxMessage(SQLModel, table=True):
    """A notice written in the same transaction as its cause; the dispatcher sends it.

    ``dedupe_key`` (kind, district, batch, period) is unique, so a job that runs twice
    writes one row. ``message_id`` is fixed at enqueue time, so a resend after a dropped
    connection carries the same Message-ID.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=32)
    district_code: str | None = Field(default=None, max_length=6, index=True)
    batch_code: str | None = Field(default=None, max_length=16)
    period: str = Field(max_length=32)
    recipients: str = Field(sa_column=Column(Text, nullable=False))
    cc: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    subject: str = Field(max_length=300)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    message_id: str = Field(max_length=200)
    status: str = Field(default=OutboxStatus.QUEUED.value, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class Lease(SQLModel, table=True):
    """A named lease held by one process (the scheduler's guard)."""

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime


class ReviewPlan(SQLModel, table=True):
    """One batch review run whose windows are shared out to workers.

    The coordinating run writes it, with the review policy it applies (so every worker,
    on whatever machine, applies the same rules), and closes it when it ends; workers
    stop once it is closed. ``touched_at`` is refreshed while the coordinator lives.
    """

    __tablename__ = "review_plan"
    id: str = Field(primary_key=True, max_length=36)
    batch_code: str = Field(foreign_key="batch.code", max_length=16)
    as_of: date
    policy: str = Field(sa_column=Column(Text, nullable=False), description="ReviewPolicy JSON")
    coordinator: str = Field(max_length=128)
    flow_run_id: str | None = Field(default=None, max_length=36)
    created_at: datetime
    touched_at: datetime
    closed_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=16)


class ReviewChunk(SQLModel, table=True):
    """One id window of one step of a plan: claimed by one worker (``FOR UPDATE SKIP
    LOCKED``), worked and marked done in the same transaction as the window's moves."""

    __tablename__ = "review_chunk"
    __table_args__ = (
        UniqueConstraint("plan_id", "step", "low", name="uq_review_chunk_window"),
        Index("ix_review_chunk_open", "plan_id", "done_at", "step", "low"),
    )
    id: int | None = Field(default=None, primary_key=True)
    plan_id: str = Field(foreign_key="review_plan.id", max_length=36)
    step: str = Field(max_length=32)
    position: int = Field(description="the step's place in the run, 1 = district review")
    low: int = Field(sa_column=Column(BigInteger, nullable=False))
    high: int = Field(sa_column=Column(BigInteger, nullable=False))
    done_at: datetime | None = None
    worker: str | None = Field(default=None, max_length=128)
    flow_run_id: str | None = Field(default=None, max_length=36)
    seconds: float | None = None
    result: str | None = Field(
        default=None, sa_column=Column(Text), description="the window's moves and notes, JSON"
    )


def money_columns() -> tuple[str, ...]:
    return (
        "revenue_y1_fen",
        "revenue_y2_fen",
        "revenue_y3_fen",
        "rd_y1_fen",
        "rd_y2_fen",
        "rd_y3_fen",
        "rd_domestic_fen",
        "hightech_revenue_fen",
    )
