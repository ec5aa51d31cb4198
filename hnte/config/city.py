"""The city file (districts, targets, batch calendars, rules, schedules) and its schema.

``load_city()`` reads a TOML file with ``tomllib`` and validates it with frozen pydantic
models that refuse unknown keys; every problem becomes one ``CityConfigError`` line that
names the file, the key path and the problem, in Chinese then English.
"""

from __future__ import annotations

import math
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hnte.config.settings import BUNDLED_CITY_FILE

DEADLINE_STAGES: tuple[str, ...] = (
    "district_review",
    "formal_check",
    "expert_review",
    "onsite_inspection",
    "approval",
    "public_notice",
)
# Stages with a pass rate of their own in projections; kept here, not imported from
# models/, because imports point models/ -> config/.
PROJECTION_STAGES: tuple[str, ...] = (
    "submitted",
    *DEADLINE_STAGES,
    "objection_review",
)


class CityConfigError(Exception):
    """A city file that cannot be used; ``str()`` is one line, Chinese then English."""

    def __init__(
        self,
        file: Path | str,
        key: str,
        problem: str,
        problem_zh: str | None = None,
        *,
        line: int | None = None,
    ) -> None:
        self.file = Path(file)
        self.key = key
        self.problem = _one_line(problem)
        self.problem_zh = _one_line(problem_zh or problem)
        self.line = line
        at_zh = f"{key}：" if key else ""
        at_en = f"{key}: " if key else ""
        super().__init__(
            f"城市配置文件 {self.file} 有误：{at_zh}{self.problem_zh}"
            f" / city file {self.file}: {at_en}{self.problem}"
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rule(zh: str, en: str, at: str = "") -> PydanticCustomError:
    """A rule violation; ``at`` extends the error location down to the offending key."""
    return PydanticCustomError("city_rule", "{en}", {"zh": zh, "en": en, "at": at})


# --- field types -------------------------------------------------------------------

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise _rule(f"邮箱地址格式不正确：{value!r}", f"not an email address: {value!r}")
    return value


def _digits(n: int, zh_what: str, en_what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not (len(value) == n and value.isascii() and value.isdigit()):
            raise _rule(
                f"{zh_what}应为 {n} 位数字，当前为 {value!r}",
                f"{en_what} must be {n} digits, got {value!r}",
            )
        return value

    return AfterValidator(check)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS = (  # (zh, en, low, high, names indexed from low)
    ("分钟", "minute", 0, 59, ()),
    ("小时", "hour", 0, 23, ()),
    ("日", "day of month", 1, 31, ()),
    ("月", "month", 1, 12, _MONTHS),
    ("星期", "day of week", 0, 7, _DAYS),
)
_CRON_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def _cron_values(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    def number(token: str) -> int:
        if token.isdigit():
            value = int(token)
        elif token in names:
            value = names.index(token) + low
        else:
            raise ValueError(token)
        if not low <= value <= high:
            raise ValueError(token)
        return value

    values: set[int] = set()
    for item in text.lower().split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            raise ValueError(item)
        span, step = match.group(1), int(match.group(2) or 1)
        if step < 1:
            raise ValueError(item)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (number(t) for t in span.split("-"))
        else:
            first = number(span)
            last = high if match.group(2) else first
        if first > last:
            raise ValueError(item)
        values.update(range(first, last + 1, step))
    return values


def _cron(value: str) -> str:
    """Check a 5-field crontab line and rewrite its day of week as names.

    Crontab reads day-of-week 0 or 7 as Sunday and 1 as Monday, but APScheduler 3's
    ``CronTrigger.from_crontab`` reads 0 as Monday, so "0 9 * * 1" would fire on
    Tuesdays; names ("mon") mean the same in both.
    """
    fields = value.split()
    if len(fields) != 5:
        raise _rule(
            f"应为 5 段 crontab（分 时 日 月 星期），当前为 {value!r}",
            f"expected a 5-field crontab line (minute hour day month weekday), got {value!r}",
        )
    sets = []
    for text, (zh, en, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            sets.append(_cron_values(text, low, high, names))
        except ValueError:
            raise _rule(
                f"crontab {value!r} 的“{zh}”段 {text!r} 无效（范围 {low}–{high}）",
                f"crontab {value!r}: invalid {en} field {text!r} (range {low}-{high})",
            ) from None
    weekdays = {d % 7 for d in sets[4]}
    if len(sets[2]) < 31 and len(weekdays) < 7:
        # crontab ORs a restricted day of month with a restricted weekday, APScheduler ANDs
        raise _rule(
            f"crontab {value!r} 同时限定了日和星期，含义不明确，请只限定其一",
            f"crontab {value!r} restricts both day of month and day of week; pick one",
        )
    if len(weekdays) == 7:
        fields[4] = "*"
    else:
        fields[4] = ",".join(_DAYS[d] for d in sorted(weekdays))
    return " ".join(fields)


Email = Annotated[str, AfterValidator(_email)]
Cron = Annotated[str, AfterValidator(_cron)]
Percent = Annotated[float, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ----------------------------------------------------------------------


class CityInfo(_Section):
    name: Annotated[str, Field(min_length=1)]
    province_code: Annotated[str, _digits(2, "省份代码", "province code")]
    year: Annotated[int, Field(ge=2000, le=2100)]
    timezone: str
    language: Literal["zh", "en"]
    operator_emails: Annotated[list[Email], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _rule(f"未知的时区 {value!r}", f"unknown time zone {value!r}") from None
        return value


class TargetConfig(_Section):
    net_increase: int
    stock_goal: Count
    start_stock: Count

    @model_validator(mode="after")
    def _stock_adds_up(self) -> TargetConfig:
        if self.start_stock + self.net_increase != self.stock_goal:
            raise _rule(
                f"应等于 start_stock {self.start_stock} + net_increase {self.net_increase}"
                f" = {self.start_stock + self.net_increase}，当前为 {self.stock_goal}",
                f"must equal start_stock {self.start_stock} + net_increase"
                f" {self.net_increase} = {self.start_stock + self.net_increase},"
                f" got {self.stock_goal}",
                at="stock_goal",
            )
        return self


class DistrictConfig(_Section):
    code: Annotated[str, _digits(6, "行政区划代码", "division code")]
    name: Annotated[str, Field(min_length=1)]
    aliases: list[str] = []  # other names seen in imported lists, e.g. 黄岛区
    liaison_emails: Annotated[list[Email], Field(min_length=1)]
    net_increase: int
    stock_goal: Count
    weight: Annotated[float, Field(gt=0)]


class BatchConfig(_Section):
    code: Annotated[str, Field(min_length=1)]
    sequence: Annotated[int, Field(ge=1)]
    title: Annotated[str, Field(min_length=1)]
    seed: int
    application_deadline: date
    deadlines: dict[str, date]

    @field_validator("deadlines")
    @classmethod
    def _all_stages(cls, value: dict[str, date]) -> dict[str, date]:
        for stage in value:
            if stage not in DEADLINE_STAGES:
                raise _rule(
                    f"未知的阶段，应为 {', '.join(DEADLINE_STAGES)} 之一",
                    f"unknown stage; expected one of {', '.join(DEADLINE_STAGES)}",
                    at=stage,
                )
        for stage in DEADLINE_STAGES:
            if stage not in value:
                raise _rule("缺少该阶段的截止日期", "missing deadline for this stage", at=stage)
        return {stage: value[stage] for stage in DEADLINE_STAGES}

    @model_validator(mode="after")
    def _in_order(self) -> BatchConfig:
        before, before_day = "application_deadline", self.application_deadline
        for stage in DEADLINE_STAGES:
            day = self.deadlines[stage]
            if day <= before_day:
                raise _rule(
                    f"{day} 应晚于 {before}（{before_day}）",
                    f"{day} must be after {before} ({before_day})",
                    at=f"deadlines.{stage}",
                )
            before, before_day = stage, day
        return self


class ReviewConfig(_Section):
    panel_size: Annotated[int, Field(ge=5)]  # 认定办法: at least 5 experts
    panel_min_technical_share_percent: Percent
    panel_min_financial: Count
    pass_score: Annotated[float, Field(ge=0, le=100)]
    borderline_low: Annotated[float, Field(ge=0, le=100)]
    borderline_high: Annotated[float, Field(ge=0, le=100)]
    inspection_random_percent: Percent
    notice_working_days: Annotated[int, Field(ge=1)]
    certificate_pattern: str

    @field_validator("certificate_pattern")
    @classmethod
    def _formats(cls, value: str) -> str:
        try:
            if value.format(year=2021, province="37", seq=1) == value.format(
                year=2021, province="37", seq=2
            ):
                raise ValueError("no {seq}, every number would be the same")
        except (KeyError, IndexError, ValueError) as exc:
            raise _rule(
                f"无法生成证书编号（可用 {{year}} {{province}} {{seq}}）：{exc}",
                f"cannot format a certificate number (use {{year}} {{province}} {{seq}}): {exc}",
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ReviewConfig:
        if self.borderline_low > self.borderline_high:
            raise _rule(
                f"不能小于 borderline_low {self.borderline_low:g}",
                f"must not be below borderline_low {self.borderline_low:g}",
                at="borderline_high",
            )
        technical = math.ceil(self.panel_size * self.panel_min_technical_share_percent / 100)
        if technical + self.panel_min_financial > self.panel_size:
            raise _rule(
                f"{technical} 名技术专家 + {self.panel_min_financial} 名财务专家"
                f"超过专家组人数 {self.panel_size}",
                f"{technical} technical + {self.panel_min_financial} financial experts"
                f" exceed panel_size {self.panel_size}",
                at="panel_min_financial",
            )
        return self


class ScreeningConfig(_Section):
    intermediary_min_applicants: Annotated[int, Field(ge=1)]
    intermediary_max_pass_rate_percent: Percent
    threshold_margin_basis_points: Count


class ProjectionConfig(_Section):
    default_pass_rate_percent: dict[str, Percent]
    late_tolerance_percent: Percent

    @field_validator("default_pass_rate_percent")
    @classmethod
    def _all_stages(cls, value: dict[str, float]) -> dict[str, float]:
        for stage in value:
            if stage not in PROJECTION_STAGES:
                raise _rule(
                    f"未知的阶段，应为 {', '.join(PROJECTION_STAGES)} 之一",
                    f"unknown stage; expected one of {', '.join(PROJECTION_STAGES)}",
                    at=stage,
                )
        for stage in PROJECTION_STAGES:
            if stage not in value:
                raise _rule("缺少该阶段的默认通过率", "missing pass rate for this stage", at=stage)
        return {stage: value[stage] for stage in PROJECTION_STAGES}


class ReminderConfig(_Section):
    working_days_before: list[Count]  # kept sorted, earliest reminder first
    overdue_copy_operator: bool

    @field_validator("working_days_before")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise _rule("天数不能重复", "days must not repeat")
        return sorted(value, reverse=True)


class ScheduleConfig(_Section):
    deadline_reminders: Cron
    target_check: Cron
    weekly_digest: Cron
    city_summary: Cron
    close_notices: Cron
    outbox_dispatch: Cron
    misfire_grace_seconds: Annotated[int, Field(ge=1)]

    def crons(self) -> dict[str, str]:
        """Job name -> crontab line (day of week as names), in file order."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name != "misfire_grace_seconds"
        }


class CityConfig(_Section):
    city: CityInfo
    target: TargetConfig
    districts: Annotated[list[DistrictConfig], Field(min_length=1)]
    batches: Annotated[list[BatchConfig], Field(min_length=1)]
    review: ReviewConfig
    screening: ScreeningConfig
    projection: ProjectionConfig
    reminders: ReminderConfig
    schedules: ScheduleConfig

    @model_validator(mode="after")
    def _consistent(self) -> CityConfig:
        _check_districts(self)
        _check_batches(self)
        return self

    def district_by_name_or_code(self, value: str) -> DistrictConfig | None:
        """The district whose code, name or alias is ``value`` (surrounding spaces ignored)."""
        value = value.strip()
        for district in self.districts:
            if value in (district.code, district.name, *district.aliases):
                return district
        return None

    def batch_by_code(self, code: str) -> BatchConfig | None:
        return next((b for b in self.batches if b.code == code.strip()), None)


def _check_districts(config: CityConfig) -> None:
    seen: dict[str, int] = {}
    for i, district in enumerate(config.districts):
        if not district.code.startswith(config.city.province_code):
            raise _rule(
                f"{district.code} 不在省份 {config.city.province_code} 内",
                f"{district.code} is not in province {config.city.province_code}",
                at=f"districts[{i}].code",
            )
        for field, value in (("code", district.code), ("name", district.name)) + tuple(
            ("aliases", alias) for alias in district.aliases
        ):
            if value in seen:
                raise _rule(
                    f"{value!r} 与 districts[{seen[value]}] 重复",
                    f"{value!r} duplicates districts[{seen[value]}]",
                    at=f"districts[{i}].{field}",
                )
            seen[value] = i
    for field, zh in (("net_increase", "净增目标"), ("stock_goal", "总量目标")):
        total = sum(getattr(d, field) for d in config.districts)
        goal = getattr(config.target, field)
        if total != goal:
            raise _rule(
                f"各区（市）{zh}之和为 {total}，不等于全市 target.{field} {goal}",
                f"districts sum to {total}, not the city's target.{field} {goal}",
                at=f"districts[*].{field}",
            )


def _check_batches(config: CityConfig) -> None:
    codes: dict[str, int] = {}
    sequences: dict[int, int] = {}
    for i, batch in enumerate(config.batches):
        if batch.code in codes:
            raise _rule(
                f"批次编号 {batch.code!r} 与 batches[{codes[batch.code]}] 重复",
                f"batch code {batch.code!r} duplicates batches[{codes[batch.code]}]",
                at=f"batches[{i}].code",
            )
        if batch.sequence in sequences:
            raise _rule(
                f"批次序号 {batch.sequence} 与 batches[{sequences[batch.sequence]}] 重复",
                f"sequence {batch.sequence} duplicates batches[{sequences[batch.sequence]}]",
                at=f"batches[{i}].sequence",
            )
        codes[batch.code], sequences[batch.sequence] = i, i
        # a file copied from last year with one date left unchanged is the usual slip
        if batch.application_deadline.year != config.city.year:
            raise _rule(
                f"{batch.application_deadline} 不在 city.year {config.city.year} 年内",
                f"{batch.application_deadline} is not in city.year {config.city.year}",
                at=f"batches[{i}].application_deadline",
            )


# --- loading -----------------------------------------------------------------------


def load_city(path: Path | str | None = None) -> CityConfig:
    """Read and validate a city file (the bundled Qingdao 2021 file when ``path`` is None)."""
    file = BUNDLED_CITY_FILE if path is None else Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CityConfigError(
            file, "", "file not found (see HNTE_CITY_FILE)", "文件不存在（见 HNTE_CITY_FILE）"
        ) from None
    except UnicodeDecodeError as exc:
        raise CityConfigError(
            file,
            "",
            f"not UTF-8 text (byte {exc.start})",
            f"不是 UTF-8 文本（第 {exc.start} 字节）",
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CityConfigError(file, "", f"cannot read: {reason}", f"无法读取：{reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(file, exc) from None
    try:
        return CityConfig.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(file, exc) from None


_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _syntax_error(file: Path, exc: tomllib.TOMLDecodeError) -> CityConfigError:
    message = str(exc)
    match = _TOML_AT.search(message)
    reason = message[: match.start()] if match else message
    if match and match.group(1):
        line, column = int(match.group(1)), int(match.group(2))
        zh_at, en_at = f"第 {line} 行第 {column} 列", f"at line {line}, column {column}"
    else:
        line, zh_at, en_at = None, "文件末尾", "at end of file"
    return CityConfigError(
        file,
        "",
        f"TOML syntax error {en_at}: {reason}",
        f"TOML 语法错误（{zh_at}）：{reason}",
        line=line,
    )


_ZH_PROBLEMS = {
    "missing": "缺少必填项",
    "extra_forbidden": "未知的键（拼写错误？）",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "string_type": "应为字符串",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "date_type": "应为日期（如 2021-05-31，不加引号）",
    "date_parsing": "应为日期（如 2021-05-31，不加引号）",
    "date_from_datetime_parsing": "应为日期（如 2021-05-31，不加引号）",
    "date_from_datetime_inexact": "应为日期，不带时间",
    "list_type": "应为列表 [...]",
    "dict_type": "应为表 [...]",
    "model_type": "应为表 [...]",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "too_short": "至少需要 {min_length} 项",
    "string_too_short": "不能为空",
    "literal_error": "应为 {expected} 之一",
}
_EN_PROBLEMS = {"missing": "missing required key", "extra_forbidden": "unknown key (typo?)"}


def _schema_error(file: Path, exc: ValidationError) -> CityConfigError:
    error = exc.errors(include_url=False)[0]
    kind, ctx = error["type"], error.get("ctx") or {}
    key = _key_path(error["loc"])
    if kind == "city_rule":
        at = ctx.get("at", "")
        if at:
            key = f"{key}.{at}" if key and not at.startswith("[") else f"{key}{at}"
        return CityConfigError(file, key, ctx["en"], ctx["zh"])
    shown_ctx = {name: _plain(value) for name, value in ctx.items()}
    zh = _ZH_PROBLEMS.get(kind, "取值无效").format(**shown_ctx).replace("' or '", "' 或 '")
    en = _EN_PROBLEMS.get(kind, error["msg"])
    if kind not in ("missing", "extra_forbidden"):
        shown = repr(error["input"])
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        zh, en = f"{zh}，当前为 {shown}", f"{en} (got {shown})"
    return CityConfigError(file, key, en, zh)


def _plain(value: object) -> object:
    """71.0 -> 71, so limits read as they were written."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


__all__ = [
    "DEADLINE_STAGES",
    "PROJECTION_STAGES",
    "BatchConfig",
    "CityConfig",
    "CityConfigError",
    "CityInfo",
    "DistrictConfig",
    "ProjectionConfig",
    "ReminderConfig",
    "ReviewConfig",
    "ScheduleConfig",
    "ScreeningConfig",
    "TargetConfig",
    "load_city",
]
