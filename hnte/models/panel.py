"""Expert panel draw (专家抽取): seeded, reproducible, conflict-free, policy-checked.

A panel depends only on (seed, application id, pool, that enterprise's conflicts, policy):
the pool is sorted by id before drawing and each application has its own
``random.Random(f"{seed}:{application_id}")``, so pool order and the other applications
in a batch never change a panel. A string seed is hashed with SHA-512 by ``random``,
which, unlike ``hash(str)``, is the same in every process.

A batch draws hundreds of thousands of samples, so ``_sample`` does what
``Random.sample`` does, draw for draw, without its per-call checks, and one generator is
re-seeded per application rather than built anew.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from math import ceil, log
from types import MappingProxyType

from hnte.models.enums import ExpertKind

TECHNICAL = ExpertKind.TECHNICAL.value
FINANCIAL = ExpertKind.FINANCIAL.value


@dataclass(frozen=True)
class ExpertInfo:
    id: str
    kind: str  # "technical" | "financial"
    employer: str  # credit code (or name) of the expert's employer


@dataclass(frozen=True)
class PanelPolicy:
    size: int = 5
    min_technical_percent: int = 60
    min_financial: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"panel size must be at least 1, got {self.size}")
        if not 0 <= self.min_technical_percent <= 100:
            raise ValueError(
                f"min_technical_percent must be 0..100, got {self.min_technical_percent}"
            )
        if self.min_financial < 0:
            raise ValueError(f"min_financial must be >= 0, got {self.min_financial}")
        if self.min_technical + self.min_financial > self.size:
            raise ValueError(
                f"policy needs {self.min_technical} technical + {self.min_financial} "
                f"financial seats but the panel has only {self.size}"
            )

    @property
    def min_technical(self) -> int:
        return technical_seats(self.size, self.min_technical_percent)


def technical_seats(panel_size: int, percent: int) -> int:
    """ceil(panel_size × percent / 100) in integers (no float rounding at 60% of 5)."""
    return -(-panel_size * percent // 100)


DEFAULT_POLICY = PanelPolicy()
_NO_CONFLICTS: Mapping[str, Collection[str]] = MappingProxyType({})


class PanelError(Exception):
    """The eligible pool cannot seat a panel that satisfies the policy."""


@dataclass(frozen=True)
class _SortedPool:
    """The pool split once per call, each list sorted by id (the draw's canonical order)."""

    technical: tuple[str, ...]
    financial: tuple[str, ...]
    everyone: tuple[str, ...]
    by_employer: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, pool: Sequence[ExpertInfo]) -> _SortedPool:
        ordered = sorted(pool, key=lambda e: e.id)
        by_employer: dict[str, set[str]] = {}
        for previous, expert in zip(ordered, ordered[1:], strict=False):
            if previous.id == expert.id:
                raise ValueError(f"expert id {expert.id!r} appears twice in the pool")
        for expert in ordered:
            if expert.kind not in (TECHNICAL, FINANCIAL):
                raise ValueError(f"expert {expert.id!r} has unknown kind {expert.kind!r}")
            by_employer.setdefault(expert.employer, set()).add(expert.id)
        return cls(
            technical=tuple(e.id for e in ordered if e.kind == TECHNICAL),
            financial=tuple(e.id for e in ordered if e.kind == FINANCIAL),
            everyone=tuple(e.id for e in ordered),
            by_employer={k: frozenset(v) for k, v in by_employer.items()},
        )


def draw_panel(
    application_id: int,
    credit_code: str,
    pool: Sequence[ExpertInfo],
    *,
    seed: int,
    conflicts: Collection[str] = (),
    policy: PanelPolicy = DEFAULT_POLICY,
) -> tuple[str, ...]:
    """Draw one application's panel; expert ids in seat order (= draw order)."""
    return _draw(
        application_id, credit_code, _SortedPool.of(pool), seed, conflicts, policy, random.Random()
    )


def draw_panels(
    applications: Sequence[tuple[int, str]],
    pool: Sequence[ExpertInfo],
    *,
    seed: int,
    conflicts: Mapping[str, Collection[str]] = _NO_CONFLICTS,
    policy: PanelPolicy = DEFAULT_POLICY,
) -> dict[int, tuple[str, ...]]:
    """Draw panels for (application_id, credit_code) pairs; each equals its draw_panel."""
    sorted_pool = _SortedPool.of(pool)
    rng = random.Random()
    panels: dict[int, tuple[str, ...]] = {}
    for application_id, credit_code in applications:
        if application_id in panels:
            raise ValueError(f"application {application_id} appears twice")
        panels[application_id] = _draw(
            application_id,
            credit_code,
            sorted_pool,
            seed,
            conflicts.get(credit_code, ()),
            policy,
            rng,
        )
    return panels


def _draw(
    application_id: int,
    credit_code: str,
    pool: _SortedPool,
    seed: int,
    conflicts: Collection[str],
    policy: PanelPolicy,
    rng: random.Random,
) -> tuple[str, ...]:
    if isinstance(conflicts, str):  # a bare id would be read as a set of characters
        raise TypeError(f"conflicts must be a collection of expert ids, got {conflicts!r}")
    excluded = pool.by_employer.get(credit_code, frozenset()) | frozenset(conflicts)
    technical, financial, everyone = pool.technical, pool.financial, pool.everyone
    if excluded:
        # Filtering keeps the id order, so the draw stays a function of the eligible set.
        technical = tuple(i for i in technical if i not in excluded)
        financial = tuple(i for i in financial if i not in excluded)
        everyone = tuple(i for i in everyone if i not in excluded)

    need_technical = policy.min_technical
    if (
        len(technical) < need_technical
        or len(financial) < policy.min_financial
        or len(everyone) < policy.size
    ):
        missing = _shortfalls(
            technical=(len(technical), need_technical),
            financial=(len(financial), policy.min_financial),
            everyone=(len(everyone), policy.size),
        )
        raise PanelError(
            f"申请 {application_id}（{credit_code}）无法组成专家组："
            f"{'；'.join(zh for zh, _ in missing)}。"
            f" / Application {application_id} ({credit_code}): cannot seat a panel: "
            f"{'; '.join(en for _, en in missing)}."
        )

    rng.seed(f"{seed}:{application_id}")  # the state of random.Random(that string)
    bits = rng.getrandbits
    drawn = _sample(bits, financial, policy.min_financial)
    drawn += _sample(bits, technical, need_technical)
    fill = policy.size - len(drawn)
    if fill:
        # Sampling len(drawn) extra and dropping those already seated leaves a uniform
        # ordered sample of the rest, without copying the pool for every application.
        seated = set(drawn)
        extra = _sample(bits, everyone, fill + len(drawn))
        drawn += [i for i in extra if i not in seated][:fill]
    return tuple(drawn)


def _sample(getrandbits: Callable[[int], int], population: Sequence[str], k: int) -> list[str]:
    """``Random.sample(population, k)`` of the generator ``getrandbits`` belongs to.

    The same algorithm as CPython's (3.11–3.13), consuming the same random bits, so it
    returns the same list; tests/unit/test_panel_sampling.py holds it to that.
    """
    n = len(population)
    if not 0 <= k <= n:
        raise ValueError("Sample larger than population or is negative")
    setsize = 21  # CPython's cut-over between its two methods
    if k > 5:
        setsize += 4 ** ceil(log(k * 3, 4))
    result: list[str] = []
    if n <= setsize:
        pool = list(population)
        for i in range(k):
            m = n - i
            width = m.bit_length()
            j = getrandbits(width)
            while j >= m:
                j = getrandbits(width)
            result.append(pool[j])
            pool[j] = pool[m - 1]
        return result
    width = n.bit_length()
    selected: set[int] = set()
    for _ in range(k):
        # randbelow(n) until it gives an index not taken yet: the same bits either way.
        j = getrandbits(width)
        while j >= n or j in selected:
            j = getrandbits(width)
        selected.add(j)
        result.append(population[j])
    return result


def _shortfalls(
    *, technical: tuple[int, int], financial: tuple[int, int], everyone: tuple[int, int]
) -> list[tuple[str, str]]:
    """(Chinese, English) for each (available, needed) pair that falls short."""
    labels = {
        "technical": ("可抽技术专家", "eligible technical experts"),
        "financial": ("可抽财务专家", "eligible financial experts"),
        "everyone": ("可抽专家共", "eligible experts in all"),
    }
    counts = {"technical": technical, "financial": financial, "everyone": everyone}
    return [
        (f"{labels[k][0]} {have} 名，至少需要 {need} 名", f"{have} {labels[k][1]}, {need} needed")
        for k, (have, need) in counts.items()
        if have < need
    ]


def check_panel(
    panel: Sequence[str],
    pool_by_id: Mapping[str, ExpertInfo],
    credit_code: str,
    conflicts: Collection[str] = (),
    policy: PanelPolicy = DEFAULT_POLICY,
) -> list[str]:
    """Every way the panel breaks the policy, in Chinese then English; empty = valid."""
    violations: list[str] = []
    if len(set(panel)) != len(panel):
        violations.append("专家重复 / an expert is seated twice")
    unknown = [i for i in panel if i not in pool_by_id]
    if unknown:
        violations.append(f"专家不在专家库中 / not in the pool: {', '.join(unknown)}")
    experts = [pool_by_id[i] for i in panel if i in pool_by_id]
    if len(panel) < policy.size:
        violations.append(
            f"专家人数 {len(panel)} 少于 {policy.size} / {len(panel)} experts, "
            f"at least {policy.size} required"
        )
    n_technical = sum(e.kind == TECHNICAL for e in experts)
    need_technical = technical_seats(len(panel), policy.min_technical_percent)
    if n_technical < need_technical:
        violations.append(
            f"技术专家 {n_technical} 名，少于 {need_technical} 名 / {n_technical} technical "
            f"experts, at least {need_technical} required"
        )
    n_financial = sum(e.kind == FINANCIAL for e in experts)
    if n_financial < policy.min_financial:
        violations.append(
            f"财务专家 {n_financial} 名，少于 {policy.min_financial} 名 / {n_financial} "
            f"financial experts, at least {policy.min_financial} required"
        )
    same_employer = [e.id for e in experts if e.employer == credit_code]
    if same_employer:
        violations.append(
            f"专家与企业同一单位 / employed by the enterprise: {', '.join(same_employer)}"
        )
    conflicts = set(conflicts)
    declared = [i for i in panel if i in conflicts]
    if declared:
        violations.append(f"专家已申报回避 / declared conflict: {', '.join(declared)}")
    return violations
