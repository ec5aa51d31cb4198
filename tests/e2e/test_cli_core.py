"""The ``hnte`` command line as an operator runs it: a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import make_engine
from hnte.models.stages import Stage
from hnte.models.tables import Application
from hnte.services.transitions import move

ROOT = Path(__file__).resolve().parents[2]
BATCH = "2021-1"
CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
TO_CERTIFIED = (
    Stage.SUBMITTED,
    Stage.DISTRICT_REVIEW,
    Stage.FORMAL_CHECK,
    Stage.EXPERT_REVIEW,
    Stage.APPROVAL,
    Stage.PUBLIC_NOTICE,
    Stage.CERTIFIED,
)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Hnte = Callable[..., Run]


def _runner(workdir: Path, db_file: Path) -> Hnte:
    """Run ``python -m hnte.flows.cli ARGS`` in a fresh process against ``db_file``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(
        HNTE_DATABASE_URL=f"sqlite:///{db_file}",
        HNTE_OPERATOR="测试操作员",
        PREFECT_HOME=str(workdir / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )

    def run(*args: str | Path) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "hnte.flows.cli", *map(str, args)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


def _copy_database(source: Path, target: Path) -> None:
    """Copy a SQLite file and its write-ahead log, if one is left."""
    for suffix in ("", "-wal"):
        part = source.with_name(source.name + suffix)
        if part.exists():
            shutil.copy(part, target.with_name(target.name + suffix))


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "hnte.db"


@pytest.fixture
def hnte(tmp_path: Path, db_file: Path) -> Hnte:
    return _runner(tmp_path, db_file)


@pytest.fixture(scope="module")
def initialised_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database after `hnte init`, made once per module and copied into each test."""
    workdir = tmp_path_factory.mktemp("initialised")
    run = _runner(workdir, workdir / "hnte.db")("init")
    assert run.code == 0, run.err
    return workdir / "hnte.db"


@pytest.fixture(scope="module")
def ready_template(
    initialised_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[synthetic.SyntheticApplication]]:
    """A database after `hnte init` and an import of 20 applications into batch 2021-1."""
    workdir = tmp_path_factory.mktemp("ready")
    _copy_database(initialised_template, workdir / "hnte.db")
    apps = _apps(20)
    path = synthetic.write_csv(workdir / "名单.csv", apps)
    run = _runner(workdir, workdir / "hnte.db")("import", "applications", path, "--batch", BATCH)
    assert run.code == 0, run.err
    return workdir / "hnte.db", apps


@pytest.fixture
def initialised(initialised_template: Path, db_file: Path) -> None:
    _copy_database(initialised_template, db_file)


@pytest.fixture
def ready(
    ready_template: tuple[Path, list[synthetic.SyntheticApplication]],
    db_file: Path,
    tmp_path: Path,
) -> list[synthetic.SyntheticApplication]:
    """An initialised database with 20 applications imported into batch 2021-1."""
    template, apps = ready_template
    _copy_database(template, db_file)
    synthetic.write_csv(tmp_path / "名单.csv", apps)
    return apps


def _apps(n: int, seed: int = 5) -> list[synthetic.SyntheticApplication]:
    return synthetic.applications(n, seed=seed, districts=SHARES, year=2021)


def _one_line_error(run: Run) -> str:
    """The error a user sees: exit 1, one line on stderr, no traceback."""
    assert run.code == 1, (run.code, run.out, run.err)
    assert "Traceback" not in run.err and "Traceback" not in run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    return lines[0]


def test_init_creates_the_database_then_updates_it_the_second_time(
    hnte: Hnte, db_file: Path
) -> None:
    first, second = hnte("init"), hnte("init")
    assert (first.code, second.code) == (0, 0), (first.err, second.err)
    assert "已创建数据库" in first.out and "已更新数据库" in second.out
    for run in (first, second):
        assert f"{len(CITY.districts)} 个区市，{len(CITY.batches)} 个批次" in run.out
    assert db_file.exists()


@pytest.mark.usefixtures("initialised")
def test_import_prints_a_summary_and_a_second_import_finds_nothing_new(
    hnte: Hnte, tmp_path: Path
) -> None:
    path = synthetic.write_csv(tmp_path / "名单.csv", _apps(20))
    first = hnte("import", "applications", path, "--batch", BATCH)
    second = hnte("import", "applications", path, "--batch", BATCH)
    assert (first.code, second.code) == (0, 0), (first.err, second.err)
    assert "共 20 行：新增 20，更新 0，未变 0，拒收 0 行" in first.out
    assert "共 20 行：新增 0，更新 0，未变 20，拒收 0 行" in second.out


@pytest.mark.usefixtures("initialised")
def test_import_of_an_xlsx_file_as_json_prints_only_json(hnte: Hnte, tmp_path: Path) -> None:
    path = synthetic.write_xlsx(tmp_path / "名单.xlsx", _apps(8))
    run = hnte("import", "applications", path, "--batch", BATCH, "--json")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert (summary["inserted"], summary["committed"], summary["errors"]) == (8, True, [])


def _file_with_a_bad_row(tmp_path: Path) -> Path:
    """Ten applications; the fifth (row 6, under the header) names an unknown district."""
    apps = _apps(10)
    apps[4] = replace(apps[4], cells={**apps[4].cells, "所属区市": "火星区"})
    return synthetic.write_csv(tmp_path / "有错.csv", apps)


@pytest.mark.usefixtures("initialised")
def test_a_file_with_a_bad_row_prints_the_row_and_keeps_the_others(
    hnte: Hnte, tmp_path: Path
) -> None:
    run = hnte("import", "applications", _file_with_a_bad_row(tmp_path), "--batch", BATCH)

    assert "Traceback" not in run.err
    row = next(line for line in run.out.splitlines() if "火星区" in line)
    assert "6" in row.replace("│", " ").split(), row
    assert "所属区市" in row and "未知的区市" in row
    assert "有错.errors.csv" in run.out.replace("\n", "")
    assert "新增 9" in run.out and "拒收 1 行" in run.out
    assert (tmp_path / "有错.errors.csv").exists()
    listed = json.loads(hnte("applications", "--json", "--batch", BATCH).out)
    assert len(listed) == 9


@pytest.mark.usefixtures("initialised")
def test_strict_import_of_a_file_with_a_bad_row_imports_nothing(
    hnte: Hnte, tmp_path: Path
) -> None:
    path = _file_with_a_bad_row(tmp_path)

    run = hnte("import", "applications", path, "--batch", BATCH, "--strict")

    assert "Traceback" not in run.err
    assert "火星区" in run.out
    assert "--strict" in run.out and "未导入任何数据" in run.out
    listed = hnte("applications", "--json", "--batch", BATCH)
    assert (listed.code, json.loads(listed.out)) == (0, [])


@pytest.mark.parametrize("options", [(), ("--strict",)], ids=["keep-good-rows", "strict"])
@pytest.mark.usefixtures("initialised")
def test_a_file_with_a_bad_row_exits_1(
    hnte: Hnte, tmp_path: Path, options: Sequence[str]
) -> None:
    run = hnte("import", "applications", _file_with_a_bad_row(tmp_path), "--batch", BATCH,
               *options)
    assert run.code == 1


def test_status_as_json_lists_every_district_and_every_stage(
    hnte: Hnte, ready: list[synthetic.SyntheticApplication]
) -> None:
    run = hnte("status", "--json")
    assert run.code == 0, run.err
    status = json.loads(run.out)
    assert [d["code"] for d in status["districts"]] == [d.code for d in CITY.districts]
    assert len(status["districts"]) == 10
    for district in status["districts"]:
        assert set(district["stages"]) >= {s.value for s in Stage}
    submitted = {d["code"]: d["stages"]["submitted"] for d in status["districts"]}
    expected = {d.code: 0 for d in CITY.districts}
    for app in ready:
        expected[app.district_code] += 1
    assert submitted == expected


def test_applications_as_json_lists_the_batch(
    hnte: Hnte, ready: list[synthetic.SyntheticApplication]
) -> None:
    run = hnte("applications", "--json", "--batch", BATCH)
    assert run.code == 0, run.err
    lines = json.loads(run.out)
    assert {line["credit_code"] for line in lines} == {a.credit_code for a in ready}
    assert {(line["batch_code"], line["stage"]) for line in lines} == {(BATCH, "submitted")}
    names = {line["credit_code"]: line["name"] for line in lines}
    assert names == {a.credit_code: a.cells["企业名称"] for a in ready}


@pytest.mark.parametrize("command", [("status",), ("applications",), ("history", "X")], ids=str)
def test_a_command_on_an_uninitialised_database_says_to_run_init(
    hnte: Hnte, command: Sequence[str]
) -> None:
    line = _one_line_error(hnte(*command))
    assert "hnte init" in line


UNKNOWN_BATCH = [
    pytest.param(("status", "--batch", "2099-9"), id="status"),
    pytest.param(("import", "applications", "{file}", "--batch", "2099-9"), id="import"),
    pytest.param(("batch", "run", "2099-9"), id="batch run"),
    pytest.param(("withdraw", "{code}", "--batch", "2099-9"), id="withdraw"),
    pytest.param(("reject", "{code}", "--batch", "2099-9", "--reason", "材料不实"), id="reject"),
    pytest.param(("applications", "--batch", "2099-9"), id="applications"),
]


@pytest.mark.parametrize("command", UNKNOWN_BATCH)
def test_an_unknown_batch_is_one_line_and_exit_1(
    hnte: Hnte,
    ready: list[synthetic.SyntheticApplication],
    tmp_path: Path,
    command: Sequence[str],
) -> None:
    args = [
        a.format(file=tmp_path / "名单.csv", code=ready[0].credit_code) for a in command
    ]
    line = _one_line_error(hnte(*args))
    assert "2099-9" in line


def _certify(db_file: Path, credit_code: str) -> None:
    """Take one application to certified through the stage table, as the flow would."""
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        with Session(engine) as session:
            app_id = session.exec(  # type: ignore[call-overload]
                select(Application.id).where(Application.credit_code == credit_code)
            ).scalar_one()
            for source, target in zip(TO_CERTIFIED, TO_CERTIFIED[1:], strict=False):
                result = move(
                    session,
                    source=source,
                    target=target,
                    candidates=[(app_id, None)],
                    actor="测试 / test",
                    as_of=date(2021, 10, 20),
                )
                assert result.moved == 1
            session.commit()
    finally:
        engine.dispose()


def test_withdrawing_a_certified_application_is_refused_with_a_readable_line(
    hnte: Hnte, ready: list[synthetic.SyntheticApplication], db_file: Path
) -> None:
    code = ready[0].credit_code
    _certify(db_file, code)

    line = _one_line_error(hnte("withdraw", code, "--batch", BATCH))

    assert code in line and "「已认定」" in line and "「已撤回」" in line
    listed = json.loads(hnte("applications", "--json", "--batch", BATCH).out)
    assert {x["stage"] for x in listed if x["credit_code"] == code} == {"certified"}


def test_withdrawing_a_submitted_application_moves_it_and_leaves_a_trail(
    hnte: Hnte, ready: list[synthetic.SyntheticApplication]
) -> None:
    code = ready[1].credit_code
    run = hnte("withdraw", code, "--batch", BATCH, "--reason", "企业主动撤回")
    assert run.code == 0, run.err
    assert "已将 1 件申报转为「已撤回」" in run.out

    trail = hnte("history", code, "--json")
    assert trail.code == 0, trail.err
    [event] = json.loads(trail.out)
    assert (event["from_stage"], event["to_stage"], event["actor"], event["reason"]) == (
        "submitted",
        "withdrawn",
        "测试操作员",
        "企业主动撤回",
    )


COMMANDS = [
    (),
    ("init",),
    ("import",),
    ("import", "applications"),
    ("status",),
    ("applications",),
    ("withdraw",),
    ("reject",),
    ("history",),
    ("batch",),
    ("batch", "run"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hnte")
def test_help_works_for_every_command(hnte: Hnte, command: Sequence[str]) -> None:
    run = hnte(*command, "--help")
    assert run.code == 0, run.err
    assert "Usage:" in run.out
    assert "Traceback" not in run.err
