"""Hard conditions for HNTE recognition (《高新技术企业认定管理办法》第十一条), as pure rules.

Money is integer fen and every ratio is compared by integer cross-multiplication, so a
figure sitting exactly on a threshold passes without any rounding doubt. Decimal is used
only to print percentages in reasons.

Each condition is one small predicate (``_staff_share_ok``, ``_rd_ratio_ok`` …) that both
the rule functions, which explain their verdict, and ``passes_formal_check``, the fast
yes/no a batch of 100,000 applications goes through first, call. Reasons are only
written for the applications that fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache

from hnte.models.enums import TechField

RULE_CODES = (
    "R1_REGISTRATION",
    "R2_IP",
    "R3_FIELD",
    "R4_STAFF",
    "R5_RD",
    "R6_HIGHTECH_REVENUE",
    "R7_SCORE",
    "R8_INCIDENT",
)

FEN_PER_CNY = 100
MAX_FISCAL_YEARS = 3
# (upper bound of most-recent-year revenue in fen, inclusive; minimum R&D share in percent)
RD_TIERS: tuple[tuple[int, int], ...] = (
    (50_000_000 * FEN_PER_CNY, 5),
    (200_000_000 * FEN_PER_CNY, 4),
)
RD_TOP_TIER_PERCENT = 3
RD_DOMESTIC_MIN_PERCENT = 60
STAFF_TECH_MIN_PERCENT = 10
HIGHTECH_REVENUE_MIN_PERCENT = 60
SCORE_PASS = 71
SCORE_MAX = 100

_TECH_FIELD_VALUES = frozenset(field.value for field in TechField)
_TIER_LABELS = {
    5: ("最近一年销售收入 ≤ 5000 万元", "most recent year revenue ≤ CNY 50 million"),
    4: (
        "最近一年销售收入 > 5000 万元且 ≤ 2 亿元",
        "most recent year revenue > CNY 50 million and ≤ CNY 200 million",
    ),
    3: ("最近一年销售收入 > 2 亿元", "most recent year revenue > CNY 200 million"),
}
_YEARS_ZH = {1: "近一年", 2: "近两年", 3: "近三年"}
_YEARS_EN = {1: "the last year", 2: "the last 2 years", 3: "the last 3 years"}
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Figures:
    """What an application declares, as the rules need it."""

    registered_on: date
    applied_on: date
    tech_field: str  # must be a TechField value to pass rule 3
    staff_total: int
    staff_tech: int
    revenue_fen: tuple[int, ...]  # 1 to 3 fiscal years, most recent first
    rd_fen: tuple[int, ...]  # same length as revenue_fen, most recent first
    rd_domestic_fen: int  # R&D spent inside China over the same years
    hightech_revenue_fen: int  # high-tech products/services revenue, most recent year
    ip_class1: int
    ip_class2: int
    major_incident: bool


@dataclass(frozen=True)
class RuleResult:
    """The verdict of one rule with a reason for people, in Chinese and English."""

    code: str
    passed: bool
    reason_zh: str
    reason_en: str


def _percent(numerator: int, denominator: int) -> str:
    # Truncate rather than round, so a failing 4.999% never prints as "5.00%".
    return str((Decimal(numerator) * 100 / Decimal(denominator)).quantize(_CENT, ROUND_DOWN))


@lru_cache(maxsize=256)  # a batch shares a handful of application dates
def _one_year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # Feb 29 has no twin in the previous year
        return day.replace(year=day.year - 1, day=28)


# --- the conditions, each defined once ----------------------------------------------


def _registration_ok(registered_on: date, applied_on: date) -> bool:
    return registered_on <= _one_year_before(applied_on)


def _ip_ok(ip_class1: int, ip_class2: int) -> bool:
    return ip_class1 + ip_class2 >= 1


def _field_ok(tech_field: str) -> bool:
    return tech_field in _TECH_FIELD_VALUES


def _staff_counts_ok(staff_total: int, staff_tech: int) -> bool:
    return staff_total > 0 and 0 <= staff_tech <= staff_total


def _staff_share_ok(staff_total: int, staff_tech: int) -> bool:
    return staff_tech * 100 >= staff_total * STAFF_TECH_MIN_PERCENT


def _rd_shape_ok(revenue_fen: tuple[int, ...], rd_fen: tuple[int, ...], domestic: int) -> bool:
    """The figures R5 can judge at all (``_rd_shape_problem`` says what is wrong)."""
    years = len(revenue_fen)
    return (
        0 < years <= MAX_FISCAL_YEARS
        and len(rd_fen) == years
        and domestic >= 0
        and min(revenue_fen) >= 0
        and min(rd_fen) >= 0
        and domestic <= sum(rd_fen)
        and sum(revenue_fen) != 0
    )


def _rd_ratio_ok(rd: int, revenue: int, threshold_percent: int) -> bool:
    return rd * 100 >= revenue * threshold_percent


def _rd_domestic_ok(domestic: int, rd: int) -> bool:
    return domestic * 100 >= rd * RD_DOMESTIC_MIN_PERCENT


def _hightech_base_ok(revenue_fen: tuple[int, ...]) -> bool:
    return bool(revenue_fen) and revenue_fen[0] > 0


def _hightech_ok(hightech_revenue_fen: int, recent_revenue_fen: int) -> bool:
    return hightech_revenue_fen * 100 >= recent_revenue_fen * HIGHTECH_REVENUE_MIN_PERCENT


def passes_formal_check(f: Figures) -> bool:
    """True exactly when ``formal_check(f)`` has no failed rule; integers only, no reasons."""
    if not (
        _registration_ok(f.registered_on, f.applied_on)
        and _ip_ok(f.ip_class1, f.ip_class2)
        and _field_ok(f.tech_field)
        and _staff_counts_ok(f.staff_total, f.staff_tech)
        and _staff_share_ok(f.staff_total, f.staff_tech)
        and not f.major_incident
        and _rd_shape_ok(f.revenue_fen, f.rd_fen, f.rd_domestic_fen)
        and _hightech_base_ok(f.revenue_fen)
        and _hightech_ok(f.hightech_revenue_fen, f.revenue_fen[0])
    ):
        return False
    rd, revenue = sum(f.rd_fen), sum(f.revenue_fen)
    # With no R&D the ratio has already failed (revenue > 0), as in check_rd.
    return _rd_ratio_ok(rd, revenue, rd_threshold_percent(f.revenue_fen[0])) and (
        _rd_domestic_ok(f.rd_domestic_fen, rd)
    )


# --- the rules, with their reasons ---------------------------------------------------


def check_registration(f: Figures) -> RuleResult:
    """R1: registered at least one calendar year before the application date."""
    passed = _registration_ok(f.registered_on, f.applied_on)
    verdict_zh = "满一年" if passed else "不满一年"
    verdict_en = "at least" if passed else "less than"
    return RuleResult(
        "R1_REGISTRATION",
        passed,
        f"注册成立于 {f.registered_on.isoformat()}，至申报日 {f.applied_on.isoformat()} "
        f"{verdict_zh}",
        f"registered on {f.registered_on.isoformat()}, {verdict_en} one year before "
        f"the application date {f.applied_on.isoformat()}",
    )


def check_ip(f: Figures) -> RuleResult:
    """R2: owns at least one class I or class II IP right."""
    total = f.ip_class1 + f.ip_class2
    if _ip_ok(f.ip_class1, f.ip_class2):
        return RuleResult(
            "R2_IP",
            True,
            f"拥有知识产权 {total} 项（Ⅰ类 {f.ip_class1} 项，Ⅱ类 {f.ip_class2} 项）",
            f"owns {total} IP rights (class I: {f.ip_class1}, class II: {f.ip_class2})",
        )
    return RuleResult(
        "R2_IP",
        False,
        "未拥有支持主要产品（服务）的Ⅰ类或Ⅱ类知识产权",
        "owns no class I or class II IP right supporting its core products or services",
    )


def check_field(f: Figures) -> RuleResult:
    """R3: core technology lies in one of the 8 national key fields."""
    if _field_ok(f.tech_field):
        return RuleResult(
            "R3_FIELD",
            True,
            f"技术领域「{f.tech_field}」属于国家重点支持的高新技术领域",
            f"technical field '{f.tech_field}' is one of the national key fields",
        )
    return RuleResult(
        "R3_FIELD",
        False,
        f"技术领域「{f.tech_field}」不属于国家重点支持的高新技术领域",
        f"technical field '{f.tech_field}' is not one of the national key fields",
    )


def check_staff(f: Figures) -> RuleResult:
    """R4: S&T staff are at least 10% of all staff."""
    if f.staff_total <= 0:
        return RuleResult(
            "R4_STAFF",
            False,
            f"职工总数为 {f.staff_total}，无法计算科技人员占比",
            f"total staff is {f.staff_total}; the S&T staff share cannot be computed",
        )
    if not _staff_counts_ok(f.staff_total, f.staff_tech):
        return RuleResult(
            "R4_STAFF",
            False,
            f"科技人员数 {f.staff_tech} 不在 0 与职工总数 {f.staff_total} 之间",
            f"S&T staff {f.staff_tech} is not between 0 and total staff {f.staff_total}",
        )
    share = _percent(f.staff_tech, f.staff_total)
    passed = _staff_share_ok(f.staff_total, f.staff_tech)
    zh = "不低于" if passed else "低于"
    en = "at least" if passed else "below"
    return RuleResult(
        "R4_STAFF",
        passed,
        f"科技人员占职工总数 {share}%，{zh} {STAFF_TECH_MIN_PERCENT}%",
        f"S&T staff are {share}% of all staff, {en} {STAFF_TECH_MIN_PERCENT}%",
    )


def rd_threshold_percent(recent_revenue_fen: int) -> int:
    """Minimum R&D share (percent) for a firm with this most-recent-year revenue."""
    for upper_fen, percent in RD_TIERS:
        if recent_revenue_fen <= upper_fen:
            return percent
    return RD_TOP_TIER_PERCENT


def _rd_shape_problem(f: Figures) -> tuple[str, str] | None:
    # Names the first thing ``_rd_shape_ok`` refuses; the two are tested to agree.
    years = len(f.revenue_fen)
    if years == 0 or len(f.rd_fen) == 0:
        return "未提供销售收入或研发费用数据", "no revenue or R&D figures were given"
    if len(f.rd_fen) != years:
        return (
            f"销售收入有 {years} 年数据而研发费用有 {len(f.rd_fen)} 年，年数不一致",
            f"revenue covers {years} years but R&D covers {len(f.rd_fen)}; they must match",
        )
    if years > MAX_FISCAL_YEARS:
        return (
            f"提供了 {years} 年数据，最多应为近三年",
            f"{years} years of figures were given; at most the last 3 are expected",
        )
    if any(v < 0 for v in (*f.revenue_fen, *f.rd_fen, f.rd_domestic_fen)):
        return "销售收入或研发费用存在负数", "revenue or R&D figures contain a negative amount"
    if f.rd_domestic_fen > sum(f.rd_fen):
        return (
            "境内研发费用大于研发费用总额",
            "R&D spent inside China exceeds total R&D expense",
        )
    if sum(f.revenue_fen) == 0:
        return (
            f"{_YEARS_ZH[years]}销售收入合计为 0，无法计算研发费用占比",
            f"revenue over {_YEARS_EN[years]} totals 0; the R&D share cannot be computed",
        )
    return None


def check_rd(f: Figures) -> RuleResult:
    """R5: R&D share of revenue meets the revenue tier, and ≥ 60% of R&D is spent in China."""
    problem = _rd_shape_problem(f)
    if problem is not None:
        return RuleResult("R5_RD", False, *problem)

    years = len(f.revenue_fen)
    revenue, rd = sum(f.revenue_fen), sum(f.rd_fen)
    threshold = rd_threshold_percent(f.revenue_fen[0])
    tier_zh, tier_en = _TIER_LABELS[threshold]
    ratio_ok = _rd_ratio_ok(rd, revenue, threshold)
    ratio = _percent(rd, revenue)
    checks = [
        (
            ratio_ok,
            f"{_YEARS_ZH[years]}研发费用占比 {ratio}%，{'不低于' if ratio_ok else '低于'} "
            f"{threshold}%（{tier_zh}）",
            f"R&D expense over {_YEARS_EN[years]} is {ratio}% of revenue, "
            f"{'at least' if ratio_ok else 'below'} {threshold}% ({tier_en})",
        )
    ]
    # With no R&D at all the ratio has already failed and a domestic share means nothing.
    if rd > 0:
        domestic_ok = _rd_domestic_ok(f.rd_domestic_fen, rd)
        domestic = _percent(f.rd_domestic_fen, rd)
        checks.append(
            (
                domestic_ok,
                f"境内研发费用占比 {domestic}%，{'不低于' if domestic_ok else '低于'} "
                f"{RD_DOMESTIC_MIN_PERCENT}%",
                f"R&D spent inside China is {domestic}% of all R&D, "
                f"{'at least' if domestic_ok else 'below'} {RD_DOMESTIC_MIN_PERCENT}%",
            )
        )

    passed = all(ok for ok, _, _ in checks)
    # A failing reason names only what failed, but all of it.
    shown = checks if passed else [c for c in checks if not c[0]]
    return RuleResult(
        "R5_RD",
        passed,
        "，且".join(zh for _, zh, _ in shown),
        ", and ".join(en for _, _, en in shown),
    )


def check_hightech_revenue(f: Figures) -> RuleResult:
    """R6: high-tech products/services bring ≥ 60% of the most recent year's revenue."""
    if not _hightech_base_ok(f.revenue_fen):
        return RuleResult(
            "R6_HIGHTECH_REVENUE",
            False,
            "最近一年收入为 0 或缺失，无法计算高新技术产品（服务）收入占比",
            "most recent year revenue is 0 or missing; the high-tech revenue share "
            "cannot be computed",
        )
    recent = f.revenue_fen[0]
    passed = _hightech_ok(f.hightech_revenue_fen, recent)
    share = _percent(f.hightech_revenue_fen, recent)
    zh = "不低于" if passed else "低于"
    en = "at least" if passed else "below"
    return RuleResult(
        "R6_HIGHTECH_REVENUE",
        passed,
        f"最近一年高新技术产品（服务）收入占比 {share}%，{zh} {HIGHTECH_REVENUE_MIN_PERCENT}%",
        f"high-tech products/services are {share}% of the most recent year's revenue, "
        f"{en} {HIGHTECH_REVENUE_MIN_PERCENT}%",
    )


def check_score(score: Decimal | int | None) -> RuleResult:
    """R7: the expert panel's innovation score is at least 71 of 100."""
    if score is None:
        return RuleResult("R7_SCORE", False, "尚无专家评分", "no expert score yet")
    if (isinstance(score, Decimal) and not score.is_finite()) or not 0 <= score <= SCORE_MAX:
        return RuleResult(
            "R7_SCORE",
            False,
            f"创新能力评价得分 {score} 不在 0 至 {SCORE_MAX} 分之间",
            f"innovation score {score} is not between 0 and {SCORE_MAX}",
        )
    passed = score >= SCORE_PASS
    # Truncated like percentages: a mean of 70.999 must not print as 71.00.
    shown = Decimal(score).quantize(_CENT, ROUND_DOWN)
    zh = "不低于" if passed else "低于"
    en = "at least" if passed else "below"
    return RuleResult(
        "R7_SCORE",
        passed,
        f"创新能力评价得分 {shown} 分，{zh} {SCORE_PASS} 分",
        f"innovation score is {shown}, {en} {SCORE_PASS}",
    )


def check_incident(f: Figures) -> RuleResult:
    """R8: no major safety or quality accident or serious environmental violation."""
    if f.major_incident:
        return RuleResult(
            "R8_INCIDENT",
            False,
            "申请认定前一年内发生过重大安全、重大质量事故或严重环境违法行为",
            "a major safety or quality accident or a serious environmental violation "
            "occurred in the year before applying",
        )
    return RuleResult(
        "R8_INCIDENT",
        True,
        "申请认定前一年内未发生重大安全、重大质量事故或严重环境违法行为",
        "no major safety or quality accident or serious environmental violation "
        "in the year before applying",
    )


# R7 is left out: the score only exists after the expert review, not at formal check.
FORMAL_RULES: tuple[Callable[[Figures], RuleResult], ...] = (
    check_registration,
    check_ip,
    check_field,
    check_staff,
    check_rd,
    check_hightech_revenue,
    check_incident,
)


def formal_check(f: Figures) -> list[RuleResult]:
    """Every rule but the expert score (R7), in code order."""
    return [rule(f) for rule in FORMAL_RULES]


def failed_reasons(results: Iterable[RuleResult], language: str = "zh") -> str:
    """The reasons of the failed rules joined into one line; "" when all passed."""
    if language == "zh":
        return "；".join(r.reason_zh for r in results if not r.passed)
    if language == "en":
        return "; ".join(r.reason_en for r in results if not r.passed)
    raise ValueError(f"unknown language {language!r}; expected 'zh' or 'en'")
