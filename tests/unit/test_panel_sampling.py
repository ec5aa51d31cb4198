"""The fast panel draw gives exactly the panels ``random.Random.sample`` gives."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from hnte.models.panel import (
    ExpertInfo,
    PanelPolicy,
    _sample,
    draw_panel,
    draw_panels,
    technical_seats,
)


@settings(max_examples=2_000, deadline=None)
@given(
    seed=st.text(max_size=12),
    n=st.integers(0, 200),
    data=st.data(),
)
def test_sample_draws_what_random_sample_draws_and_leaves_the_same_state(
    seed: str, n: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, n))
    population = [f"E{i:04d}" for i in range(n)]
    theirs = random.Random(seed)
    ours = random.Random(seed)
    assert _sample(ours.getrandbits, population, k) == theirs.sample(population, k)
    assert ours.getrandbits(64) == theirs.getrandbits(64)


def test_sample_on_both_sides_of_the_small_population_cut_over() -> None:
    for n in (1, 5, 20, 21, 22, 40, 100, 400):
        for k in range(0, min(n, 30) + 1):
            population = tuple(f"E{i:04d}" for i in range(n))
            for seed in range(5):
                expected = random.Random(f"{seed}:{n}:{k}").sample(population, k)
                got = _sample(random.Random(f"{seed}:{n}:{k}").getrandbits, population, k)
                assert got == expected, (n, k, seed)


def _reference_draw(
    application_id: int,
    credit_code: str,
    pool: Sequence[ExpertInfo],
    seed: int,
    conflicts: Collection[str],
    policy: PanelPolicy,
) -> tuple[str, ...]:
    """The panel draw as first written, with ``random.Random(...).sample``."""
    ordered = sorted(pool, key=lambda e: e.id)
    excluded = {e.id for e in ordered if e.employer == credit_code} | set(conflicts)
    technical = tuple(e.id for e in ordered if e.kind == "technical" and e.id not in excluded)
    financial = tuple(e.id for e in ordered if e.kind == "financial" and e.id not in excluded)
    everyone = tuple(e.id for e in ordered if e.id not in excluded)
    rng = random.Random(f"{seed}:{application_id}")
    drawn = rng.sample(financial, policy.min_financial)
    drawn += rng.sample(technical, technical_seats(policy.size, policy.min_technical_percent))
    fill = policy.size - len(drawn)
    if fill:
        seated = set(drawn)
        extra = rng.sample(everyone, fill + len(drawn))
        drawn += [i for i in extra if i not in seated][:fill]
    return tuple(drawn)


def _pool(technical: int, financial: int, employers: int) -> list[ExpertInfo]:
    return [
        ExpertInfo(f"{prefix}{i:04d}", kind, f"9137{i % employers:014d}")
        for prefix, kind, count in (("T", "technical", technical), ("F", "financial", financial))
        for i in range(count)
    ]


def test_panels_are_the_ones_the_first_implementation_drew() -> None:
    policies = [
        PanelPolicy(),
        PanelPolicy(size=7),
        PanelPolicy(size=9, min_financial=2),
        PanelPolicy(size=5, min_technical_percent=80),
        PanelPolicy(size=12, min_financial=3),
    ]
    for pool in (_pool(320, 80, 200), _pool(30, 8, 10), _pool(12, 4, 50)):
        conflicts = {f"9137{c:014d}": {f"T{c:04d}", f"F{c % 4:04d}"} for c in range(0, 60, 7)}
        apps = [(a * 7919, f"9137{a % 60:014d}") for a in range(400)]
        for policy in policies:
            panels = draw_panels(apps, pool, seed=2021, conflicts=conflicts, policy=policy)
            for application_id, code in apps:
                expected = _reference_draw(
                    application_id, code, pool, 2021, conflicts.get(code, ()), policy
                )
                assert panels[application_id] == expected
                assert (
                    draw_panel(
                        application_id,
                        code,
                        pool,
                        seed=2021,
                        conflicts=conflicts.get(code, ()),
                        policy=policy,
                    )
                    == expected
                )
