from __future__ import annotations

import csv
import os
import types
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from stdnum.cn import uscc

from hnte.models.application_rows import (
    APPLICATION_COLUMNS,
    REQUIRED_COLUMNS,
    ApplicationRow,
    RowError,
    validate_row,
)
from hnte.services import tabular
from hnte.services.tabular import (
    FileRejected,
    Limits,
    neutralise_cell,
    read_table,
    write_error_report,
)

COLUMNS = {
    "credit_code": ("统一社会信用代码", "credit_code"),
    "name": ("企业名称", "name"),
    "registered_on": ("注册日期", "registered_on"),
    "revenue_y1": ("近一年销售收入", "revenue_y1"),
    "note": ("备注", "note"),
}
REQUIRED = {"credit_code", "name"}
CODE = "91370212MA3C00001" + uscc.calc_check_digit("91370212MA3C00001")
HEADER = ["统一社会信用代码", "企业名称", "注册日期", "近一年销售收入"]
ROWS = [
    [CODE, "青岛海纳光电科技有限公司", "2015-04-20", "30000000.5"],
    ["91370202MA3C12345X", "青岛蓝海生物有限公司", "2018-01-02", "1,234,567"],
]
EXPECTED = [
    (2, {"credit_code": CODE, "name": "青岛海纳光电科技有限公司", "registered_on": "2015-04-20",
         "revenue_y1": "30000000.5"}),
    (3, {"credit_code": "91370202MA3C12345X", "name": "青岛蓝海生物有限公司",
         "registered_on": "2018-01-02", "revenue_y1": "1,234,567"}),
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(row=number, column=column, value=value)
    workbook.save(path)
    return path


def read(path: Path, limits: Limits | None = None) -> tabular.Table:
    return read_table(path, COLUMNS, required=REQUIRED, limits=limits or Limits())


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_utf8_utf8_with_bom_and_gb18030_reads_identically(
    tmp_path: Path, encoding: str
) -> None:
    path = write_csv(tmp_path / "list.csv", [HEADER, *ROWS], encoding)

    table = read(path)

    assert table.rows == EXPECTED
    assert table.headers == ("credit_code", "name", "registered_on", "revenue_y1")
    assert table.path == path


def test_xlsx_written_by_openpyxl_reads_dates_numbers_and_booleans_as_text(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "list.xlsx",
        [
            [*HEADER, "备注"],
            [CODE, "青岛海纳光电科技有限公司", date(2015, 4, 20), 30000000, True],
            [CODE, "青岛蓝海", datetime(2018, 1, 2, 9, 30), 1234.56, False],
            [CODE, "青岛蓝海", "2018/1/2", 30000000.0, 7],
        ],
    )

    table = read(path)

    assert [cells for _, cells in table.rows] == [
        {"credit_code": CODE, "name": "青岛海纳光电科技有限公司", "registered_on": "2015-04-20",
         "revenue_y1": "30000000", "note": "是"},
        {"credit_code": CODE, "name": "青岛蓝海", "registered_on": "2018-01-02",
         "revenue_y1": "1234.56", "note": "否"},
        {"credit_code": CODE, "name": "青岛蓝海", "registered_on": "2018/1/2",
         "revenue_y1": "30000000", "note": "7"},
    ]


def test_a_formula_cell_reads_as_its_cached_value_to_fifteen_digits(tmp_path: Path) -> None:
    path = tmp_path / "formula.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["企业名称", "统一社会信用代码", "近一年销售收入"])
    sheet.write_row(1, 0, ["青岛海纳", CODE])
    # A cached result of =C3*0.1 with C3 = 12345.6 carries binary noise past 15 digits.
    sheet.write_formula(1, 2, "=C3*0.1", None, 1234.5600000000001)
    sheet.write_number(2, 2, 12345.6)
    sheet.write_row(2, 0, ["青岛蓝海", CODE])
    workbook.close()

    table = read(path)

    assert [cells["revenue_y1"] for _, cells in table.rows] == ["1234.56", "12345.6"]


def test_an_application_row_survives_the_round_trip_through_xlsx(tmp_path: Path) -> None:
    headers = [spellings[0] for spellings in APPLICATION_COLUMNS.values()]
    values: dict[str, object] = {
        "credit_code": CODE, "name": "青岛海纳光电科技有限公司", "district": "崂山区",
        "registered_on": date(2015, 4, 20), "kind": "重新认定", "tech_field": "新材料",
        "intermediary": None, "staff_total": 120, "staff_tech": 30, "revenue_y1": 30000000.5,
        "revenue_y2": None, "revenue_y3": None, "rd_y1": 1800000, "rd_y2": None, "rd_y3": None,
        "rd_domestic": 1800000, "hightech_revenue": 24000000, "ip_class1": 1, "ip_class2": 0,
        "ip_numbers": "ZL201910123456.7", "major_incident": False, "applied_on": "2021年5月10日",
    }
    path = write_xlsx(tmp_path / "apply.xlsx", [headers, list(values.values())])

    table = read_table(path, APPLICATION_COLUMNS, required=REQUIRED_COLUMNS)
    ((number, cells),) = table.rows
    row = validate_row(number, cells, districts={"崂山区": "370212"}, today=date(2021, 6, 1))

    assert isinstance(row, ApplicationRow), row
    assert (row.row, row.registered_on, row.revenue_fen, row.kind, row.major_incident) == (
        2, date(2015, 4, 20), (3_000_000_050,), "renewal", False,
    )


def test_english_headers_in_any_case_are_accepted(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "en.csv", [
        ["Credit_Code", "NAME", "registered_on", "Revenue_Y1"], *ROWS,
    ])

    assert read(path).rows == EXPECTED


def test_headers_match_despite_spaces_line_breaks_bom_and_full_width(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "messy.csv", [
        ["\ufeff 统一社会\n信用代码 ", "企业　名称", "注册日期", "ｒｅｖｅｎｕｅ＿ｙ１"], *ROWS,
    ])

    assert read(path).rows == EXPECTED


def test_unknown_columns_are_ignored_and_absent_optional_columns_left_out(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "few.csv", [
        ["序号", "企业名称", "联系人", "统一社会信用代码"],
        ["1", "青岛海纳", "张三", CODE],
    ])

    table = read(path)

    assert table.rows == [(2, {"name": "青岛海纳", "credit_code": CODE})]
    assert table.headers == ("name", "credit_code")


def test_blank_rows_are_skipped_and_row_numbers_stay_true_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text(
        f"企业名称,统一社会信用代码,备注\n\n,,\n青岛海纳,{CODE},\n , ,\n"
        f"青岛蓝海,{CODE},x\n",
        encoding="utf-8",
    )

    assert [number for number, _ in read(path).rows] == [4, 6]


def test_blank_rows_are_skipped_and_row_numbers_stay_true_in_xlsx(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "gaps.xlsx", [
        ["2021年第一批高新技术企业申报名单"],
        [],
        ["企业名称", "统一社会信用代码"],
        [],
        ["青岛海纳", CODE],
        [None, "  "],
        ["青岛蓝海", CODE],
    ])

    table = read(path)

    assert [(number, cells["name"]) for number, cells in table.rows] == [
        (5, "青岛海纳"), (7, "青岛蓝海"),
    ]


def test_a_row_with_cells_only_in_ignored_columns_counts_as_blank(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "total.csv", [
        ["企业名称", "统一社会信用代码", "序号"], ["青岛海纳", CODE, "1"], ["", "", "合计"],
    ])

    assert [number for number, _ in read(path).rows] == [2]


def test_cells_lose_surrounding_spaces_but_keep_line_breaks_for_validation(
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "spaces.csv", [
        ["企业名称", "统一社会信用代码"], ["\u3000青岛海纳\n ", f" {CODE}\u00a0"],
    ])

    assert read(path).rows == [(2, {"name": "青岛海纳\n", "credit_code": CODE})]


def test_short_rows_read_missing_cells_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(f"统一社会信用代码,企业名称,注册日期\n{CODE}\n", encoding="utf-8")

    assert read(path).rows == [(2, {"credit_code": CODE, "name": "", "registered_on": ""})]


def test_a_missing_required_column_rejects_the_file_naming_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "nocode.csv", [["企业名称", "注册日期"], ["青岛海纳", "2015"]])

    with pytest.raises(FileRejected, match="缺少必需的列：统一社会信用代码") as caught:
        read(path)

    assert "nocode.csv" in str(caught.value)
    assert "credit_code" in str(caught.value)


def test_a_column_given_twice_rejects_the_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "twice.csv", [["企业名称", "统一社会信用代码", "name"]])

    with pytest.raises(FileRejected, match="企业名称"):
        read(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", "说明,联系人\n青岛,张三\n".encode()],
    ids=["empty", "only-blank-lines", "no-known-column"],
)
def test_a_file_without_a_header_row_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "headless.csv"
    path.write_bytes(content)

    with pytest.raises(FileRejected, match="找不到表头"):
        read(path)


@pytest.mark.parametrize("name", ["list.xls", "list.txt", "list"], ids=["xls", "txt", "none"])
def test_an_unknown_extension_is_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"whatever")

    with pytest.raises(FileRejected, match="不支持的文件类型"):
        read(path)


def test_a_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="无法读取"):
        read(tmp_path / "absent.csv")


def test_random_bytes_named_xlsx_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "random.xlsx"
    path.write_bytes(os.urandom(4096))

    with pytest.raises(FileRejected, match="不是有效的 .xlsx 文件"):
        read(path)


def test_a_truncated_xlsx_is_rejected(tmp_path: Path) -> None:
    whole = write_xlsx(tmp_path / "whole.xlsx", [HEADER, *ROWS]).read_bytes()
    path = tmp_path / "truncated.xlsx"
    path.write_bytes(whole[: len(whole) * 2 // 3])

    with pytest.raises(FileRejected, match="不是有效的 .xlsx 文件"):
        read(path)


def test_a_zip_bomb_is_rejected_without_being_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            for _ in range(24):
                member.write(bytes(1024 * 1024))
    assert path.stat().st_size < 100_000

    class NeverOpened:
        @classmethod
        def from_path(cls, path: object) -> None:
            raise AssertionError("the workbook was opened")

    monkeypatch.setattr(
        tabular, "python_calamine",
        types.SimpleNamespace(CalamineWorkbook=NeverOpened, CalamineError=RuntimeError),
    )

    with pytest.raises(FileRejected, match="解压后内容过大"):
        read(path, Limits(max_bytes=1024 * 1024))


def test_a_file_over_the_size_limit_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "big.csv", [HEADER, *ROWS])

    with pytest.raises(FileRejected, match="文件过大"):
        read(path, Limits(max_bytes=100))


def test_more_data_rows_than_the_limit_reject_the_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "many.csv", [HEADER, *ROWS, *ROWS])

    assert len(read(path, Limits(max_rows=4)).rows) == 4
    with pytest.raises(FileRejected, match="数据行数超过上限 3"):
        read(path, Limits(max_rows=3))


def test_undecodable_csv_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\n\x80\xff\x80,x\n")

    with pytest.raises(FileRejected, match="无法识别文件编码"):
        read(path)


# A cell over Limits.max_cell_chars (10,000 by default) rejects the whole file: it is
# not an application list. A cell within that limit but over 1,000 characters reaches
# validate_row, which reports it as a RowError.
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_one_megabyte_cell_rejects_the_file(tmp_path: Path, suffix: str) -> None:
    rows = [HEADER, [CODE, "青" * 1_000_000, "", ""]]
    path = tmp_path / f"huge{suffix}"
    if suffix == ".csv":
        write_csv(path, rows)
    else:
        write_xlsx(path, rows)

    with pytest.raises(FileRejected, match="第 2 行.*超过 10000 个字符"):
        read(path)


def test_a_long_cell_within_the_file_limit_becomes_a_row_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "long.csv", [
        [spellings[0] for spellings in APPLICATION_COLUMNS.values()],
        [CODE, "青" * 5000],
    ])

    ((number, cells),) = read_table(path, APPLICATION_COLUMNS, required=REQUIRED_COLUMNS).rows
    problems = validate_row(number, cells, districts={}, today=date(2021, 6, 1))

    assert isinstance(problems, list)
    assert RowError(2, "企业名称", "内容过长（5000 个字符，上限 1000） / cell too long") in problems


def test_the_error_report_sits_next_to_the_input_and_opens_in_excel(tmp_path: Path) -> None:
    source = tmp_path / "第一批.xlsx"
    errors = [
        RowError(2, "统一社会信用代码", "统一社会信用代码校验位错误 / check character is wrong"),
        RowError(5, "所属区市", "=HYPERLINK(\"http://x\")"),
    ]

    report = write_error_report(source, errors)

    assert report == tmp_path / "第一批.errors.csv"
    raw = report.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(raw.decode("utf-8-sig").splitlines())) == [
        ["行号", "列", "原因"],
        ["2", "统一社会信用代码", "统一社会信用代码校验位错误 / check character is wrong"],
        ["5", "所属区市", "'=HYPERLINK(\"http://x\")"],
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+86 532", "'+86 532"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("青岛海纳", "青岛海纳"),
        ("a=b", "a=b"),
        ("", ""),
    ],
    ids=["equals", "plus", "minus", "at", "tab", "carriage-return", "chinese", "inner-equals",
         "empty"],
)
def test_neutralise_cell_defuses_formula_prefixes(value: str, expected: str) -> None:
    assert neutralise_cell(value) == expected
