"""Innovation score (创新能力评价) and the choice of applications for on-site inspection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from decimal import Decimal

SUB_SCORE_MAXIMA = {"ip": 30, "conversion": 30, "rd_management": 20, "growth": 20}
SUB_SCORE_LABELS = {
    "ip": "知识产权",
    "conversion": "科技成果转化能力",
    "rd_management": "研究开发组织管理水平",
    "growth": "企业成长性",
}
MAX_TOTAL = sum(SUB_SCORE_MAXIMA.values())
PASS_SCORE = 71


def validate_sub_scores(
    ip: object, conversion: object, rd_management: object, growth: object
) -> list[str]:
    """Reasons (Chinese) for each sub-score that is not an integer in 0..its maximum."""
    values = {
        "ip": ip,
        "conversion": conversion,
        "rd_management": rd_management,
        "growth": growth,
    }
    reasons = []
    for name, value in values.items():
        label, maximum = SUB_SCORE_LABELS[name], SUB_SCORE_MAXIMA[name]
        # bool is an int subclass; a True in a score sheet is a data error, not a 1.
        if not isinstance(value, int) or isinstance(value, bool):
            reasons.append(f"{label}得分必须是整数，实为 {value!r}")
        elif not 0 <= value <= maximum:
            reasons.append(f"{label}得分 {value} 超出范围 0–{maximum}")
    return reasons


@dataclass(frozen=True)
class SubScores:
    """One expert's four sub-scores; refuses values out of range."""

    ip: int
    conversion: int
    rd_management: int
    growth: int

    def __post_init__(self) -> None:
        reasons = validate_sub_scores(self.ip, self.conversion, self.rd_management, self.growth)
        if reasons:
            raise ValueError("；".join(reasons))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def panel_score(totals: Sequence[int]) -> Decimal:
    """Mean of the experts' totals, rounded half-up to 2 decimals."""
    if not totals:
        raise ValueError("专家组没有评分 / no expert totals to average")
    for total in totals:
        if not isinstance(total, int) or isinstance(total, bool) or not 0 <= total <= MAX_TOTAL:
            raise ValueError(f"专家总分必须是 0–{MAX_TOTAL} 的整数 / bad total {total!r}")
    # Integer arithmetic: half-up on the exact mean, independent of the Decimal context.
    hundredths = (200 * sum(totals) + len(totals)) // (2 * len(totals))
    return Decimal(hundredths).scaleb(-2)


def passes(score: Decimal, pass_score: int = PASS_SCORE) -> bool:
    return score >= pass_score


@dataclass(frozen=True)
class InspectionPolicy:
    borderline_low: int = 71
    borderline_high: int = 75
    random_percent: int = 10

    def __post_init__(self) -> None:
        if self.borderline_low > self.borderline_high:
            raise ValueError(
                f"borderline_low {self.borderline_low} > borderline_high {self.borderline_high}"
            )
        if not 0 <= self.random_percent <= 100:
            raise ValueError(f"random_percent must be 0..100, got {self.random_percent}")


DEFAULT_INSPECTION_POLICY = InspectionPolicy()

FLAGGED = "flagged"
BORDERLINE = "borderline"
RANDOM = "random"


def select_for_inspection(
    candidates: Sequence[tuple[int, Decimal, bool]],
    *,
    seed: int,
    policy: InspectionPolicy = DEFAULT_INSPECTION_POLICY,
) -> dict[int, str]:
    """Applications (that passed review) to inspect on site, each with its reason code.

    Every flagged one, every borderline score, and of the rest each one whose seeded draw
    falls below ``random_percent``. The draw is per application (sha256 of seed and id),
    so whether an application is inspected never depends on which others happen to be
    decided in the same run or chunk: scores arrive over weeks, and a rerun after a crash
    must choose exactly as before. The random share is therefore ``random_percent`` in
    expectation, not an exact count.
    """
    selected: dict[int, str] = {}
    seen: set[int] = set()
    for application_id, score, flagged in candidates:
        if application_id in seen:
            raise ValueError(f"application {application_id} appears twice")
        seen.add(application_id)
        if flagged:
            selected[application_id] = FLAGGED
        elif policy.borderline_low <= score <= policy.borderline_high:
            selected[application_id] = BORDERLINE
        elif drawn_at_random(seed, application_id, policy.random_percent):
            selected[application_id] = RANDOM
    return selected


def drawn_at_random(seed: int, application_id: int, percent: int) -> bool:
    """The seeded, per-application draw: True for about ``percent`` % of applications."""
    digest = hashlib.sha256(f"{seed}:{application_id}".encode()).digest()
    return int.from_bytes(digest[:4]) % 10_000 < percent * 100
