"""Importing application lists into a real database: idempotence, corrections, row errors."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session
from stdnum.cn import uscc

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.stages import Stage
from hnte.models.tables import Application, Enterprise, StageEvent
from hnte.services.importing import ImportReport, UnknownBatch, import_applications
from hnte.services.transitions import move

BATCH = "2021-1"
TODAY = date(2021, 6, 1)
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in load_city().districts]
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _apps(n: int, seed: int = 11) -> list[synthetic.SyntheticApplication]:
    return synthetic.applications(n, seed=seed, districts=SHARES, year=2021)


def _with(
    app: synthetic.SyntheticApplication, **cells: str
) -> synthetic.SyntheticApplication:
    """``app`` with some cells replaced, keyed by Chinese header."""
    return replace(app, cells={**app.cells, **cells})


def _run(engine: Engine, path: Path, *, strict: bool = False) -> ImportReport:
    with Session(engine) as session:
        return import_applications(session, path, batch_code=BATCH, today=TODAY, strict=strict)


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (Application, Enterprise, StageEvent)
        )


def _rows(engine: Engine) -> dict[str, tuple]:
    """credit code → (id, stage, version, staff_total, source_digest)."""
    with engine.connect() as connection:
        return {
            r[0]: tuple(r[1:])
            for r in connection.execute(
                select(
                    Application.credit_code,
                    Application.id,
                    Application.stage,
                    Application.version,
                    Application.staff_total,
                    Application.source_digest,
                )
            )
        }


def _error_report(path: Path) -> list[list[str]]:
    report = path.with_name(f"{path.stem}.errors.csv")
    assert report.exists(), f"no error report next to {path.name}"
    with report.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _move_to_district_review(engine: Engine, application_id: int) -> None:
    with Session(engine) as session:
        result = move(
            session,
            source=Stage.SUBMITTED,
            target=Stage.DISTRICT_REVIEW,
            candidates=[(application_id, None)],
            actor="系统 / system",
            as_of=TODAY,
        )
        session.commit()
    assert result.moved == 1


# --- idempotence and corrections ---------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing_the_second_time(
    engine: Engine, tmp_path: Path
) -> None:
    apps = _apps(30)
    path = synthetic.write_csv(tmp_path / "batch1.csv", apps)
    first = _run(engine, path)
    assert (first.rows, first.inserted, first.updated, first.unchanged) == (30, 30, 0, 0)
    counts, rows = _counts(engine), _rows(engine)

    second = _run(engine, path)

    assert second.committed and not second.errors and second.error_file is None
    assert (second.rows, second.inserted, second.updated, second.unchanged) == (30, 0, 0, 30)
    assert _counts(engine) == counts
    assert _rows(engine) == rows


def test_a_corrected_row_updates_an_application_still_submitted(
    engine: Engine, tmp_path: Path
) -> None:
    apps = _apps(20)
    _run(engine, synthetic.write_csv(tmp_path / "original.csv", apps))
    before = _rows(engine)
    target = apps[7]
    staff = int(target.cells["职工总数"]) + 5
    corrected = [*apps[:7], _with(target, 职工总数=str(staff)), *apps[8:]]

    report = _run(engine, synthetic.write_csv(tmp_path / "corrected.csv", corrected))

    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 19)
    assert not report.errors
    after = _rows(engine)
    app_id, stage, version, staff_total, digest = after[target.credit_code]
    assert (app_id, stage, version, staff_total) == (
        before[target.credit_code][0],
        "submitted",
        1,
        staff,
    )
    assert digest != before[target.credit_code][4]
    assert {k: v for k, v in after.items() if k != target.credit_code} == {
        k: v for k, v in before.items() if k != target.credit_code
    }


def test_a_corrected_row_is_refused_once_the_application_has_moved_on(
    engine: Engine, tmp_path: Path
) -> None:
    apps = _apps(20)
    original = synthetic.write_csv(tmp_path / "original.csv", apps)
    _run(engine, original)
    target = apps[4]
    _move_to_district_review(engine, _rows(engine)[target.credit_code][0])
    before, counts = _rows(engine), _counts(engine)

    staff = int(target.cells["职工总数"]) + 5
    corrected = synthetic.write_csv(
        tmp_path / "corrected.csv", [*apps[:4], _with(target, 职工总数=str(staff)), *apps[5:]]
    )
    report = _run(engine, corrected)

    assert report.committed and (report.inserted, report.updated, report.unchanged) == (0, 0, 19)
    assert len(report.errors) == 1
    error = report.errors[0]
    assert (error.row, error.column) == (6, "统一社会信用代码")
    assert "「区市推荐」" in error.reason and "already in district_review" in error.reason
    assert _error_report(corrected)[1] == ["6", "统一社会信用代码", error.reason]
    assert _rows(engine) == before and _counts(engine) == counts

    # The unchanged original still imports cleanly: nothing to change, nothing to refuse.
    again = _run(engine, original)
    assert (again.unchanged, again.errors) == (20, [])


# --- one row per error kind ------------------------------------------------------------


@dataclass(frozen=True)
class BadCell:
    column: str
    value: Callable[[synthetic.SyntheticApplication], str]
    reason: str  # a fragment of the expected reason


def _wrong_check_character(app: synthetic.SyntheticApplication) -> str:
    body = app.credit_code[:17]
    right = uscc.calc_check_digit(body)
    return body + next(c for c in ALPHABET if c != right)


ERROR_KINDS = {
    "bad check character": BadCell("统一社会信用代码", _wrong_check_character, "校验位错误"),
    "unknown district": BadCell("所属区市", lambda _: "火星区", "未知的区市"),
    "negative money": BadCell("近一年研发费用", lambda _: "-120000.00", "不能为负数"),
    "non-numeric money": BadCell("高新技术产品收入", lambda _: "约三千万元", "金额格式错误"),
    "staff 0": BadCell("职工总数", lambda _: "0", "不能为 0"),
    "missing required cell": BadCell("企业名称", lambda _: "", "必填项为空"),
    "impossible date": BadCell("注册日期", lambda _: "2019-02-30", "日期不存在"),
}


@pytest.mark.parametrize("kind", list(ERROR_KINDS))
def test_a_bad_row_is_reported_with_its_row_and_column_and_the_good_rows_are_kept(
    engine: Engine, tmp_path: Path, kind: str
) -> None:
    bad = ERROR_KINDS[kind]
    apps = _apps(6)
    victim = apps[3]  # row 5: the header is row 1
    path = synthetic.write_csv(
        tmp_path / "with-error.csv",
        [*apps[:3], _with(victim, **{bad.column: bad.value(victim)}), *apps[4:]],
    )

    report = _run(engine, path)

    assert report.committed
    assert (report.rows, report.inserted, report.rejected_rows) == (6, 5, 1)
    assert {e.row for e in report.errors} == {5}
    matching = [e for e in report.errors if e.column == bad.column and bad.reason in e.reason]
    assert matching, report.errors
    assert report.error_file == path.with_name("with-error.errors.csv")
    lines = _error_report(path)
    assert lines[0] == ["行号", "列", "原因"]
    assert ["5", bad.column, matching[0].reason] in lines[1:]
    stored = _rows(engine)
    assert len(stored) == 5
    assert victim.credit_code not in stored
    assert set(stored) == {a.credit_code for a in apps} - {victim.credit_code}


def test_a_credit_code_twice_in_one_file_keeps_the_first_row_and_reports_the_second(
    engine: Engine, tmp_path: Path
) -> None:
    apps = _apps(6)
    twin = _with(apps[4], 统一社会信用代码=apps[1].credit_code)
    path = synthetic.write_csv(tmp_path / "twice.csv", [*apps[:4], twin, *apps[5:]])

    report = _run(engine, path)

    assert (report.inserted, report.rejected_rows) == (5, 1)
    [error] = report.errors
    assert (error.row, error.column) == (6, "统一社会信用代码")
    assert "第 3 行" in error.reason
    assert _rows(engine)[apps[1].credit_code][3] == int(apps[1].cells["职工总数"])


def test_strict_with_one_bad_row_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    apps = _apps(12)
    path = synthetic.write_csv(
        tmp_path / "strict.csv", [*apps[:9], _with(apps[9], 所属区市="火星区"), *apps[10:]]
    )

    report = _run(engine, path, strict=True)

    assert not report.committed
    assert (report.inserted, report.updated, report.rejected_rows) == (0, 0, 1)
    assert report.errors[0].row == 11
    assert _counts(engine) == (0, 0, 0)
    assert _error_report(path)[1][:2] == ["11", "所属区市"]


def test_an_unknown_batch_is_refused_before_the_file_is_read(
    engine: Engine, tmp_path: Path
) -> None:
    path = synthetic.write_csv(tmp_path / "batch.csv", _apps(3))
    with Session(engine) as session, pytest.raises(UnknownBatch, match="2099-9"):
        import_applications(session, path, batch_code="2099-9", today=TODAY)
    assert _counts(engine) == (0, 0, 0)


# --- the DONE-WHEN case: 10,000 rows, one bad ---------------------------------------------

BIG = 10_000
BAD_INDEX = 6_543
BAD_ROW = BAD_INDEX + 2


@pytest.fixture(scope="module")
def ten_thousand_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    apps = synthetic.applications(BIG, seed=2021, districts=SHARES, year=2021)
    assert len(apps) == BIG
    apps[BAD_INDEX] = _with(apps[BAD_INDEX], 近一年销售收入="三千万")
    return synthetic.write_csv(tmp_path_factory.mktemp("big") / "batch-10000.csv", apps)


@pytest.mark.slow
def test_ten_thousand_rows_with_one_bad_row_import_all_but_that_row(
    engine: Engine, ten_thousand_rows: Path, tmp_path: Path
) -> None:
    path = Path(shutil.copy(ten_thousand_rows, tmp_path))

    report = _run(engine, path)

    assert report.committed
    assert (report.rows, report.inserted, report.rejected_rows) == (BIG, BIG - 1, 1)
    [error] = report.errors
    assert (error.row, error.column) == (BAD_ROW, "近一年销售收入")
    assert "金额格式错误" in error.reason and "三千万" in error.reason
    assert _counts(engine)[0] == BIG - 1
    assert _error_report(path)[1:] == [[str(BAD_ROW), "近一年销售收入", error.reason]]


@pytest.mark.slow
def test_ten_thousand_rows_with_one_bad_row_import_none_when_strict(
    engine: Engine, ten_thousand_rows: Path, tmp_path: Path
) -> None:
    path = Path(shutil.copy(ten_thousand_rows, tmp_path))

    report = _run(engine, path, strict=True)

    assert not report.committed
    assert (report.inserted, report.rejected_rows) == (0, 1)
    assert report.errors[0].row == BAD_ROW
    assert _counts(engine) == (0, 0, 0)


# --- file formats and amounts ----------------------------------------------------------

WRITERS: dict[str, Callable[[Path, list[synthetic.SyntheticApplication]], Path]] = {
    "xlsx": lambda d, apps: synthetic.write_xlsx(d / "名单.xlsx", apps),
    "csv-gb18030": lambda d, apps: synthetic.write_csv(d / "名单.csv", apps, encoding="gb18030"),
    "csv-utf8-bom": lambda d, apps: synthetic.write_csv(d / "名单.csv", apps),
}


@pytest.mark.parametrize("form", list(WRITERS))
def test_xlsx_and_csv_files_import_the_same_applications(
    engine: Engine, tmp_path: Path, form: str
) -> None:
    apps = _apps(25)
    report = _run(engine, WRITERS[form](tmp_path, apps))

    assert (report.inserted, report.errors) == (25, [])
    with engine.connect() as connection:
        stored = {
            code: (name, revenue)
            for code, name, revenue in connection.execute(
                select(Enterprise.credit_code, Enterprise.name, Application.revenue_y1_fen).join(
                    Application, Application.credit_code == Enterprise.credit_code
                )
            )
        }
    assert stored == {
        a.credit_code: (a.cells["企业名称"], int(a.cells["近一年销售收入"].replace(".", "")))
        for a in apps
    }


def test_amounts_above_two_to_the_31_fen_are_stored_exactly_on_every_database(
    any_engine: Engine, tmp_path: Path
) -> None:
    app = _with(
        _apps(1)[0],
        近一年销售收入="3000000000.00",
        第二年销售收入="2500000000.00",
        第三年销售收入="2000000000.00",
        近一年研发费用="150000000.00",
        第二年研发费用="120000000.00",
        第三年研发费用="100000000.00",
        境内研发费用="370000000.00",
        高新技术产品收入="2400000000.05",
    )
    with Session(any_engine) as session:
        report = import_applications(
            session,
            synthetic.write_csv(tmp_path / "big-amounts.csv", [app]),
            batch_code=BATCH,
            today=TODAY,
        )
    assert (report.inserted, report.errors) == (1, [])
    with any_engine.connect() as connection:
        revenue, hightech = connection.execute(
            select(Application.revenue_y1_fen, Application.hightech_revenue_fen)
        ).one()
    assert (revenue, hightech) == (300_000_000_000, 240_000_000_005)
