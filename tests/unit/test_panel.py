from __future__ import annotations

import random

import pytest

from hnte.models.panel import (
    ExpertInfo,
    PanelError,
    PanelPolicy,
    check_panel,
    draw_panel,
    draw_panels,
)

ENTERPRISE = "91370200MA3C000001"


def make_pool(technical: int, financial: int, employers: int = 50) -> list[ExpertInfo]:
    """T0000… technical and F0000… financial experts spread over `employers` employers."""
    return [
        ExpertInfo(f"{prefix}{i:04d}", kind, f"employer-{i % employers}")
        for prefix, kind, count in (("T", "technical", technical), ("F", "financial", financial))
        for i in range(count)
    ]


POOL = make_pool(40, 10)
POOL_BY_ID = {e.id: e for e in POOL}


@pytest.mark.parametrize(
    ("policy", "technical", "financial"),
    [
        (PanelPolicy(), 3, 1),  # ceil(5 × 60%) = 3
        (PanelPolicy(size=7), 5, 1),  # ceil(4.2) = 5
        (PanelPolicy(size=9, min_financial=2), 6, 2),  # ceil(5.4) = 6
        (PanelPolicy(size=10, min_technical_percent=70), 7, 1),
        (PanelPolicy(size=5, min_technical_percent=80), 4, 1),  # no free seat left
    ],
)
def test_panel_has_policy_size_technical_share_and_financial_seats(
    policy: PanelPolicy, technical: int, financial: int
) -> None:
    for application_id in range(200):
        panel = draw_panel(application_id, ENTERPRISE, POOL, seed=2021, policy=policy)
        kinds = [POOL_BY_ID[i].kind for i in panel]
        assert len(panel) == len(set(panel)) == policy.size
        assert kinds.count("technical") >= technical
        assert kinds.count("financial") >= financial
        assert check_panel(panel, POOL_BY_ID, ENTERPRISE, (), policy) == []


def test_seat_order_is_draw_order_financial_then_technical_then_rest() -> None:
    panel = draw_panel(1, ENTERPRISE, POOL, seed=7)
    assert POOL_BY_ID[panel[0]].kind == "financial"
    assert [POOL_BY_ID[i].kind for i in panel[1:4]] == ["technical"] * 3


def test_expert_employed_by_the_enterprise_is_never_drawn() -> None:
    colleagues = [ExpertInfo(f"T9{i:03d}", "technical", ENTERPRISE) for i in range(20)]
    colleagues += [ExpertInfo(f"F9{i:03d}", "financial", ENTERPRISE) for i in range(5)]
    pool = POOL + colleagues
    by_id = {e.id: e for e in pool}
    for application_id in range(300):
        panel = draw_panel(application_id, ENTERPRISE, pool, seed=3)
        assert not {e.id for e in colleagues} & set(panel)
        assert check_panel(panel, by_id, ENTERPRISE, (), PanelPolicy()) == []
    # ... while another enterprise may draw them.
    drawn = set().union(*(draw_panel(a, "OTHER", pool, seed=3) for a in range(300)))
    assert drawn & {e.id for e in colleagues}


def test_declared_conflicts_are_never_drawn() -> None:
    conflicts = {"F0000", "F0001", "T0000", "T0001", "T0002", "T0003"}
    for application_id in range(300):
        panel = draw_panel(application_id, ENTERPRISE, POOL, seed=5, conflicts=conflicts)
        assert not conflicts & set(panel)
    panels = draw_panels(
        [(a, ENTERPRISE) for a in range(300)], POOL, seed=5, conflicts={ENTERPRISE: conflicts}
    )
    assert all(not conflicts & set(p) for p in panels.values())


def test_same_inputs_give_same_panel_across_calls_and_pool_order() -> None:
    first = draw_panel(42, ENTERPRISE, POOL, seed=2021)
    shuffled = POOL[:]
    random.Random(0).shuffle(shuffled)
    assert draw_panel(42, ENTERPRISE, POOL, seed=2021) == first
    assert draw_panel(42, ENTERPRISE, shuffled, seed=2021) == first
    assert draw_panel(42, ENTERPRISE, list(reversed(POOL)), seed=2021) == first


def test_batch_draw_equals_single_draw_whatever_else_is_in_the_batch() -> None:
    conflicts = {ENTERPRISE: {"T0005", "F0003"}, "B": {"T0001"}}
    apps = [(a, ENTERPRISE if a % 3 else "B") for a in range(100)]
    whole = draw_panels(apps, POOL, seed=9, conflicts=conflicts)
    part = draw_panels(apps[50:60], list(reversed(POOL)), seed=9, conflicts=conflicts)
    for application_id, credit_code in apps[50:60]:
        single = draw_panel(
            application_id, credit_code, POOL, seed=9, conflicts=conflicts[credit_code]
        )
        assert whole[application_id] == part[application_id] == single


def test_seed_and_application_change_the_draw() -> None:
    panels = {draw_panel(a, ENTERPRISE, POOL, seed=s) for a in range(10) for s in range(10)}
    assert len(panels) > 90


@pytest.mark.parametrize(
    ("pool", "conflicts", "missing"),
    [
        (make_pool(40, 0), (), "financial"),
        (make_pool(2, 10), (), "technical"),
        (make_pool(3, 1), (), "in all"),
        (make_pool(40, 2), ("F0000", "F0001"), "financial"),
        (make_pool(3, 3), ("T0002",), "technical"),
    ],
)
def test_pool_that_cannot_satisfy_policy_raises_panel_error(
    pool: list[ExpertInfo], conflicts: tuple[str, ...], missing: str
) -> None:
    with pytest.raises(PanelError) as raised:
        draw_panel(17, ENTERPRISE, pool, seed=1, conflicts=conflicts)
    message = str(raised.value)
    assert message.startswith("申请 17")
    assert "Application 17" in message
    assert ENTERPRISE in message
    assert missing in message


def test_panel_error_when_only_colleagues_are_financial() -> None:
    pool = make_pool(40, 0) + [ExpertInfo("F1", "financial", ENTERPRISE)]
    with pytest.raises(PanelError, match="财务专家 0 名"):
        draw_panel(1, ENTERPRISE, pool, seed=1)
    assert len(draw_panel(1, "OTHER", pool, seed=1)) == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"min_technical_percent": 101},
        {"min_financial": -1},
        {"size": 5, "min_technical_percent": 100, "min_financial": 1},  # 5 + 1 > 5 seats
    ],
)
def test_impossible_policy_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PanelPolicy(**kwargs)


def test_bad_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        draw_panel(1, ENTERPRISE, [*POOL, POOL[0]], seed=1)
    with pytest.raises(ValueError, match="unknown kind"):
        draw_panel(1, ENTERPRISE, [*POOL, ExpertInfo("X", "legal", "e")], seed=1)


@pytest.mark.parametrize(
    ("panel", "conflicts", "fragment"),
    [
        (("F0000", "T0000", "T0001", "T0002"), (), "at least 5 required"),
        (("F0000", "F0001", "F0002", "T0000", "T0001"), (), "technical"),
        (("T0000", "T0001", "T0002", "T0003", "T0004"), (), "financial"),
        (("F0000", "T0000", "T0001", "T0002", "T0002"), (), "twice"),
        (("F0000", "T0000", "T0001", "T0002", "NOPE"), (), "not in the pool"),
        (("F0000", "T0000", "T0001", "T0002", "T0003"), ("T0003",), "declared conflict"),
        (("F0000", "T0000", "T0001", "T0002", "T0050"), (), "employed by the enterprise"),
    ],
)
def test_check_panel_names_each_violation(
    panel: tuple[str, ...], conflicts: tuple[str, ...], fragment: str
) -> None:
    by_id = {**POOL_BY_ID, "T0050": ExpertInfo("T0050", "technical", ENTERPRISE)}
    violations = check_panel(panel, by_id, ENTERPRISE, conflicts, PanelPolicy())
    assert any(fragment in v for v in violations), violations


def test_ten_thousand_applications_from_four_hundred_experts_are_all_valid() -> None:
    pool = make_pool(320, 80, employers=200)
    pool += [ExpertInfo(f"C{i:03d}", "technical", f"9137{i:014d}") for i in range(20)]
    by_id = {e.id: e for e in pool}
    apps = [(a, f"9137{a % 500:014d}") for a in range(10_000)]
    conflicts = {f"9137{c:014d}": {f"T{c:04d}", f"F{c % 80:04d}"} for c in range(0, 500, 7)}

    # Speed is measured in benchmarks/, not asserted here.
    panels = draw_panels(apps, pool, seed=2021, conflicts=conflicts)

    assert len(panels) == 10_000
    for application_id, credit_code in apps:
        assert check_panel(
            panels[application_id], by_id, credit_code, conflicts.get(credit_code, ()),
            PanelPolicy(),
        ) == []
