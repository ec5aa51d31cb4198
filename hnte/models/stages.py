"""The stage machine: every stage and every allowed transition, declared once as data.

Flows, the CLI, reports and emails read this table; nothing else decides which move is
legal. A guard is named here and described for people; its SQL form lives in the step
that applies it (``hnte.services.review``), and a test checks every guard is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    SUBMITTED = "submitted"
    DISTRICT_REVIEW = "district_review"
    FORMAL_CHECK = "formal_check"
    EXPERT_REVIEW = "expert_review"
    ONSITE_INSPECTION = "onsite_inspection"
    APPROVAL = "approval"
    PUBLIC_NOTICE = "public_notice"
    OBJECTION_REVIEW = "objection_review"
    CERTIFIED = "certified"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"

    @property
    def label_zh(self) -> str:
        return _LABELS[self][0]

    @property
    def label_en(self) -> str:
        return _LABELS[self][1]

    def label(self, language: str = "zh") -> str:
        return self.label_en if language == "en" else self.label_zh

    @property
    def is_final(self) -> bool:
        return self in FINAL_STAGES


_LABELS: dict[Stage, tuple[str, str]] = {
    Stage.SUBMITTED: ("已提交", "Submitted"),
    Stage.DISTRICT_REVIEW: ("区市推荐", "District review"),
    Stage.FORMAL_CHECK: ("形式审查", "Formal check"),
    Stage.EXPERT_REVIEW: ("专家评审", "Expert review"),
    Stage.ONSITE_INSPECTION: ("现场考察", "On-site inspection"),
    Stage.APPROVAL: ("审批", "Approval"),
    Stage.PUBLIC_NOTICE: ("公示", "Public notice"),
    Stage.OBJECTION_REVIEW: ("异议处理", "Objection review"),
    Stage.CERTIFIED: ("已认定", "Certified"),
    Stage.REJECTED: ("未通过", "Rejected"),
    Stage.WITHDRAWN: ("已撤回", "Withdrawn"),
}

FINAL_STAGES = frozenset({Stage.CERTIFIED, Stage.REJECTED, Stage.WITHDRAWN})
OPEN_STAGES = tuple(s for s in Stage if s not in FINAL_STAGES)
# The order stages appear in tables and reports.
PIPELINE = (
    Stage.SUBMITTED,
    Stage.DISTRICT_REVIEW,
    Stage.FORMAL_CHECK,
    Stage.EXPERT_REVIEW,
    Stage.ONSITE_INSPECTION,
    Stage.APPROVAL,
    Stage.PUBLIC_NOTICE,
    Stage.OBJECTION_REVIEW,
)


class Trigger(StrEnum):
    """Who or what causes a transition."""

    RULE = "rule"
    OPERATOR = "operator"
    DISTRICT = "district"
    EXPERT = "expert"
    CLOCK = "clock"


@dataclass(frozen=True)
class Transition:
    source: Stage
    target: Stage
    trigger: Trigger
    guard: str
    label_zh: str
    label_en: str
    guard_zh: str


def _t(
    source: Stage, target: Stage, trigger: Trigger, guard: str, zh: str, en: str, guard_zh: str
) -> Transition:
    return Transition(source, target, trigger, guard, zh, en, guard_zh)


S, T = Stage, Trigger

TRANSITIONS: tuple[Transition, ...] = (
    (
        _t(
            S.SUBMITTED,
            S.DISTRICT_REVIEW,
            T.RULE,
            "always",
            "提交区市",
            "sent to district",
            "申报材料已导入",
        ),
        _t(
            S.DISTRICT_REVIEW,
            S.FORMAL_CHECK,
            T.DISTRICT,
            "district_recommended",
            "区市推荐",
            "recommended by district",
            "区市已推荐",
        ),
        _t(
            S.DISTRICT_REVIEW,
            S.REJECTED,
            T.DISTRICT,
            "district_returned",
            "区市退回",
            "returned by district",
            "区市已退回并说明理由",
        ),
        _t(
            S.FORMAL_CHECK,
            S.EXPERT_REVIEW,
            T.RULE,
            "eligible",
            "形式审查通过",
            "passed formal check",
            "八项认定条件中可形式审查的各项均满足",
        ),
        _t(
            S.FORMAL_CHECK,
            S.REJECTED,
            T.RULE,
            "ineligible",
            "形式审查不通过",
            "failed formal check",
            "至少一项认定条件不满足",
        ),
        _t(
            S.EXPERT_REVIEW,
            S.ONSITE_INSPECTION,
            T.EXPERT,
            "passed_and_selected",
            "评审通过，需现场考察",
            "passed review, selected for inspection",
            "专家组评分齐全、均分≥71，且被抽中或被筛查标记",
        ),
        _t(
            S.EXPERT_REVIEW,
            S.APPROVAL,
            T.EXPERT,
            "passed_not_selected",
            "评审通过",
            "passed review",
            "专家组评分齐全、均分≥71，未被抽中现场考察",
        ),
        _t(
            S.EXPERT_REVIEW,
            S.REJECTED,
            T.EXPERT,
            "score_below_pass",
            "评审不通过",
            "failed review",
            "专家组评分齐全、均分<71",
        ),
        _t(
            S.ONSITE_INSPECTION,
            S.APPROVAL,
            T.OPERATOR,
            "inspection_passed",
            "现场考察通过",
            "passed inspection",
            "已录入考察结论：通过",
        ),
        _t(
            S.ONSITE_INSPECTION,
            S.REJECTED,
            T.OPERATOR,
            "inspection_failed",
            "现场考察不通过",
            "failed inspection",
            "已录入考察结论：不通过",
        ),
        _t(
            S.APPROVAL,
            S.PUBLIC_NOTICE,
            T.OPERATOR,
            "approved",
            "批准并公示",
            "approved, notice opened",
            "已录入批准决定",
        ),
        _t(
            S.APPROVAL,
            S.REJECTED,
            T.OPERATOR,
            "not_approved",
            "不予批准",
            "not approved",
            "已录入不予批准决定",
        ),
        _t(
            S.PUBLIC_NOTICE,
            S.OBJECTION_REVIEW,
            T.OPERATOR,
            "objection_open",
            "收到异议",
            "objection received",
            "公示期内有未处理的异议",
        ),
        _t(
            S.PUBLIC_NOTICE,
            S.CERTIFIED,
            T.CLOCK,
            "notice_period_over",
            "公示期满，予以认定",
            "notice over, certified",
            "10个工作日公示期满且无未处理异议",
        ),
        _t(
            S.OBJECTION_REVIEW,
            S.PUBLIC_NOTICE,
            T.OPERATOR,
            "objection_dismissed",
            "异议不成立，恢复公示",
            "objection dismissed",
            "所有异议均已处理且不成立",
        ),
        _t(
            S.OBJECTION_REVIEW,
            S.REJECTED,
            T.OPERATOR,
            "objection_upheld",
            "异议成立，不予认定",
            "objection upheld",
            "至少一项异议成立",
        ),
    )
    + tuple(
        _t(
            stage,
            S.REJECTED,
            T.OPERATOR,
            "operator_decision",
            "不予通过",
            "rejected by operator",
            "操作员决定并说明理由",
        )
        for stage in OPEN_STAGES
        if stage
        not in (
            S.DISTRICT_REVIEW,
            S.FORMAL_CHECK,
            S.EXPERT_REVIEW,
            S.ONSITE_INSPECTION,
            S.APPROVAL,
            S.OBJECTION_REVIEW,
        )
    )
    + tuple(
        _t(
            stage,
            S.WITHDRAWN,
            T.OPERATOR,
            "withdrawal_requested",
            "企业撤回",
            "withdrawn",
            "企业申请撤回",
        )
        for stage in OPEN_STAGES
    )
)

# One row per (source, target). An operator may reject from any open stage: where a stage
# already has a rule, district or expert rejection, that row is the one an operator uses.
_BY_PAIR: dict[tuple[Stage, Stage], Transition] = {(t.source, t.target): t for t in TRANSITIONS}
assert len(_BY_PAIR) == len(TRANSITIONS), "duplicate (source, target) in TRANSITIONS"


class TransitionRefused(Exception):
    """A move the stage table does not allow, or one whose application is elsewhere."""

    def __init__(self, application: str, source: Stage | str, target: Stage | str, why: str = ""):
        self.application, self.source, self.target = application, Stage(source), Stage(target)
        detail = f"（{why}）" if why else ""
        super().__init__(
            f"申请 {application} 当前处于「{self.source.label_zh}」，"
            f"不能转到「{self.target.label_zh}」{detail} / application {application} is in "
            f"{self.source.value}, it cannot move to {self.target.value}"
        )


def find_transition(source: Stage, target: Stage) -> Transition | None:
    return _BY_PAIR.get((source, target))


def require_transition(source: Stage, target: Stage, application: str = "*") -> Transition:
    """The table's row for this move, or TransitionRefused naming both stages."""
    transition = find_transition(source, target)
    if transition is None:
        raise TransitionRefused(application, source, target, "阶段表不允许")
    return transition


def transitions_from(source: Stage) -> tuple[Transition, ...]:
    return tuple(t for t in TRANSITIONS if t.source == source)


GUARDS = frozenset(t.guard for t in TRANSITIONS)
