"""``hnte record …`` and ``hnte template`` as an operator runs them."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest
import python_calamine
import typer
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from hnte import synthetic
from hnte.flows import cli
from hnte.flows.cli_record import record_app, template
from hnte.models.db import unit_of_work
from hnte.services.importing import import_applications

BATCH = "2021-1"
LAOSHAN = "370212"


def build_app() -> typer.Typer:
    """The two registrations the main CLI makes."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(record_app, name="record")
    app.command("template")(template)
    return app


runner = CliRunner()


def hnte(*args: str) -> tuple[int, str, BaseException | None]:
    """Exit code, output with Rich's line wrapping undone, and the exception raised."""
    result = runner.invoke(build_app(), list(args))
    return result.exit_code, result.output.replace("\n", ""), result.exception


@pytest.fixture
def codes(engine: Engine, settings_env: str, tmp_path: Path) -> list[str]:
    shares = [
        synthetic.DistrictShare(LAOSHAN, "崂山区", 1),
        synthetic.DistrictShare("370211", "西海岸新区", 1),
    ]
    apps = synthetic.applications(8, seed=11, districts=shares, year=2021)
    with unit_of_work(engine) as session:
        import_applications(
            session,
            synthetic.write_csv(tmp_path / "apps.csv", apps),
            batch_code=BATCH,
            today=date(2021, 6, 1),
        )
    return [a.credit_code for a in apps]


def set_stage(engine: Engine, stage: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE application SET stage = :s"), {"s": stage})


def column(engine: Engine, name: str) -> dict[str, object]:
    with engine.connect() as connection:
        return dict(connection.execute(text(f"SELECT credit_code, {name} FROM application")).all())


def write_file(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_recording_a_good_file_prints_a_summary_and_exits_zero(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv",
        ("统一社会信用代码", "决定", "理由"),
        [(codes[0], "推荐", ""), (codes[1], "退回", "不属本区")],
    )

    code, output, _ = hnte("record", "recommendations", str(path), "--batch", BATCH)

    assert code == 0, output
    assert "新录入 2" in output and "拒收 0 行" in output
    decided_by = column(engine, "district_decided_by")
    assert decided_by[codes[0]] == decided_by[codes[1]] == "测试操作员"


def test_bad_rows_are_listed_with_the_error_report_and_exit_one(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "onsite_inspection")
    path = write_file(
        tmp_path / "insp.csv",
        ("统一社会信用代码", "考察结论", "说明"),
        [(codes[0], "通过", ""), (codes[1], "不通过", "")],
    )

    code, output, _ = hnte("record", "inspections", str(path), "-b", BATCH)

    assert code == 1
    assert "有问题的行" in output and "insp.errors.csv" in output
    assert "新录入 1" in output
    assert (tmp_path / "insp.errors.csv").exists()
    assert column(engine, "inspection_outcome")[codes[0]] == "passed"


def test_cells_that_look_like_rich_markup_are_printed_as_text(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "district_review")
    path = write_file(
        tmp_path / "rec.csv",
        ("统一社会信用代码", "决定"),
        [(codes[0], "[/]"), (codes[1], "[bold]推荐")],
    )

    code, output, exception = hnte("record", "recommendations", str(path), "-b", BATCH)

    assert code == 1 and isinstance(exception, SystemExit)
    assert "「[/]」" in output and "「[bold]推荐」" in output


def test_strict_prints_that_nothing_was_recorded(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval")
    path = write_file(
        tmp_path / "a.csv",
        ("统一社会信用代码", "决定", "理由"),
        [(codes[0], "批准", ""), (codes[1], "不予批准", "")],
    )

    code, output, _ = hnte("record", "approvals", str(path), "-b", BATCH, "--strict")

    assert code == 1 and "未录入任何决定" in output
    assert column(engine, "approval")[codes[0]] is None


def test_json_output_is_json_only(engine: Engine, codes: list[str], tmp_path: Path) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE application SET stage = 'expert_review'"))
        connection.execute(
            text(
                "INSERT INTO expert (id, name, kind, employer, active) "
                "VALUES ('E01', '专家甲', 'technical', '', 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO panel_seat (application_id, expert_id, seat) "
                "SELECT id, 'E01', 1 FROM application"
            )
        )
    path = write_file(
        tmp_path / "s.csv",
        (
            "专家编号",
            "统一社会信用代码",
            "知识产权",
            "科技成果转化能力",
            "研究开发组织管理水平",
            "企业成长性",
        ),
        [("E01", codes[0], 25, 25, 15, 15), ("E01", codes[1], 40, 25, 15, 15)],
    )

    code, output, _ = hnte("record", "scores", str(path), "-b", BATCH, "--json")

    summary = json.loads(output)
    assert code == 1
    assert summary["kind"] == "scores" and summary["applied"] == 1
    assert summary["committed"] is True and summary["rejected_rows"] == 1
    assert summary["errors"][0]["row"] == 3 and summary["errors"][0]["column"] == "知识产权"


def test_objections_are_recorded_from_the_command_line(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "public_notice")
    path = write_file(
        tmp_path / "o.csv", ("统一社会信用代码", "异议内容"), [(codes[0], "举报：科技人员为挂名")]
    )

    code, output, _ = hnte("record", "objections", str(path), "-b", BATCH)

    assert code == 0, output
    with engine.connect() as connection:
        assert connection.execute(text("SELECT reason, recorded_by FROM objection")).all() == [
            ("举报：科技人员为挂名", "测试操作员")
        ]


def test_recommend_all_in_one_district(engine: Engine, codes: list[str]) -> None:
    set_stage(engine, "district_review")

    code, output, _ = hnte("record", "recommendations", "--all", "-d", "崂山区", "-b", BATCH)

    assert code == 0, output
    districts = column(engine, "district_code")
    decisions = column(engine, "district_decision")
    laoshan = [c for c in codes if districts[c] == LAOSHAN]
    assert f"新推荐 {len(laoshan)} 件" in output
    assert all((decisions[c] == "recommended") == (c in laoshan) for c in codes)


def test_approve_all_except_a_file_of_credit_codes(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval")
    hold = write_file(tmp_path / "hold.csv", ("统一社会信用代码",), [(codes[0],)])

    code, output, _ = hnte("record", "approvals", "--all", "--except", str(hold), "-b", BATCH)

    assert code == 0, output
    approvals = column(engine, "approval")
    assert approvals[codes[0]] is None
    assert all(approvals[c] == "approved" for c in codes[1:])
    assert "暂不批准 1 件" in output
    decided_by = column(engine, "approval_decided_by")  # HNTE_OPERATOR
    assert decided_by[codes[0]] is None
    assert all(decided_by[c] == "测试操作员" for c in codes[1:])


def test_a_wrong_exception_list_approves_nothing(
    engine: Engine, codes: list[str], tmp_path: Path
) -> None:
    set_stage(engine, "approval")
    hold = write_file(tmp_path / "hold.csv", ("统一社会信用代码",), [(codes[0][:-1],)])

    code, output, _ = hnte("record", "approvals", "--all", "--except", str(hold), "-b", BATCH)

    assert code == 1
    assert "未批准任何申请" in output and (tmp_path / "hold.errors.csv").exists()
    assert set(column(engine, "approval").values()) == {None}


@pytest.mark.parametrize(
    "args",
    [
        ("record", "recommendations", "-b", BATCH),
        ("record", "approvals", "-b", BATCH),
        ("record", "scores", "-b", BATCH),
        ("record", "recommendations", "x.csv", "--all", "-b", BATCH),
        ("record", "recommendations", "x.csv", "-d", "崂山区", "-b", BATCH),
        ("record", "approvals", "--except", "x.csv", "-b", BATCH),
        ("record", "inspections", "missing.csv", "-b", BATCH),
        ("record", "recommendations", "--all", "-d", "火星区", "-b", BATCH),
    ],
)
def test_a_command_without_what_it_needs_is_a_user_error(
    engine: Engine, settings_env: str, args: tuple[str, ...]
) -> None:
    code, _, exception = hnte(*args)

    assert code == 1 and isinstance(exception, cli.UserError)


def test_a_missing_batch_option_is_a_usage_error(settings_env: str) -> None:
    code, _, _ = hnte("record", "recommendations", "--all")

    assert code == 2


def test_user_errors_reach_the_operator_as_one_line(
    engine: Engine,
    codes: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_file(tmp_path / "rec.csv", ("统一社会信用代码", "决定"), [(codes[0], "推荐")])
    monkeypatch.setattr(cli, "app", build_app())
    monkeypatch.setattr(
        sys, "argv", ["hnte", "record", "recommendations", str(path), "-b", "2099-9"]
    )

    with pytest.raises(SystemExit) as exit_info:
        cli.main()

    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert "2099-9" in message and "Traceback" not in message


def test_template_writes_an_xlsx_named_after_the_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    code, output, _ = hnte("template", "scores")

    assert code == 0, output
    with python_calamine.CalamineWorkbook.from_path(tmp_path / "scores-template.xlsx") as book:
        assert book.sheet_names == ["专家评分", "说明"]
        assert book.get_sheet_by_index(0).to_python()[0][:2] == ["专家编号", "统一社会信用代码"]


def test_template_refuses_to_overwrite_a_filled_in_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "approvals.csv"
    out.write_text("已填写的内容\n", encoding="utf-8")

    refused = hnte("template", "approvals", "-o", str(out))
    forced = hnte("template", "approvals", "-o", str(out), "--force")

    assert refused[0] == 1 and isinstance(refused[2], cli.UserError)
    assert forced[0] == 0
    assert out.read_text(encoding="utf-8-sig").strip() == "统一社会信用代码,决定,理由"


@pytest.mark.parametrize("args", [("template", "medals"), ("template", "scores", "-o", "s.xls")])
def test_template_refuses_unknown_kinds_and_file_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)

    code, _, exception = hnte(*args)

    assert code == 1 and isinstance(exception, cli.UserError)
