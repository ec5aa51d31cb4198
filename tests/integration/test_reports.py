"""The year's report from a real SQLite database: the gathered figures, the workbook read
back with openpyxl, the HTML page parsed with the standard library, and ``hnte report``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pytest
import typer
from sqlalchemy import Engine, func, insert, select, text, update
from sqlmodel import Session
from typer.testing import CliRunner

from hnte import synthetic
from hnte.config.city import load_city
from hnte.flows.cli_common import UserError
from hnte.flows.cli_report import report
from hnte.models.stages import Stage
from hnte.models.tables import Application, Certificate, Enterprise, StageEvent
from hnte.reports.data import ReportData, gather
from hnte.reports.html import render_html, write_html
from hnte.reports.xlsx import SHEETS, SUMMARY_HEADERS, write_xlsx

YEAR = 2021
AS_OF = date(2021, 6, 30)
CITY = load_city()
MALICIOUS = '=HYPERLINK("http://x","y")'
SCRIPT = "<script>alert(1)</script>"
# Where applications sit: 20 slots, so id % 20 spreads them like a batch in mid-year.
STAGE_MIX = (
    [Stage.SUBMITTED]
    + [Stage.DISTRICT_REVIEW] * 2
    + [Stage.FORMAL_CHECK] * 2
    + [Stage.EXPERT_REVIEW] * 4
    + [Stage.ONSITE_INSPECTION, Stage.APPROVAL, Stage.APPROVAL, Stage.PUBLIC_NOTICE]
    + [Stage.OBJECTION_REVIEW]
    + [Stage.CERTIFIED] * 3
    + [Stage.REJECTED] * 2
    + [Stage.WITHDRAWN]
)
REJECTED_FROM = (
    (Stage.FORMAL_CHECK, "形式审查不通过：近三年研发费用占销售收入比例低于 5%"),
    (Stage.EXPERT_REVIEW, "专家组均分 64.20，低于 71 分"),
    (Stage.ONSITE_INSPECTION, "现场考察不通过：研发场所与申报不符"),
    (None, "企业申报材料不实（操作员决定）"),  # no event recorded: stage unknown
)


@dataclass(frozen=True)
class Built:
    applications: int
    rejected: int
    flagged: int
    renewals: int


def build(engine: Engine, *, applications: int = 240, stock_share: float = 0.06) -> Built:
    """A mid-year database: last years' certificates, this year's batch spread over stages,
    rejections with events, screening flags, and two hostile enterprise names."""
    rng = random.Random(5)
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
    apps = synthetic.applications(applications, seed=11, districts=shares, year=YEAR)
    with engine.begin() as conn:
        synthetic.load_applications(conn, apps, batch_code="2021-1", applied_on=date(2021, 4, 20))
        for slot, stage in enumerate(STAGE_MIX):
            conn.execute(
                text("UPDATE application SET stage = :stage WHERE id % 20 = :slot"),
                {"stage": stage.value, "slot": slot},
            )
        rejected = conn.execute(
            select(Application.id).where(Application.stage == Stage.REJECTED.value)
        ).scalars()
        events = []
        for i, app_id in enumerate(rejected):
            source, reason = REJECTED_FROM[i % len(REJECTED_FROM)]
            conn.execute(
                update(Application).where(Application.id == app_id).values(decision_reason=reason)
            )
            if source is not None:
                events.append(
                    {
                        "application_id": app_id,
                        "from_stage": source.value,
                        "to_stage": Stage.REJECTED.value,
                        "at": datetime(2021, 6, 1, 2, tzinfo=UTC),
                        "business_date": date(2021, 6, 1),
                        "actor": "rule",
                        "reason": reason,
                    }
                )
        if events:
            conn.execute(insert(StageEvent), events)
        conn.execute(
            text(
                "UPDATE application SET screening_flags = CASE WHEN id % 18 = 0"
                " THEN 'SHARED_IP,IDENTICAL_FIGURES' ELSE 'ON_THRESHOLD' END WHERE id % 9 = 0"
            )
        )
        certified = conn.execute(
            select(Application.id, Application.credit_code, Application.district_code).where(
                Application.stage == Stage.CERTIFIED.value
            )
        ).all()
        certificates = [
            {
                "number": f"GR202137{app_id:05d}",
                "credit_code": code,
                "district_code": district,
                "application_id": app_id,
                "issued_on": date(2021, 6, 1),
                "expires_on": date(2024, 6, 1),
            }
            for app_id, code, district in certified
        ]
        enterprises = []
        renewals = 0
        for k, d in enumerate(CITY.districts):
            held = max(3, round((d.stock_goal - d.net_increase) * stock_share))
            expiring = 2 + k % 3
            for n in range(held):
                code = synthetic.credit_code(rng, d.code)
                # the first few expire this year unrenewed, one already in February
                issued = (
                    date(2018, 2, 1)
                    if n == 0
                    else date(2018, 9, 1 + n)
                    if n <= expiring
                    else date(2019 + n % 2, 1 + n % 12, 1 + n % 28)
                )
                renewals += issued.year == 2018
                name = f"青岛到期测试{d.name}{n:03d}有限公司"
                if k == 0 and n == 1:
                    name = MALICIOUS
                enterprises.append(
                    {
                        "credit_code": code,
                        "name": name,
                        "district_code": d.code,
                        "registered_on": date(2010, 1, 1),
                        "tech_field": "电子信息",
                    }
                )
                certificates.append(
                    {
                        "number": f"GR{issued.year}37{k:02d}{n:04d}",
                        "credit_code": code,
                        "district_code": d.code,
                        "application_id": None,
                        "issued_on": issued,
                        "expires_on": issued.replace(year=issued.year + 3),
                    }
                )
        conn.execute(insert(Enterprise), enterprises)
        conn.execute(insert(Certificate), certificates)
        first_rejected = (
            select(Application.credit_code)
            .where(Application.stage == Stage.REJECTED.value)
            .order_by(Application.id)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(
            update(Enterprise).where(Enterprise.credit_code == first_rejected).values(name=SCRIPT)
        )
        count = conn.execute(select(func.count()).select_from(Application)).scalar_one()
        flagged = conn.execute(
            select(func.count()).where(Application.screening_flags != "")
        ).scalar_one()
        n_rejected = conn.execute(
            select(func.count()).where(Application.stage == Stage.REJECTED.value)
        ).scalar_one()
    return Built(count, n_rejected, flagged, renewals)


@pytest.fixture
def built(engine: Engine) -> Built:
    return build(engine)


@pytest.fixture
def data(engine: Engine, built: Built) -> ReportData:
    with Session(engine) as session:
        return gather(session, year=YEAR, as_of=AS_OF, city=CITY)


# --- gathered data ---------------------------------------------------------------------


def test_city_figures_are_the_sum_of_the_districts(data: ReportData) -> None:
    for name in ("stock", "start_stock", "net_increase", "expiring_unrenewed"):
        assert getattr(data.city, name) == sum(getattr(d, name) for d in data.districts), name
    assert data.city.projection == pytest.approx(sum(d.projection for d in data.districts))
    assert [d.name for d in data.districts] == [d.name for d in CITY.districts]
    assert sorted(d.rank for d in data.districts) == list(range(1, 11))
    assert {d.status for d in data.districts} <= {"落后", "滞后", "落后、滞后", "正常"}


def test_pipeline_has_every_stage_in_table_order_and_counts_every_application(
    data: ReportData, built: Built
) -> None:
    pipeline = data.pipeline
    assert pipeline.stages == tuple(Stage)
    assert pipeline.labels[:3] == ("已提交", "区市推荐", "形式审查")
    assert pipeline.labels[-3:] == ("已认定", "未通过", "已撤回")
    assert pipeline.total.total == built.applications
    assert sum(r.total for r in pipeline.rows) == built.applications
    for i in range(len(pipeline.stages)):
        assert pipeline.total.counts[i] == sum(r.counts[i] for r in pipeline.rows)


def test_rejections_name_the_stage_left_and_the_reason(data: ReportData, built: Built) -> None:
    assert len(data.rejections) == built.rejected > len(REJECTED_FROM)
    seen = {(r.rejected_at, r.reason) for r in data.rejections}
    assert ("形式审查", REJECTED_FROM[0][1]) in seen
    assert ("专家评审", REJECTED_FROM[1][1]) in seen
    assert ("", REJECTED_FROM[3][1]) in seen
    assert SCRIPT in {r.name for r in data.rejections}


def test_screening_flags_are_shown_as_human_labels(data: ReportData, built: Built) -> None:
    assert len(data.flags) == built.flagged > 0
    labels = {label for f in data.flags for label in f.flags}
    assert labels == {"知识产权被多家企业申报", "多家企业申报数据完全相同", "指标恰好处于认定门槛"}
    assert {f.stage for f in data.flags} <= {s.label_zh for s in Stage}


def test_still_to_renew_lists_this_years_expiring_certificates_by_district(
    data: ReportData, built: Built
) -> None:
    assert len(data.renewals) == built.renewals
    assert all(r.expires_on.year == YEAR for r in data.renewals)
    order = [d.name for d in CITY.districts]
    positions = [order.index(r.district) for r in data.renewals]
    assert positions == sorted(positions)  # city file order, not division code order
    first = [r for r in data.renewals if r.district == "市南区"]
    assert [r.expires_on for r in first] == sorted(r.expires_on for r in first)
    assert [r.state for r in first][:2] == ["已到期", "即将到期"]
    assert MALICIOUS in {r.name for r in data.renewals}


# --- workbook --------------------------------------------------------------------------


@pytest.fixture
def workbook(data: ReportData, tmp_path: Path) -> openpyxl.Workbook:
    return openpyxl.load_workbook(write_xlsx(data, tmp_path / "report.xlsx"))


def _rows(sheet) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(c for c in row) for row in sheet.iter_rows(values_only=True)]


def test_workbook_has_the_five_sheets_with_title_and_headers(
    workbook: openpyxl.Workbook,
) -> None:
    assert workbook.sheetnames == list(SHEETS)
    summary = workbook["汇总"]
    assert summary["A1"].value.startswith("青岛市 2021 年度")
    assert "截至 2021年6月30日" in summary["A1"].value
    assert tuple(c.value for c in summary[3][: len(SUMMARY_HEADERS)]) == SUMMARY_HEADERS
    assert summary.freeze_panes == "B4"
    assert summary.auto_filter.ref == "A3:L13"
    headers = {
        "待重新认定": ("区市", "统一社会信用代码", "企业名称", "证书编号", "到期日", "到期状态"),
        "未通过": ("批次", "区市", "统一社会信用代码", "企业名称", "未通过环节", "原因"),
        "筛查标记": ("批次", "区市", "统一社会信用代码", "企业名称", "筛查标记", "当前阶段"),
    }
    for name, expected in headers.items():
        assert _rows(workbook[name])[2] == expected
        assert workbook[name].freeze_panes == "A4"
    pipeline = _rows(workbook["流程"])
    assert pipeline[2] == ("区市", *(s.label_zh for s in Stage), "合计")


def test_workbook_summary_has_a_native_chart(workbook: openpyxl.Workbook) -> None:
    assert len(workbook["汇总"]._charts) == 1
    assert len(workbook["流程"]._charts) == 1


def test_workbook_city_row_is_the_sum_of_the_district_rows(
    workbook: openpyxl.Workbook, data: ReportData
) -> None:
    rows = _rows(workbook["汇总"])[3:14]
    districts, city = rows[:10], rows[10]
    assert [r[0] for r in districts] == [d.name for d in CITY.districts]
    assert city[0] == "全市合计"
    for column in (1, 2, 3, 10):  # 存量, 年初存量, 净增, 待重新认定
        assert city[column] == sum(r[column] for r in districts)
    assert city[6] == pytest.approx(sum(r[6] for r in districts))  # 预测年末
    assert (city[4], city[5]) == (CITY.target.net_increase, CITY.target.stock_goal)
    assert city[8] == pytest.approx(data.city.progress_percent / 100)
    pipeline = _rows(workbook["流程"])
    total = pipeline[3 + len(CITY.districts)]
    assert total[0] == "全市合计"
    assert total[1:] == tuple(sum(r[c] for r in pipeline[3:13]) for c in range(1, len(total)))


def test_workbook_keeps_a_formula_looking_name_as_text(
    workbook: openpyxl.Workbook,
) -> None:
    cells = [
        c for row in workbook["待重新认定"].iter_rows() for c in row if "HYPERLINK" in str(c.value)
    ]
    assert len(cells) == 1
    assert cells[0].data_type == "s"
    assert cells[0].value == "'" + MALICIOUS
    names = [r[3] for r in _rows(workbook["未通过"])[3:]]
    assert SCRIPT in names  # text, stored as is: a spreadsheet does not run HTML


def test_workbook_writes_dates_as_dates(workbook: openpyxl.Workbook) -> None:
    expiry = [r[4] for r in _rows(workbook["待重新认定"])[3:]]
    assert expiry and all(isinstance(d, datetime) and d.year == YEAR for d in expiry)


# --- HTML ------------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


@pytest.fixture
def page(data: ReportData) -> tuple[str, _Page]:
    html = render_html(data)
    parser = _Page()
    parser.feed(html)
    parser.close()
    return html, parser


def test_html_is_one_self_contained_document(page: tuple[str, _Page]) -> None:
    html, parsed = page
    assert html.startswith("<!DOCTYPE html>")
    assert parsed.count("html") == 1
    assert dict(parsed.tags[0][1]) == {"lang": "zh-CN"}
    for tag in ("script", "link", "img", "iframe", "object", "embed"):
        assert parsed.count(tag) == 0, tag
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, value)
    assert "url(" not in parsed.style and "@import" not in parsed.style
    assert '"PingFang SC"' in parsed.style and '"Microsoft YaHei"' in parsed.style
    assert "Noto Sans CJK SC" in parsed.style


def test_html_has_accessible_svg_charts_and_every_district(
    page: tuple[str, _Page],
) -> None:
    html, parsed = page
    svgs = [attrs for tag, attrs in parsed.tags if tag == "svg"]
    assert len(svgs) >= 2
    assert all(a.get("role") == "img" and a.get("aria-label") for a in svgs)
    assert parsed.count("figure") >= 2 and parsed.count("figcaption") >= 2
    assert parsed.count("title") >= 3  # the page's and one inside each chart
    text = "".join(parsed.text)
    for district in CITY.districts:
        assert district.name in text
    for heading in ("目标进度汇总", "申报流程", "待重新认定", "未通过", "筛查标记"):
        assert heading in text


def test_html_escapes_a_script_in_an_enterprise_name(page: tuple[str, _Page]) -> None:
    html, parsed = page
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT in "".join(parsed.text)
    assert parsed.count("script") == 0
    assert MALICIOUS in "".join(parsed.text)  # shown as text; no link made of it
    assert not any(a.get("href", "").startswith("http") for _, a in parsed.tags)


def test_an_empty_year_still_renders_both_reports(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        data = gather(session, year=YEAR, as_of=AS_OF, city=CITY)
    assert data.pipeline.total.total == 0 and not data.rejections and not data.flags
    book = openpyxl.load_workbook(write_xlsx(data, tmp_path / "empty.xlsx"))
    assert _rows(book["未通过"])[3][0] == "（无）"
    # nothing certified by mid-year: every district is short of its goal and trails the year
    assert {r[9] for r in _rows(book["汇总"])[3:14]} == {"落后、滞后"}
    html = write_html(data, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 2 and "无。" in html
    assert html.count('class="badge bad"') == 12  # 10 districts, the city row and its card


# --- the command -----------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """hnte (test)."""

    app.command("report")(report)
    return app


def test_report_command_writes_the_workbook_and_the_page(
    engine: Engine, built: Built, settings_env: str, tmp_path: Path
) -> None:
    xlsx, html = tmp_path / "报告.xlsx", tmp_path / "报告.html"
    result = CliRunner().invoke(
        _cli(),
        [
            "report",
            "--year",
            "2021",
            "--as-of",
            "2021-06-30",
            "--xlsx",
            str(xlsx),
            "--html",
            str(html),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "未通过" in result.stdout and str(xlsx) in result.stdout
    assert openpyxl.load_workbook(xlsx).sheetnames == list(SHEETS)
    assert "截至 2021年6月30日" in html.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".*.partial"))


def test_report_command_needs_an_output_and_a_date_in_the_year(
    engine: Engine, settings_env: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(_cli(), ["report", "--as-of", "2021-06-30"])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
    result = runner.invoke(
        _cli(), ["report", "--as-of", "2020-06-30", "--html", str(tmp_path / "r.html")]
    )
    assert isinstance(result.exception, UserError)
    result = runner.invoke(
        _cli(), ["report", "--as-of", "2021-06-30", "--xlsx", str(tmp_path / "r.csv")]
    )
    assert isinstance(result.exception, UserError) and not (tmp_path / "r.csv").exists()
