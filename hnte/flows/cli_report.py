"""``hnte report``: the year's report for people, as an Excel workbook and/or an HTML page.

Registered on the main app by ``hnte.flows.cli`` (``app.command("report")(report)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hnte.flows.cli_common import AsOfOpt, UserError, console, engine
from hnte.flows.cli_targets import YearOpt, _business_day

XlsxOpt = Annotated[
    Path | None, typer.Option("--xlsx", help="write the Excel workbook here (.xlsx)")
]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="write the self-contained HTML page here")
]


def report(
    year: YearOpt = None, as_of: AsOfOpt = None, xlsx: XlsxOpt = None, html: HtmlOpt = None
) -> None:
    """年度工作报告（Excel / HTML）/ write the year's report: targets, pipeline, lists."""
    from hnte.config.city import load_city
    from hnte.config.settings import get_settings
    from hnte.models.db import unit_of_work
    from hnte.models.target_queries import targets_for
    from hnte.reports.data import gather
    from hnte.reports.html import write_html
    from hnte.reports.xlsx import write_xlsx

    if xlsx is None and html is None:
        raise UserError("请用 --xlsx 或 --html 指定输出文件 / give --xlsx and/or --html")
    for path, suffixes in ((xlsx, (".xlsx",)), (html, (".html", ".htm"))):
        if path is None:
            continue
        if path.suffix.lower() not in suffixes:
            raise UserError(
                f"{path} 的扩展名应为 {suffixes[0]} / {path} should end in {suffixes[0]}"
            )
        if not path.parent.is_dir():
            raise UserError(f"目录不存在：{path.parent} / no such folder: {path.parent}")
    city = load_city(get_settings().city_file)
    year = year or city.city.year
    day = _business_day(year, as_of.date() if as_of else None)
    with unit_of_work(engine()) as session:
        if year != city.city.year and not targets_for(session, year=year):
            raise UserError(
                f"没有 {year} 年度的目标（城市配置文件为 {city.city.year} 年度）"
                f" / no targets for {year}"
            )
        data = gather(session, year=year, as_of=day, city=city)
    written = []
    try:
        if xlsx is not None:
            written.append(write_xlsx(data, xlsx))
        if html is not None:
            written.append(write_html(data, html))
    except OSError as exc:
        raise UserError(f"无法写入报告：{exc} / cannot write the report") from None
    console.print(
        f"{data.title}（{data.as_of_zh}）：{len(data.districts)} 个区市，"
        f"待重新认定 {len(data.renewals)} 家，未通过 {len(data.rejections)} 件，"
        f"筛查标记 {len(data.flags)} 件",
        highlight=False,
        markup=False,
    )
    for path in written:
        console.print(f"已写入 / written: {path}", highlight=False, markup=False)
