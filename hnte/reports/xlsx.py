"""The report as an Excel workbook: five sheets, a native chart, text that cannot run.

Every text cell from the data goes through ``neutralise_cell`` and ``write_string``, so
an enterprise named ``=HYPERLINK(...)`` stays text. Rows are written top to bottom
(``constant_memory``), and the file appears only once it is complete.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.exceptions import XlsxWriterException
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from hnte.reports.data import ReportData, SummaryRow
from hnte.services.tabular import neutralise_cell

SUMMARY_HEADERS = (
    "区市",
    "存量",
    "年初存量",
    "净增",
    "目标净增",
    "目标总量",
    "预测年末",
    "差距",
    "完成率",
    "状态",
    "待重新认定",
    "排名",
)
RENEWAL_HEADERS = ("区市", "统一社会信用代码", "企业名称", "证书编号", "到期日", "到期状态")
REJECTION_HEADERS = ("批次", "区市", "统一社会信用代码", "企业名称", "未通过环节", "原因")
FLAG_HEADERS = ("批次", "区市", "统一社会信用代码", "企业名称", "筛查标记", "当前阶段")
SHEETS = ("汇总", "流程", "待重新认定", "未通过", "筛查标记")
HEADER_ROW = 2  # row 0 is the title, row 1 a note
MAX_WIDTH = 60


def write_xlsx(data: ReportData, path: Path) -> Path:
    """Write the workbook to ``path`` (replacing it only once complete); return it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    workbook = xlsxwriter.Workbook(
        str(partial),
        {
            "constant_memory": True,
            # write_string is used for all text; these keep a stray write() harmless too
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    workbook.set_properties(
        {"title": neutralise_cell(data.title), "subject": data.as_of_zh, "author": "hnte"}
    )
    try:
        _Writer(workbook, data).write()
        workbook.close()
        os.replace(partial, path)
    except XlsxWriterException as exc:
        partial.unlink(missing_ok=True)
        raise OSError(f"无法写入 {path}：{exc} / cannot write {path}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def display_width(text: str) -> int:
    """Columns a text takes in Excel: CJK and full-width characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


class _Writer:
    def __init__(self, workbook: xlsxwriter.Workbook, data: ReportData) -> None:
        self.book, self.data = workbook, data
        add = workbook.add_format
        self.title = add({"bold": True, "font_size": 14})
        self.note = add({"font_color": "#595959", "italic": True})
        self.header = add(
            {
                "bold": True,
                "font_color": "#FFFFFF",
                "bg_color": "#1F4E79",
                "border": 1,
                "align": "center",
                "valign": "vcenter",
                "text_wrap": True,
            }
        )
        self.text = add({"border": 1, "border_color": "#BFBFBF"})
        self.wrap = add({"border": 1, "border_color": "#BFBFBF", "text_wrap": True})
        self.int = add({"num_format": "#,##0", "border": 1, "border_color": "#BFBFBF"})
        self.signed = add({"num_format": "+#,##0;-#,##0;0", "border": 1, "border_color": "#BFBFBF"})
        self.pct = add({"num_format": "0.0%", "border": 1, "border_color": "#BFBFBF"})
        self.date = add({"num_format": "yyyy-mm-dd", "border": 1, "border_color": "#BFBFBF"})
        total = {"bold": True, "bg_color": "#DDEBF7", "top": 2, "border": 1}
        self.total_text = add(total)
        self.total_int = add({**total, "num_format": "#,##0"})
        self.total_signed = add({**total, "num_format": "+#,##0;-#,##0;0"})
        self.total_pct = add({**total, "num_format": "0.0%"})
        self.status = {
            "正常": add({"border": 1, "font_color": "#006100", "bg_color": "#C6EFCE"}),
            "滞后": add({"border": 1, "font_color": "#9C5700", "bg_color": "#FFEB9C"}),
            "落后": add({"border": 1, "font_color": "#9C0006", "bg_color": "#FFC7CE"}),
        }

    def write(self) -> None:
        self.summary()
        self.pipeline()
        d = self.data
        self.listing(
            "待重新认定",
            f"本年度到期、尚未申请重新认定的证书（共 {len(d.renewals)} 家），按区市、到期日排序",
            RENEWAL_HEADERS,
            [
                (r.district, r.credit_code, r.name, r.certificate_number, r.expires_on, r.state)
                for r in d.renewals
            ],
        )
        self.listing(
            "未通过",
            f"本年度各批次未通过的申报（共 {len(d.rejections)} 件）及原因",
            REJECTION_HEADERS,
            [
                (r.batch_code, r.district, r.credit_code, r.name, r.rejected_at, r.reason)
                for r in d.rejections
            ],
        )
        self.listing(
            "筛查标记",
            f"大数据筛查标记的申报（共 {len(d.flags)} 件）：标记只触发现场考察，不直接否决",
            FLAG_HEADERS,
            [
                (f.batch_code, f.district, f.credit_code, f.name, "；".join(f.flags), f.stage)
                for f in d.flags
            ],
        )

    # --- cells ---------------------------------------------------------------------

    def _title(self, sheet: Worksheet, subject: str, note: str) -> None:
        d = self.data
        text = f"{d.city_name} {d.year} 年度高新技术企业认定 · {subject}（{d.as_of_zh}）"
        sheet.write_string(0, 0, neutralise_cell(text), self.title)
        sheet.set_row(0, 24)
        sheet.write_string(1, 0, neutralise_cell(note), self.note)
        sheet.set_landscape()
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(HEADER_ROW)
        sheet.set_header(f"&C{neutralise_cell(text).replace('&', '&&')}")
        sheet.set_footer("&C第 &P 页，共 &N 页")

    def _headers(self, sheet: Worksheet, headers: Sequence[str]) -> None:
        sheet.set_row(HEADER_ROW, 30)
        for c, header in enumerate(headers):
            sheet.write_string(HEADER_ROW, c, header, self.header)

    def _str(self, sheet: Worksheet, row: int, column: int, value: str, fmt: Format) -> None:
        sheet.write_string(row, column, neutralise_cell(value), fmt)

    # --- sheets --------------------------------------------------------------------

    def summary(self) -> None:
        d = self.data
        sheet = self.book.add_worksheet("汇总")
        self._title(
            sheet,
            "目标进度汇总",
            f"时间进度 {d.year_share:.1%}；完成率 = 净增 ÷ 目标净增；"
            "预测年末 = 存量 + 在审申报 × 通过率 − 到期未续；差距 = 目标总量 − 预测年末；"
            "落后：预测年末 < 目标总量；"
            f"滞后：完成率低于时间进度 {d.late_tolerance_percent:g} 个百分点以上",
        )
        self._headers(sheet, SUMMARY_HEADERS)
        first = HEADER_ROW + 1
        for i, row in enumerate(d.districts):
            self._summary_row(sheet, first + i, row, total=False)
        last = first + len(d.districts) - 1
        self._summary_row(sheet, last + 1, d.city, total=True)
        names = [r.name for r in (*d.districts, d.city)]
        sheet.set_column(0, 0, _width("区市", names, minimum=10))
        sheet.set_column(1, len(SUMMARY_HEADERS) - 1, 11)
        sheet.freeze_panes(first, 1)
        sheet.autofilter(HEADER_ROW, 0, last, len(SUMMARY_HEADERS) - 1)
        sheet.insert_chart(last + 3, 0, self._net_chart(first, last), {"x_offset": 4})

    def _summary_row(self, sheet: Worksheet, r: int, row: SummaryRow, *, total: bool) -> None:
        text = self.total_text if total else self.text
        integer = self.total_int if total else self.int
        signed = self.total_signed if total else self.signed
        pct = self.total_pct if total else self.pct
        self._str(sheet, r, 0, "全市合计" if total else row.name, text)
        for c, value in enumerate(
            (row.stock, row.start_stock, row.net_increase, row.target_net, row.target_stock),
            start=1,
        ):
            sheet.write_number(r, c, value, signed if c == 3 else integer)
        sheet.write_number(r, 6, row.projection, integer)
        sheet.write_number(r, 7, row.gap, signed)
        sheet.write_number(r, 8, row.progress_percent / 100, pct)
        self._str(sheet, r, 9, row.status, self.status.get(row.status, self.status["落后"]))
        sheet.write_number(r, 10, row.expiring_unrenewed, integer)
        if row.rank is None:
            sheet.write_blank(r, 11, None, text)
        else:
            sheet.write_number(r, 11, row.rank, integer)

    def _net_chart(self, first: int, last: int) -> Any:
        sheet = "'汇总'"
        chart = self.book.add_chart({"type": "column"})
        categories = [sheet, first, 0, last, 0]
        for column, name, colour in ((3, "净增", "#2E75B6"), (4, "目标净增", "#A5A5A5")):
            chart.add_series(
                {
                    "name": name,
                    "categories": categories,
                    "values": [sheet, first, column, last, column],
                    "fill": {"color": colour},
                    "gap": 80,
                    "data_labels": {"value": True, "num_format": "#,##0"},
                }
            )
        line = self.book.add_chart({"type": "line"})
        line.add_series(
            {
                "name": "完成率",
                "categories": categories,
                "values": [sheet, first, 8, last, 8],
                "y2_axis": True,
                "line": {"color": "#C00000", "width": 2},
                "marker": {"type": "circle", "size": 6, "fill": {"color": "#C00000"}},
            }
        )
        chart.combine(line)
        chart.set_title({"name": "各区市净增与目标净增", "name_font": {"size": 12}})
        chart.set_x_axis({"name": "区市"})
        chart.set_y_axis(
            {"name": "家", "num_format": "#,##0", "major_gridlines": {"visible": True}}
        )
        line.set_y2_axis({"name": "完成率", "num_format": "0%"})
        chart.set_legend({"position": "top"})
        chart.set_size({"width": 960, "height": 400})
        return chart

    def pipeline(self) -> None:
        p = self.data.pipeline
        sheet = self.book.add_worksheet("流程")
        headers = ("区市", *p.labels, "合计")
        self._title(
            sheet,
            "申报流程分布",
            f"本年度各批次申报按所处阶段统计（共 {p.total.total} 件）",
        )
        self._headers(sheet, headers)
        first = HEADER_ROW + 1
        for i, row in enumerate((*p.rows, p.total)):
            r = first + i
            total = row is p.total
            integer = self.total_int if total else self.int
            self._str(sheet, r, 0, row.name, self.total_text if total else self.text)
            for c, n in enumerate(row.counts, start=1):
                sheet.write_number(r, c, n, integer)
            sheet.write_number(r, len(headers) - 1, row.total, self.total_int)
        last = first + len(p.rows) - 1
        sheet.set_column(0, 0, _width("区市", [r.name for r in p.rows], minimum=10))
        sheet.set_column(1, len(headers) - 1, 9)
        sheet.freeze_panes(first, 1)
        sheet.autofilter(HEADER_ROW, 0, last, len(headers) - 1)
        chart = self.book.add_chart({"type": "bar", "subtype": "stacked"})
        for c in range(1, len(p.labels) + 1):
            chart.add_series(
                {
                    "name": ["'流程'", HEADER_ROW, c],
                    "categories": ["'流程'", first, 0, last, 0],
                    "values": ["'流程'", first, c, last, c],
                    "gap": 60,
                }
            )
        chart.set_title({"name": "各区市申报所处阶段", "name_font": {"size": 12}})
        chart.set_y_axis({"reverse": True})
        chart.set_x_axis({"name": "件", "num_format": "#,##0"})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 960, "height": 420})
        sheet.insert_chart(last + 4, 0, chart, {"x_offset": 4})

    def listing(
        self,
        name: str,
        note: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        sheet = self.book.add_worksheet(name)
        self._title(sheet, name, note)
        self._headers(sheet, headers)
        first = HEADER_ROW + 1
        for r, values in enumerate(rows, start=first):
            for c, value in enumerate(values):
                if isinstance(value, date):
                    sheet.write_datetime(r, c, value, self.date)
                else:
                    long = c == len(values) - 1 or headers[c] == "原因"
                    self._str(sheet, r, c, str(value), self.wrap if long else self.text)
        if not rows:
            sheet.write_string(first, 0, "（无）", self.note)
        for c, header in enumerate(headers):
            sheet.set_column(c, c, _width(header, (str(row[c]) for row in rows)))
        sheet.freeze_panes(first, 0)
        sheet.autofilter(HEADER_ROW, 0, HEADER_ROW + max(len(rows), 1), len(headers) - 1)


def _width(header: str, values: Iterable[str], minimum: int = 8) -> int:
    widest = max((display_width(v) for v in values), default=0)
    return min(MAX_WIDTH, max(minimum, display_width(header) + 4, widest + 2))
