"""The stage table: labels, guards, what it allows and what it refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hnte
from hnte.models.stages import (
    FINAL_STAGES,
    GUARDS,
    OPEN_STAGES,
    TRANSITIONS,
    Stage,
    TransitionRefused,
    Trigger,
    find_transition,
    require_transition,
    transitions_from,
)

S = Stage
CREDIT_CODE = "91370212MA3C000010"

# Guards the batch review applies as SQL conditions, and those an operator applies by hand.
RULE_GUARDS = {
    "always",
    "district_recommended",
    "district_returned",
    "eligible",
    "ineligible",
    "passed_and_selected",
    "passed_not_selected",
    "score_below_pass",
    "inspection_passed",
    "inspection_failed",
    "approved",
    "not_approved",
    "objection_open",
    "notice_period_over",
    "objection_dismissed",
    "objection_upheld",
}
OPERATOR_ONLY_GUARDS = {"operator_decision", "withdrawal_requested"}

REFUSED = [
    (S.CERTIFIED, S.FORMAL_CHECK),
    (S.CERTIFIED, S.REJECTED),
    (S.CERTIFIED, S.WITHDRAWN),
    (S.SUBMITTED, S.CERTIFIED),
    (S.SUBMITTED, S.FORMAL_CHECK),
    (S.SUBMITTED, S.SUBMITTED),
    (S.DISTRICT_REVIEW, S.SUBMITTED),
    (S.FORMAL_CHECK, S.DISTRICT_REVIEW),
    (S.EXPERT_REVIEW, S.PUBLIC_NOTICE),
    (S.APPROVAL, S.CERTIFIED),
    (S.OBJECTION_REVIEW, S.CERTIFIED),
    *((S.REJECTED, target) for target in Stage),
    *((S.WITHDRAWN, target) for target in Stage),
]


def _pairs_moved_in_review_source() -> set[tuple[Stage, Stage]]:
    """Every ``S.SOURCE, S.TARGET`` pair the batch review passes to a move."""
    source = (Path(hnte.__file__).parent / "services" / "review.py").read_text(encoding="utf-8")
    return {
        (Stage[a], Stage[b]) for a, b in re.findall(r"\bS\.([A-Z_]+),\s*S\.([A-Z_]+)\b", source)
    }


@pytest.mark.parametrize("stage", list(Stage), ids=str)
def test_every_stage_has_a_chinese_and_an_english_label(stage: Stage) -> None:
    assert stage.label_zh and stage.label_en
    assert re.search(r"[\u4e00-\u9fff]", stage.label_zh), stage.label_zh
    assert stage.label_en.isascii()
    assert stage.label("zh") == stage.label_zh
    assert stage.label("en") == stage.label_en


def test_labels_are_distinct_in_each_language() -> None:
    assert len({s.label_zh for s in Stage}) == len(Stage)
    assert len({s.label_en for s in Stage}) == len(Stage)


def test_every_transition_has_labels_and_a_guard_described_in_chinese() -> None:
    for t in TRANSITIONS:
        assert t.label_zh and t.label_en and t.guard and t.guard_zh, t


def test_the_guards_are_exactly_the_rule_guards_and_the_operator_only_guards() -> None:
    assert GUARDS == RULE_GUARDS | OPERATOR_ONLY_GUARDS


def test_every_rule_guard_is_a_move_the_batch_review_makes() -> None:
    moved = _pairs_moved_in_review_source()
    for t in TRANSITIONS:
        if t.guard in OPERATOR_ONLY_GUARDS:
            continue
        assert (t.source, t.target) in moved, f"{t.guard}: {t.source} → {t.target} not in review"


def test_the_batch_review_makes_no_move_the_table_lacks() -> None:
    for source, target in _pairs_moved_in_review_source():
        assert find_transition(source, target) is not None, (source, target)


def test_operator_only_guards_are_triggered_by_an_operator() -> None:
    for t in TRANSITIONS:
        if t.guard in OPERATOR_ONLY_GUARDS:
            assert t.trigger is Trigger.OPERATOR, t


@pytest.mark.parametrize(
    ("source", "target"), REFUSED, ids=[f"{a}->{b}" for a, b in REFUSED]
)
def test_a_pair_the_table_lacks_is_refused_naming_the_application_and_both_stages(
    source: Stage, target: Stage
) -> None:
    assert find_transition(source, target) is None
    with pytest.raises(TransitionRefused) as refused:
        require_transition(source, target, CREDIT_CODE)
    message = str(refused.value)
    assert CREDIT_CODE in message
    for stage in (source, target):
        assert f"「{stage.label_zh}」" in message
        assert stage.value in message.split(" / ", 1)[1]
    assert (refused.value.application, refused.value.source, refused.value.target) == (
        CREDIT_CODE,
        source,
        target,
    )


@pytest.mark.parametrize("stage", OPEN_STAGES, ids=str)
@pytest.mark.parametrize("target", [S.REJECTED, S.WITHDRAWN], ids=str)
def test_any_open_stage_may_be_rejected_or_withdrawn(stage: Stage, target: Stage) -> None:
    transition = require_transition(stage, target, CREDIT_CODE)
    assert (transition.source, transition.target) == (stage, target)


@pytest.mark.parametrize("stage", sorted(FINAL_STAGES), ids=str)
def test_a_final_stage_has_no_way_out(stage: Stage) -> None:
    assert stage.is_final
    assert transitions_from(stage) == ()


def test_every_open_stage_has_a_way_forward_other_than_rejection_and_withdrawal() -> None:
    for stage in OPEN_STAGES:
        assert not stage.is_final
        forward = {t.target for t in transitions_from(stage)} - {S.REJECTED, S.WITHDRAWN}
        assert forward, stage


def test_the_happy_path_of_the_design_is_in_the_table() -> None:
    path = [
        S.SUBMITTED,
        S.DISTRICT_REVIEW,
        S.FORMAL_CHECK,
        S.EXPERT_REVIEW,
        S.ONSITE_INSPECTION,
        S.APPROVAL,
        S.PUBLIC_NOTICE,
        S.CERTIFIED,
    ]
    for source, target in zip(path, path[1:], strict=False):
        assert find_transition(source, target) is not None, (source, target)
    # Inspection is skipped for applications not selected; an objection holds the notice.
    for source, target in [
        (S.EXPERT_REVIEW, S.APPROVAL),
        (S.PUBLIC_NOTICE, S.OBJECTION_REVIEW),
        (S.OBJECTION_REVIEW, S.PUBLIC_NOTICE),
        (S.OBJECTION_REVIEW, S.REJECTED),
    ]:
        assert find_transition(source, target) is not None, (source, target)


def test_each_source_and_target_pair_appears_once() -> None:
    pairs = [(t.source, t.target) for t in TRANSITIONS]
    assert len(pairs) == len(set(pairs))
