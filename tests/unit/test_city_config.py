"""The bundled city file and the errors a broken city file gives."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hnte.config.city import (
    DEADLINE_STAGES,
    PROJECTION_STAGES,
    CityConfig,
    CityConfigError,
    load_city,
)
from hnte.config.settings import BUNDLED_CITY_FILE

BUNDLED = BUNDLED_CITY_FILE.read_text(encoding="utf-8")


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    """The bundled file with the first ``old`` replaced by ``new``, written to tmp_path."""
    assert old in BUNDLED, f"{old!r} is not in the bundled file"
    path = tmp_path / "city.toml"
    path.write_text(BUNDLED.replace(old, new, 1), encoding="utf-8")
    return path


def load_error(path: Path) -> CityConfigError:
    with pytest.raises(CityConfigError) as caught:
        load_city(path)
    return caught.value


# --- the bundled file ----------------------------------------------------------------


def test_bundled_file_loads_as_qingdao_2021():
    config = load_city()
    assert config.city.name == "青岛市"
    assert config.city.province_code == "37"
    assert config.city.year == 2021
    assert config.city.timezone == "Asia/Shanghai"
    assert (config.target.net_increase, config.target.stock_goal) == (300, 4600)
    assert config.target.start_stock + config.target.net_increase == config.target.stock_goal


def test_bundled_file_lists_the_ten_districts_in_order_with_division_codes():
    config = load_city()
    assert [(d.name, d.code) for d in config.districts] == [
        ("市南区", "370202"),
        ("市北区", "370203"),
        ("李沧区", "370213"),
        ("崂山区", "370212"),
        ("西海岸新区", "370211"),
        ("城阳区", "370214"),
        ("即墨区", "370215"),
        ("胶州市", "370281"),
        ("平度市", "370283"),
        ("莱西市", "370285"),
    ]
    assert all(d.liaison_emails and d.weight > 0 for d in config.districts)


def test_district_allocations_sum_exactly_to_the_city_target():
    config = load_city()
    assert sum(d.net_increase for d in config.districts) == config.target.net_increase == 300
    assert sum(d.stock_goal for d in config.districts) == config.target.stock_goal == 4600


def test_big_districts_carry_more_of_the_target_than_small_ones():
    config = load_city()
    big = [config.district_by_name_or_code(n) for n in ("崂山区", "西海岸新区", "城阳区")]
    small = [config.district_by_name_or_code(n) for n in ("平度市", "莱西市")]
    assert min(d.stock_goal for d in big) > max(d.stock_goal for d in small)
    assert min(d.net_increase for d in big) > max(d.net_increase for d in small)


def test_bundled_batches_have_strictly_increasing_deadlines_after_applications_close():
    config = load_city()
    assert [(b.code, b.sequence, b.title) for b in config.batches] == [
        ("2021-1", 1, "2021年第一批"),
        ("2021-2", 2, "2021年第二批"),
        ("2021-3", 3, "2021年第三批"),
    ]
    for batch in config.batches:
        assert tuple(batch.deadlines) == DEADLINE_STAGES
        days = [batch.application_deadline, *batch.deadlines.values()]
        assert days == sorted(set(days))
    assert config.batches[-1].deadlines["public_notice"].month == 12


def test_bundled_rules_match_the_national_recognition_rules():
    config = load_city()
    assert config.review.panel_size == 5
    assert config.review.pass_score == 71
    assert config.review.notice_working_days == 10
    assert (
        config.review.certificate_pattern.format(
            year=2021, province=config.city.province_code, seq=42
        )
        == "GR20213700042"
    )
    assert tuple(config.projection.default_pass_rate_percent) == PROJECTION_STAGES
    assert config.reminders.working_days_before == [5, 1]


def test_districts_are_found_by_name_code_or_alias():
    config = load_city()
    assert config.district_by_name_or_code("崂山区").code == "370212"
    assert config.district_by_name_or_code(" 370285 ").name == "莱西市"
    assert config.district_by_name_or_code("黄岛区").name == "西海岸新区"
    assert config.district_by_name_or_code("济南市") is None


def test_batches_are_found_by_code():
    config = load_city()
    assert config.batch_by_code("2021-2").title == "2021年第二批"
    assert config.batch_by_code("2020-1") is None


def test_numeric_weekdays_follow_crontab_and_fire_on_monday_under_apscheduler():
    from apscheduler.triggers.cron import CronTrigger

    config = load_city()
    assert config.schedules.target_check == "0 9 * * mon"
    tz = ZoneInfo("Asia/Shanghai")
    trigger = CronTrigger.from_crontab(config.schedules.target_check, timezone=tz)
    fire = trigger.get_next_fire_time(None, datetime(2021, 6, 2, tzinfo=tz))
    assert (fire.date().isoformat(), fire.strftime("%a %H:%M")) == ("2021-06-07", "Mon 09:00")
    for cron in config.schedules.crons().values():
        CronTrigger.from_crontab(cron, timezone=tz)


def test_sunday_may_be_written_as_0_or_7():
    base = load_city().model_dump()
    for spelled in ("0", "7", "sun"):
        base["schedules"]["weekly_digest"] = f"30 9 * * {spelled}"
        assert CityConfig.model_validate(base).schedules.weekly_digest == "30 9 * * sun"


def test_loaded_config_is_frozen():
    config = load_city()
    with pytest.raises(ValidationError):
        config.city.year = 2022


def test_load_city_accepts_a_path_given_as_a_string(tmp_path):
    path = write_variant(tmp_path, 'name = "青岛市"', 'name = "青岛市"')
    assert load_city(str(path)).city.name == "青岛市"


# --- broken files ----------------------------------------------------------------------

BROKEN = [
    pytest.param(
        'name = "青岛市"',
        'name = "青岛市"\ncolour = "red"',
        "city.colour",
        "未知的键",
        "unknown key",
        id="unknown-key-in-section",
    ),
    pytest.param(
        "weight = 4\n",
        "weight = 4\nphone = 1\n",
        "districts[0].phone",
        "未知的键",
        "unknown key",
        id="unknown-key-in-district",
    ),
    pytest.param(
        "[target]",
        "[targets]\nx = 1\n\n[target]",
        "targets",
        "未知的键",
        "unknown key",
        id="unknown-top-level-table",
    ),
    pytest.param(
        "year = 2021",
        'year = "二〇二一"',
        "city.year",
        "应为整数",
        "integer",
        id="wrong-type",
    ),
    pytest.param(
        "panel_size = 5",
        "# panel_size = 5",
        "review.panel_size",
        "缺少必填项",
        "missing required key",
        id="missing-key",
    ),
    pytest.param(
        "net_increase = 12",
        "net_increase = 13",
        "districts[*].net_increase",
        "之和为 301",
        "districts sum to 301, not the city's target.net_increase 300",
        id="net-increase-not-summing",
    ),
    pytest.param(
        "stock_goal = 120",
        "stock_goal = 100",
        "districts[*].stock_goal",
        "之和为 4580",
        "districts sum to 4580, not the city's target.stock_goal 4600",
        id="stock-goal-not-summing",
    ),
    pytest.param(
        "start_stock = 4300",
        "start_stock = 4200",
        "target.stock_goal",
        "应等于 start_stock",
        "must equal start_stock 4200 + net_increase 300",
        id="target-not-adding-up",
    ),
    pytest.param(
        "formal_check = 2021-08-09",
        "formal_check = 2021-07-20",
        "batches[1].deadlines.formal_check",
        "应晚于 district_review",
        "must be after district_review (2021-07-26)",
        id="deadline-out-of-order",
    ),
    pytest.param(
        "application_deadline = 2021-05-31",
        "application_deadline = 2021-06-30",
        "batches[0].deadlines.district_review",
        "应晚于 application_deadline",
        "must be after application_deadline (2021-06-30)",
        id="deadline-before-applications-close",
    ),
    pytest.param(
        "approval = 2021-11-05\n",
        "",
        "batches[1].deadlines.approval",
        "缺少该阶段",
        "missing deadline",
        id="missing-stage-deadline",
    ),
    pytest.param(
        "expert_review = 2021-07-30",
        "expert_reviews = 2021-07-30",
        "batches[0].deadlines.expert_reviews",
        "未知的阶段",
        "unknown stage",
        id="unknown-stage-deadline",
    ),
    pytest.param(
        "application_deadline = 2021-05-31",
        "application_deadline = 2021-5-31",
        None,
        "TOML 语法错误",
        "TOML syntax error",
        id="unquoted-bad-date-is-a-syntax-error",
    ),
    pytest.param(
        "application_deadline = 2021-05-31",
        "application_deadline = 2020-05-31",
        "batches[0].application_deadline",
        "不在 city.year 2021 年内",
        "not in city.year 2021",
        id="batch-in-another-year",
    ),
    pytest.param(
        'code = "370203"',
        'code = "370202"',
        "districts[1].code",
        "与 districts[0] 重复",
        "duplicates districts[0]",
        id="duplicate-district-code",
    ),
    pytest.param(
        'name = "市北区"',
        'name = "市南区"',
        "districts[1].name",
        "与 districts[0] 重复",
        "duplicates districts[0]",
        id="duplicate-district-name",
    ),
    pytest.param(
        'code = "370213"',
        'code = "37021"',
        "districts[2].code",
        "应为 6 位数字",
        "must be 6 digits",
        id="short-division-code",
    ),
    pytest.param(
        'code = "370213"',
        'code = "410213"',
        "districts[2].code",
        "不在省份 37 内",
        "not in province 37",
        id="district-outside-the-province",
    ),
    pytest.param(
        'code = "2021-3"',
        'code = "2021-2"',
        "batches[2].code",
        "批次编号 '2021-2' 与 batches[1] 重复",
        "batch code '2021-2' duplicates batches[1]",
        id="duplicate-batch-code",
    ),
    pytest.param(
        '"kjj-licang@qingdao.example"',
        '"kjj-licang.qingdao.example"',
        "districts[2].liaison_emails[0]",
        "邮箱地址格式不正确",
        "not an email address: 'kjj-licang.qingdao.example'",
        id="bad-email",
    ),
    pytest.param(
        'liaison_emails = ["kjj-laixi@qingdao.example"]',
        "liaison_emails = []",
        "districts[9].liaison_emails",
        "至少需要 1 项",
        "at least 1 item",
        id="district-without-liaison",
    ),
    pytest.param(
        "weight = 1\n",
        "weight = 0\n",
        "districts[9].weight",
        "应大于 0",
        "greater than 0",
        id="non-positive-weight",
    ),
    pytest.param(
        'target_check = "0 9 * * 1"',
        'target_check = "0 9 * *"',
        "schedules.target_check",
        "应为 5 段 crontab",
        "expected a 5-field crontab line",
        id="cron-with-four-fields",
    ),
    pytest.param(
        'target_check = "0 9 * * 1"',
        'target_check = "0 25 * * 1"',
        "schedules.target_check",
        "“小时”段 '25' 无效",
        "invalid hour field '25'",
        id="cron-hour-out-of-range",
    ),
    pytest.param(
        'close_notices = "0 7 * * *"',
        'close_notices = "0 7 1 * mon"',
        "schedules.close_notices",
        "同时限定了日和星期",
        "restricts both day of month and day of week",
        id="cron-day-and-weekday",
    ),
    pytest.param(
        'language = "zh"',
        'language = "fr"',
        "city.language",
        "应为 'zh' 或 'en' 之一",
        "Input should be 'zh' or 'en'",
        id="unknown-language",
    ),
    pytest.param(
        'timezone = "Asia/Shanghai"',
        'timezone = "Asia/Beijing"',
        "city.timezone",
        "未知的时区",
        "unknown time zone 'Asia/Beijing'",
        id="unknown-time-zone",
    ),
    pytest.param(
        "borderline_high = 75",
        "borderline_high = 70",
        "review.borderline_high",
        "不能小于 borderline_low",
        "must not be below borderline_low",
        id="borderline-band-reversed",
    ),
    pytest.param(
        'certificate_pattern = "GR{year}{province}{seq:05d}"',
        'certificate_pattern = "GR{yr}{seq:05d}"',
        "review.certificate_pattern",
        "无法生成证书编号",
        "cannot format a certificate number",
        id="certificate-pattern-with-unknown-field",
    ),
    pytest.param(
        'certificate_pattern = "GR{year}{province}{seq:05d}"',
        'certificate_pattern = "GR{year}{province}"',
        "review.certificate_pattern",
        "无法生成证书编号",
        "no {seq}, every number would be the same",
        id="certificate-pattern-without-sequence",
    ),
    pytest.param(
        "objection_review = 60",
        "objection_review = 160",
        "projection.default_pass_rate_percent.objection_review",
        "应不大于 100",
        "less than or equal to 100",
        id="pass-rate-above-100",
    ),
    pytest.param(
        "working_days_before = [5, 1]",
        "working_days_before = [5, 5]",
        "reminders.working_days_before",
        "天数不能重复",
        "days must not repeat",
        id="repeated-reminder-day",
    ),
]


@pytest.mark.parametrize(("old", "new", "key", "zh", "en"), BROKEN)
def test_a_broken_city_file_names_the_file_the_key_and_the_problem(tmp_path, old, new, key, zh, en):
    path = write_variant(tmp_path, old, new)
    error = load_error(path)
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"城市配置文件 {path} 有误：")
    assert f" / city file {path}: " in message
    assert error.file == path
    if key is not None:
        assert error.key == key
        assert f"有误：{key}：" in message
        assert f"city file {path}: {key}: " in message
    assert zh in error.problem_zh and zh in message.split(" / city file ")[0]
    assert en in error.problem and en in message.split(" / city file ")[1]


def test_several_problems_report_the_first_one_only(tmp_path):
    path = write_variant(tmp_path, "year = 2021", 'year = "x"')
    path.write_text(
        path.read_text(encoding="utf-8").replace("panel_size = 5", "panel_size = 3"),
        encoding="utf-8",
    )
    error = load_error(path)
    assert error.key == "city.year"
    assert "panel_size" not in str(error)


def test_a_missing_city_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "nowhere" / "city.toml"
    error = load_error(path)
    assert error.file == path and error.key == ""
    assert str(error) == (
        f"城市配置文件 {path} 有误：文件不存在（见 HNTE_CITY_FILE）"
        f" / city file {path}: file not found (see HNTE_CITY_FILE)"
    )


def test_a_toml_syntax_error_gives_the_line(tmp_path):
    path = write_variant(tmp_path, "year = 2021", "year = ")
    line = BUNDLED.splitlines().index("year = 2021") + 1
    error = load_error(path)
    assert error.line == line
    assert f"TOML 语法错误（第 {line} 行第 8 列）：Invalid value" in str(error)
    assert f"TOML syntax error at line {line}, column 8: Invalid value" in str(error)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "city.toml"
    path.write_bytes(BUNDLED.encode("gb18030"))
    error = load_error(path)
    assert "不是 UTF-8" in str(error) and "not UTF-8" in str(error)


def test_a_directory_is_not_a_city_file(tmp_path):
    error = load_error(tmp_path)
    assert "cannot read" in str(error) and str(tmp_path) in str(error)
