"""``hnte targets``: stock, net increase and year-end projection against the annual target.

Registered on the main app by ``hnte.flows.cli`` (``app.command("targets")(targets)``).

On screen it is the totals: one row per district and the city, with how many
enterprises are still to renew. The still-to-renew list itself (16,000 lines in a city
of a million certificates) is a work list, not a summary: ``--due-csv FILE`` writes it
for Excel, ``--json`` carries it in full for scripts, and ``hnte report`` puts it in the
workbook.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hnte.flows.cli_common import AsOfOpt, JsonOpt, UserError, console, engine, today
from hnte.models.targets import CityFigures, DistrictFigures, year_share

if TYPE_CHECKING:
    from hnte.models.target_queries import RenewalDue

YearOpt = Annotated[
    int | None, typer.Option("--year", "-y", help="target year (default: the city file's year)")
]
DueCsvOpt = Annotated[
    Path | None,
    typer.Option(
        "--due-csv",
        help="also write the full still-to-renew list (待重新认定名单) here, as CSV for Excel",
    ),
]


def targets(
    year: YearOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    due_csv: DueCsvOpt = None,
) -> None:
    """年度目标进度与年末预测 / stock, net increase and year-end projection vs the target."""
    from hnte.config.city import load_city
    from hnte.config.settings import get_settings
    from hnte.models.db import unit_of_work
    from hnte.models.target_queries import city_figures, still_to_renew, targets_for

    if due_csv is not None:
        _check_csv_path(due_csv)
    city = load_city(get_settings().city_file)
    year = year or city.city.year
    day = _business_day(year, as_of.date() if as_of else None)
    listed = as_json or due_csv is not None
    with unit_of_work(engine()) as session:
        if year != city.city.year and not targets_for(session, year=year):
            raise UserError(
                f"没有 {year} 年度的目标（城市配置文件为 {city.city.year} 年度）"
                f" / no targets for {year}"
            )
        # The list, when it is wanted, also gives the counts: one pass, not two.
        due = still_to_renew(session, year=year, as_of=day) if listed else None
        figures = city_figures(session, year=year, as_of=day, city=city, due=due)
    if due_csv is not None:
        _write_due_csv(due_csv, figures, due or [])
    tolerance = city.projection.late_tolerance_percent
    if as_json:
        by_district: dict[str, list[RenewalDue]] = defaultdict(list)
        for line in due or []:
            by_district[line.district_code].append(line)
        sys.stdout.write(_json_text(figures, by_district, tolerance) + "\n")
        return
    _print_table(figures, tolerance)
    _print_due_hint(figures, due_csv)


def _business_day(year: int, given: date | None) -> date:
    """``--as-of``, else today; once the year is over, its last day."""
    if given is not None:
        if given.year != year:
            raise UserError(f"统计日期 {given} 不在 {year} 年内 / --as-of must fall in {year}")
        return given
    now = today()
    if now.year > year:
        return date(year, 12, 31)
    if now.year < year:
        raise UserError(f"{year} 年尚未开始 / {year} has not begun")
    return now


def status_zh(d: DistrictFigures, as_of: date, tolerance: float) -> str:
    marks = [label for label, on in (("落后", d.behind), ("滞后", d.late(as_of, tolerance))) if on]
    return "、".join(marks) or "正常"


def _print_table(figures: CityFigures, tolerance: float) -> None:
    from rich.table import Table

    as_of = figures.as_of
    table = Table(
        title=f"{figures.total.name} {figures.year} 年度高企目标进度（截至 {as_of}）/ targets",
        caption=(
            f"按净增完成率排序。预测年末 = 存量 + 在审申报 × 通过率 − 到期未续；"
            f"落后：预测年末 < 目标总量；滞后：进度% < 时间进度 {year_share(as_of):.1%}"
            f" − {tolerance:g}%"
        ),
    )
    table.add_column("区市")
    for header in (
        "存量",
        "年初存量",
        "净增",
        "目标净增",
        "目标总量",
        "预测年末",
        "差距",
        "进度%",
        "待重新认定",
    ):
        table.add_column(header, justify="right")
    table.add_column("状态")

    def row(d: DistrictFigures, name: str, style: str | None = None) -> None:
        table.add_row(
            name,
            str(d.stock),
            str(d.start_stock),
            f"{d.net_increase:+d}",
            str(d.target_net),
            str(d.target_stock),
            str(round(d.projection)),
            str(round(d.gap)),
            f"{d.progress_percent:.1f}",
            str(d.expiring_unrenewed),
            status_zh(d, as_of, tolerance),
            style=style,
        )

    for d in figures.ranked():
        row(d, d.name)
    row(figures.total, "全市合计", style="bold")
    console.print(table)


def _print_due_hint(figures: CityFigures, written: Path | None) -> None:
    total = figures.total.expiring_unrenewed
    if written is not None:
        console.print(f"待重新认定名单（{total} 家）已写入 / still-to-renew list: {written}")
    elif total:
        console.print(
            f"待重新认定共 {total} 家，名单用 --due-csv 文件.csv 写出（或 --json、hnte report）"
            f" / {total} still to renew: --due-csv FILE writes the list"
        )


def _check_csv_path(path: Path) -> None:
    if path.suffix.lower() != ".csv":
        raise UserError(f"{path} 的扩展名应为 .csv / {path} should end in .csv")
    if not path.parent.is_dir():
        raise UserError(f"目录不存在：{path.parent} / no such folder: {path.parent}")


def _write_due_csv(path: Path, figures: CityFigures, due: list[RenewalDue]) -> None:
    """UTF-8 with BOM so that Excel reads the Chinese; names cannot run as formulas."""
    import csv

    from hnte.services.tabular import neutralise_cell

    names = {d.code: d.name for d in figures.districts}
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("区市", "统一社会信用代码", "企业名称", "证书编号", "到期日"))
        writer.writerows(
            (
                names.get(line.district_code, line.district_code),
                line.credit_code,
                neutralise_cell(line.name),
                line.certificate_number,
                line.expires_on.isoformat(),
            )
            for line in due
        )


def _figures_json(d: DistrictFigures, as_of: date, tolerance: float) -> dict[str, Any]:
    return {
        "code": d.code,
        "name": d.name,
        "stock": d.stock,
        "start_stock": d.start_stock,
        "net_increase": d.net_increase,
        "target_net": d.target_net,
        "target_stock": d.target_stock,
        "new_recognitions": d.new_recognitions,
        "re_recognitions": d.re_recognitions,
        "expiring_unrenewed": d.expiring_unrenewed,
        "expiring_ahead": d.expiring_ahead,
        "renewing": d.renewing,
        "pipeline": d.pipeline,
        "pipeline_total": d.pipeline_total,
        "projection": round(d.projection, 2),
        "gap": round(d.gap, 2),
        "progress_percent": round(d.progress_percent, 2),
        "behind": d.behind,
        "late": d.late(as_of, tolerance),
        "status": status_zh(d, as_of, tolerance),
    }


def _as_json(
    figures: CityFigures, due: dict[str, list[RenewalDue]], tolerance: float
) -> dict[str, Any]:
    as_of = figures.as_of
    rates = figures.rates
    return {
        "year": figures.year,
        "as_of": as_of.isoformat(),
        "year_share": round(year_share(as_of), 4),
        "late_tolerance_percent": tolerance,
        "pass_rates": {
            stage: {
                "rate": round(rate, 4),
                "from_history": rates.from_history[stage],
                "observed": rates.observed[stage],
            }
            for stage, rate in rates.rates.items()
        }
        if rates
        else {},
        "inspected_share": round(rates.inspected_share, 4) if rates else None,
        "city": _figures_json(figures.total, as_of, tolerance),
        "districts": [
            {
                "rank": position,
                **_figures_json(d, as_of, tolerance),
                "still_to_renew": [
                    {
                        "credit_code": line.credit_code,
                        "name": line.name,
                        "certificate_number": line.certificate_number,
                        "expires_on": line.expires_on.isoformat(),
                    }
                    for line in due.get(d.code, [])
                ],
            }
            for position, d in enumerate(figures.ranked(), start=1)
        ],
    }


def _json_text(
    figures: CityFigures, due: dict[str, list[RenewalDue]], tolerance: float
) -> str:
    """``print_json(_as_json(...))``'s text, character for character, in a third of the time.

    json indents in pure Python, about 8 µs a still-to-renew line (0.15 s for a city of a
    million certificates); here those lines come from a template and json encodes the
    rest, where each district's list is an empty one to be replaced.
    """
    text = json.dumps(_as_json(figures, {}, tolerance), ensure_ascii=False, indent=2)
    parts = text.split(_EMPTY_DUE)  # keys are never inside a string: its quotes are escaped
    out = [parts[0]]
    for d, rest in zip(figures.ranked(), parts[1:], strict=True):
        out.append(_due_text(due.get(d.code, [])))
        out.append(rest)
    return "".join(out)


_EMPTY_DUE = '"still_to_renew": []'


def _due_text(lines: list[RenewalDue]) -> str:
    """One district's ``"still_to_renew": [...]`` as ``json.dumps(indent=2)`` writes it there."""
    if not lines:
        return _EMPTY_DUE
    quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses
    items = ",\n".join(
        "        {\n"
        f'          "credit_code": {quote(line.credit_code)},\n'
        f'          "name": {quote(line.name)},\n'
        f'          "certificate_number": {quote(line.certificate_number)},\n'
        f'          "expires_on": "{line.expires_on.isoformat()}"\n'
        "        }"
        for line in lines
    )
    return f'"still_to_renew": [\n{items}\n      ]'
