"""Big-data screening (大数据筛查): flags that send an application to on-site inspection.

A flag never rejects; it only names the evidence an inspector should look at. One call
screens a whole batch with dicts and Counters, so 100,000 applications cost O(n), never
a pairwise comparison. Money is integer fen and every ratio is compared by integer
cross-multiplication, so "exactly on the threshold" means exactly.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

FLAG_CODES = (
    "DUPLICATE_CREDIT_CODE",
    "SHARED_IP",
    "IDENTICAL_FIGURES",
    "ON_THRESHOLD",
    "INTERMEDIARY",
)

_LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "DUPLICATE_CREDIT_CODE": "统一社会信用代码重复申报",
        "SHARED_IP": "知识产权被多家企业申报",
        "IDENTICAL_FIGURES": "多家企业申报数据完全相同",
        "ON_THRESHOLD": "指标恰好处于认定门槛",
        "INTERMEDIARY": "中介机构代理量大且通过率低",
    },
    "en": {
        "DUPLICATE_CREDIT_CODE": "Credit code applied more than once",
        "SHARED_IP": "IP claimed by several enterprises",
        "IDENTICAL_FIGURES": "Identical figures across enterprises",
        "ON_THRESHOLD": "Ratio sitting exactly on a threshold",
        "INTERMEDIARY": "High-volume intermediary with a low pass rate",
    },
}

# R&D intensity tiers (《高新技术企业认定管理办法》第十一条): the threshold depends on
# the most recent year's sales revenue. 1 CNY = 100 fen.
_TIER_50M_FEN = 50_000_000 * 100
_TIER_200M_FEN = 200_000_000 * 100
_BP = 10_000  # basis points in a whole; thresholds below are in basis points
_RD_SMALL_BP, _RD_MEDIUM_BP, _RD_LARGE_BP = 500, 400, 300
_RD_DOMESTIC_BP = 6_000
_TECH_STAFF_BP = 1_000
_HIGHTECH_REVENUE_BP = 6_000

# How many other enterprises a reason names; the rest is a count, so a reason stays short
# even when a template was used by thousands.
_NAMED_IN_REASON = 3


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)  # slots: a batch holds 100,000 of these
class ScreeningInput:
    application_id: int
    credit_code: str
    ip_numbers: tuple[str, ...]  # IP registration numbers claimed
    intermediary: str | None  # 中介机构 name, None/"" when none
    staff_total: int
    staff_tech: int
    revenue_fen: tuple[int, ...]  # most recent first, 1-3 years
    rd_fen: tuple[int, ...]
    rd_domestic_fen: int
    hightech_revenue_fen: int


@dataclass(frozen=True)
class Flag:
    code: str  # one of FLAG_CODES
    reason_zh: str
    reason_en: str


@dataclass(frozen=True)
class ScreeningPolicy:
    # An agency with at least this many applicants in the batch whose historical pass rate
    # is below intermediary_max_pass_rate_percent flags all its applicants.
    intermediary_min_applicants: int = 20
    intermediary_max_pass_rate_percent: int = 60
    # 0 flags only ratios exactly on a threshold; 5 also flags up to 0.05 points above.
    threshold_margin_basis_points: int = 0

    def __post_init__(self) -> None:
        if self.intermediary_min_applicants < 1:
            raise ValueError("intermediary_min_applicants must be at least 1")
        if not 0 <= self.intermediary_max_pass_rate_percent <= 100:
            raise ValueError("intermediary_max_pass_rate_percent must be within 0..100")
        if self.threshold_margin_basis_points < 0:
            raise ValueError("threshold_margin_basis_points must not be negative")


DEFAULT_POLICY = ScreeningPolicy()


def screen(
    batch: Sequence[ScreeningInput],
    *,
    other_open_credit_codes: Collection[str] = (),
    intermediary_pass_rates: Mapping[str, tuple[int, int]] | None = None,
    policy: ScreeningPolicy = DEFAULT_POLICY,
) -> dict[int, list[Flag]]:
    """Flag a whole batch; only flagged application ids appear, flags in FLAG_CODES order."""
    ids = Counter(app.application_id for app in batch)
    repeated = sorted(app_id for app_id, n in ids.items() if n > 1)
    if repeated:
        # Results are keyed by id, so a repeated id would silently merge two applications.
        raise ValueError(f"application ids appear more than once in the batch: {repeated}")

    # Each credit code is normalised once here; the checks below only compare them.
    codes = [_normalise_number(app.credit_code) for app in batch]
    # Listed in FLAG_CODES order, which is the order flags are reported in.
    found = (
        _duplicate_credit_codes(batch, codes, other_open_credit_codes),
        _shared_ip(batch, codes),
        _identical_figures(batch, codes),
        _on_threshold(batch, policy),
        _intermediary(batch, codes, intermediary_pass_rates or {}, policy),
    )
    result: dict[int, list[Flag]] = {}
    for app in batch:
        flags = [by_id[app.application_id] for by_id in found if app.application_id in by_id]
        if flags:
            result[app.application_id] = flags
    return result


def flag_codes(flags: Iterable[Flag]) -> str:
    """Comma-joined codes in FLAG_CODES order, "" for none (the stored column value)."""
    present = {flag.code for flag in flags}
    unknown = present.difference(FLAG_CODES)
    if unknown:
        raise ValueError(f"unknown screening flag codes: {sorted(unknown)}")
    return ",".join(code for code in FLAG_CODES if code in present)


def describe(codes: str, language: str = "zh") -> list[str]:
    """Human label for each stored code."""
    if language not in _LABELS:
        raise ValueError(f"unsupported language {language!r}; use one of {sorted(_LABELS)}")
    labels = _LABELS[language]
    # A code this version does not know (an older or newer row) is shown as stored rather
    # than breaking a report over one row.
    return [labels.get(code, code) for code in (c.strip() for c in codes.split(",")) if code]


def _normalise_number(value: str) -> str:
    # Full-width characters and stray spaces come from Chinese input methods; without
    # folding them one registration number would hide as several.
    if value.isascii() and value.isprintable() and " " not in value:
        # NFKC leaves ASCII as it is and there is no whitespace to drop: the common case,
        # which keeps the caller's string when it is already upper case.
        folded = value.upper()
        return value if folded == value else folded
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def _shared_keys(pairs: Iterable[tuple[K, str]]) -> dict[K, set[str]]:
    """Each key that two or more distinct enterprises share, with those enterprises.

    Only shared keys get a set: a batch of 100,000 has few, and a set per key was most
    of screening's memory.
    """
    first: dict[K, str] = {}
    shared: dict[K, set[str]] = {}
    for key, code in pairs:
        seen = first.setdefault(key, code)
        if seen != code:
            group = shared.get(key)
            if group is None:
                shared[key] = {seen, code}
            else:
                group.add(code)
    return shared


def _normalise_name(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).split())


def _others(group: list[str], own: str) -> tuple[int, list[str]]:
    """How many other enterprises share a sorted group, and the first few of them."""
    named = [code for code in group[: _NAMED_IN_REASON + 1] if code != own][:_NAMED_IN_REASON]
    return len(group) - 1, named


def _duplicate_credit_codes(
    batch: Sequence[ScreeningInput], codes: Sequence[str], other_open: Collection[str]
) -> dict[int, Flag]:
    in_batch = Counter(codes)
    elsewhere = {_normalise_number(code) for code in other_open}
    flags: dict[int, Flag] = {}
    for app, code in zip(batch, codes, strict=True):
        repeated = in_batch[code] > 1
        if not repeated and code not in elsewhere:
            continue
        zh: list[str] = []
        en: list[str] = []
        if repeated:
            zh.append(f"统一社会信用代码 {code} 在本批次中申报 {in_batch[code]} 次")
            en.append(f"credit code {code} appears {in_batch[code]} times in this batch")
        if code in elsewhere:
            zh.append(f"统一社会信用代码 {code} 在本年度其他批次已有在办申请")
            en.append(f"credit code {code} has an open application in another batch this year")
        flags[app.application_id] = Flag("DUPLICATE_CREDIT_CODE", "；".join(zh), "; ".join(en))
    return flags


def _shared_ip(batch: Sequence[ScreeningInput], codes: Sequence[str]) -> dict[int, Flag]:
    claimed: list[tuple[str, ...]] = []
    for app in batch:
        distinct = {_normalise_number(n) for n in app.ip_numbers}
        distinct.discard("")
        claimed.append(tuple(distinct))
    # Distinct enterprises, so one enterprise filing twice is left to the duplicate flag.
    claimants = _shared_keys(
        (number, code) for numbers, code in zip(claimed, codes, strict=True) for number in numbers
    )
    if not claimants:
        return {}

    flags: dict[int, Flag] = {}
    for app, numbers in zip(batch, claimed, strict=True):
        if claimants.keys().isdisjoint(numbers):
            continue
        shared = sorted(
            ((len(claimants[n]), n) for n in numbers if n in claimants),
            key=lambda pair: (-pair[0], pair[1]),
        )
        count, number = shared[0]
        zh = f"知识产权 {number} 同时被 {count} 家企业申报"
        en = f"IP {number} is claimed by {count} enterprises"
        if len(shared) > 1:
            zh += f"；另有 {len(shared) - 1} 项知识产权与其他企业共用"
            en += f"; {len(shared) - 1} more of its IP numbers are shared with other enterprises"
        flags[app.application_id] = Flag("SHARED_IP", zh, en)
    return flags


_Figures = tuple[int, int, tuple[int, ...], tuple[int, ...], int, int]


def _figures(app: ScreeningInput) -> _Figures:
    return (
        app.staff_total,
        app.staff_tech,
        app.revenue_fen,
        app.rd_fen,
        app.rd_domestic_fen,
        app.hightech_revenue_fen,
    )


def _identical_figures(batch: Sequence[ScreeningInput], codes: Sequence[str]) -> dict[int, Flag]:
    # Hashing the whole vector finds templated applications in one pass.
    shared = _shared_keys((_figures(app), code) for app, code in zip(batch, codes, strict=True))
    if not shared:
        return {}
    # Sorted once per group, so naming a few others stays O(g log g), not O(g²).
    groups = {key: sorted(found) for key, found in shared.items()}

    flags: dict[int, Flag] = {}
    for app, code in zip(batch, codes, strict=True):
        group = groups.get(_figures(app))
        if group is None:
            continue
        count, named = _others(group, code)
        more = count > len(named)
        flags[app.application_id] = Flag(
            "IDENTICAL_FIGURES",
            f"人员与财务数据与另外 {count} 家企业完全相同"
            f"（{'、'.join(named)}{' 等' if more else ''}）",
            f"staff and financial figures identical to {count} other enterprises "
            f"({', '.join(named)}{', ...' if more else ''})",
        )
    return flags


def _percent(numerator: int, denominator: int) -> str:
    basis_points = numerator * _BP // denominator
    return f"{basis_points // 100}.{basis_points % 100:02d}%"


# The ratios checked against their thresholds, in the order a reason lists them.
_DOMESTIC_RD = ("境内研发费用占比", "domestic R&D share")
_TECH_STAFF = ("科技人员占职工总数比例", "S&T staff share")
_RD_REVENUE = ("研发费用占销售收入比例", "R&D to revenue")
_HIGHTECH = ("高新技术产品（服务）收入占比", "high-tech revenue share")


def _rd_threshold_bp(latest_revenue_fen: int) -> int:
    if latest_revenue_fen <= _TIER_50M_FEN:
        return _RD_SMALL_BP
    if latest_revenue_fen <= _TIER_200M_FEN:
        return _RD_MEDIUM_BP
    return _RD_LARGE_BP


def _ratios(app: ScreeningInput) -> list[tuple[tuple[str, str], int, int, int]]:
    """(names, numerator, denominator, threshold in basis points) of each ratio."""
    rd_total = sum(app.rd_fen)
    ratios = [
        (_DOMESTIC_RD, app.rd_domestic_fen, rd_total, _RD_DOMESTIC_BP),
        (_TECH_STAFF, app.staff_tech, app.staff_total, _TECH_STAFF_BP),
    ]
    if app.revenue_fen:
        latest = app.revenue_fen[0]
        ratios += [
            (_RD_REVENUE, rd_total, sum(app.revenue_fen), _rd_threshold_bp(latest)),
            (_HIGHTECH, app.hightech_revenue_fen, latest, _HIGHTECH_REVENUE_BP),
        ]
    return ratios


def _on_threshold(batch: Sequence[ScreeningInput], policy: ScreeningPolicy) -> dict[int, Flag]:
    margin = policy.threshold_margin_basis_points
    flags: dict[int, Flag] = {}
    for app in batch:
        zh: list[str] = []
        en: list[str] = []
        for (name_zh, name_en), numerator, denominator, threshold_bp in _ratios(app):
            # A zero or negative base has no meaningful ratio; eligibility deals with it.
            if denominator <= 0:
                continue
            scaled = numerator * _BP
            if threshold_bp * denominator <= scaled <= (threshold_bp + margin) * denominator:
                value = _percent(numerator, denominator)
                limit = _percent(threshold_bp, _BP)
                zh.append(f"{name_zh} {value}（门槛 {limit}）")
                en.append(f"{name_en} {value} (threshold {limit})")
        if zh:
            flags[app.application_id] = Flag(
                "ON_THRESHOLD",
                "指标恰好处于认定门槛：" + "；".join(zh),
                "on threshold: " + "; ".join(en),
            )
    return flags


def _intermediary(
    batch: Sequence[ScreeningInput],
    codes: Sequence[str],
    pass_rates: Mapping[str, tuple[int, int]],
    policy: ScreeningPolicy,
) -> dict[int, Flag]:
    history = {_normalise_name(name): rate for name, rate in pass_rates.items()}
    # Thousands of applicants share a handful of agency names: normalise each name once.
    names: dict[str, str] = {}
    applicants: defaultdict[str, set[str]] = defaultdict(set)
    for app, code in zip(batch, codes, strict=True):
        if app.intermediary:
            name = names.get(app.intermediary)
            if name is None:
                name = names[app.intermediary] = _normalise_name(app.intermediary)
            if name:
                applicants[name].add(code)

    suspicious: dict[str, Flag] = {}
    for name, found in applicants.items():
        count = len(found)
        if count < policy.intermediary_min_applicants:
            continue
        passed, decided = history.get(name, (0, 0))
        if decided > 0:
            if passed * 100 >= policy.intermediary_max_pass_rate_percent * decided:
                continue
            rate = _percent(passed, decided)
            suspicious[name] = Flag(
                "INTERMEDIARY",
                f"中介机构 {name} 本批代理 {count} 家企业，历史通过率 {rate}（{passed}/{decided}）",
                f"intermediary {name} represents {count} enterprises in this batch, "
                f"past pass rate {rate} ({passed}/{decided})",
            )
        elif count >= 2 * policy.intermediary_min_applicants:
            # Without history a low pass rate cannot be shown, so only sheer volume counts.
            suspicious[name] = Flag(
                "INTERMEDIARY",
                f"中介机构 {name} 本批代理 {count} 家企业，无历史通过率",
                f"intermediary {name} represents {count} enterprises in this batch, "
                "no past pass rate",
            )
    if not suspicious:
        return {}
    return {
        app.application_id: suspicious[names[app.intermediary]]
        for app in batch
        if app.intermediary and names[app.intermediary] in suspicious
    }
