"""The stage steps of a batch review, each a few set-based statements over the whole batch.

Every step moves only what is ready and is safe to run again: a rerun finds nothing left
at the source stage, or finds the recorded version changed and skips it. Each id window
(``CHUNK`` applications) is one unit of work, so a crash loses at most the window in
flight, and the rerun redoes it.
"""

from __future__ import annotations

import gc
import hashlib
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import aliased
from sqlmodel import Session

from hnte.config.city import CityConfig
from hnte.config.settings import get_settings
from hnte.models import eligibility, screening
from hnte.models.panel import ExpertInfo, PanelPolicy, draw_panels
from hnte.models.scoring import InspectionPolicy, select_for_inspection
from hnte.models.stages import Stage
from hnte.models.tables import (
    Application,
    Batch,
    Certificate,
    Enterprise,
    Expert,
    ExpertConflict,
    ExpertScore,
    Objection,
    PanelSeat,
)
from hnte.models.workdays import notice_end
from hnte.services.transitions import MoveResult, insert_rows, move, prepare_scratch

SYSTEM = "系统 / system"
RULES = "规则引擎 / rules"
CLOCK = "公示期满 / clock"

_scratch = MetaData()
# Per-application values computed in Python, written back with one UPDATE … FROM each
# (a row-by-row UPDATE costs a round trip per application on PostgreSQL).
flag_work = Table(
    "hnte_flags",
    _scratch,
    Column("application_id", Integer, primary_key=True, autoincrement=False),
    Column("flags", String(200)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
score_work = Table(
    "hnte_scores",
    _scratch,
    Column("application_id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer),
    Column("score", Numeric(5, 2)),
    Column("selected", Boolean),
    Column("why", String(64)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)


@dataclass(frozen=True)
class ReviewPolicy:
    panel: PanelPolicy = PanelPolicy()
    inspection: InspectionPolicy = InspectionPolicy()
    screening: screening.ScreeningPolicy = screening.ScreeningPolicy()
    pass_score: int = 71
    notice_working_days: int = 10
    certificate_pattern: str = "GR{year}{province}{seq:05d}"
    province_code: str = "37"

    @classmethod
    def from_city(cls, city: CityConfig) -> ReviewPolicy:
        r, s = city.review, city.screening
        return cls(
            panel=PanelPolicy(
                r.panel_size, int(r.panel_min_technical_share_percent), r.panel_min_financial
            ),
            inspection=InspectionPolicy(
                int(r.borderline_low), int(r.borderline_high), int(r.inspection_random_percent)
            ),
            screening=screening.ScreeningPolicy(
                s.intermediary_min_applicants,
                int(s.intermediary_max_pass_rate_percent),
                s.threshold_margin_basis_points,
            ),
            pass_score=int(r.pass_score),
            notice_working_days=r.notice_working_days,
            certificate_pattern=r.certificate_pattern,
            province_code=city.city.province_code,
        )


@dataclass
class StepReport:
    step: str
    moves: list[MoveResult] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def moved(self) -> int:
        return sum(m.moved for m in self.moves)

    def add(self, result: MoveResult) -> None:
        if result.moved or result.skipped:
            self.moves.append(result)


@dataclass(frozen=True)
class StepContext:
    engine: Engine
    batch_code: str
    as_of: date
    flow_run_id: str | None = None
    policy: ReviewPolicy = ReviewPolicy()
    chunk: int = 20_000


_commits: dict[str, int] = {}


def _commit(session: Session, step: str) -> None:
    """Commit one unit of work; the crash tests kill the process at a chosen commit."""
    fault = get_settings().fault_at
    if fault:
        _commits[step] = _commits.get(step, 0) + 1
        name, _, nth = fault.partition(":")
        if name == step and str(_commits[step]) == (nth or "1"):
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
    session.commit()


def _windows(ctx: StepContext, *stages: Stage) -> Iterator[tuple[int, int]]:
    """Inclusive id ranges of at most ``ctx.chunk`` applications of the batch at ``stages``."""
    with Session(ctx.engine) as session:
        low, high = (
            session.connection()
            .execute(
                select(func.min(Application.id), func.max(Application.id)).where(
                    Application.batch_code == ctx.batch_code,
                    Application.stage.in_([s.value for s in stages]),  # type: ignore[attr-defined]
                )
            )
            .one()
        )
    if low is None:
        return
    start = low
    while start <= high:
        yield start, start + ctx.chunk - 1
        start += ctx.chunk


def _in_window(stage: Stage, ctx: StepContext, window: tuple[int, int]) -> Any:
    return and_(
        Application.batch_code == ctx.batch_code,
        Application.stage == stage.value,
        Application.id.between(*window),  # type: ignore[union-attr]
    )


def _candidates(
    stage: Stage,
    ctx: StepContext,
    window: tuple[int, int],
    *conditions: Any,
    reason: Any = None,
    actor: Any = None,
) -> Any:
    return select(
        Application.id,
        Application.version,
        reason if reason is not None else null(),
        actor if actor is not None else null(),
    ).where(_in_window(stage, ctx, window), *conditions)


def _move(
    session: Session,
    ctx: StepContext,
    source: Stage,
    target: Stage,
    candidates: Any,
    actor: str,
    **values: Any,
) -> MoveResult:
    return move(
        session,
        source=source,
        target=target,
        candidates=candidates,
        actor=actor,
        as_of=ctx.as_of,
        flow_run_id=ctx.flow_run_id,
        values=values or None,
    )


WindowBody = Callable[[Session, tuple[int, int], StepReport], None]


def _each_window(
    ctx: StepContext,
    name: str,
    stages: tuple[Stage, ...],
    body: WindowBody,
    report: StepReport | None = None,
) -> StepReport:
    report = report or StepReport(name)
    for window in _windows(ctx, *stages):
        with Session(ctx.engine, expire_on_commit=False) as session:
            body(session, window, report)
            _commit(session, name)
    return report


# --- district review -----------------------------------------------------------------


def _district_review_body(ctx: StepContext) -> WindowBody:
    """Open district review for new applications, then apply recorded district decisions."""

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        S = Stage
        report.add(
            _move(
                session,
                ctx,
                S.SUBMITTED,
                S.DISTRICT_REVIEW,
                _candidates(S.SUBMITTED, ctx, window),
                SYSTEM,
            )
        )
        report.add(
            _move(
                session,
                ctx,
                S.DISTRICT_REVIEW,
                S.FORMAL_CHECK,
                _candidates(
                    S.DISTRICT_REVIEW,
                    ctx,
                    window,
                    Application.district_decision == "recommended",
                    actor=Application.district_decided_by,
                ),
                "区市 / district",
            )
        )
        report.add(
            _move(
                session,
                ctx,
                S.DISTRICT_REVIEW,
                S.REJECTED,
                _candidates(
                    S.DISTRICT_REVIEW,
                    ctx,
                    window,
                    Application.district_decision == "returned",
                    reason=literal("区市退回：") + func.coalesce(Application.district_reason, ""),
                    actor=Application.district_decided_by,
                ),
                "区市 / district",
            )
        )

    return body


# --- formal check --------------------------------------------------------------------

_FIGURE_COLUMNS = (
    Application.id,
    Application.version,
    Application.credit_code,
    Enterprise.registered_on,
    Application.applied_on,
    Enterprise.tech_field,
    Application.staff_total,
    Application.staff_tech,
    Application.revenue_y1_fen,
    Application.revenue_y2_fen,
    Application.revenue_y3_fen,
    Application.rd_y1_fen,
    Application.rd_y2_fen,
    Application.rd_y3_fen,
    Application.rd_domestic_fen,
    Application.hightech_revenue_fen,
    Application.ip_class1,
    Application.ip_class2,
    Application.major_incident,
    Application.ip_numbers,
    Enterprise.intermediary,
)


def _years(y1: int, y2: int | None, y3: int | None) -> tuple[int, ...]:
    """The fiscal years given, most recent first, up to the first missing one."""
    if y2 is None:
        return (y1,)
    if y3 is None:
        return (y1, y2)
    return (y1, y2, y3)


def formal_check(ctx: StepContext) -> StepReport:
    """Screen the batch, then check the formal rules and move or reject each application."""
    report = StepReport("formal_check")
    flagged, verdicts = _screen_and_check(ctx)
    report.notes["flagged"] = flagged
    verdicts.sort()
    ids = [app_id for app_id, _, _ in verdicts]
    S = Stage
    for low, high in _windows(ctx, Stage.FORMAL_CHECK):
        window = verdicts[bisect_left(ids, low) : bisect_right(ids, high)]
        with Session(ctx.engine, expire_on_commit=False) as session:
            passed = [(i, v, None, None) for i, v, why in window if why is None]
            failed = [(i, v, why, None) for i, v, why in window if why is not None]
            report.add(_move(session, ctx, S.FORMAL_CHECK, S.EXPERT_REVIEW, passed, RULES))
            report.add(_move(session, ctx, S.FORMAL_CHECK, S.REJECTED, failed, RULES))
            _commit(session, "formal_check")
    return report


def _formal_verdict(figures: eligibility.Figures) -> str | None:
    """None when every formal rule passes, else the reason; written only for failures."""
    if eligibility.passes_formal_check(figures):
        return None
    return "形式审查不通过：" + eligibility.failed_reasons(eligibility.formal_check(figures))


# (application id, version read, reason it fails the formal rules or None)
Verdict = tuple[int, int, str | None]
_READ_CHUNK = 5_000


def _screen_and_check(ctx: StepContext, judge: bool = True) -> tuple[int, list[Verdict]]:
    """Flag applications now at formal check, screening them against the whole batch, and
    judge each one's formal rules from the same read; returns (flagged, verdicts).

    One pass over the batch serves both: reading 100,000 rows costs more than either.
    With ``judge`` false only the screening is done (workers judge their own windows).
    """
    with Session(ctx.engine) as session:
        connection = session.connection()
        year = session.get(Batch, ctx.batch_code).year  # type: ignore[union-attr]
        at_formal_check = Stage.FORMAL_CHECK.value
        if not connection.execute(
            select(
                exists().where(
                    Application.batch_code == ctx.batch_code,
                    Application.stage == at_formal_check,
                )
            )
        ).scalar():
            return 0, []
        inputs: list[screening.ScreeningInput] = []
        verdicts: list[Verdict] = []
        at_check: set[int] = set()
        make = screening.ScreeningInput
        # A few agencies represent thousands: keep one copy of each name, not one per row.
        agencies: dict[str, str] = {}
        for (
            app_id,
            version,
            credit_code,
            registered_on,
            applied_on,
            tech_field,
            staff_total,
            staff_tech,
            revenue_y1,
            revenue_y2,
            revenue_y3,
            rd_y1,
            rd_y2,
            rd_y3,
            rd_domestic,
            hightech_revenue,
            ip_class1,
            ip_class2,
            major_incident,
            ip_numbers,
            intermediary,
            stage,
            district_decision,
        ) in connection.execute(
            select(*_FIGURE_COLUMNS, Application.stage, Application.district_decision)
            .join(Enterprise, Enterprise.credit_code == Application.credit_code)
            .where(
                Application.batch_code == ctx.batch_code,
                Application.stage != Stage.WITHDRAWN.value,
                # Screening sees the recommended; the rules see whatever is at the check.
                or_(
                    Application.district_decision == "recommended",
                    Application.stage == at_formal_check,
                ),
            )
            # Streamed (a server-side cursor on PostgreSQL): the whole batch's rows are
            # never held at once besides the compact screening inputs.
            .execution_options(yield_per=_READ_CHUNK)
        ):
            revenue = _years(revenue_y1, revenue_y2, revenue_y3)
            rd = _years(rd_y1, rd_y2, rd_y3)
            if judge and stage == at_formal_check:
                figures = eligibility.Figures(
                    registered_on,
                    applied_on,
                    tech_field,
                    staff_total,
                    staff_tech,
                    revenue,
                    rd,
                    rd_domestic,
                    hightech_revenue,
                    ip_class1,
                    ip_class2,
                    major_incident,
                )
                verdicts.append((app_id, version, _formal_verdict(figures)))
            if district_decision != "recommended":
                continue
            if stage == at_formal_check:
                at_check.add(app_id)
            inputs.append(
                make(
                    app_id,
                    credit_code,
                    tuple(x for x in ip_numbers.split(";") if x) if ip_numbers else (),
                    intermediary and agencies.setdefault(intermediary, intermediary),
                    staff_total,
                    staff_tech,
                    revenue,
                    rd,
                    rd_domestic,
                    hightech_revenue,
                )
            )
        other_open = set(
            connection.execute(
                select(Application.credit_code)
                .join(Batch, Batch.code == Application.batch_code)
                .where(
                    Batch.year == year,
                    Application.batch_code != ctx.batch_code,
                    Application.stage.notin_(
                        [
                            s.value
                            for s in (  # type: ignore[attr-defined]
                                Stage.REJECTED,
                                Stage.WITHDRAWN,
                            )
                        ]
                    ),
                )
            ).scalars()
        )
        rates = {
            name: (int(passed or 0), int(decided))
            for name, passed, decided in connection.execute(
                select(
                    Enterprise.intermediary,
                    func.sum(case((Application.stage == Stage.CERTIFIED.value, 1), else_=0)),
                    func.count(),
                )
                .join(Enterprise, Enterprise.credit_code == Application.credit_code)
                .where(
                    Application.batch_code != ctx.batch_code,
                    Enterprise.intermediary.is_not(None),  # type: ignore[union-attr]
                    Application.stage.in_(
                        [
                            Stage.CERTIFIED.value,  # type: ignore[attr-defined]
                            Stage.REJECTED.value,
                        ]
                    ),
                )
                .group_by(Enterprise.intermediary)
            )
            if name
        }
        flags = screening.screen(
            inputs,
            other_open_credit_codes=other_open,
            intermediary_pass_rates=rates,
            policy=ctx.policy.screening,
        )
        del inputs
        updates = [
            (app_id, screening.flag_codes(found))
            for app_id, found in flags.items()
            if app_id in at_check
        ]
        if updates:
            prepare_scratch(connection, flag_work)
            insert_rows(connection, flag_work, ("application_id", "flags"), updates)
            connection.execute(
                update(Application)
                .where(
                    Application.id == flag_work.c.application_id,
                    Application.stage == Stage.FORMAL_CHECK.value,
                )
                .values(screening_flags=flag_work.c.flags)
                .execution_options(synchronize_session=False)
            )
        _commit(session, "screening")
        return len(updates), verdicts


def _formal_check_body(ctx: StepContext) -> WindowBody:
    """Judge the window's applications at formal check by the formal rules, and move them.

    Used when the step's windows are shared out to workers: the screening has been done
    batch-wide beforehand (``_screen_and_check(ctx, judge=False)``), so a window only
    needs its own rows. Alone, ``formal_check`` judges from the screening's single read.
    """

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        passed, failed = [], []
        for row in session.connection().execute(
            select(*_FIGURE_COLUMNS[:-2])
            .join(Enterprise, Enterprise.credit_code == Application.credit_code)
            .where(_in_window(Stage.FORMAL_CHECK, ctx, window))
        ):
            (app_id, version, _, registered_on, applied_on, tech_field, staff_total,
             staff_tech, rev1, rev2, rev3, rd1, rd2, rd3, rd_domestic, hightech,
             ip_class1, ip_class2, major_incident) = row  # fmt: skip
            why = _formal_verdict(
                eligibility.Figures(
                    registered_on,
                    applied_on,
                    tech_field,
                    staff_total,
                    staff_tech,
                    _years(rev1, rev2, rev3),
                    _years(rd1, rd2, rd3),
                    rd_domestic,
                    hightech,
                    ip_class1,
                    ip_class2,
                    major_incident,
                )
            )
            if why is None:
                passed.append((app_id, version, None, None))
            else:
                failed.append((app_id, version, why, None))
        S = Stage
        report.add(_move(session, ctx, S.FORMAL_CHECK, S.EXPERT_REVIEW, passed, RULES))
        report.add(_move(session, ctx, S.FORMAL_CHECK, S.REJECTED, failed, RULES))

    return body


# --- expert review -------------------------------------------------------------------


def _panel_key(batch_code: str, credit_code: str) -> int:
    """A draw key from the batch and enterprise, so panels do not depend on database ids."""
    return int.from_bytes(hashlib.sha256(f"{batch_code}:{credit_code}".encode()).digest()[:6])


def _lock_key(purpose: str, name: str) -> int:
    """A signed 64-bit PostgreSQL advisory-lock key for ``purpose`` on ``name``."""
    digest = hashlib.sha256(f"hnte:{purpose}:{name}".encode()).digest()[:8]
    return int.from_bytes(digest, signed=True)


def draw_missing_panels(ctx: StepContext) -> int:
    """Draw a panel for every application at expert review that has none; returns how many.

    One id window at a time, each its own unit of work, so memory stays flat whatever the
    batch size and a crash keeps the windows already seated.
    """
    with Session(ctx.engine) as session:
        connection = session.connection()
        seed = session.get(Batch, ctx.batch_code).seed  # type: ignore[union-attr]
        pool = [
            ExpertInfo(i, k, e)
            for i, k, e in connection.execute(
                select(Expert.id, Expert.kind, Expert.employer).where(Expert.active.is_(True))  # type: ignore[attr-defined]
            )
        ]
        conflicts: dict[str, set[str]] = {}
        for expert_id, credit_code in connection.execute(
            select(ExpertConflict.expert_id, ExpertConflict.credit_code)
        ):
            conflicts.setdefault(credit_code, set()).add(expert_id)
    drawn = 0
    for window in _windows(ctx, Stage.EXPERT_REVIEW):
        with Session(ctx.engine, expire_on_commit=False) as session:
            connection = session.connection()
            if connection.dialect.name == "postgresql":
                # One drawer per batch at a time: a second run waits here, then finds the
                # window seated. (SQLite writers are serialised by the database lock.)
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _lock_key("panels", ctx.batch_code)},
                )
            waiting = connection.execute(
                select(Application.id, Application.credit_code).where(
                    _in_window(Stage.EXPERT_REVIEW, ctx, window),
                    ~exists().where(PanelSeat.application_id == Application.id),
                )
            ).all()
            if not waiting:
                continue
            keyed = [(_panel_key(ctx.batch_code, code), app_id, code) for app_id, code in waiting]
            key_to_app = {key: app_id for key, app_id, _ in keyed}
            panels = draw_panels(
                [(key, code) for key, _, code in keyed],
                pool,
                seed=seed,
                conflicts=conflicts,
                policy=ctx.policy.panel,
            )
            # A second run drawing at the same moment draws the same panels (they depend
            # only on the seed, the enterprise and the pool): its seats are already there.
            insert_rows(
                connection,
                PanelSeat.__table__,  # type: ignore[attr-defined]
                ("application_id", "expert_id", "seat"),
                (
                    (key_to_app[key], expert_id, n)
                    for key, panel in panels.items()
                    for n, expert_id in enumerate(panel, start=1)
                ),
                skip_existing=True,
            )
            _commit(session, "panels")
            drawn += len(waiting)
    return drawn


def _mean(total: int, count: int) -> Decimal:
    return (Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _expert_review_body(ctx: StepContext) -> WindowBody:
    """Decide every application in the window whose panel has scored in full."""
    with Session(ctx.engine) as session:
        seed = session.get(Batch, ctx.batch_code).seed  # type: ignore[union-attr]

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        # Complete means every seat scored, so a window without a single score has none;
        # this is always so in the run that has just drawn its panels.
        if (
            session.connection()
            .execute(
                select(ExpertScore.application_id)
                .where(ExpertScore.application_id.between(*window))  # type: ignore[attr-defined]
                .limit(1)
            )
            .first()
            is None
        ):
            return
        score = aliased(ExpertScore)
        rows = (
            session.connection()
            .execute(
                select(
                    Application.id,
                    Application.version,
                    Application.screening_flags,
                    func.count(PanelSeat.expert_id),
                    func.count(score.expert_id),
                    func.sum(score.total),
                )
                .join(PanelSeat, PanelSeat.application_id == Application.id)
                .outerjoin(
                    score,
                    and_(
                        score.application_id == PanelSeat.application_id,
                        score.expert_id == PanelSeat.expert_id,
                    ),
                )
                .where(_in_window(Stage.EXPERT_REVIEW, ctx, window))
                .group_by(Application.id, Application.version, Application.screening_flags)
            )
            .all()
        )
        complete = [(r[0], r[1], r[2], _mean(r[5], r[4])) for r in rows if r[3] == r[4] > 0]
        if not complete:
            return
        passing = [(i, s, bool(f)) for i, _, f, s in complete if s >= ctx.policy.pass_score]
        selected = select_for_inspection(passing, seed=seed, policy=ctx.policy.inspection)
        connection = session.connection()
        prepare_scratch(connection, score_work)
        insert_rows(
            connection,
            score_work,
            ("application_id", "version", "score", "selected", "why"),
            ((i, v, s, i in selected, selected.get(i)) for i, v, _, s in complete),
        )
        connection.execute(
            update(Application)
            .where(
                Application.id == score_work.c.application_id,
                Application.version == score_work.c.version,
            )
            .values(
                score=score_work.c.score,
                selected_for_inspection=score_work.c.selected,
                inspection_reason=score_work.c.why,
            )
            .execution_options(synchronize_session=False)
        )
        to_onsite, to_approval, rejected = [], [], []
        for i, v, _, s in complete:
            if s < ctx.policy.pass_score:
                rejected.append(
                    (i, v, f"专家评审平均分 {s}，低于 {ctx.policy.pass_score} 分", None)
                )
            elif i in selected:
                to_onsite.append((i, v, f"评审得分 {s}；列入现场考察（{_why(selected[i])}）", None))
            else:
                to_approval.append((i, v, None, None))
        S = Stage
        report.add(_move(session, ctx, S.EXPERT_REVIEW, S.ONSITE_INSPECTION, to_onsite, RULES))
        report.add(_move(session, ctx, S.EXPERT_REVIEW, S.APPROVAL, to_approval, RULES))
        report.add(_move(session, ctx, S.EXPERT_REVIEW, S.REJECTED, rejected, RULES))

    return body


def _why(code: str) -> str:
    return {"flagged": "大数据筛查标记", "borderline": "临界分数", "random": "随机抽查"}.get(
        code, code
    )


# --- inspection, approval ------------------------------------------------------------


def _onsite_inspection_body(ctx: StepContext) -> WindowBody:
    """Apply recorded inspection outcomes."""

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        S = Stage
        who = Application.inspection_decided_by
        report.add(
            _move(
                session,
                ctx,
                S.ONSITE_INSPECTION,
                S.APPROVAL,
                _candidates(
                    S.ONSITE_INSPECTION,
                    ctx,
                    window,
                    Application.inspection_outcome == "passed",
                    actor=who,
                ),
                SYSTEM,
            )
        )
        report.add(
            _move(
                session,
                ctx,
                S.ONSITE_INSPECTION,
                S.REJECTED,
                _candidates(
                    S.ONSITE_INSPECTION,
                    ctx,
                    window,
                    Application.inspection_outcome == "failed",
                    reason=literal("现场考察不通过：")
                    + func.coalesce(Application.inspection_note, ""),
                    actor=who,
                ),
                SYSTEM,
            )
        )

    return body


def _approval_body(ctx: StepContext) -> WindowBody:
    """Apply recorded approvals: approved ones open their public notice today."""
    ends = notice_end(ctx.as_of, ctx.policy.notice_working_days)

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        S = Stage
        who = Application.approval_decided_by
        report.add(
            _move(
                session,
                ctx,
                S.APPROVAL,
                S.PUBLIC_NOTICE,
                _candidates(S.APPROVAL, ctx, window, Application.approval == "approved", actor=who),
                SYSTEM,
                notice_starts=ctx.as_of,
                notice_ends=ends,
            )
        )
        report.add(
            _move(
                session,
                ctx,
                S.APPROVAL,
                S.REJECTED,
                _candidates(
                    S.APPROVAL,
                    ctx,
                    window,
                    Application.approval == "rejected",
                    reason=literal("不予批准：") + func.coalesce(Application.approval_note, ""),
                    actor=who,
                ),
                SYSTEM,
            )
        )

    return body


# --- public notice, objections, certification ----------------------------------------


def _open_objection() -> Any:
    return exists().where(
        Objection.application_id == Application.id, Objection.resolution.is_(None)
    )  # type: ignore[union-attr]


def _upheld_objection() -> Any:
    return exists().where(
        Objection.application_id == Application.id, Objection.resolution == "upheld"
    )


def _public_notice_body(ctx: StepContext) -> WindowBody:
    """Hold objected applications, settle resolved objections, certify finished notices."""

    def body(session: Session, window: tuple[int, int], report: StepReport) -> None:
        S = Stage
        report.add(
            _move(
                session,
                ctx,
                S.PUBLIC_NOTICE,
                S.OBJECTION_REVIEW,
                _candidates(
                    S.PUBLIC_NOTICE,
                    ctx,
                    window,
                    # An objection recorded and already upheld before this run never
                    # passed through "open"; it must still stop the certificate.
                    _open_objection() | _upheld_objection(),
                    reason=literal("公示期内收到异议"),
                ),
                SYSTEM,
            )
        )
        upheld_note = (
            select(func.coalesce(Objection.note, Objection.reason))
            .where(Objection.application_id == Application.id, Objection.resolution == "upheld")
            .order_by(Objection.id)
            .limit(1)
            .scalar_subquery()  # type: ignore[arg-type]
        )
        report.add(
            _move(
                session,
                ctx,
                S.OBJECTION_REVIEW,
                S.REJECTED,
                _candidates(
                    S.OBJECTION_REVIEW,
                    ctx,
                    window,
                    ~_open_objection(),
                    _upheld_objection(),
                    reason=literal("异议成立：") + func.coalesce(upheld_note, ""),
                ),
                "异议处理 / objections",
            )
        )
        report.add(
            _move(
                session,
                ctx,
                S.OBJECTION_REVIEW,
                S.PUBLIC_NOTICE,
                _candidates(
                    S.OBJECTION_REVIEW,
                    ctx,
                    window,
                    ~_open_objection(),
                    ~_upheld_objection(),
                    reason=literal("异议不成立，恢复公示"),
                ),
                "异议处理 / objections",
            )
        )
        certified = _move(
            session,
            ctx,
            S.PUBLIC_NOTICE,
            S.CERTIFIED,
            _candidates(
                S.PUBLIC_NOTICE,
                ctx,
                window,
                ~_open_objection(),
                ~_upheld_objection(),
                Application.notice_ends < ctx.as_of,
            ),
            CLOCK,
        )
        report.add(certified)
        if certified.moved:
            issue_certificates(session, ctx, certified)

    return body


def _plus_three_years(day: date) -> date:
    try:
        return day.replace(year=day.year + 3)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 3, day=28)


def issue_certificates(session: Session, ctx: StepContext, certified: MoveResult) -> int:
    """Certificates for the applications the ``certified`` move moved, numbered in order."""
    policy = ctx.policy
    fields = {"year": ctx.as_of.year, "province": policy.province_code}
    prefix = policy.certificate_pattern.split("{seq", 1)[0].format(**fields)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Numbers are a count plus one: two writers (runs, or workers on other windows)
        # take turns from here to their commit. SQLite's database lock does this already.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("certificates", prefix)}
        )
    issued = connection.execute(
        select(func.count()).where(Certificate.number.startswith(prefix))  # type: ignore[attr-defined]
    ).scalar_one()
    rows = connection.execute(
        select(Application.id, Application.credit_code, Application.district_code)
        .where(Application.move_token == certified.token)
        .order_by(Application.id)
    ).all()
    expires = _plus_three_years(ctx.as_of)
    insert_rows(
        connection,
        Certificate.__table__,  # type: ignore[attr-defined]
        (
            "number",
            "credit_code",
            "district_code",
            "application_id",
            "issued_on",
            "expires_on",
            "revoked_on",
        ),
        (
            (
                policy.certificate_pattern.format(seq=issued + n, **fields),
                code,
                district,
                app_id,
                ctx.as_of,
                expires,
                None,
            )
            for n, (app_id, code, district) in enumerate(rows, start=1)
        ),
    )
    return len(rows)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Run without the cyclic garbage collector.

    A step makes and drops hundreds of thousands of small objects, none in a cycle, and
    every collection it triggers would rescan everything the process holds (Prefect's
    objects too): a third of a step's time went there.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed(step: Callable[[StepContext], StepReport]) -> Callable[[StepContext], StepReport]:
    """The step, run with the garbage collector paused and its wall time on its report."""

    def run(ctx: StepContext) -> StepReport:
        started = time.perf_counter()
        with _gc_paused():
            report = step(ctx)
        report.seconds = time.perf_counter() - started
        return report

    run.__name__ = step.__name__
    run.__doc__ = step.__doc__
    return run


# --- the steps ---------------------------------------------------------------------


@dataclass(frozen=True)
class WindowedStep:
    """A step as its parts: batch-wide work done once (``prepare``), then the same
    ``body`` over every id window of the applications at ``stages``. Alone, one process
    does both; with workers (``hnte.services.chunks``) the windows are shared out."""

    name: str
    stages: tuple[Stage, ...]
    body: Callable[[StepContext], WindowBody]
    prepare: Callable[[StepContext, StepReport], None] | None = None


def _screen_only(ctx: StepContext, report: StepReport) -> None:
    report.notes["flagged"] = _screen_and_check(ctx, judge=False)[0]


def _draw_panels(ctx: StepContext, report: StepReport) -> None:
    report.notes["panels_drawn"] = draw_missing_panels(ctx)


WINDOWED: dict[str, WindowedStep] = {
    step.name: step
    for step in (
        WindowedStep(
            "district_review", (Stage.SUBMITTED, Stage.DISTRICT_REVIEW), _district_review_body
        ),
        WindowedStep("formal_check", (Stage.FORMAL_CHECK,), _formal_check_body, _screen_only),
        WindowedStep("expert_review", (Stage.EXPERT_REVIEW,), _expert_review_body, _draw_panels),
        WindowedStep("onsite_inspection", (Stage.ONSITE_INSPECTION,), _onsite_inspection_body),
        WindowedStep("approval", (Stage.APPROVAL,), _approval_body),
        WindowedStep(
            "public_notice", (Stage.PUBLIC_NOTICE, Stage.OBJECTION_REVIEW), _public_notice_body
        ),
    )
}


def _alone(name: str, ctx: StepContext) -> StepReport:
    """The step ``name`` in this process: its batch-wide part, then every window."""
    step = WINDOWED[name]
    report = StepReport(name)
    if step.prepare is not None:
        step.prepare(ctx, report)
    return _each_window(ctx, name, step.stages, step.body(ctx), report)


def district_review(ctx: StepContext) -> StepReport:
    """Open district review for new applications, then apply recorded district decisions."""
    return _alone("district_review", ctx)


def expert_review(ctx: StepContext) -> StepReport:
    """Draw missing panels; decide every application whose panel has scored in full."""
    return _alone("expert_review", ctx)


def onsite_inspection(ctx: StepContext) -> StepReport:
    """Apply recorded inspection outcomes."""
    return _alone("onsite_inspection", ctx)


def approval(ctx: StepContext) -> StepReport:
    """Apply recorded approvals: approved ones open their public notice today."""
    return _alone("approval", ctx)


def public_notice(ctx: StepContext) -> StepReport:
    """Hold objected applications, settle resolved objections, certify finished notices."""
    return _alone("public_notice", ctx)


STEPS: tuple[tuple[str, Callable[[StepContext], StepReport]], ...] = tuple(
    (f.__name__, timed(f))
    for f in (
        district_review,
        formal_check,
        expert_review,
        onsite_inspection,
        approval,
        public_notice,
    )
)
RUN = dict(STEPS)
