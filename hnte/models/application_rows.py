"""Validate one row of an application list: text cells in, an ``ApplicationRow`` or reasons out.

Pure: standard library and ``stdnum`` only. Every problem in a row is reported, each
against the Chinese header of its column, so an operator can fix a file in one pass.
Money in the files is in yuan (元) with at most two decimals and becomes integer fen.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError

from hnte.models.enums import ApplicationKind, TechField

T = TypeVar("T")

APPLICATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "credit_code": ("统一社会信用代码", "credit_code", "uscc"),
    "name": ("企业名称", "name", "enterprise_name"),
    "district": ("所属区市", "district"),
    "registered_on": ("注册日期", "registered_on"),
    "kind": ("申报类型", "kind"),
    "tech_field": ("技术领域", "tech_field"),
    "intermediary": ("中介机构", "intermediary"),
    "staff_total": ("职工总数", "staff_total"),
    "staff_tech": ("科技人员数", "staff_tech"),
    "revenue_y1": ("近一年销售收入", "revenue_y1"),
    "revenue_y2": ("第二年销售收入", "revenue_y2"),
    "revenue_y3": ("第三年销售收入", "revenue_y3"),
    "rd_y1": ("近一年研发费用", "rd_y1"),
    "rd_y2": ("第二年研发费用", "rd_y2"),
    "rd_y3": ("第三年研发费用", "rd_y3"),
    "rd_domestic": ("境内研发费用", "rd_domestic"),
    "hightech_revenue": ("高新技术产品收入", "hightech_revenue"),
    "ip_class1": ("I类知识产权数", "ip_class1"),
    "ip_class2": ("II类知识产权数", "ip_class2"),
    "ip_numbers": ("知识产权编号", "ip_numbers"),
    "major_incident": ("重大事故", "major_incident"),
    "applied_on": ("申报日期", "applied_on"),
}
_OPTIONAL_COLUMNS = frozenset(
    {"intermediary", "ip_numbers", "applied_on", "revenue_y2", "revenue_y3", "rd_y2", "rd_y3"}
)
REQUIRED_COLUMNS: frozenset[str] = frozenset(APPLICATION_COLUMNS) - _OPTIONAL_COLUMNS

MAX_CELL_CHARS = 1_000
MAX_NAME_CHARS = 200
MAX_IP_NUMBERS = 200
# 200 registration numbers do not fit in 1,000 characters; allow 50 for each.
MAX_IP_NUMBERS_CHARS = 50 * MAX_IP_NUMBERS
MAX_MONEY_YUAN = 10**13
# Staff and IP counts: far above any enterprise, far below the INTEGER columns' 2^31 - 1.
MAX_COUNT = 10_000_000
EARLIEST_DATE = date(1949, 10, 1)

_KINDS = {
    "首次申报": ApplicationKind.FIRST_TIME,
    "first_time": ApplicationKind.FIRST_TIME,
    "重新认定": ApplicationKind.RENEWAL,
    "renewal": ApplicationKind.RENEWAL,
}
_YES_NO = {
    "是": True, "有": True, "yes": True, "y": True, "true": True, "1": True,
    "否": False, "无": False, "no": False, "n": False, "false": False, "0": False,
}
_MONEY = re.compile(r"(?P<sign>-?)(?P<int>\d+|\d{1,3}(?:,\d{3})+)(?:\.(?P<frac>\d+))?")
_INTEGER = re.compile(r"-?(?:\d+|\d{1,3}(?:,\d{3})+)")
_DATE_FORMATS = (
    re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})"),
    re.compile(r"(\d{4})(年)(\d{1,2})月(\d{1,2})日"),
    re.compile(r"(\d{4})()(\d{2})(\d{2})"),
)
_IP_SEPARATORS = re.compile(r"[;；]")
# Control characters but tab and line breaks: PostgreSQL text refuses NUL, and none of
# them belongs in an operator's file.
STRAY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class RowError:
    row: int
    column: str  # the Chinese header
    reason: str  # Chinese, optionally followed by " / " and English


@dataclass(frozen=True)
class ApplicationRow:
    row: int
    credit_code: str
    name: str
    district_code: str
    registered_on: date
    kind: str
    tech_field: str
    intermediary: str | None
    staff_total: int
    staff_tech: int
    revenue_fen: tuple[int, ...]  # most recent year first; 1 to 3 years
    rd_fen: tuple[int, ...]  # the same years as revenue_fen
    rd_domestic_fen: int
    hightech_revenue_fen: int
    ip_class1: int
    ip_class2: int
    ip_numbers: tuple[str, ...]
    major_incident: bool
    applied_on: date | None

    def digest(self) -> str:
        """SHA-256 of every field but the row number: the same data gives the same digest."""
        fields = asdict(self)
        del fields["row"]
        canonical = json.dumps(
            fields, default=_json_default, ensure_ascii=False, sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_money_fen(text: str) -> int:
    """Yuan as written ("1,234,567.89", full-width too) to integer fen, exactly."""
    value = _normalise(text)
    match = _MONEY.fullmatch(value)
    if match is None:
        raise ValueError(f"金额格式错误：「{text}」 / not an amount in yuan")
    if match["sign"]:
        raise ValueError("金额不能为负数 / must not be negative")
    try:
        yuan = Decimal(match["int"].replace(",", "") + "." + (match["frac"] or "0"))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only digits
        raise ValueError(f"金额格式错误：「{text}」 / not an amount in yuan") from exc
    fen = yuan * 100
    if fen != fen.to_integral_value():
        raise ValueError("金额最多保留两位小数（到分） / at most 2 decimals")
    if yuan > MAX_MONEY_YUAN:
        raise ValueError("金额超过 10 万亿元，请核对单位（应为元） / implausibly large (yuan?)")
    return int(fen)


def parse_date(text: str, *, not_before: date = EARLIEST_DATE, not_after: date) -> date:
    """A date written as YYYY-MM-DD, YYYY/MM/DD, YYYY年M月D日 or YYYYMMDD."""
    value = _normalise(text)
    for pattern in _DATE_FORMATS:
        match = pattern.fullmatch(value)
        if match is not None:
            break
    else:
        raise ValueError(f"无法识别的日期：「{text}」（应为 YYYY-MM-DD） / unrecognised date")
    year, _, month, day = match.groups()
    try:
        parsed = date(int(year), int(month), int(day))
    except ValueError as exc:
        raise ValueError(f"日期不存在：「{text}」 / no such date") from exc
    if parsed < not_before:
        raise ValueError(f"日期 {parsed} 早于 {not_before} / before {not_before}")
    if parsed > not_after:
        raise ValueError(f"日期 {parsed} 晚于 {not_after} / after {not_after}")
    return parsed


def validate_row(
    row: int, cells: Mapping[str, str], *, districts: Mapping[str, str], today: date
) -> ApplicationRow | list[RowError]:
    """Check every cell of one row; return the row, or every problem found in it."""
    check = _RowCheck(row, cells)

    credit_code = check.field("credit_code", _parse_credit_code)
    name = check.field("name", _parse_name)
    district_code = check.field("district", lambda text: _lookup_district(text, districts))
    registered_on = check.field(
        "registered_on", lambda text: parse_date(text, not_after=today)
    )
    kind = check.field("kind", _parse_kind)
    tech_field = check.field("tech_field", _parse_tech_field)
    intermediary = check.field("intermediary", _parse_name, optional=True)
    staff_total = check.field("staff_total", _parse_count)
    staff_tech = check.field("staff_tech", _parse_count)
    revenue = [check.field(f"revenue_y{year}", parse_money_fen, optional=year > 1)
               for year in (1, 2, 3)]
    rd = [check.field(f"rd_y{year}", parse_money_fen, optional=year > 1) for year in (1, 2, 3)]
    rd_domestic = check.field("rd_domestic", parse_money_fen)
    hightech_revenue = check.field("hightech_revenue", parse_money_fen)
    ip_class1 = check.field("ip_class1", _parse_count)
    ip_class2 = check.field("ip_class2", _parse_count)
    ip_numbers = check.field("ip_numbers", _parse_ip_numbers, optional=True) or ()
    major_incident = check.field("major_incident", _parse_yes_no)
    applied_on = check.field("applied_on", lambda text: parse_date(text, not_after=today),
                             optional=True)

    if staff_total == 0:
        check.fail("staff_total", "职工总数不能为 0 / must be positive")
    if staff_total is not None and staff_tech is not None and staff_tech > staff_total:
        check.fail(
            "staff_tech",
            f"科技人员数（{staff_tech}）超过职工总数（{staff_total}） / exceeds total staff",
        )
    years = _check_years(check)
    rd_years = [value for value in rd[:years] if value is not None]
    if len(rd_years) == years and rd_domestic is not None and rd_domestic > sum(rd_years):
        check.fail("rd_domestic", "境内研发费用超过研发费用合计 / exceeds total R&D expense")
    if revenue[0] is not None and hightech_revenue is not None and hightech_revenue > revenue[0]:
        check.fail(
            "hightech_revenue", "高新技术产品收入超过近一年销售收入 / exceeds the year's revenue"
        )
    if registered_on is not None and applied_on is not None and applied_on < registered_on:
        check.fail("applied_on", "申报日期早于注册日期 / before the registration date")

    if check.errors:
        return check.errors
    # Every required field parsed without error, so none of these is None.
    assert credit_code and name and district_code and registered_on and kind and tech_field
    assert staff_total is not None and staff_tech is not None and rd_domestic is not None
    assert hightech_revenue is not None and ip_class1 is not None and ip_class2 is not None
    assert major_incident is not None
    return ApplicationRow(
        row=row,
        credit_code=credit_code,
        name=name,
        district_code=district_code,
        registered_on=registered_on,
        kind=kind,
        tech_field=tech_field,
        intermediary=intermediary,
        staff_total=staff_total,
        staff_tech=staff_tech,
        revenue_fen=tuple(v for v in revenue[:years] if v is not None),
        rd_fen=tuple(v for v in rd[:years] if v is not None),
        rd_domestic_fen=rd_domestic,
        hightech_revenue_fen=hightech_revenue,
        ip_class1=ip_class1,
        ip_class2=ip_class2,
        ip_numbers=ip_numbers,
        major_incident=major_incident,
        applied_on=applied_on,
    )


class _RowCheck:
    """Collects the errors of one row while its fields are parsed."""

    def __init__(self, row: int, cells: Mapping[str, str]):
        self.row = row
        self.cells = cells
        self.errors: list[RowError] = []
        self.given: set[str] = set()

    def field(
        self, key: str, parse: Callable[[str], T], *, optional: bool = False
    ) -> T | None:
        """Parse one cell; None when it is blank or wrong (the error is recorded)."""
        raw = self.cells.get(key, "")
        text = raw.strip(" \u3000\u00a0\ufeff")
        if not text.strip():
            if not optional:
                self.fail(key, "必填项为空 / required value missing")
            return None
        self.given.add(key)
        limit = MAX_IP_NUMBERS_CHARS if key == "ip_numbers" else MAX_CELL_CHARS
        if len(text) > limit:
            self.fail(key, f"内容过长（{len(text)} 个字符，上限 {limit}） / cell too long")
            return None
        try:
            return parse(text)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None

    def fail(self, key: str, reason: str) -> None:
        self.errors.append(RowError(self.row, APPLICATION_COLUMNS[key][0], reason))


def _check_years(check: _RowCheck) -> int:
    """How many fiscal years the row reports (1–3); records gaps and unpaired years."""
    years = 1
    for year in (2, 3):
        revenue, rd = f"revenue_y{year}", f"rd_y{year}"
        has_revenue, has_rd = revenue in check.given, rd in check.given
        if has_revenue != has_rd:
            present, absent = (revenue, rd) if has_revenue else (rd, revenue)
            check.fail(
                absent,
                f"已填写「{APPLICATION_COLUMNS[present][0]}」，本列不能为空"
                " / revenue and R&D must be given for the same years",
            )
        if has_revenue or has_rd:
            if years != year - 1:
                for key in (f"revenue_y{year - 1}", f"rd_y{year - 1}"):
                    check.fail(key, "已填写第三年数据，第二年数据不能为空 / year 3 needs year 2")
            years = year
    return years


def _normalise(text: str) -> str:
    """Full-width digits, commas and letters to ASCII; outer whitespace removed."""
    return unicodedata.normalize("NFKC", text).strip()


def _parse_credit_code(text: str) -> str:
    try:
        return str(uscc.validate(uscc.compact(_normalise(text))))
    except InvalidLength as exc:
        length = len(uscc.compact(_normalise(text)))
        raise ValueError(
            f"统一社会信用代码应为 18 位，实为 {length} 位 / wrong length ({length}, not 18)"
        ) from exc
    except InvalidFormat as exc:
        raise ValueError(
            "统一社会信用代码格式错误：前 8 位应为数字，其余为数字或大写字母（不含 I、O、Z、S、V）"
            " / invalid format"
        ) from exc
    except InvalidChecksum as exc:
        raise ValueError(
            "统一社会信用代码校验位错误，请核对号码 / check character is wrong"
        ) from exc
    except ValidationError as exc:  # pragma: no cover - any other stdnum complaint
        raise ValueError(f"统一社会信用代码无效 / invalid ({exc})") from exc


def _parse_name(text: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text):
        raise ValueError("含有换行、制表符等控制字符 / contains control characters")
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"超过 {MAX_NAME_CHARS} 个字符 / longer than {MAX_NAME_CHARS} characters")
    return text


def _lookup_district(text: str, districts: Mapping[str, str]) -> str:
    code = districts.get(text.strip())
    if code is None:
        raise ValueError(f"未知的区市：「{text}」 / unknown district")
    return code


def _parse_kind(text: str) -> str:
    kind = _KINDS.get(_normalise(text).lower())
    if kind is None:
        raise ValueError(f"未知的申报类型：「{text}」（应为 首次申报 或 重新认定） / unknown kind")
    return kind.value


def _parse_tech_field(text: str) -> str:
    try:
        return TechField(_normalise(text)).value
    except ValueError:
        fields = "、".join(field.value for field in TechField)
        raise ValueError(
            f"「{text}」不在国家重点支持的 8 个技术领域之内（{fields}） / not one of the 8 fields"
        ) from None


def _parse_count(text: str) -> int:
    value = _normalise(text)
    if _INTEGER.fullmatch(value) is None:
        raise ValueError(f"应为整数：「{text}」 / not a whole number")
    number = int(value.replace(",", ""))
    if number < 0:
        raise ValueError("不能为负数 / must not be negative")
    if number > MAX_COUNT:
        raise ValueError(f"数值超过 {MAX_COUNT}，请核对 / implausibly large")
    return number


def _parse_ip_numbers(text: str) -> tuple[str, ...]:
    if STRAY_CONTROL.search(text):
        raise ValueError("含有控制字符 / contains control characters")
    numbers = tuple(
        part for part in (_normalise(p) for p in _IP_SEPARATORS.split(text)) if part
    )
    if len(numbers) > MAX_IP_NUMBERS:
        raise ValueError(
            f"知识产权编号过多（{len(numbers)} 个，上限 {MAX_IP_NUMBERS}） / too many entries"
        )
    return numbers


def _parse_yes_no(text: str) -> bool:
    answer = _YES_NO.get(_normalise(text).lower())
    if answer is None:
        raise ValueError(f"应为「是」或「否」：「{text}」 / expected yes or no")
    return answer


def _json_default(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")
