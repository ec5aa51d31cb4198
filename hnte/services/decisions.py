"""Record the decisions people make, from operators' files: validate every row, keep the
good ones, report the bad ones.

Recording only fills decision columns and rows (district recommendation, expert scores,
inspection outcome, objections, approval); the batch flow reads them later and moves the
applications. Nothing here changes a stage or writes a stage event. Running a file again
changes nothing; a different value for an application still at its stage overwrites the
earlier one (the operator corrects it). With ``strict`` any bad row means nothing is kept.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    RowMapping,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlmodel import Session

from hnte.models.application_rows import (
    APPLICATION_COLUMNS,
    MAX_CELL_CHARS,
    REQUIRED_COLUMNS,
    STRAY_CONTROL,
    RowError,
    _parse_credit_code,
    parse_date,
)
from hnte.models.enums import DistrictDecision, Outcome
from hnte.models.scoring import SUB_SCORE_MAXIMA, validate_sub_scores
from hnte.models.stages import Stage
from hnte.models.tables import Application, ExpertScore, Objection, PanelSeat
from hnte.services.importing import get_batch
from hnte.services.tabular import Limits, read_table, write_error_report

# SQLite refuses more than 999 bound parameters in one statement.
_IN_CHUNK = 900
DEFAULT_LIMITS = Limits()
CODE_COLUMN: tuple[str, ...] = ("统一社会信用代码", "credit_code", "uscc")
_CODE_LABEL = CODE_COLUMN[0]
APPROVED, REJECTED = "approved", "rejected"
UPHELD, DISMISSED = "upheld", "dismissed"


class UnknownKind(LookupError):
    def __init__(self, kind: str, known: Collection[str]):
        super().__init__(
            f"未知的决定类型：{kind}；可选：{', '.join(known)} / unknown kind {kind!r}"
        )


@dataclass(frozen=True)
class KindSpec:
    """One kind of file: its columns (canonical key -> header spellings, Chinese first)."""

    name: str
    title_zh: str  # also the name of the template's data sheet
    description_zh: str
    columns: Mapping[str, tuple[str, ...]]
    required: frozenset[str]
    notes: Mapping[str, str]  # canonical key -> allowed values, for the template's 说明 sheet

    def label(self, key: str) -> str:
        return self.columns[key][0]


@dataclass
class RecordReport:
    kind: str
    rows: int = 0
    applied: int = 0  # decisions recorded where there was none
    updated: int = 0  # earlier decisions overwritten with a different value
    unchanged: int = 0  # the same decision was already recorded
    errors: list[RowError] = field(default_factory=list)
    error_file: Path | None = None
    committed: bool = False
    held: int = 0  # approve_all: applications left undecided because they were excepted

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.errors})


# --- the kinds ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    """A decision written as a word in one column, stored in three Application columns."""

    decision_key: str  # canonical key of the decision column in the file
    words: Mapping[str, str]  # folded spelling -> stored value
    needs_reason: str  # the stored value that must come with a reason
    reason_key: str  # canonical key of the reason column in the file
    stages: tuple[Stage, ...]
    column: str
    reason_column: str
    by_column: str
    what_zh: str


_CHOICES: dict[str, _Choice] = {
    "recommendations": _Choice(
        decision_key="decision",
        words={
            "推荐": DistrictDecision.RECOMMENDED.value,
            "recommend": "recommended",
            "recommended": "recommended",
            "退回": DistrictDecision.RETURNED.value,
            "return": "returned",
            "returned": "returned",
        },
        needs_reason=DistrictDecision.RETURNED.value,
        reason_key="reason",
        stages=(Stage.SUBMITTED, Stage.DISTRICT_REVIEW),
        column="district_decision",
        reason_column="district_reason",
        by_column="district_decided_by",
        what_zh="区市推荐意见",
    ),
    "inspections": _Choice(
        decision_key="outcome",
        words={
            "通过": Outcome.PASSED.value,
            "pass": "passed",
            "passed": "passed",
            "不通过": Outcome.FAILED.value,
            "fail": "failed",
            "failed": "failed",
        },
        needs_reason=Outcome.FAILED.value,
        reason_key="note",
        stages=(Stage.ONSITE_INSPECTION,),
        column="inspection_outcome",
        reason_column="inspection_note",
        by_column="inspection_decided_by",
        what_zh="现场考察结论",
    ),
    "approvals": _Choice(
        decision_key="decision",
        words={
            "批准": APPROVED,
            "approve": APPROVED,
            "approved": APPROVED,
            "不予批准": REJECTED,
            "reject": REJECTED,
            "rejected": REJECTED,
        },
        needs_reason=REJECTED,
        reason_key="reason",
        stages=(Stage.APPROVAL,),
        column="approval",
        reason_column="approval_note",
        by_column="approval_decided_by",
        what_zh="审批决定",
    ),
}
_RESOLUTIONS = {
    "成立": UPHELD,
    "upheld": UPHELD,
    "uphold": UPHELD,
    "不成立": DISMISSED,
    "dismissed": DISMISSED,
    "dismiss": DISMISSED,
}
_CODE_NOTE = "18 位统一社会信用代码；该企业须在本批次有申报"

_APPLICATION_NOTES = {
    "credit_code": "18 位统一社会信用代码（含校验位）",
    "name": "企业全称，最多 200 个字符",
    "district": "区市名称或行政区划代码，如 崂山区 或 370212",
    "registered_on": "日期，如 2015-04-20",
    "kind": "首次申报 或 重新认定",
    "tech_field": "国家重点支持的 8 个技术领域之一，如 电子信息",
    "intermediary": "可空；代理申报的中介机构名称",
    "staff_total": "整数",
    "staff_tech": "整数，不超过职工总数",
    "rd_domestic": "单位：元，最多两位小数；不超过研发费用合计",
    "hightech_revenue": "单位：元，最多两位小数；不超过近一年销售收入",
    "ip_class1": "整数",
    "ip_class2": "整数",
    "ip_numbers": "可空；多个编号用分号分隔",
    "major_incident": "是 或 否",
    "applied_on": "可空；日期，默认为批次申报截止日",
}
_APPLICATION_NOTES.update(
    (key, ("" if key.endswith("y1") else "可空（企业成立不足三年）；") + "单位：元，最多两位小数")
    for key in APPLICATION_COLUMNS
    if key.startswith(("revenue_y", "rd_y"))
)

KINDS: dict[str, KindSpec] = {
    "recommendations": KindSpec(
        name="recommendations",
        title_zh="区市推荐",
        description_zh="区市对本辖区申报企业的推荐或退回意见；企业须处于「已提交」或「区市推荐」阶段",
        columns={
            "credit_code": CODE_COLUMN,
            "decision": ("决定", "decision"),
            "reason": ("理由", "reason"),
        },
        required=frozenset({"credit_code", "decision"}),
        notes={
            "credit_code": _CODE_NOTE,
            "decision": "推荐 或 退回（recommend / return）",
            "reason": "退回时必填",
        },
    ),
    "scores": KindSpec(
        name="scores",
        title_zh="专家评分",
        description_zh="评审专家对企业创新能力的打分，每位专家一行；企业须处于「专家评审」阶段，"
        "专家须在该企业的评审专家组中",
        columns={
            "expert_id": ("专家编号", "expert_id"),
            "credit_code": CODE_COLUMN,
            "ip": ("知识产权", "ip"),
            "conversion": ("科技成果转化能力", "conversion"),
            "rd_management": ("研究开发组织管理水平", "rd_management"),
            "growth": ("企业成长性", "growth"),
        },
        required=frozenset(
            {"expert_id", "credit_code", "ip", "conversion", "rd_management", "growth"}
        ),
        notes={
            "expert_id": "专家库中的专家编号",
            "credit_code": _CODE_NOTE,
            **{key: f"0–{maximum} 的整数" for key, maximum in SUB_SCORE_MAXIMA.items()},
        },
    ),
    "inspections": KindSpec(
        name="inspections",
        title_zh="现场考察",
        description_zh="现场考察（实地勘察）结论；企业须处于「现场考察」阶段",
        columns={
            "credit_code": CODE_COLUMN,
            "outcome": ("考察结论", "outcome"),
            "note": ("说明", "note"),
        },
        required=frozenset({"credit_code", "outcome"}),
        notes={
            "credit_code": _CODE_NOTE,
            "outcome": "通过 或 不通过（pass / fail）",
            "note": "不通过时必填",
        },
    ),
    "objections": KindSpec(
        name="objections",
        title_zh="公示异议",
        description_zh="公示期内收到的异议及其处理结果：处理结果为空表示新收到的异议（企业须处于「公示」"
        "阶段）；填写处理结果则处理该企业未处理的异议（企业须处于「异议处理」或「公示」阶段）",
        columns={
            "credit_code": CODE_COLUMN,
            "raised_on": ("异议日期", "raised_on"),
            "reason": ("异议内容", "reason"),
            "resolution": ("处理结果", "resolution"),
            "note": ("处理说明", "note"),
        },
        required=frozenset({"credit_code"}),
        notes={
            "credit_code": _CODE_NOTE,
            "raised_on": "日期，如 2021-10-08；空则为今天",
            "reason": "新异议必填；处理异议时填写则只处理内容相同的异议，"
            "空则处理该企业全部未处理异议",
            "resolution": "空（新异议）、成立 或 不成立（upheld / dismissed）",
            "note": "可空",
        },
    ),
    "approvals": KindSpec(
        name="approvals",
        title_zh="审批",
        description_zh="认定机构的审批决定；企业须处于「审批」阶段",
        columns={
            "credit_code": CODE_COLUMN,
            "decision": ("决定", "decision"),
            "reason": ("理由", "reason"),
        },
        required=frozenset({"credit_code", "decision"}),
        notes={
            "credit_code": _CODE_NOTE,
            "decision": "批准 或 不予批准（approve / reject）",
            "reason": "不予批准时必填",
        },
    ),
    "applications": KindSpec(
        name="applications",
        title_zh="申报名单",
        description_zh="申报名单，用 hnte import applications 导入",
        columns=APPLICATION_COLUMNS,
        required=REQUIRED_COLUMNS,
        notes=_APPLICATION_NOTES,
    ),
}


def kind_spec(kind: str) -> KindSpec:
    spec = KINDS.get(kind)
    if spec is None:
        raise UnknownKind(kind, KINDS)
    return spec


# --- rows -----------------------------------------------------------------------------


class _Row:
    """One data row of a file while it is checked: parsed values and every problem found."""

    def __init__(self, spec: KindSpec, number: int, cells: Mapping[str, str]):
        self.spec, self.number, self.cells = spec, number, cells
        self.errors: list[RowError] = []
        self.values: dict[str, Any] = {}
        self.code: str | None = None
        self.app: RowMapping | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def fail(self, key: str, reason: str) -> None:
        self.errors.append(RowError(self.number, self.spec.label(key), reason))

    def text(self, key: str) -> str | None:
        """The cell's text, None when blank; a too long cell is an error."""
        value = self.cells.get(key, "").strip()
        if not value:
            return None
        if len(value) > MAX_CELL_CHARS:
            self.fail(key, f"内容过长（{len(value)} 个字符，上限 {MAX_CELL_CHARS}） / too long")
            return None
        if STRAY_CONTROL.search(value):
            self.fail(key, "含有控制字符 / contains control characters")
            return None
        return value

    def parse(self, key: str, parse: Callable[[str], Any], *, optional: bool = False) -> Any:
        value = self.text(key)
        if value is None:
            if not optional and not any(e.column == self.spec.label(key) for e in self.errors):
                self.fail(key, "必填项为空 / required value missing")
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None

    def stage_allows(self, stages: Sequence[Stage], what_zh: str) -> bool:
        """True if the application is at one of ``stages``; else a row error naming its stage."""
        assert self.app is not None
        stage = Stage(self.app["stage"])
        if stage in stages:
            return True
        allowed = "或".join(f"「{s.label_zh}」" for s in stages)
        self.fail(
            "credit_code",
            f"该企业本批次申报当前处于「{stage.label_zh}」阶段，只有处于{allowed}阶段时才能录入"
            f"{what_zh} / the application is at {stage.value}, not "
            f"{' or '.join(s.value for s in stages)}",
        )
        return False


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()


def _word(words: Mapping[str, str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = words.get(_fold(text))
        if value is None:
            allowed = "、".join(w for w in words if not w.isascii())
            raise ValueError(f"无法识别的取值：「{text}」（应为 {allowed}） / unrecognised value")
        return value

    return parse


_INTEGER = re.compile(r"[+-]?\d+")


def _parse_int(text: str) -> int:
    value = unicodedata.normalize("NFKC", text).strip()
    if _INTEGER.fullmatch(value) is None:
        raise ValueError(f"得分应为整数：「{text}」 / not a whole number")
    return int(value)


def _parse_code(row: _Row) -> None:
    row.code = row.parse("credit_code", _parse_credit_code)


def _parse_choice(choice: _Choice, row: _Row, today: date) -> None:
    _parse_code(row)
    decision = row.parse(choice.decision_key, _word(choice.words))
    reason = row.text(choice.reason_key)
    if decision == choice.needs_reason and reason is None:
        word = next(w for w, v in choice.words.items() if v == decision)
        row.fail(
            choice.reason_key,
            f"决定为「{word}」时必须填写{row.spec.label(choice.reason_key)} / a reason is required",
        )
    row.values.update(decision=decision, reason=reason)


def _parse_score(row: _Row, today: date) -> None:
    row.values["expert_id"] = row.parse("expert_id", lambda t: unicodedata.normalize("NFKC", t))
    _parse_code(row)
    zeros = dict.fromkeys(SUB_SCORE_MAXIMA, 0)
    for key in SUB_SCORE_MAXIMA:
        value = row.parse(key, _parse_int)
        if value is not None:
            # One sub-score at a time, so that each reason lands on its own column.
            for reason in validate_sub_scores(**{**zeros, key: value}):
                row.fail(key, f"{reason} / out of range 0–{SUB_SCORE_MAXIMA[key]}")
        row.values[key] = value


def _parse_objection(row: _Row, today: date) -> None:
    _parse_code(row)
    raised_on = row.parse("raised_on", lambda t: parse_date(t, not_after=today), optional=True)
    resolution = row.parse("resolution", _word(_RESOLUTIONS), optional=True)
    reason = row.text("reason")
    if resolution is None and reason is None:
        row.fail("reason", "新收到的异议必须填写异议内容 / an objection needs its content")
    row.values.update(
        raised_on=raised_on or today, reason=reason, resolution=resolution, note=row.text("note")
    )


def _key(kind: str, row: _Row) -> tuple[Any, ...] | None:
    if row.code is None:
        return None
    if kind == "scores":
        return (row.values.get("expert_id"), row.code) if row.values.get("expert_id") else None
    if kind == "objections":
        return (row.code, row.values["resolution"] is None, row.values["reason"])
    return (row.code,)


# --- planning and writing -----------------------------------------------------------


@dataclass
class _Plan:
    applied: int = 0
    updated: int = 0
    unchanged: int = 0
    writes: list[tuple[Executable, list[dict[str, Any]]]] = field(default_factory=list)

    def count(self, had_value: bool) -> None:
        if had_value:
            self.updated += 1
        else:
            self.applied += 1


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _applications(
    connection: Connection, batch_code: str, codes: Collection[str], columns: Sequence[str]
) -> dict[str, RowMapping]:
    """credit code -> (id, stage, credit_code, the given columns) of the batch's applications."""
    table = Application.__table__  # type: ignore[attr-defined]
    selected = [table.c.id, table.c.stage, table.c.credit_code, *(table.c[c] for c in columns)]
    found: dict[str, RowMapping] = {}
    for chunk in _chunks(sorted(codes)):
        query = select(*selected).where(
            table.c.batch_code == batch_code, table.c.credit_code.in_(chunk)
        )
        for mapping in connection.execute(query).mappings():
            found[mapping["credit_code"]] = mapping
    return found


def _plan_choice(
    choice: _Choice, connection: Connection, rows: list[_Row], operator: str, today: date
) -> _Plan:
    plan = _Plan()
    params = []
    for row in rows:
        assert row.app is not None
        decision, reason = row.values["decision"], row.values["reason"]
        current = (row.app[choice.column], row.app[choice.reason_column])
        if current == (decision, reason):
            plan.unchanged += 1
            continue
        if not row.stage_allows(choice.stages, choice.what_zh):
            continue
        plan.count(current[0] is not None)
        params.append(
            {"b_id": row.app["id"], "b_decision": decision, "b_reason": reason, "b_by": operator}
        )
    table = Application.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        # The stage again: a batch flow may have moved the application since it was read.
        # (= … OR = …: an expanding IN cannot be part of an executemany.)
        .where(
            table.c.id == bindparam("b_id"), or_(*(table.c.stage == s.value for s in choice.stages))
        )
        .values(
            {
                choice.column: bindparam("b_decision"),
                choice.reason_column: bindparam("b_reason"),
                choice.by_column: bindparam("b_by"),
            }
        )
    )
    plan.writes.append((statement, params))
    return plan


_SCORE_FIELDS = {
    "ip": "ip_score",
    "conversion": "conversion_score",
    "rd_management": "rd_management_score",
    "growth": "growth_score",
}


def _plan_scores(connection: Connection, rows: list[_Row], operator: str, today: date) -> _Plan:
    app_ids = sorted({row.app["id"] for row in rows if row.app is not None})
    seats: set[tuple[int, str]] = set()
    scores: dict[tuple[int, str], tuple[int, ...]] = {}
    seat_t = PanelSeat.__table__  # type: ignore[attr-defined]
    score_t = ExpertScore.__table__  # type: ignore[attr-defined]
    for chunk in _chunks(app_ids):
        seats.update(
            (a, e)
            for a, e in connection.execute(
                select(seat_t.c.application_id, seat_t.c.expert_id).where(
                    seat_t.c.application_id.in_(chunk)
                )
            )
        )
        for a, e, *recorded in connection.execute(
            select(
                score_t.c.application_id,
                score_t.c.expert_id,
                *(score_t.c[c] for c in _SCORE_FIELDS.values()),
            ).where(score_t.c.application_id.in_(chunk))
        ):
            scores[(a, e)] = tuple(recorded)

    plan = _Plan()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        assert row.app is not None
        key = (row.app["id"], row.values["expert_id"])
        values = tuple(row.values[k] for k in _SCORE_FIELDS)
        if scores.get(key) == values:
            plan.unchanged += 1
            continue
        at_stage = row.stage_allows((Stage.EXPERT_REVIEW,), "专家评分")
        if key not in seats:
            row.fail(
                "expert_id",
                f"专家 {key[1]} 不在该企业的评审专家组中"
                f" / expert {key[1]} is not on this application's panel",
            )
        if not at_stage or key not in seats:
            continue
        plan.count(key in scores)
        record = {
            "b_app": key[0],
            "b_expert": key[1],
            "b_total": sum(values),
            "b_by": operator,
            **{f"b_{c}": v for c, v in zip(_SCORE_FIELDS.values(), values, strict=True)},
        }
        (updates if key in scores else inserts).append(record)
    assignments: dict[str, Any] = {
        c: bindparam(f"b_{c}") for c in (*_SCORE_FIELDS.values(), "total")
    }
    assignments["recorded_by"] = bindparam("b_by")
    plan.writes.append(
        (
            insert(score_t).values(
                application_id=bindparam("b_app"), expert_id=bindparam("b_expert"), **assignments
            ),
            inserts,
        )
    )
    plan.writes.append(
        (
            update(score_t)
            .where(
                score_t.c.application_id == bindparam("b_app"),
                score_t.c.expert_id == bindparam("b_expert"),
            )
            .values(assignments),
            updates,
        )
    )
    return plan


@dataclass
class _Objection:
    id: int | None
    reason: str
    raised_on: date
    resolution: str | None
    note: str | None
    resolved_on: date | None = None
    dirty: bool = False


_RESOLVE_STAGES = (Stage.OBJECTION_REVIEW, Stage.PUBLIC_NOTICE)


def _plan_objections(connection: Connection, rows: list[_Row], operator: str, today: date) -> _Plan:
    objection_t = Objection.__table__  # type: ignore[attr-defined]
    by_app: dict[int, list[_Objection]] = {}
    app_ids = sorted({row.app["id"] for row in rows if row.app is not None})
    for chunk in _chunks(app_ids):
        for found in connection.execute(
            select(objection_t)
            .where(objection_t.c.application_id.in_(chunk))
            .order_by(objection_t.c.id)
        ).mappings():
            by_app.setdefault(found["application_id"], []).append(
                _Objection(
                    found["id"],
                    found["reason"],
                    found["raised_on"],
                    found["resolution"],
                    found["note"],
                    found["resolved_on"],
                )
            )

    plan = _Plan()
    # In file order against what is known so far, so that a file may record an objection
    # and resolve it further down.
    for row in rows:
        assert row.app is not None
        objections = by_app.setdefault(row.app["id"], [])
        if row.values["resolution"] is None:
            _plan_new_objection(row, objections, plan)
        else:
            _plan_resolution(row, objections, plan, today)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for app_id, objections in by_app.items():
        for o in objections:
            record = {
                "b_resolution": o.resolution,
                "b_resolved_on": o.resolved_on,
                "b_note": o.note,
                "b_by": operator,
            }
            if o.id is None:
                inserts.append(
                    {**record, "b_app": app_id, "b_raised_on": o.raised_on, "b_reason": o.reason}
                )
            elif o.dirty:
                updates.append({**record, "b_id": o.id})
    resolution: dict[str, Any] = {
        "resolution": bindparam("b_resolution"),
        "resolved_on": bindparam("b_resolved_on"),
        "note": bindparam("b_note"),
        "recorded_by": bindparam("b_by"),
    }
    plan.writes.append(
        (
            insert(objection_t).values(
                application_id=bindparam("b_app"),
                raised_on=bindparam("b_raised_on"),
                reason=bindparam("b_reason"),
                **resolution,
            ),
            inserts,
        )
    )
    plan.writes.append(
        (
            update(objection_t).where(objection_t.c.id == bindparam("b_id")).values(resolution),
            updates,
        )
    )
    return plan


def _plan_new_objection(row: _Row, objections: list[_Objection], plan: _Plan) -> None:
    reason = row.values["reason"]
    # The same content again is the same objection, even once resolved: running an old
    # file again must not reopen a dismissed objection.
    if any(o.reason == reason for o in objections):
        plan.unchanged += 1
        return
    if row.stage_allows((Stage.PUBLIC_NOTICE,), "新的异议"):
        objections.append(
            _Objection(None, reason, row.values["raised_on"], None, row.values["note"])
        )
        plan.applied += 1


def _plan_resolution(row: _Row, objections: list[_Objection], plan: _Plan, today: date) -> None:
    reason, outcome = row.values["reason"], (row.values["resolution"], row.values["note"])
    if reason is not None:
        targets = [o for o in objections if o.reason == reason]
        if not targets:
            row.fail("reason", "该企业没有内容相同的异议 / no objection with this content")
            return
    else:
        targets = [o for o in objections if o.resolution is None]
        if not targets:
            if any((o.resolution, o.note) == outcome for o in objections):
                plan.unchanged += 1
            elif objections:
                row.fail(
                    "reason",
                    "该企业没有未处理的异议；如需更正已处理的异议，请填写异议内容"
                    " / no open objection; name the objection to correct it",
                )
            else:
                row.fail("credit_code", "该企业没有异议记录 / no objection recorded")
            return
    changed = [o for o in targets if (o.resolution, o.note) != outcome]
    if not changed:
        plan.unchanged += 1
        return
    if not row.stage_allows(_RESOLVE_STAGES, "异议处理结果"):
        return
    plan.count(all(o.resolution is not None for o in changed))
    for o in changed:
        o.resolution, o.note, o.resolved_on, o.dirty = *outcome, today, True


_Planner = Callable[[Connection, list[_Row], str, date], _Plan]
_PARSERS: dict[str, Callable[[_Row, date], None]] = {
    "scores": _parse_score,
    "objections": _parse_objection,
    **{kind: partial(_parse_choice, choice) for kind, choice in _CHOICES.items()},
}
_PLANNERS: dict[str, _Planner] = {
    "scores": _plan_scores,
    "objections": _plan_objections,
    **{kind: partial(_plan_choice, choice) for kind, choice in _CHOICES.items()},
}
RECORD_KINDS = tuple(_PLANNERS)


def record_from_file(
    session: Session,
    kind: str,
    path: Path,
    *,
    batch_code: str,
    operator: str,
    today: date,
    strict: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> RecordReport:
    """Validate ``path`` and record its decisions in ``batch_code``; commits once, or not at
    all when ``strict`` and a row is bad."""
    if kind not in _PLANNERS:
        raise UnknownKind(kind, RECORD_KINDS)
    spec = KINDS[kind]
    get_batch(session, batch_code)
    table = read_table(path, spec.columns, required=spec.required, limits=limits)
    report = RecordReport(kind=kind, rows=len(table.rows))

    rows = [_Row(spec, number, cells) for number, cells in table.rows]
    first_row_of: dict[tuple[Any, ...], int] = {}
    for row in rows:
        _PARSERS[kind](row, today)
        key = _key(kind, row)
        earlier = first_row_of.setdefault(key, row.number) if key else row.number
        if earlier != row.number:
            row.fail("credit_code", f"与第 {earlier} 行重复 / duplicate of row {earlier}")

    connection = session.connection()
    choice = _CHOICES.get(kind)
    columns = (choice.column, choice.reason_column) if choice else ()
    apps = _applications(connection, batch_code, {r.code for r in rows if r.code}, columns)
    for row in rows:
        if row.code is None:
            continue
        row.app = apps.get(row.code)
        if row.app is None:
            row.fail(
                "credit_code",
                f"本批次（{batch_code}）没有该企业的申报"
                f" / no application of this enterprise in batch {batch_code}",
            )

    plan = _PLANNERS[kind](connection, [r for r in rows if r.ok], operator, today)
    report.unchanged = plan.unchanged
    report.errors = [e for row in rows for e in row.errors]
    if report.errors:
        report.error_file = write_error_report(path, report.errors)
        if strict:
            return report
    for statement, params in plan.writes:
        if params:
            connection.execute(statement, params)
    report.applied, report.updated = plan.applied, plan.updated
    session.commit()
    report.committed = True
    return report


# --- decisions for a whole batch ----------------------------------------------------------


def recommend_all(
    session: Session, *, batch_code: str, district_code: str | None, operator: str, today: date
) -> RecordReport:
    """Recommend every application of the batch (or of one district) at 已提交 or 区市推荐
    that has no district decision yet; decisions already recorded stay as they are."""
    get_batch(session, batch_code)
    table = Application.__table__  # type: ignore[attr-defined]
    scope = [
        table.c.batch_code == batch_code,
        table.c.stage.in_([s.value for s in _CHOICES["recommendations"].stages]),
    ]
    if district_code is not None:
        scope.append(table.c.district_code == district_code)
    connection = session.connection()
    total = connection.execute(select(func.count()).select_from(table).where(*scope)).scalar_one()
    applied = connection.execute(
        update(table)
        .where(*scope, table.c.district_decision.is_(None))
        .values(
            district_decision=DistrictDecision.RECOMMENDED.value,
            district_reason=None,
            district_decided_by=operator,
        )
    ).rowcount
    session.commit()
    return RecordReport(
        kind="recommendations",
        rows=total,
        applied=applied,
        unchanged=total - applied,
        committed=True,
    )


def approve_all(
    session: Session,
    *,
    batch_code: str,
    operator: str,
    today: date,
    except_credit_codes: Collection[str] = (),
) -> RecordReport:
    """Approve every application of the batch at 审批 with no decision yet, except those
    listed, which stay undecided. A listed code that is invalid, not in the batch or
    already approved means nothing is approved: the exception list must be right.

    ``except_credit_codes`` may map each code to its row in the exceptions file, so that
    errors name the row.
    """
    get_batch(session, batch_code)
    given = dict(except_credit_codes) if isinstance(except_credit_codes, Mapping) else {}
    report = RecordReport(kind="approvals")
    row_of: dict[str, int] = {}
    for text in except_credit_codes:
        try:
            row_of.setdefault(_parse_credit_code(text), given.get(text, 0))
        except ValueError as exc:
            report.errors.append(RowError(given.get(text, 0), _CODE_LABEL, f"{text}：{exc}"))
    excepted = set(row_of)
    connection = session.connection()
    known = _applications(connection, batch_code, excepted, ("approval",))
    for code in sorted(excepted):
        app = known.get(code)
        row = row_of.get(code, 0)
        if app is None:
            report.errors.append(
                RowError(
                    row,
                    _CODE_LABEL,
                    f"{code}：本批次没有该企业的申报 / no application in this batch",
                )
            )
        elif app["stage"] == Stage.APPROVAL.value and app["approval"] == APPROVED:
            report.errors.append(
                RowError(
                    row,
                    _CODE_LABEL,
                    f"{code}：已录入批准决定，请先用 hnte record approvals 更正"
                    " / already approved; correct it with a decisions file",
                )
            )
    if report.errors:
        return report

    table = Application.__table__  # type: ignore[attr-defined]
    at_approval = (table.c.batch_code == batch_code, table.c.stage == Stage.APPROVAL.value)
    report.rows = connection.execute(
        select(func.count()).select_from(table).where(*at_approval)
    ).scalar_one()
    pending = connection.execute(
        select(table.c.id, table.c.credit_code).where(*at_approval, table.c.approval.is_(None))
    ).all()
    params = [{"b_id": i, "b_by": operator} for i, code in pending if code not in excepted]
    if params:
        connection.execute(
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.stage == Stage.APPROVAL.value,
                table.c.approval.is_(None),
            )
            .values(approval=APPROVED, approval_note=None, approval_decided_by=bindparam("b_by")),
            params,
        )
    report.applied = len(params)
    report.held = len(pending) - len(params)
    report.unchanged = report.rows - len(pending)
    session.commit()
    report.committed = True
    return report


def read_credit_codes(
    path: Path, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, int], list[RowError]]:
    """The credit codes listed in a file's 统一社会信用代码 column (code -> row), and the
    rows whose code is not valid."""
    table = read_table(path, {"credit_code": CODE_COLUMN}, required={"credit_code"}, limits=limits)
    codes: dict[str, int] = {}
    errors: list[RowError] = []
    for number, cells in table.rows:
        try:
            codes.setdefault(_parse_credit_code(cells["credit_code"]), number)
        except ValueError as exc:
            errors.append(RowError(number, _CODE_LABEL, str(exc)))
    return codes, errors


# --- templates --------------------------------------------------------------------------


def write_template(kind: str, path: Path) -> Path:
    """An empty file to fill in: the header row only (.xlsx adds a 说明 sheet), or .csv."""
    spec = kind_spec(kind)
    headers = [spellings[0] for spellings in spec.columns.values()]
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise ValueError(f"模板只能是 .xlsx 或 .csv：{path.name} / use .xlsx or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            csv.writer(handle).writerow(headers)
        return path
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path))
    bold = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    text = workbook.add_format({"num_format": "@"})
    wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
    sheet = workbook.add_worksheet(spec.title_zh)
    for index, (key, header) in enumerate(zip(spec.columns, headers, strict=True)):
        width = max(_display_width(header) + 4, 24 if key == "credit_code" else 12)
        # Text cells: Excel would turn an all-digit credit code into a rounded number.
        sheet.set_column(index, index, width, text)
        sheet.write(0, index, header, bold)
    sheet.freeze_panes(1, 0)

    guide = workbook.add_worksheet("说明")
    guide.set_column(0, 0, 22)
    guide.set_column(1, 1, 8)
    guide.set_column(2, 2, 60, wrap)
    guide.set_column(3, 3, 24)
    guide.write(0, 0, f"{spec.title_zh}：{spec.description_zh}")
    guide.write_row(2, 0, ("列名", "必填", "说明与取值", "也可写作"), bold)
    for row, (key, spellings) in enumerate(spec.columns.items(), start=3):
        guide.write_row(
            row,
            0,
            (
                spellings[0],
                "是" if key in spec.required else "否",
                spec.notes.get(key, ""),
                "、".join(spellings[1:]),
            ),
        )
    workbook.close()
    return path


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
