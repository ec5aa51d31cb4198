"""What each notice says, as frozen dataclasses of plain values that callers fill from queries.

A district notice carries exactly one district: a liaison only ever hears about his or her
own district. Derived numbers (percentages, gaps, ranks) are properties computed here once,
so the subject, the chart, the text bar and the ranking can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from hnte.models.stages import Stage, find_transition

LIST_LIMIT = 50
"""Longest list of enterprises a notice prints; the total says how many there are."""


def format_percent(percent: float) -> str:
    """62.48 -> "62.4%", 62.0 -> "62%"; rounded down so 99.96 never reads as done."""
    shown = math.floor(percent * 10 + 1e-9) / 10
    return f"{shown:.1f}".removesuffix(".0") + "%"


# --- chart ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressBar:
    """One bar of a progress-against-target chart.

    ``percent`` is the true value (above 100 or below 0 when that is the truth); ``width``
    is what the chart draws, 0–100. A target of zero or below (a district allowed to
    shrink) counts as met once the value reaches it.
    """

    label: str
    value: float
    target: float
    tone: str = "main"  # "main" | "alert" | "time": the fill colour
    show_counts: bool = True  # False for bars whose value is itself a percentage

    @property
    def percent(self) -> float:
        if self.target <= 0:
            return 100.0 if self.value >= self.target else 0.0
        return self.value * 100 / self.target

    @property
    def percent_text(self) -> str:
        return format_percent(self.percent)

    @property
    def width(self) -> int:
        return max(0, min(100, math.floor(self.percent + 1e-9)))

    def text_bar(self, cells: int = 20) -> str:
        """The same bar for the plain-text part: ``████████████░░░░░░░░ 62%``."""
        filled = self.width * cells // 100
        return "█" * filled + "░" * (cells - filled) + " " + self.percent_text


_BAR_LABELS = {
    "net": ("净增完成", "Net increase"),
    "projected": ("全年预计", "Projected for the year"),
    "stock": ("存量", "Stock"),
    "time": ("时间进度", "Year elapsed"),
}


def _bar_label(key: str, language: str) -> str:
    zh, en = _BAR_LABELS[key]
    return en if language == "en" else zh


# --- shared rows ---------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A district's (or the city's) numbers against its yearly target.

    ``projected_net_increase`` and the ``behind``/``late`` flags come from the target
    rules, which know the pass rates and the tolerance; the rest is arithmetic done here.
    """

    net_increase_target: int
    stock_goal: int
    current_stock: int
    net_increase: int
    projected_net_increase: int
    year_elapsed_percent: float
    behind: bool  # the projection falls short of the target
    late: bool  # progress trails the share of the year elapsed

    @property
    def progress_percent(self) -> float:
        """Net increase so far as a share of the net increase target."""
        return ProgressBar("", self.net_increase, self.net_increase_target).percent

    @property
    def gap(self) -> int:
        """Still to achieve: target minus net increase so far (never below 0)."""
        return max(0, self.net_increase_target - self.net_increase)

    @property
    def projected_gap(self) -> int:
        """Shortfall of the projection against the target (never below 0)."""
        return max(0, self.net_increase_target - self.projected_net_increase)

    def bars(self, language: str = "zh") -> tuple[ProgressBar, ...]:
        def label(key: str) -> str:
            return _bar_label(key, language)

        alert = "alert" if self.behind or self.late else "main"
        return (
            ProgressBar(label("net"), self.net_increase, self.net_increase_target, alert),
            ProgressBar(
                label("projected"), self.projected_net_increase, self.net_increase_target,
                "alert" if self.behind else "main",
            ),
            ProgressBar(label("stock"), self.current_stock, self.stock_goal),
            ProgressBar(label("time"), self.year_elapsed_percent, 100, "time", False),
        )


@dataclass(frozen=True)
class EnterpriseLine:
    credit_code: str
    name: str


@dataclass(frozen=True)
class ExpiringCertificate:
    credit_code: str
    name: str
    expires_on: date


@dataclass(frozen=True)
class CertifiedEnterprise:
    credit_code: str
    name: str
    certificate_number: str


@dataclass(frozen=True)
class StageCount:
    stage: Stage
    count: int

    def label(self, language: str = "zh") -> str:
        return Stage(self.stage).label(language)


@dataclass(frozen=True)
class ChangeCount:
    """How many applications made one move of the stage table this week."""

    source: Stage
    target: Stage
    count: int

    def label(self, language: str = "zh") -> str:
        transition = find_transition(Stage(self.source), Stage(self.target))
        if transition is not None:
            return transition.label_en if language == "en" else transition.label_zh
        source, target = Stage(self.source).label(language), Stage(self.target).label(language)
        return f"{source} → {target}"


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True)
class DistrictStanding:
    district_name: str
    district_code: str
    progress: Progress


@dataclass(frozen=True)
class RankingRow:
    rank: int
    district_name: str
    district_code: str
    progress: Progress


def _check_list(name: str, items: tuple[object, ...], total: int) -> None:
    if len(items) > LIST_LIMIT:
        raise ValueError(f"{name}: {len(items)} lines, at most {LIST_LIMIT} are printed")
    if total < len(items):
        raise ValueError(f"{name}: total {total} is below the {len(items)} lines listed")


# --- notices -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Notice:
    city_name: str
    year: int
    as_of: date


@dataclass(frozen=True, kw_only=True)
class DistrictNotice(Notice):
    district_name: str
    district_code: str


@dataclass(frozen=True, kw_only=True)
class _WaitingAtStage(DistrictNotice):
    batch_title: str
    stage: Stage
    deadline: date
    waiting_total: int
    waiting: tuple[EnterpriseLine, ...] = ()  # the first LIST_LIMIT of waiting_total

    def __post_init__(self) -> None:
        _check_list("waiting", self.waiting, self.waiting_total)

    def stage_label(self, language: str = "zh") -> str:
        return Stage(self.stage).label(language)


@dataclass(frozen=True, kw_only=True)
class DeadlineReminder(_WaitingAtStage):
    working_days_left: int


@dataclass(frozen=True, kw_only=True)
class OverdueNotice(_WaitingAtStage):
    """Sent to the liaison with the city operator in copy."""

    working_days_overdue: int


@dataclass(frozen=True, kw_only=True)
class BehindTarget(DistrictNotice):
    """催办通知: the district is behind its target, late against the calendar, or both."""

    progress: Progress
    expiring_total: int  # certificates expiring this year not yet renewed
    expiring: tuple[ExpiringCertificate, ...] = ()

    def __post_init__(self) -> None:
        _check_list("expiring", self.expiring, self.expiring_total)


@dataclass(frozen=True, kw_only=True)
class WeeklyDigest(DistrictNotice):
    week_start: date
    progress: Progress
    pipeline: tuple[StageCount, ...]  # in PIPELINE order
    changes: tuple[ChangeCount, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BatchResults(DistrictNotice):
    batch_title: str
    certified_count: int
    rejected_count: int
    in_progress_count: int
    top_rejection_reasons: tuple[ReasonCount, ...] = ()
    certified: tuple[CertifiedEnterprise, ...] = ()  # all of the district's, no cap


@dataclass(frozen=True, kw_only=True)
class CitySummary(Notice):
    """To the city operators: the city's numbers and every district ranked."""

    progress: Progress
    districts: tuple[DistrictStanding, ...] = field(default=())

    @property
    def ranking(self) -> tuple[RankingRow, ...]:
        """Districts by completion percent, best first; equal percents share a rank."""
        ordered = sorted(
            self.districts, key=lambda d: (-d.progress.progress_percent, d.district_code)
        )
        rows: list[RankingRow] = []
        for i, standing in enumerate(ordered):
            tied = rows and rows[-1].progress.progress_percent == standing.progress.progress_percent
            rank = rows[-1].rank if tied else i + 1
            rows.append(
                RankingRow(rank, standing.district_name, standing.district_code, standing.progress)
            )
        return tuple(rows)

    @property
    def lagging(self) -> tuple[DistrictStanding, ...]:
        """Districts behind their target or late against the calendar, in file order."""
        return tuple(d for d in self.districts if d.progress.behind or d.progress.late)

    def ranking_bars(self) -> tuple[ProgressBar, ...]:
        """One bar per district, in ranking order."""
        return tuple(
            ProgressBar(
                row.district_name, row.progress.net_increase, row.progress.net_increase_target,
                "alert" if row.progress.behind or row.progress.late else "main",
            )
            for row in self.ranking
        )
