from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import uscc

from hnte.models.application_rows import (
    APPLICATION_COLUMNS,
    REQUIRED_COLUMNS,
    ApplicationRow,
    RowError,
    parse_date,
    parse_money_fen,
    validate_row,
)
from hnte.models.enums import ApplicationKind, TechField

TODAY = date(2021, 6, 1)
DISTRICTS = {"市南区": "370202", "370202": "370202", "崂山区": "370212", "370212": "370212"}


def credit_code(body: str) -> str:
    """A valid code: 17 characters and the check character GB 32100-2015 gives them."""
    return body + uscc.calc_check_digit(body)


CODE = credit_code("91370212MA3C0000" + "1")
OTHER_CODE = credit_code("91370202MA3C1234" + "5")


def wrong_check_character(code: str) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    return code[:-1] + next(c for c in alphabet if c != code[-1])


def cells(**overrides: str) -> dict[str, str]:
    base = {
        "credit_code": CODE,
        "name": "青岛海纳光电科技有限公司",
        "district": "崂山区",
        "registered_on": "2015-04-20",
        "kind": "首次申报",
        "tech_field": "电子信息",
        "intermediary": "",
        "staff_total": "120",
        "staff_tech": "30",
        "revenue_y1": "30,000,000.00",
        "revenue_y2": "25000000",
        "revenue_y3": "20000000.5",
        "rd_y1": "1,800,000",
        "rd_y2": "1500000",
        "rd_y3": "1200000",
        "rd_domestic": "4500000",
        "hightech_revenue": "24000000",
        "ip_class1": "2",
        "ip_class2": "5",
        "ip_numbers": "ZL201910123456.7；ZL201920654321.0; 2020SR0123456",
        "major_incident": "否",
        "applied_on": "2021-05-10",
    }
    base.update(overrides)
    return base


def validate(**overrides: str) -> ApplicationRow | list[RowError]:
    return validate_row(7, cells(**overrides), districts=DISTRICTS, today=TODAY)


def valid(**overrides: str) -> ApplicationRow:
    result = validate(**overrides)
    assert isinstance(result, ApplicationRow), result
    return result


def errors(**overrides: str) -> list[RowError]:
    result = validate(**overrides)
    assert isinstance(result, list), result
    return result


def test_a_complete_row_becomes_an_application_row() -> None:
    row = valid()

    assert row == ApplicationRow(
        row=7,
        credit_code=CODE,
        name="青岛海纳光电科技有限公司",
        district_code="370212",
        registered_on=date(2015, 4, 20),
        kind=ApplicationKind.FIRST_TIME.value,
        tech_field=TechField.ELECTRONIC_INFORMATION.value,
        intermediary=None,
        staff_total=120,
        staff_tech=30,
        revenue_fen=(3_000_000_000, 2_500_000_000, 2_000_000_050),
        rd_fen=(180_000_000, 150_000_000, 120_000_000),
        rd_domestic_fen=450_000_000,
        hightech_revenue_fen=2_400_000_000,
        ip_class1=2,
        ip_class2=5,
        ip_numbers=("ZL201910123456.7", "ZL201920654321.0", "2020SR0123456"),
        major_incident=False,
        applied_on=date(2021, 5, 10),
    )


def test_district_kind_and_yes_no_accept_codes_and_english() -> None:
    row = valid(district="370202", kind="Renewal", major_incident="TRUE", intermediary="某咨询公司")

    assert (row.district_code, row.kind, row.major_incident) == ("370202", "renewal", True)
    assert row.intermediary == "某咨询公司"


def test_credit_code_is_compacted_and_upper_cased() -> None:
    spaced = " ".join([CODE[:8], CODE[8:]]).lower()
    full_width = CODE.translate(str.maketrans("0123456789", "０１２３４５６７８９"))

    assert valid(credit_code=spaced).credit_code == CODE
    assert valid(credit_code=full_width).credit_code == CODE


def test_a_younger_enterprise_reports_fewer_years() -> None:
    row = valid(revenue_y2="", revenue_y3="", rd_y2="", rd_y3="", rd_domestic="1800000")

    assert row.revenue_fen == (3_000_000_000,)
    assert row.rd_fen == (180_000_000,)


def test_optional_columns_may_be_absent_altogether() -> None:
    present = {key: value for key, value in cells().items() if key in REQUIRED_COLUMNS}
    present["rd_domestic"] = "1800000"

    row = validate_row(3, present, districts=DISTRICTS, today=TODAY)

    assert isinstance(row, ApplicationRow)
    assert (row.applied_on, row.intermediary, row.ip_numbers) == (None, None, ())


def test_two_hundred_ip_numbers_fit_in_one_cell() -> None:
    numbers = [f"ZL2019{n:07d}.{n % 10}" for n in range(200)]

    assert valid(ip_numbers="；".join(numbers)).ip_numbers == tuple(numbers)


def test_the_digest_ignores_the_row_number_and_changes_with_any_field() -> None:
    row = valid()

    assert row.digest() == replace(row, row=99).digest()
    assert row.digest() != replace(row, staff_tech=31).digest()
    assert row.digest() != replace(row, ip_numbers=row.ip_numbers[:2]).digest()
    assert len(row.digest()) == 64


def test_required_columns_leave_out_only_the_optional_ones() -> None:
    optional = set(APPLICATION_COLUMNS) - REQUIRED_COLUMNS

    assert optional == {
        "intermediary", "ip_numbers", "applied_on", "revenue_y2", "revenue_y3", "rd_y2", "rd_y3"
    }


ROW_PROBLEMS = [
    pytest.param({"credit_code": wrong_check_character(CODE)}, "统一社会信用代码", "校验位",
                 id="credit-code-check-character"),
    pytest.param({"credit_code": CODE[:17]}, "统一社会信用代码", "18 位", id="credit-code-length"),
    pytest.param({"credit_code": "A" + CODE[1:]}, "统一社会信用代码", "格式错误",
                 id="credit-code-format"),
    pytest.param({"credit_code": CODE[:10] + "I" + CODE[11:]}, "统一社会信用代码", "格式错误",
                 id="credit-code-forbidden-letter"),
    pytest.param({"credit_code": ""}, "统一社会信用代码", "必填项为空", id="credit-code-missing"),
    pytest.param({"name": "  "}, "企业名称", "必填项为空", id="name-blank"),
    pytest.param({"name": "公" * 201}, "企业名称", "200", id="name-too-long"),
    pytest.param({"name": "青岛\n海纳"}, "企业名称", "控制字符", id="name-line-feed"),
    pytest.param({"name": "青岛海纳\r"}, "企业名称", "控制字符", id="name-carriage-return"),
    pytest.param({"name": "青岛\t海纳"}, "企业名称", "控制字符", id="name-tab"),
    pytest.param({"name": "青岛\x00海纳"}, "企业名称", "控制字符", id="name-nul"),
    pytest.param({"district": "黄岛区"}, "所属区市", "未知的区市", id="district-unknown"),
    pytest.param({"kind": "复审"}, "申报类型", "未知的申报类型", id="kind-unknown"),
    pytest.param({"tech_field": "人工智能"}, "技术领域", "8 个技术领域", id="tech-field-unknown"),
    pytest.param({"staff_total": "12.5"}, "职工总数", "整数", id="staff-not-integer"),
    pytest.param({"staff_tech": "三十"}, "科技人员数", "整数", id="staff-not-a-number"),
    pytest.param({"staff_tech": "-3"}, "科技人员数", "负数", id="staff-negative"),
    pytest.param({"staff_total": "0", "staff_tech": "0"}, "职工总数", "不能为 0",
                 id="staff-total-zero"),
    pytest.param({"staff_tech": "121"}, "科技人员数", "超过职工总数", id="staff-tech-above-total"),
    pytest.param({"revenue_y1": "-1"}, "近一年销售收入", "负数", id="money-negative"),
    pytest.param({"rd_y1": "一百万"}, "近一年研发费用", "格式错误", id="money-not-numeric"),
    pytest.param({"rd_y1": "1,800,000.001"}, "近一年研发费用", "两位小数", id="money-too-precise"),
    pytest.param({"revenue_y1": "10000000000000.01", "hightech_revenue": "1"}, "近一年销售收入",
                 "10 万亿", id="money-astronomic"),
    pytest.param({"revenue_y1": "1,00,000"}, "近一年销售收入", "格式错误",
                 id="money-misgrouped-commas"),
    pytest.param({"registered_on": "2015-02-30"}, "注册日期", "日期不存在", id="date-no-such-day"),
    pytest.param({"registered_on": "去年"}, "注册日期", "无法识别", id="date-unparsable"),
    pytest.param({"registered_on": "2021-06-02", "applied_on": ""}, "注册日期", "晚于",
                 id="registered-in-the-future"),
    pytest.param({"registered_on": "1949-09-30"}, "注册日期", "早于 1949-10-01",
                 id="registered-before-1949"),
    pytest.param({"applied_on": "2015-04-19"}, "申报日期", "早于注册日期",
                 id="applied-before-registered"),
    pytest.param({"ip_class1": "-1"}, "I类知识产权数", "负数", id="ip-count-negative"),
    pytest.param({"ip_numbers": ";".join(f"ZL2019{n:07d}.1" for n in range(201))},
                 "知识产权编号", "上限 200", id="too-many-ip-numbers"),
    pytest.param({"ip_numbers": "ZL" * 5001}, "知识产权编号", "内容过长",
                 id="ip-numbers-cell-too-long"),
    pytest.param({"rd_domestic": "4500000.01"}, "境内研发费用", "超过研发费用合计",
                 id="domestic-rd-above-total"),
    pytest.param({"hightech_revenue": "30000000.01"}, "高新技术产品收入", "超过近一年销售收入",
                 id="hightech-revenue-above-revenue"),
    pytest.param({"rd_y2": ""}, "第二年研发费用", "不能为空", id="revenue-year-without-rd"),
    pytest.param({"revenue_y2": ""}, "第二年销售收入", "不能为空", id="rd-year-without-revenue"),
    pytest.param({"revenue_y2": "", "rd_y2": ""}, "第二年销售收入", "第二年数据不能为空",
                 id="third-year-without-second"),
    pytest.param({"major_incident": "可能"}, "重大事故", "是」或「否", id="incident-not-yes-no"),
    pytest.param({"intermediary": "某" * 1001}, "中介机构", "内容过长", id="cell-too-long"),
]


@pytest.mark.parametrize(("overrides", "column", "reason"), ROW_PROBLEMS)
def test_a_bad_cell_is_reported_against_its_chinese_header(
    overrides: dict[str, str], column: str, reason: str
) -> None:
    found = errors(**overrides)

    assert any(e.column == column and reason in e.reason for e in found), found
    assert all(e.row == 7 for e in found)


def test_every_problem_in_a_row_is_reported() -> None:
    found = errors(
        credit_code=wrong_check_character(CODE),
        name="",
        district="火星区",
        tech_field="区块链",
        staff_total="abc",
        rd_y1="-5",
        registered_on="2030-01-01",
        major_incident="",
    )

    assert {e.column for e in found} == {
        "统一社会信用代码", "企业名称", "所属区市", "技术领域", "职工总数", "近一年研发费用",
        "注册日期", "重大事故",
    }


def test_an_unknown_district_lists_no_other_district() -> None:
    (problem,) = errors(district="黄岛区")

    assert "黄岛区" in problem.reason
    assert not any(name in problem.reason for name in DISTRICTS)


def test_credit_code_reasons_tell_checksum_format_and_length_apart() -> None:
    reasons = [
        errors(credit_code=code)[0].reason
        for code in (wrong_check_character(CODE), "A" + CODE[1:], CODE + "0")
    ]

    assert len(set(reasons)) == 3
    assert "check character" in reasons[0]
    assert "format" in reasons[1]
    assert "length" in reasons[2]


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1234567", 123_456_700),
        ("1,234,567.89", 123_456_789),
        ("１，２３４，５６７．８９", 123_456_789),
        ("0.5", 50),
        ("12.50", 1250),
        ("12.500", 1250),
        ("0", 0),
        ("10000000000000", 10**15),
    ],
    ids=["plain", "grouped", "full-width", "one-decimal", "two-decimals", "trailing-zero", "zero",
         "the-ceiling"],
)
def test_money_in_yuan_becomes_exact_fen(text: str, fen: int) -> None:
    assert parse_money_fen(text) == fen


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-1", "1.001", "1e6", "1,2345", "10000000000000.01", "¥100", "1 000"],
    ids=["empty", "letters", "negative", "three-decimals", "exponent", "bad-grouping",
         "astronomic", "currency-sign", "inner-space"],
)
def test_money_that_is_not_an_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money_fen(text)


@given(st.integers(min_value=0, max_value=10**15))
def test_money_formatted_with_thousands_separators_round_trips(fen: int) -> None:
    assert parse_money_fen(f"{fen // 100:,}.{fen % 100:02d}") == fen


@pytest.mark.parametrize(
    "text",
    ["2021-03-05", "2021/3/5", "2021年3月5日", "20210305", "２０２１－０３－０５"],
    ids=["iso", "slashes", "chinese", "compact", "full-width"],
)
def test_dates_are_read_in_every_accepted_form(text: str) -> None:
    assert parse_date(text, not_after=TODAY) == date(2021, 3, 5)


@pytest.mark.parametrize(
    "text",
    ["2021-3/5", "05/03/2021", "2021-02-29", "44260", "1949-09-30", "2021-06-02"],
    ids=["mixed-separators", "day-first", "no-such-day", "excel-serial", "too-early",
         "too-late"],
)
def test_dates_outside_the_accepted_forms_or_range_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text, not_after=TODAY)
