"""The report as one self-contained HTML page: tables and inline SVG charts, no scripts.

Charts are computed here as shapes (rectangles, lines, labels) and drawn by the
template, so every text in them, a district name included, goes through Jinja's
autoescape like the rest of the page. Nothing is fetched: no scripts, fonts, images or
stylesheets from anywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from hnte.models.stages import Stage
from hnte.reports.data import Pipeline, ReportData, SummaryRow
from hnte.reports.xlsx import display_width

# Loaded by path next to this module (see the pyproject package-data line for templates).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

NET_COLOUR, TARGET_COLOUR = "#2e75b6", "#b4b4b4"
STAGE_COLOURS: dict[Stage, str] = {
    Stage.SUBMITTED: "#deebf7",
    Stage.DISTRICT_REVIEW: "#c6dbef",
    Stage.FORMAL_CHECK: "#9ecae1",
    Stage.EXPERT_REVIEW: "#6baed6",
    Stage.ONSITE_INSPECTION: "#4292c6",
    Stage.APPROVAL: "#2171b5",
    Stage.PUBLIC_NOTICE: "#08519c",
    Stage.OBJECTION_REVIEW: "#f0a30a",
    Stage.CERTIFIED: "#2e8b57",
    Stage.REJECTED: "#c0392b",
    Stage.WITHDRAWN: "#8c8c8c",
}
FONT_PX = 12


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    tip: str  # shown on hover (an SVG <title>)


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    fill: str = "#333333"
    weight: str = "normal"
    rotate: float = 0.0


@dataclass(frozen=True)
class Rule:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = "#d9d9d9"


@dataclass(frozen=True)
class Chart:
    """One SVG: ``title`` names it, ``description`` says what it shows in words."""

    id: str
    width: int
    height: int
    title: str
    description: str
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    legend: list[tuple[float, float, str, str]] = field(default_factory=list)  # x, y, colour, text


def render_html(data: ReportData) -> str:
    """The whole page as a string."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            d=data,
            net_chart=net_chart(data.districts),
            pipeline_chart=pipeline_chart(data.pipeline),
            stage_colours=[STAGE_COLOURS[s] for s in data.pipeline.stages],
        )
    )


def write_html(data: ReportData, path: Path) -> Path:
    """Write the page to ``path`` (replacing it only once complete); return it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(render_html(data), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, signed=_signed, pct=_pct, px=_px, g=lambda v: f"{v:g}")
    return env


def _num(value: float) -> str:
    return f"{round(value):,}"


def _signed(value: float) -> str:
    n = round(value)
    return f"{n:+,}" if n else "0"


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _px(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# --- charts ---------------------------------------------------------------------------


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], about ``count`` of them (1, 2, 5 × 10^k)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    return [first + i * step for i in range(round((last - first) / step) + 1)]


def _text_colour(fill: str) -> str:
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 150 else "#1a1a1a"


def _legend_row(
    items: list[tuple[str, str]], x: float, y: float, width: float
) -> tuple[list[tuple[float, float, str, str]], float]:
    """Legend entries left to right, wrapping at ``width``; returns them and the next y."""
    placed, cx = [], x
    for colour, text in items:
        span = 18 + display_width(text) * FONT_PX * 0.55 + 16
        if cx + span > x + width and cx > x:
            cx, y = x, y + 20
        placed.append((cx, y, colour, text))
        cx += span
    return placed, y + 20


def net_chart(rows: tuple[SummaryRow, ...]) -> Chart:
    """Grouped columns: each district's net increase so far beside its target."""
    width, height = 960, 380
    left, right, top, bottom = 56, 16, 44, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for r in rows for v in (r.net_increase, r.target_net)]
    ticks = nice_ticks(min(0, *values), max(1, *values))
    low, high = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * plot_h

    description = "；".join(f"{r.name} 净增 {r.net_increase}，目标 {r.target_net}" for r in rows)
    chart = Chart("net-chart", width, height, "各区市净增与目标净增", description or "暂无区市")
    for t in ticks:
        chart.rules.append(Rule(left, y(t), width - right, y(t), "#e6e6e6"))
        chart.labels.append(Label(left - 6, y(t) + 4, f"{t:,.0f}", anchor="end", fill="#666666"))
    chart.rules.append(Rule(left, y(0), width - right, y(0), "#666666"))
    group = plot_w / max(len(rows), 1)
    bar = group * 0.32
    longest = max((display_width(r.name) for r in rows), default=0) * FONT_PX * 0.55
    tilt = -30.0 if longest > group - 6 else 0.0
    for i, r in enumerate(rows):
        centre = left + group * (i + 0.5)
        for offset, value, colour, kind in (
            (-bar - 1, r.net_increase, NET_COLOUR, "净增"),
            (1, r.target_net, TARGET_COLOUR, "目标净增"),
        ):
            y0, y1 = sorted((y(0), y(value)))
            chart.rects.append(
                Rect(
                    centre + offset, y0, bar, max(y1 - y0, 0.5), colour, f"{r.name} {kind} {value}"
                )
            )
            above = value >= 0
            chart.labels.append(
                Label(
                    centre + offset + bar / 2,
                    (y0 - 4) if above else (y1 + 13),
                    f"{value:,}",
                    fill="#1a1a1a" if kind == "净增" else "#666666",
                    weight="bold" if kind == "净增" else "normal",
                )
            )
        chart.labels.append(
            Label(
                centre,
                height - bottom + 20,
                r.name,
                anchor="end" if tilt else "middle",
                rotate=tilt,
            )
        )
    chart.legend.extend(
        _legend_row([(NET_COLOUR, "净增"), (TARGET_COLOUR, "目标净增")], left, 14, plot_w)[0]
    )
    return chart


def pipeline_chart(pipeline: Pipeline) -> Chart:
    """One horizontal bar per district, split by the stage its applications are in."""
    width, left, right, bar_h, gap = 960, 110, 64, 22, 8
    items = [(STAGE_COLOURS[s], s.label_zh) for s in pipeline.stages]
    legend, top = _legend_row(items, left, 14, width - left - right)
    top += 6
    rows = pipeline.rows
    height = int(top + len(rows) * (bar_h + gap) + 36)
    scale_max = max((r.total for r in rows), default=0)
    ticks = nice_ticks(0, max(scale_max, 1))
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + v / ticks[-1] * plot_w

    description = "；".join(
        f"{r.name} 共 {r.total} 件："
        + "、".join(f"{label} {n}" for label, n in zip(pipeline.labels, r.counts, strict=True) if n)
        for r in rows
    )
    chart = Chart("pipeline-chart", width, height, "各区市申报所处阶段", description or "暂无申报")
    chart.legend.extend(legend)
    bottom = top + len(rows) * (bar_h + gap)
    for t in ticks:
        chart.rules.append(Rule(x(t), top - 4, x(t), bottom, "#e6e6e6"))
        chart.labels.append(Label(x(t), bottom + 14, f"{t:,.0f}", fill="#666666"))
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        chart.labels.append(Label(left - 8, y + bar_h / 2 + 4, r.name, anchor="end"))
        start = 0
        for stage, label, n in zip(pipeline.stages, pipeline.labels, r.counts, strict=True):
            if not n:
                continue
            x0, x1 = x(start), x(start + n)
            colour = STAGE_COLOURS[stage]
            chart.rects.append(Rect(x0, y, x1 - x0, bar_h, colour, f"{r.name} · {label}：{n}"))
            if x1 - x0 >= 8 + len(str(n)) * 7:
                chart.labels.append(
                    Label((x0 + x1) / 2, y + bar_h / 2 + 4, str(n), fill=_text_colour(colour))
                )
            start += n
        chart.labels.append(
            Label(x(start) + 6, y + bar_h / 2 + 4, f"{r.total:,}", anchor="start", weight="bold")
        )
    return chart
