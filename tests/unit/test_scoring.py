from __future__ import annotations

import random
from decimal import Decimal

import pytest

from hnte.models.scoring import (
    PASS_SCORE,
    SUB_SCORE_MAXIMA,
    InspectionPolicy,
    SubScores,
    drawn_at_random,
    panel_score,
    passes,
    select_for_inspection,
    validate_sub_scores,
)


def test_sub_score_maxima_add_up_to_100_and_pass_is_71() -> None:
    assert sum(SUB_SCORE_MAXIMA.values()) == 100
    assert PASS_SCORE == 71


@pytest.mark.parametrize(
    ("scores", "reasons"),
    [
        ((0, 0, 0, 0), []),
        ((30, 30, 20, 20), []),
        ((31, 30, 20, 20), ["知识产权得分 31 超出范围 0–30"]),
        ((30, -1, 20, 20), ["科技成果转化能力得分 -1 超出范围 0–30"]),
        ((30, 30, 21, 20), ["研究开发组织管理水平得分 21 超出范围 0–20"]),
        ((30, 30, 20, 25), ["企业成长性得分 25 超出范围 0–20"]),
        ((20.5, 30, 20, 20), ["知识产权得分必须是整数，实为 20.5"]),
        ((20, "30", 20, 20), ["科技成果转化能力得分必须是整数，实为 '30'"]),
        ((20, 30, True, 20), ["研究开发组织管理水平得分必须是整数，实为 True"]),
        ((20, 30, 20, None), ["企业成长性得分必须是整数，实为 None"]),
        (
            (99, 99, 20, 20),
            ["知识产权得分 99 超出范围 0–30", "科技成果转化能力得分 99 超出范围 0–30"],
        ),
    ],
)
def test_validate_sub_scores_gives_a_reason_per_bad_value(
    scores: tuple[object, ...], reasons: list[str]
) -> None:
    assert validate_sub_scores(*scores) == reasons


def test_sub_scores_total_and_refusal() -> None:
    assert SubScores(ip=25, conversion=24, rd_management=15, growth=12).total == 76
    with pytest.raises(ValueError, match="知识产权"):
        SubScores(ip=35, conversion=24, rd_management=15, growth=12)


@pytest.mark.parametrize(
    ("totals", "score"),
    [
        ([71, 71, 71, 71, 71], Decimal("71.00")),
        ([70, 71, 71], Decimal("70.67")),  # 70.666…
        ([70, 70, 71], Decimal("70.33")),  # 70.333…
        ([70, 71], Decimal("70.50")),
        ([70] * 7 + [71], Decimal("70.13")),  # 70.125: half-up, not banker's 70.12
        ([70] * 5 + [71] * 3, Decimal("70.38")),  # 70.375
        ([100], Decimal("100.00")),
        ([0, 0, 1], Decimal("0.33")),
    ],
)
def test_panel_score_is_mean_rounded_half_up(totals: list[int], score: Decimal) -> None:
    result = panel_score(totals)
    assert result == score
    assert str(result) == str(score)  # always two decimals


@pytest.mark.parametrize("totals", [[], [101], [-1], [70.5]])
def test_panel_score_refuses_bad_totals(totals: list[int]) -> None:
    with pytest.raises(ValueError):
        panel_score(totals)


@pytest.mark.parametrize(
    ("score", "expected"),
    [("70.99", False), ("71.00", True), ("71", True), ("100.00", True), ("0", False)],
)
def test_passes_at_71(score: str, expected: bool) -> None:
    assert passes(Decimal(score)) is expected


def test_passes_with_other_threshold() -> None:
    assert passes(Decimal("65.00"), pass_score=65)
    assert not passes(Decimal("64.99"), pass_score=65)


def candidates(n: int, *, first_id: int = 1) -> list[tuple[int, Decimal, bool]]:
    """n unflagged candidates well above the borderline band (only random can pick them)."""
    return [(i, Decimal("85.00"), False) for i in range(first_id, first_id + n)]


@pytest.mark.parametrize(
    ("score", "reason"),
    [
        ("70.99", None),  # below low: only random can pick it (random_percent=0 here)
        ("71.00", "borderline"),
        ("73.50", "borderline"),
        ("75.00", "borderline"),
        ("75.01", None),
        ("90.00", None),
    ],
)
def test_borderline_edges_are_inclusive(score: str, reason: str | None) -> None:
    policy = InspectionPolicy(random_percent=0)
    selected = select_for_inspection([(1, Decimal(score), False)], seed=1, policy=policy)
    assert selected.get(1) == reason


def test_every_flagged_application_is_selected_as_flagged() -> None:
    cands = [(i, Decimal(s), True) for i, s in enumerate(["71.00", "74.00", "80.00", "99.99"])]
    cands += candidates(100, first_id=100)
    selected = select_for_inspection(cands, seed=2021)
    assert all(selected[i] == "flagged" for i in range(4))


@pytest.mark.parametrize("percent", [0, 10, 50, 100])
def test_the_random_share_is_the_percent_in_expectation(percent: int) -> None:
    cands = candidates(4_000)
    cands += [(10_001, Decimal("72"), False), (10_002, Decimal("90"), True)]  # not in "rest"
    selected = select_for_inspection(cands, seed=3, policy=InspectionPolicy(random_percent=percent))
    drawn = sum(r == "random" for r in selected.values())
    assert abs(drawn - 40 * percent) <= 4_000 * 0.02  # within two points of the percent
    assert selected[10_001] == "borderline"
    assert selected[10_002] == "flagged"


def test_an_applications_draw_does_not_depend_on_the_others_decided_with_it() -> None:
    cands = candidates(600)
    whole = select_for_inspection(cands, seed=2021)
    in_chunks: dict[int, str] = {}
    for start in range(0, 600, 7):  # scores arriving a few at a time, or a small chunk
        in_chunks.update(select_for_inspection(cands[start : start + 7], seed=2021))
    assert in_chunks == whole
    assert all((whole.get(i) == "random") == drawn_at_random(2021, i, 10) for i, _, _ in cands)


def test_random_sample_is_reproducible_and_independent_of_order() -> None:
    cands = candidates(1_000)
    first = select_for_inspection(cands, seed=2021)
    shuffled = cands[:]
    random.Random(1).shuffle(shuffled)
    assert select_for_inspection(cands, seed=2021) == first
    assert select_for_inspection(shuffled, seed=2021) == first


def test_different_seed_gives_different_sample() -> None:
    cands = candidates(1_000)
    a = set(select_for_inspection(cands, seed=2021))
    b = set(select_for_inspection(cands, seed=2022))
    assert 60 <= len(a) <= 140 and 60 <= len(b) <= 140
    assert a != b


def test_unselected_ids_are_absent_and_reasons_are_known_codes() -> None:
    cands = candidates(50) + [(51, Decimal("72.5"), False), (52, Decimal("80"), True)]
    selected = select_for_inspection(cands, seed=8)
    assert set(selected.values()) <= {"flagged", "borderline", "random"}
    randoms = {i for i, r in selected.items() if r == "random"}
    assert randoms == {i for i in range(1, 51) if drawn_at_random(8, i, 10)}
    assert {51, 52} <= set(selected)


def test_duplicate_candidate_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        select_for_inspection(candidates(3) + candidates(1), seed=1)


@pytest.mark.parametrize("kwargs", [{"borderline_low": 76}, {"random_percent": 101}])
def test_bad_inspection_policy_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        InspectionPolicy(**kwargs)
