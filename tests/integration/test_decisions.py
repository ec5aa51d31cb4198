"""Recording human decisions from files, on a real SQLite database."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import python_calamine
import xlsxwriter
from sqlalchemy import Engine, event, text
from stdnum.cn import uscc

from hnte import synthetic
from hnte.models.application_rows import APPLICATION_COLUMNS
from hnte.models.db import unit_of_work
from hnte.services.decisions import (
    KINDS,
    RecordReport,
    UnknownKind,
    approve_all,
    read_credit_codes,
    recommend_all,
    record_from_file,
    write_template,
)
from hnte.services.importing import UnknownBatch, import_applications

BATCH = "2021-1"
TODAY = date(2021, 6, 1)
LAOSHAN, XIHAIAN = "370212", "370211"
OUTSIDER = "91370212MA3C0000X" + uscc.calc_check_digit("91370212MA3C0000X")


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def codes(engine: Engine, tmp_path: Path) -> list[str]:
    """Ten applications of batch 2021-1, imported as an operator would, in file order."""
    shares = [
        synthetic.DistrictShare(LAOSHAN, "崂山区", 1),
        synthetic.DistrictShare(XIHAIAN, "西海岸新区", 1),
    ]
    apps = synthetic.applications(10, seed=7, districts=shares, year=2021)
    path = synthetic.write_csv(tmp_path / "applications.csv", apps)
    with unit_of_work(engine) as session:
        report = import_applications(session, path, batch_code=BATCH, today=TODAY)
    assert report.inserted == len(apps) and not report.errors
    return [a.credit_code for a in apps]


def set_stage(engine: Engine, stage: str, codes: Sequence[str] | None = None) -> None:
    with engine.begin() as connection:
        if codes is None:
            connection.execute(text("UPDATE application SET stage = :stage"), {"stage": stage})
        for code in codes or ():
            connection.execute(
                text("UPDATE application SET stage = :stage WHERE credit_code = :code"),
                {"stage": stage, "code": code},
            )


def query(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]


def application(engine: Engine, code: str, *columns: str) -> tuple[Any, ...]:
    return query(
        engine, f"SELECT {', '.join(columns)} FROM application WHERE credit_code = :c", c=code
    )[0]


def write_file(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def record(
    engine: Engine,
    kind: str,
    path: Path,
    *,
    strict: bool = False,
    operator: str = "张三",
    today: date = TODAY,
) -> RecordReport:
    with unit_of_work(engine) as session:
        return record_from_file(
            session, kind, path, batch_code=BATCH, operator=operator, today=today, strict=strict
        )


def reasons(report: RecordReport) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in report.errors:
        out[e.row] = out.get(e.row, "") + f"{e.column}:{e.reason}|"
    return out


def seat_panel(engine: Engine, code: str, experts: Sequence[str]) -> None:
    with engine.begin() as connection:
        app_id = connection.execute(
            text("SELECT id FROM application WHERE credit_code = :c"), {"c": code}
        ).scalar_one()
        for seat, expert in enumerate(experts, start=1):
            connection.execute(
                text(
                    "INSERT OR IGNORE INTO expert (id, name, kind, employer, active) "
                    "VALUES (:id, :name, 'technical', '', 1)"
                ),
                {"id": expert, "name": f"专家{expert}"},
            )
            connection.execute(
                text(
                    "INSERT INTO panel_seat (application_id, expert_id, seat) VALUES (:a, :e, :s)"
                ),
                {"a": app_id, "e": expert, "s": seat},
            )


REC_HEADER = ("统一社会信用代码", "决定", "理由")
SCORE_HEADER = (
    "专家编号",
    "统一社会信用代码",
    "知识产权",
    "科技成果转化能力",
    "研究开发组织管理水平",
    "企业成长性",
)
INSPECTION_HEADER = ("统一社会信用代码", "考察结论", "说明")
OBJECTION_HEADER = ("统一社会信用代码", "异议日期", "异议内容", "处理结果", "处理说明")
APPROVAL_HEADER = ("统一社会信用代码", "决定", "理由")


# --- district recommendations ---------------------------------------------------------------


def test_a_good_recommendations_file_records_each_decision_and_the_operator(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv",
        REC_HEADER,
        [(codes[0], "推荐", ""), (codes[1], "退回", "研发费用归集不规范")],
    )

    report = record(engine, "recommendations", path)

    assert (report.rows, report.applied, report.updated, report.unchanged) == (2, 2, 0, 0)
    assert report.committed and report.errors == [] and report.error_file is None
    assert application(
        engine, codes[0], "district_decision", "district_reason", "district_decided_by"
    ) == ("recommended", None, "张三")
    assert application(
        engine, codes[1], "district_decision", "district_reason", "district_decided_by"
    ) == ("returned", "研发费用归集不规范", "张三")


def test_recommendations_are_accepted_at_submitted_too(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", "")])

    report = record(engine, "recommendations", path)

    assert report.applied == 1
    assert application(engine, codes[0], "stage", "district_decision") == (
        "submitted",
        "recommended",
    )


def test_recording_never_moves_an_application_or_writes_a_stage_event(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(code, "推荐", "") for code in codes])

    record(engine, "recommendations", path)

    assert query(engine, "SELECT DISTINCT stage FROM application") == [("district_review",)]
    assert query(engine, "SELECT count(*) FROM stage_event") == [(0,)]


def test_english_headers_and_values_are_accepted(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv",
        ("Credit_Code", "DECISION", "reason"),
        [(codes[0], "Recommend", ""), (codes[1], "return", "not ours")],
    )

    report = record(engine, "recommendations", path)

    assert report.applied == 2
    assert application(engine, codes[1], "district_decision") == ("returned",)


def test_a_return_without_a_reason_is_refused_and_the_good_rows_are_kept(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", ""), (codes[1], "退回", "")]
    )

    report = record(engine, "recommendations", path)

    assert report.applied == 1 and report.rejected_rows == 1 and report.committed
    assert "理由" in reasons(report)[3]
    assert report.error_file == tmp_path / "rec.errors.csv" and report.error_file.exists()
    assert application(engine, codes[1], "district_decision") == (None,)


def test_bad_codes_unknown_enterprises_and_bad_words_are_each_reported(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    bad_check = codes[0][:-1] + ("0" if codes[0][-1] != "0" else "1")
    path = write_file(
        tmp_path / "rec.csv",
        REC_HEADER,
        [
            (bad_check, "推荐", ""),
            ("12345", "推荐", ""),
            (OUTSIDER, "推荐", ""),
            (codes[1], "同意", ""),
            ("", "推荐", ""),
            (codes[2], "推荐", ""),
        ],
    )

    report = record(engine, "recommendations", path)

    found = reasons(report)
    assert "校验位" in found[2]
    assert "18 位" in found[3]
    assert "没有该企业的申报" in found[4]
    assert "决定:无法识别的取值" in found[5]
    assert "必填项为空" in found[6]
    assert 7 not in found and report.applied == 1


def test_an_application_past_district_review_is_refused_naming_its_stage(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "formal_check", [codes[0]])
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", "")])

    report = record(engine, "recommendations", path)

    assert "「形式审查」" in reasons(report)[2]
    assert application(engine, codes[0], "district_decision") == (None,)


def test_a_second_row_for_the_same_enterprise_is_a_duplicate(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", ""), (codes[0], "退回", "重复")]
    )

    report = record(engine, "recommendations", path)

    assert "与第 2 行重复" in reasons(report)[3]
    assert application(engine, codes[0], "district_decision") == ("recommended",)


def test_strict_records_nothing_when_any_row_is_bad(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", ""), (codes[1], "退回", "")]
    )

    report = record(engine, "recommendations", path, strict=True)

    assert not report.committed and report.applied == 0 and report.error_file is not None
    assert query(
        engine, "SELECT count(*) FROM application WHERE district_decision IS NOT NULL"
    ) == [(0,)]


def test_running_the_same_file_again_changes_nothing(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", ""), (codes[1], "退回", "不符合条件")]
    )
    record(engine, "recommendations", path, operator="张三")

    again = record(engine, "recommendations", path, operator="李四")

    assert (again.applied, again.updated, again.unchanged) == (0, 0, 2)
    assert application(engine, codes[1], "district_decided_by") == ("张三",)


def test_the_same_decision_is_unchanged_after_the_flow_moved_the_application_on(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", "")])
    record(engine, "recommendations", path)
    set_stage(engine, "formal_check", [codes[0]])

    again = record(engine, "recommendations", path)

    assert again.unchanged == 1 and again.errors == []


def test_a_different_decision_overwrites_while_the_application_is_still_in_review(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    record(
        engine,
        "recommendations",
        write_file(tmp_path / "first.csv", REC_HEADER, [(codes[0], "推荐", "")]),
    )

    report = record(
        engine,
        "recommendations",
        write_file(tmp_path / "second.csv", REC_HEADER, [(codes[0], "退回", "重复申报")]),
        operator="李四",
    )

    assert (report.applied, report.updated) == (0, 1)
    assert application(
        engine, codes[0], "district_decision", "district_reason", "district_decided_by"
    ) == ("returned", "重复申报", "李四")


def test_an_unknown_batch_is_refused(engine: Engine, codes: list[str], tmp_path: Path) -> None:
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(codes[0], "推荐", "")])

    with unit_of_work(engine) as session, pytest.raises(UnknownBatch):
        record_from_file(
            session, "recommendations", path, batch_code="2099-1", operator="x", today=TODAY
        )


def test_a_kind_that_is_not_a_decision_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path / "x.csv", REC_HEADER, [])

    with unit_of_work(engine) as session, pytest.raises(UnknownKind):
        record_from_file(session, "applications", path, batch_code=BATCH, operator="x", today=TODAY)


def test_recommend_all_recommends_only_the_undecided_applications_of_one_district(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    laoshan = [
        c
        for c, d in query(engine, "SELECT credit_code, district_code FROM application")
        if d == LAOSHAN
    ]
    record(
        engine,
        "recommendations",
        write_file(tmp_path / "rec.csv", REC_HEADER, [(laoshan[0], "退回", "材料不全")]),
    )
    set_stage(engine, "formal_check", [laoshan[1]])

    with unit_of_work(engine) as session:
        report = recommend_all(
            session, batch_code=BATCH, district_code=LAOSHAN, operator="王五", today=TODAY
        )

    assert report.committed
    assert (report.rows, report.applied, report.unchanged) == (
        len(laoshan) - 1,
        len(laoshan) - 2,
        1,
    )
    decisions = dict(query(engine, "SELECT credit_code, district_decision FROM application"))
    assert decisions[laoshan[0]] == "returned"
    assert decisions[laoshan[1]] is None
    assert all(decisions[c] == "recommended" for c in laoshan[2:])
    assert all(v is None for c, v in decisions.items() if c not in laoshan)
    assert query(
        engine,
        "SELECT DISTINCT district_decided_by FROM application "
        "WHERE district_decision = 'recommended'",
    ) == [("王五",)]


def test_recommend_all_without_a_district_covers_the_whole_batch(
    engine: Engine, codes: list[str]
) -> None:
    with unit_of_work(engine) as session:
        report = recommend_all(
            session, batch_code=BATCH, district_code=None, operator="王五", today=TODAY
        )

    assert report.applied == len(codes)
    assert query(engine, "SELECT count(*) FROM application WHERE district_decision IS NULL") == [
        (0,)
    ]


def test_a_large_file_is_recorded_with_a_few_statements(engine: Engine, tmp_path: Path) -> None:
    shares = [synthetic.DistrictShare(LAOSHAN, "崂山区", 1)]
    apps = synthetic.applications(2_500, seed=3, districts=shares, year=2021)
    with unit_of_work(engine) as session:
        import_applications(
            session, synthetic.write_csv(tmp_path / "a.csv", apps), batch_code=BATCH, today=TODAY
        )
    set_stage(engine, "district_review")
    path = write_file(tmp_path / "rec.csv", REC_HEADER, [(a.credit_code, "推荐", "") for a in apps])
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    report = record(engine, "recommendations", path)

    assert report.applied == 2_500
    assert len(statements) < 20


# --- expert scores ------------------------------------------------------------------------


def test_a_good_scores_file_inserts_each_score_with_its_total_and_operator(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:2])
    seat_panel(engine, codes[0], ["E01", "E02"])
    seat_panel(engine, codes[1], ["E01"])
    path = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [
            ("E01", codes[0], 25, 24, 16, 15),
            ("E02", codes[0], 20, 20, 15, 15),
            ("E01", codes[1], 10, 12, 8, 9),
        ],
    )

    report = record(engine, "scores", path)

    assert (report.applied, report.errors) == (3, [])
    assert query(
        engine,
        "SELECT expert_id, ip_score, conversion_score, rd_management_score, "
        "growth_score, total, recorded_by FROM expert_score ORDER BY application_id, "
        "expert_id",
    ) == [
        ("E01", 25, 24, 16, 15, 80, "张三"),
        ("E02", 20, 20, 15, 15, 70, "张三"),
        ("E01", 10, 12, 8, 9, 39, "张三"),
    ]


def test_an_xlsx_scores_file_with_numeric_cells_is_read_like_a_csv(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:1])
    seat_panel(engine, codes[0], ["E01"])
    path = tmp_path / "scores.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["2021年第一批专家评分"])
    sheet.write_row(1, 0, SCORE_HEADER)
    sheet.write_row(2, 0, ["E01", codes[0], 25.0, 24, 16, 15])
    workbook.close()

    report = record(engine, "scores", path)

    assert report.applied == 1
    assert query(engine, "SELECT total FROM expert_score") == [(80,)]


def test_scores_out_of_range_or_not_whole_numbers_are_refused_per_column(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:1])
    seat_panel(engine, codes[0], ["E01", "E02"])
    path = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [
            ("E01", codes[0], 31, 24, 21, 15),
            ("E02", codes[0], "二十", 24.5, -1, ""),
        ],
    )

    report = record(engine, "scores", path)

    found = reasons(report)
    assert "知识产权:知识产权得分 31 超出范围 0–30" in found[2]
    assert "研究开发组织管理水平:" in found[2] and "0–20" in found[2]
    assert "科技成果转化能力" not in found[2]
    assert "知识产权:得分应为整数" in found[3]
    assert "科技成果转化能力:得分应为整数" in found[3]
    assert "研究开发组织管理水平:研究开发组织管理水平得分 -1 超出范围" in found[3]
    assert "企业成长性:必填项为空" in found[3]
    assert query(engine, "SELECT count(*) FROM expert_score") == [(0,)]


def test_an_expert_who_is_not_on_the_panel_is_named_in_the_error(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:2])
    seat_panel(engine, codes[0], ["E01"])
    seat_panel(engine, codes[1], ["E02"])
    path = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [("E02", codes[0], 20, 20, 15, 15), ("E99", codes[0], 20, 20, 15, 15)],
    )

    report = record(engine, "scores", path)

    found = reasons(report)
    assert "专家编号:专家 E02 不在该企业的评审专家组中" in found[2]
    assert "专家 E99" in found[3]
    assert report.applied == 0


def test_scores_for_an_application_not_in_expert_review_are_refused(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "formal_check", codes[:1])
    seat_panel(engine, codes[0], ["E01"])
    path = write_file(tmp_path / "scores.csv", SCORE_HEADER, [("E01", codes[0], 20, 20, 15, 15)])

    report = record(engine, "scores", path)

    assert "「形式审查」" in reasons(report)[2]


def test_the_same_expert_scoring_the_same_enterprise_twice_is_a_duplicate(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:1])
    seat_panel(engine, codes[0], ["E01"])
    path = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [("E01", codes[0], 20, 20, 15, 15), ("E01", codes[0], 21, 20, 15, 15)],
    )

    report = record(engine, "scores", path)

    assert "与第 2 行重复" in reasons(report)[3]
    assert query(engine, "SELECT ip_score FROM expert_score") == [(20,)]


def test_scores_again_are_unchanged_and_a_corrected_score_is_updated(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:1])
    seat_panel(engine, codes[0], ["E01", "E02"])
    first = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [("E01", codes[0], 20, 20, 15, 15), ("E02", codes[0], 22, 20, 15, 15)],
    )
    record(engine, "scores", first)

    again = record(engine, "scores", first)
    corrected = record(
        engine,
        "scores",
        write_file(
            tmp_path / "fix.csv",
            SCORE_HEADER,
            [("E01", codes[0], 20, 20, 15, 15), ("E02", codes[0], 25, 20, 15, 15)],
        ),
        operator="李四",
    )

    assert (again.applied, again.updated, again.unchanged) == (0, 0, 2)
    assert (corrected.applied, corrected.updated, corrected.unchanged) == (0, 1, 1)
    assert query(
        engine,
        "SELECT expert_id, ip_score, total, recorded_by FROM expert_score ORDER BY expert_id",
    ) == [("E01", 20, 70, "张三"), ("E02", 25, 75, "李四")]


def test_strict_scores_with_one_bad_row_record_nothing(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "expert_review", codes[:1])
    seat_panel(engine, codes[0], ["E01"])
    path = write_file(
        tmp_path / "scores.csv",
        SCORE_HEADER,
        [("E01", codes[0], 20, 20, 15, 15), ("E02", codes[0], 20, 20, 15, 15)],
    )

    report = record(engine, "scores", path, strict=True)

    assert not report.committed
    assert query(engine, "SELECT count(*) FROM expert_score") == [(0,)]


# --- on-site inspections ---------------------------------------------------------------------


def test_inspection_outcomes_are_recorded_with_the_operator(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "onsite_inspection", codes[:2])
    path = write_file(
        tmp_path / "insp.csv",
        INSPECTION_HEADER,
        [(codes[0], "通过", ""), (codes[1], "FAIL", "研发场地与申报不符")],
    )

    report = record(engine, "inspections", path)

    assert report.applied == 2
    assert application(engine, codes[0], "inspection_outcome", "inspection_decided_by") == (
        "passed",
        "张三",
    )
    assert application(engine, codes[1], "inspection_outcome", "inspection_note") == (
        "failed",
        "研发场地与申报不符",
    )


def test_a_failed_inspection_needs_a_note_and_the_right_stage(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "onsite_inspection", codes[:1])
    set_stage(engine, "approval", codes[1:2])
    path = write_file(
        tmp_path / "insp.csv",
        INSPECTION_HEADER,
        [(codes[0], "不通过", ""), (codes[1], "通过", ""), (codes[2], "良好", "")],
    )

    report = record(engine, "inspections", path)

    found = reasons(report)
    assert "说明:决定为「不通过」时必须填写说明" in found[2]
    assert "「审批」" in found[3]
    assert "考察结论:无法识别的取值" in found[4]
    assert report.applied == 0


def test_inspections_again_are_unchanged_and_strict_keeps_nothing(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "onsite_inspection", codes[:2])
    good = write_file(tmp_path / "insp.csv", INSPECTION_HEADER, [(codes[0], "通过", "")])
    record(engine, "inspections", good)

    again = record(engine, "inspections", good)
    strict = record(
        engine,
        "inspections",
        write_file(
            tmp_path / "bad.csv",
            INSPECTION_HEADER,
            [(codes[1], "通过", ""), (OUTSIDER, "通过", "")],
        ),
        strict=True,
    )

    assert again.unchanged == 1 and again.applied == 0
    assert not strict.committed
    assert application(engine, codes[1], "inspection_outcome") == (None,)


# --- objections -------------------------------------------------------------------------------


def test_a_new_objection_is_recorded_once_with_today_as_its_default_date(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:2])
    path = write_file(
        tmp_path / "obj.csv",
        OBJECTION_HEADER,
        [
            (codes[0], "", "举报研发人员为挂名", "", ""),
            (codes[1], "2021-05-30", "知识产权权属存在争议", "", ""),
        ],
    )

    first = record(engine, "objections", path)
    again = record(engine, "objections", path)

    assert (first.applied, again.applied, again.unchanged) == (2, 0, 2)
    assert query(
        engine, "SELECT raised_on, reason, resolution, recorded_by FROM objection ORDER BY id"
    ) == [
        ("2021-06-01", "举报研发人员为挂名", None, "张三"),
        ("2021-05-30", "知识产权权属存在争议", None, "张三"),
    ]


def test_a_new_objection_needs_its_content_and_public_notice(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:1])
    set_stage(engine, "approval", codes[1:2])
    path = write_file(
        tmp_path / "obj.csv",
        OBJECTION_HEADER,
        [
            (codes[0], "", "", "", ""),
            (codes[1], "", "异议", "", ""),
            (codes[0], "2021-13-01", "异议", "", ""),
            (codes[0], "", "异议", "驳回", ""),
        ],
    )

    report = record(engine, "objections", path)

    found = reasons(report)
    assert "异议内容:新收到的异议必须填写异议内容" in found[2]
    assert "「审批」" in found[3]
    assert "异议日期:日期不存在" in found[4]
    assert "处理结果:无法识别的取值" in found[5]
    assert query(engine, "SELECT count(*) FROM objection") == [(0,)]


def test_a_resolution_without_content_resolves_every_open_objection(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:1])
    record(
        engine,
        "objections",
        write_file(
            tmp_path / "new.csv",
            OBJECTION_HEADER,
            [
                (codes[0], "", "异议一", "", ""),
                (codes[0], "", "异议二", "", ""),
            ],
        ),
    )
    set_stage(engine, "objection_review", codes[:1])
    resolve = write_file(
        tmp_path / "resolve.csv", OBJECTION_HEADER, [(codes[0], "", "", "不成立", "经核查不属实")]
    )

    report = record(engine, "objections", resolve, operator="李四", today=date(2021, 6, 9))
    again = record(engine, "objections", resolve)

    assert (report.applied, report.errors) == (1, [])
    assert (again.applied, again.updated, again.unchanged, again.errors) == (0, 0, 1, [])
    assert query(
        engine,
        "SELECT reason, resolution, resolved_on, note, recorded_by FROM objection ORDER BY id",
    ) == [
        ("异议一", "dismissed", "2021-06-09", "经核查不属实", "李四"),
        ("异议二", "dismissed", "2021-06-09", "经核查不属实", "李四"),
    ]


def test_a_resolution_naming_its_content_resolves_only_that_objection_and_may_correct_it(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:1])
    record(
        engine,
        "objections",
        write_file(
            tmp_path / "new.csv",
            OBJECTION_HEADER,
            [
                (codes[0], "", "异议一", "", ""),
                (codes[0], "", "异议二", "", ""),
            ],
        ),
    )
    set_stage(engine, "objection_review", codes[:1])

    first = record(
        engine,
        "objections",
        write_file(tmp_path / "r1.csv", OBJECTION_HEADER, [(codes[0], "", "异议一", "成立", "")]),
    )
    corrected = record(
        engine,
        "objections",
        write_file(
            tmp_path / "r2.csv", OBJECTION_HEADER, [(codes[0], "", "异议一", "dismissed", "复核")]
        ),
    )

    assert first.applied == 1 and corrected.updated == 1
    assert query(engine, "SELECT reason, resolution, note FROM objection ORDER BY id") == [
        ("异议一", "dismissed", "复核"),
        ("异议二", None, None),
    ]


def test_a_resolution_needs_a_matching_objection_and_the_right_stage(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:2])
    record(
        engine,
        "objections",
        write_file(tmp_path / "new.csv", OBJECTION_HEADER, [(codes[0], "", "异议一", "", "")]),
    )
    set_stage(engine, "approval", codes[2:3])
    path = write_file(
        tmp_path / "resolve.csv",
        OBJECTION_HEADER,
        [
            (codes[0], "", "另一项异议", "成立", ""),
            (codes[1], "", "", "成立", ""),
            (codes[2], "", "", "成立", ""),
        ],
    )
    set_stage(engine, "certified", codes[:1])
    wrong_stage = write_file(
        tmp_path / "late.csv", OBJECTION_HEADER, [(codes[0], "", "", "成立", "")]
    )

    report = record(engine, "objections", path)
    late = record(engine, "objections", wrong_stage)

    found = reasons(report)
    assert "异议内容:该企业没有内容相同的异议" in found[2]
    assert "该企业没有异议记录" in found[3]
    assert "该企业没有异议记录" in found[4]
    assert "「已认定」" in reasons(late)[2]


def test_one_file_may_record_an_objection_and_resolve_it_further_down(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:1])
    path = write_file(
        tmp_path / "obj.csv",
        OBJECTION_HEADER,
        [
            (codes[0], "2021-05-28", "异议一", "", ""),
            (codes[0], "", "异议一", "不成立", "匿名举报无实据"),
        ],
    )

    report = record(engine, "objections", path)

    assert (report.applied, report.errors) == (2, [])
    assert query(engine, "SELECT raised_on, resolution, note FROM objection") == [
        ("2021-05-28", "dismissed", "匿名举报无实据")
    ]


def test_a_dismissed_objection_is_not_reopened_by_running_the_old_file_again(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice", codes[:1])
    new = write_file(tmp_path / "new.csv", OBJECTION_HEADER, [(codes[0], "", "异议一", "", "")])
    record(engine, "objections", new)
    record(
        engine,
        "objections",
        write_file(tmp_path / "r.csv", OBJECTION_HEADER, [(codes[0], "", "", "不成立", "")]),
    )

    again = record(engine, "objections", new)

    assert again.unchanged == 1
    assert query(engine, "SELECT count(*), min(resolution) FROM objection") == [(1, "dismissed")]


# --- approvals --------------------------------------------------------------------------------


def test_approvals_are_recorded_and_a_rejection_needs_a_reason(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval", codes[:3])
    path = write_file(
        tmp_path / "approvals.csv",
        APPROVAL_HEADER,
        [
            (codes[0], "批准", ""),
            (codes[1], "不予批准", "近三年研发费用占比未达标"),
            (codes[2], "不予批准", ""),
            (codes[3], "批准", ""),
        ],
    )

    report = record(engine, "approvals", path)

    found = reasons(report)
    assert "理由:决定为「不予批准」时必须填写理由" in found[4]
    assert "「已提交」" in found[5]
    assert report.applied == 2
    assert application(engine, codes[0], "approval", "approval_decided_by") == ("approved", "张三")
    assert application(engine, codes[1], "approval", "approval_note") == (
        "rejected",
        "近三年研发费用占比未达标",
    )


def test_approve_all_approves_the_undecided_except_those_listed(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval", codes[:6])
    record(
        engine,
        "approvals",
        write_file(tmp_path / "a.csv", APPROVAL_HEADER, [(codes[0], "不予批准", "材料造假")]),
    )
    listed = write_file(
        tmp_path / "hold.csv", ("序号", "统一社会信用代码"), [(1, codes[1].lower()), (2, codes[2])]
    )
    hold, errors = read_credit_codes(listed)

    with unit_of_work(engine) as session:
        report = approve_all(
            session, batch_code=BATCH, operator="王五", today=TODAY, except_credit_codes=hold
        )

    assert errors == [] and report.committed
    assert (report.rows, report.applied, report.held, report.unchanged) == (6, 3, 2, 1)
    approvals = dict(query(engine, "SELECT credit_code, approval FROM application"))
    assert approvals[codes[0]] == "rejected"
    assert approvals[codes[1]] is None and approvals[codes[2]] is None
    assert all(approvals[c] == "approved" for c in codes[3:6])
    assert all(approvals[c] is None for c in codes[6:])
    decided_by = dict(query(engine, "SELECT credit_code, approval_decided_by FROM application"))
    assert decided_by[codes[0]] == "张三"  # from the file, not overwritten
    assert all(decided_by[c] == "王五" for c in codes[3:6])  # whoever ran --all
    assert all(decided_by[c] is None for c in (*codes[1:3], *codes[6:]))


def test_approve_all_approves_nothing_when_the_exception_list_is_wrong(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval", codes[:3])
    record(
        engine,
        "approvals",
        write_file(tmp_path / "a.csv", APPROVAL_HEADER, [(codes[0], "批准", "")]),
    )

    with unit_of_work(engine) as session:
        report = approve_all(
            session,
            batch_code=BATCH,
            operator="王五",
            today=TODAY,
            except_credit_codes={OUTSIDER: 2, codes[0]: 3, "bad": 4},
        )

    found = reasons(report)
    assert "没有该企业的申报" in found[2]
    assert "已录入批准决定" in found[3]
    assert "统一社会信用代码" in found[4]
    assert not report.committed
    assert query(engine, "SELECT count(*) FROM application WHERE approval = 'approved'") == [(1,)]


def test_approvals_again_are_unchanged(engine: Engine, codes: list[str], tmp_path: Path) -> None:
    set_stage(engine, "approval", codes[:1])
    path = write_file(tmp_path / "a.csv", APPROVAL_HEADER, [(codes[0], "approve", "")])
    record(engine, "approvals", path)

    again = record(engine, "approvals", path, operator="李四")

    assert again.unchanged == 1
    assert application(engine, codes[0], "approval_decided_by") == ("张三",)


# --- templates ----------------------------------------------------------------------------------


def read_sheets(path: Path) -> dict[str, list[list[object]]]:
    with python_calamine.CalamineWorkbook.from_path(path) as workbook:
        return {name: workbook.get_sheet_by_name(name).to_python() for name in workbook.sheet_names}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_xlsx_template_holds_the_headers_and_a_guide_sheet(kind: str, tmp_path: Path) -> None:
    path = write_template(kind, tmp_path / f"{kind}.xlsx")

    sheets = read_sheets(path)

    spec = KINDS[kind]
    data, guide = list(sheets.values())
    assert list(sheets)[1] == "说明"
    assert data == [[spellings[0] for spellings in spec.columns.values()]]
    guide_text = "\n".join(str(cell) for row in guide for cell in row)
    assert all(spellings[0] in guide_text for spellings in spec.columns.values())


def test_the_templates_list_the_documented_columns(tmp_path: Path) -> None:
    headers = {kind: read_sheets(write_template(kind, tmp_path / f"{kind}.xlsx")) for kind in KINDS}

    assert headers["recommendations"][KINDS["recommendations"].title_zh] == [list(REC_HEADER)]
    assert headers["scores"]["专家评分"] == [list(SCORE_HEADER)]
    assert headers["inspections"]["现场考察"] == [list(INSPECTION_HEADER)]
    assert headers["objections"]["公示异议"] == [list(OBJECTION_HEADER)]
    assert headers["approvals"]["审批"] == [list(APPROVAL_HEADER)]
    assert headers["applications"]["申报名单"] == [[s[0] for s in APPLICATION_COLUMNS.values()]]


def test_a_csv_template_is_a_utf8_header_line_with_a_bom(tmp_path: Path) -> None:
    path = write_template("scores", tmp_path / "scores.csv")

    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert path.read_text(encoding="utf-8-sig").splitlines() == [",".join(SCORE_HEADER)]


def test_a_filled_in_template_can_be_recorded(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "onsite_inspection", codes[:1])
    path = write_template("inspections", tmp_path / "insp.csv")
    with path.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow([codes[0], "通过", ""])

    assert record(engine, "inspections", path).applied == 1


def test_an_unknown_template_kind_or_file_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownKind):
        write_template("medals", tmp_path / "x.xlsx")
    with pytest.raises(ValueError):
        write_template("scores", tmp_path / "x.xls")
