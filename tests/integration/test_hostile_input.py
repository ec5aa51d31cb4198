"""Hostile files against the importer and every kind of decision file, on a real SQLite
database.

Whatever a file holds, the call either refuses the whole file with ``FileRejected`` and
changes nothing, or returns per-row errors, each with its row, column and reason; it never
raises anything else, never keeps a refused row, keeps every good one, and never hangs.
Text that is allowed is stored as written, formulas and HTML included, and made harmless
on the way out: in the error file, the workbook and HTML reports, and the notice emails.
"""

from __future__ import annotations

import csv
import email
import email.policy
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import types
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.application_rows import APPLICATION_COLUMNS
from hnte.models.db import make_engine, unit_of_work
from hnte.models.tables import OutboxMessage
from hnte.notifications.notices import deadline_reminders
from hnte.notifications.render import Rendered, build_message, make_message_id
from hnte.reports.data import gather
from hnte.reports.html import render_html
from hnte.reports.xlsx import write_xlsx
from hnte.services import review, tabular
from hnte.services.decisions import KINDS, RECORD_KINDS, record_from_file
from hnte.services.experts import upsert_experts
from hnte.services.importing import import_applications
from hnte.services.setup import init_database
from hnte.services.tabular import FileRejected, Limits

BATCH = "2021-1"
TODAY = date(2021, 6, 1)
CITY = load_city()
SHARES = tuple(synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts)
OPERATOR = "测试操作员"
TARGETS = ("applications", *RECORD_KINDS)
SUFFIXES = (".csv", ".xlsx")
BUDGET_SECONDS = 30  # per test; a hang fails the test instead of the run

FORMULAS = ('=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "@SUM(1)")
SCRIPT = "<script>alert(1)</script>"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Where the template database's applications sit, so that every kind of file has
# applications at its stage (and some at the wrong one).
LAYOUT = (
    ("submitted", 3),
    ("district_review", 2),
    ("expert_review", 3),
    ("onsite_inspection", 2),
    ("approval", 2),
    ("public_notice", 2),
    ("certified", 1),
    ("rejected", 1),
)
EXPERTS = (
    ("T9001", "专家甲", "technical", "中国海洋大学"),
    ("T9002", "专家乙", "technical", "青岛大学"),
    ("F9003", "专家丙", "financial", "青岛华正会计师事务所"),
)
# The decision words of each kind, as an operator writes them, and what is stored.
WORDS = {
    "recommendations": {
        "推荐": "recommended",
        "recommend": "recommended",
        "退回": "returned",
        "return": "returned",
    },
    "inspections": {"通过": "passed", "pass": "passed", "不通过": "failed", "fail": "failed"},
    "approvals": {
        "批准": "approved",
        "approve": "approved",
        "不予批准": "rejected",
        "reject": "rejected",
    },
}
# kind -> (decision key, reason key, decision column, reason column)
CHOICES = {
    "recommendations": ("decision", "reason", "district_decision", "district_reason"),
    "inspections": ("outcome", "note", "inspection_outcome", "inspection_note"),
    "approvals": ("decision", "reason", "approval", "approval_note"),
}
SCORE_KEYS = ("ip", "conversion", "rd_management", "growth")
SCORE_MAXIMA = {"ip": 30, "conversion": 30, "rd_management": 20, "growth": 20}
# Tables a file can change; compared whole before and after a refused file.
TABLES = ("application", "enterprise", "expert_score", "objection", "stage_event", "certificate")


# --- fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A database file to copy: the city, 16 applications spread over the stages, panels."""

    path: Path
    at: dict[str, tuple[str, ...]]  # stage -> credit codes
    seats: tuple[tuple[str, str], ...]  # (expert id, credit code)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    init_database(engine, CITY)
    apps = synthetic.applications(16, seed=31, districts=SHARES, year=2021)
    source = synthetic.write_csv(folder / "applications.csv", apps)
    with unit_of_work(engine) as session:
        assert import_applications(session, source, batch_code=BATCH, today=TODAY).inserted == 16
    codes = iter(a.credit_code for a in apps)
    at = {stage: tuple(next(codes) for _ in range(n)) for stage, n in LAYOUT}
    seats = tuple((expert[0], code) for code in at["expert_review"] for expert in EXPERTS)
    with unit_of_work(engine) as session:
        upsert_experts(session, EXPERTS)
        connection = session.connection()
        for stage, chosen in at.items():
            for code in chosen:
                connection.execute(
                    text("UPDATE application SET stage = :s WHERE credit_code = :c"),
                    {"s": stage, "c": code},
                )
        for number, (expert, code) in enumerate(seats):
            connection.execute(
                text(
                    "INSERT INTO panel_seat (application_id, expert_id, seat) "
                    "SELECT id, :e, :n FROM application WHERE credit_code = :c"
                ),
                {"e": expert, "n": number % len(EXPERTS) + 1, "c": code},
            )
        session.commit()
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return Template(path, at, seats)


@contextmanager
def copy_of(template: Template) -> Iterator[tuple[Engine, Path]]:
    """A fresh copy of the template database and a folder for the example's files."""
    folder = Path(tempfile.mkdtemp(prefix="hnte-hostile-"))
    shutil.copy(template.path, folder / "hnte.db")
    engine = make_engine(f"sqlite:///{folder / 'hnte.db'}")
    try:
        yield engine, folder
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db(template: Template) -> Iterator[tuple[Engine, Path]]:
    with copy_of(template) as pair:
        yield pair


@pytest.fixture(autouse=True)
def time_budget() -> Iterator[None]:
    """Fail a test that runs past its budget instead of letting it hang the run."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"over the {BUDGET_SECONDS} s budget of a hostile-input test")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(BUDGET_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- helpers ----------------------------------------------------------------------------


def headers(target: str) -> list[str]:
    return [spellings[0] for spellings in KINDS[target].columns.values()]


def label(target: str, key: str) -> str:
    return KINDS[target].label(key)


def write_rows(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    """Every cell as text: a .csv in UTF-8 with a BOM, or an .xlsx of string cells."""
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            csv.writer(handle).writerows(rows)
        return path
    book = xlsxwriter.Workbook(
        str(path),
        {"strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    )
    sheet = book.add_worksheet()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write_string(r, c, value)
    book.close()
    return path


def write_table(path: Path, target: str, rows: Sequence[Mapping[str, str]]) -> Path:
    keys = list(KINDS[target].columns)
    return write_rows(path, [headers(target), *([row.get(k, "") for k in keys] for row in rows)])


DEFAULT_LIMITS = Limits()


def submit(
    engine: Engine,
    target: str,
    path: Path,
    *,
    strict: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    with unit_of_work(engine) as session:
        if target == "applications":
            return import_applications(
                session, path, batch_code=BATCH, today=TODAY, strict=strict, limits=limits
            )
        return record_from_file(
            session,
            target,
            path,
            batch_code=BATCH,
            operator=OPERATOR,
            today=TODAY,
            strict=strict,
            limits=limits,
        )


def state(engine: Engine) -> dict[str, list[tuple[str, ...]]]:
    with engine.connect() as connection:
        return {
            table: sorted(
                tuple(map(repr, row)) for row in connection.execute(text(f"SELECT * FROM {table}"))
            )
            for table in TABLES
        }


def refused(engine: Engine, target: str, path: Path, **kwargs: Any) -> FileRejected:
    """Submit ``path``, which must be refused whole, naming the file, changing nothing."""
    before = state(engine)
    with pytest.raises(FileRejected) as caught:
        submit(engine, target, path, **kwargs)
    message = str(caught.value)
    assert path.name in message and "\n" not in message, message
    assert state(engine) == before
    return caught.value


def good_rows(target: str, template: Template) -> list[dict[str, str]]:
    """Rows that are right for the template database, one per distinct key."""
    if target == "applications":
        return [
            {key: app.cells.get(spellings[0], "") for key, spellings in APPLICATION_COLUMNS.items()}
            for app in POOL
        ]
    if target == "scores":
        return [
            {
                "expert_id": expert,
                "credit_code": code,
                "ip": str(20 + n % 10),
                "conversion": "22",
                "rd_management": "15",
                "growth": str(10 + n % 10),
            }
            for n, (expert, code) in enumerate(template.seats)
        ]
    if target == "objections":
        notice = template.at["public_notice"]
        return [
            {
                "credit_code": notice[n % len(notice)],
                "raised_on": "",
                "reason": f"异议内容{n}",
                "resolution": "",
                "note": "",
            }
            for n in range(6)
        ]
    stages = {
        "recommendations": ("submitted", "district_review"),
        "inspections": ("onsite_inspection",),
        "approvals": ("approval",),
    }[target]
    decision, reason, _, _ = CHOICES[target]
    words = list(WORDS[target])
    codes = [code for stage in stages for code in template.at[stage]]
    return [
        {"credit_code": code, decision: words[n % len(words)], reason: f"理由{n}"}
        for n, code in enumerate(codes)
    ]


POOL = synthetic.applications(30, seed=32, districts=SHARES, year=2021)
OUTSIDER = synthetic.credit_code(random.Random(5), "370212")  # valid, in no batch
WRONG_CHECK = POOL[0].credit_code[:-1] + ("0" if POOL[0].credit_code[-1] != "0" else "1")


# --- whole files refused ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(template: Template) -> Iterator[Engine]:
    """One database for tests whose files must all be refused, so nothing may change it."""
    with copy_of(template) as (engine, _):
        yield engine


@pytest.mark.parametrize("target", TARGETS)
@EXAMPLES
@given(content=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_refused_by_every_reader(
    shared: Engine, tmp_path: Path, target: str, content: bytes, suffix: str
) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(content)
    refused(shared, target, path)


@pytest.mark.parametrize("target", TARGETS)
@EXAMPLES
@given(cut=st.floats(min_value=0.0, max_value=0.999))
def test_a_truncated_xlsx_is_refused_by_every_reader(
    shared: Engine, template: Template, tmp_path: Path, target: str, cut: float
) -> None:
    whole = write_table(tmp_path / "whole.xlsx", target, good_rows(target, template)).read_bytes()
    path = tmp_path / "truncated.xlsx"
    path.write_bytes(whole[: int(len(whole) * cut)])
    error = refused(shared, target, path)
    assert "不是有效的 .xlsx 文件" in error.reason_zh


def _bomb(path: Path, megabytes: int) -> Path:
    """A workbook-shaped zip whose sheet inflates to ``megabytes`` of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            for _ in range(megabytes):
                member.write(bytes(1024 * 1024))
    return path


@pytest.mark.parametrize("target", TARGETS)
def test_a_zip_bomb_is_refused_by_its_declared_size_before_anything_inflates_it(
    shared: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    path = _bomb(tmp_path / "bomb.xlsx", 32)
    assert path.stat().st_size < 100_000
    opened: list[object] = []

    class Spy:
        @staticmethod
        def from_path(where: object) -> None:
            opened.append(where)
            raise AssertionError("the workbook was opened")

    monkeypatch.setattr(
        tabular,
        "python_calamine",
        types.SimpleNamespace(CalamineWorkbook=Spy, CalamineError=RuntimeError),
    )
    tracemalloc.start()
    try:
        error = refused(shared, target, path, limits=Limits(max_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "解压后内容过大" in error.reason_zh
    assert opened == [] and peak < 8 * 1024 * 1024


def _understated(source: Path, path: Path, member: str, size: int) -> Path:
    """``source`` with ``member``'s uncompressed size understated as ``size`` bytes, in
    both its local header and the central directory: a bomb that lies."""
    raw = bytearray(source.read_bytes())
    name = member.encode()
    for signature, size_at, name_length_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        start = raw.find(signature)
        while start != -1:
            length = struct.unpack_from("<H", raw, start + name_length_at)[0]
            if raw[start + name_at : start + name_at + length] == name:
                struct.pack_into("<I", raw, start + size_at, size)
            start = raw.find(signature, start + 4)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("target", TARGETS)
def test_a_bomb_that_understates_its_size_is_refused_without_inflating_past_it(
    shared: Engine, template: Template, tmp_path: Path, target: str
) -> None:
    padded = tmp_path / "padded.xlsx"
    write_table(padded, target, good_rows(target, template))
    with zipfile.ZipFile(padded) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    members[sheet] = members[sheet].replace(
        b"<sheetData>", b"<!--" + b" " * (64 * 1024 * 1024) + b"--><sheetData>", 1
    )
    with zipfile.ZipFile(padded, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path = _understated(padded, tmp_path / "liar.xlsx", sheet, 2_000)
    tracemalloc.start()
    try:
        refused(shared, target, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


_FAR_CELL = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    from hnte.models.db import make_engine, unit_of_work
    from hnte.services.decisions import record_from_file
    from hnte.services.importing import import_applications
    from hnte.services.tabular import FileRejected

    engine = make_engine(sys.argv[1])
    for target, path in zip(sys.argv[2::2], sys.argv[3::2]):
        with unit_of_work(engine) as session:
            try:
                if target == "applications":
                    import_applications(
                        session, Path(path), batch_code="2021-1", today=date(2021, 6, 1)
                    )
                else:
                    record_from_file(
                        session, target, Path(path), batch_code="2021-1", operator="x",
                        today=date(2021, 6, 1),
                    )
            except FileRejected as error:
                print(target, "refused:", error.reason_en)
            else:
                print(target, "read")
    """
)


def _with_far_cell(source: Path, path: Path, reference: str) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    row = "".join(ch for ch in reference if ch.isdigit())
    members[sheet] = members[sheet].replace(
        b"</sheetData>",
        f'<row r="{row}"><c r="{reference}" t="inlineStr"><is><t>x</t></is></c></row>'
        "</sheetData>".encode(),
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_tiny_xlsx_with_one_far_away_cell_is_refused_before_its_range_is_allocated(
    db: tuple[Engine, Path], template: Template
) -> None:
    """calamine allocates the whole range from A1 to the last cell at once (32 bytes a
    cell) and aborts the process when it cannot, so this runs in a child process with a
    memory ceiling: a regression is a failed test, not a dead test run."""
    engine, folder = db
    argv = []
    for target in TARGETS:
        source = write_table(folder / f"{target}.xlsx", target, good_rows(target, template))
        far = _with_far_cell(source, folder / f"{target}-far.xlsx", "XFD1048576")
        assert far.stat().st_size < 20_000
        argv += [target, str(far)]

    def ceiling() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    before = state(engine)
    done = subprocess.run(
        [sys.executable, "-c", _FAR_CELL, str(engine.url), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=ceiling,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"{target} refused: sheet range too large (17179869184 cells, limit 10000000)"
        for target in TARGETS
    ]
    assert state(engine) == before


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("encoding", "header_is_english"),
    [("utf-16", False), ("utf-16-le", False), ("utf-16-be", True)],
)
def test_a_utf16_csv_is_refused(
    shared: Engine,
    template: Template,
    tmp_path: Path,
    target: str,
    encoding: str,
    header_is_english: bool,
) -> None:
    rows = good_rows(target, template)
    keys = list(KINDS[target].columns)
    header = keys if header_is_english else headers(target)
    path = tmp_path / "unicode-text.csv"
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows([header, *([row.get(k, "") for k in keys] for row in rows)])
    refused(shared, target, path)


@pytest.mark.parametrize("target", TARGETS)
def test_bytes_that_are_neither_utf8_nor_gb18030_are_refused_naming_the_encoding(
    shared: Engine, template: Template, tmp_path: Path, target: str
) -> None:
    good = write_table(tmp_path / "good.csv", target, good_rows(target, template)).read_bytes()
    for poison in (b"\xff", b"\x80", b"\xfe\xff", b"\x81\x20"):
        for where in (len(good) // 2, len(good)):
            path = tmp_path / "poisoned.csv"
            path.write_bytes(good[:where] + poison + good[where:])
            with pytest.raises(UnicodeDecodeError):
                path.read_bytes().decode("gb18030")
            assert "无法识别文件编码" in refused(shared, target, path).reason_zh


@pytest.mark.parametrize("target", TARGETS)
def test_latin1_text_is_refused_or_read_as_gb18030_and_never_crashes(
    db: tuple[Engine, Path], template: Template, target: str
) -> None:
    """Latin-1 and GB18030 cannot be told apart byte by byte: "é" before a comma or a
    line break is not GB18030 and refuses the file; "ét" and "és" are GB18030 characters,
    so "Sociétés" reads as two of them. Either way the call returns or refuses; it never
    raises anything else."""
    engine, folder = db
    keys = list(KINDS[target].columns)
    rows = good_rows(target, template)
    text_key = {"applications": "name", "scores": "expert_id", "inspections": "note"}.get(
        target, "reason"
    )
    for accented, refusable in (("Café", True), ("Sociétés", False)):
        for row in rows:
            row[text_key] = accented
        path = folder / f"latin1-{accented}.csv"
        # Latin-1 cannot hold Chinese: those cells become "?" and their rows row errors.
        with path.open("w", encoding="latin-1", errors="replace", newline="") as handle:
            csv.writer(handle).writerows([keys, *([r.get(k, "") for k in keys] for r in rows)])
        try:
            report = submit(engine, target, path)
        except FileRejected as error:
            assert "无法识别文件编码" in error.reason_zh
        else:
            assert not refusable
            assert report.rows == len(rows)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_one_megabyte_cell_refuses_the_file(
    shared: Engine, template: Template, tmp_path: Path, target: str, suffix: str
) -> None:
    rows = good_rows(target, template)
    key = {"applications": "name", "scores": "expert_id"}.get(target, "credit_code")
    rows[-1][key] = "青" * 1_000_000
    keys = list(KINDS[target].columns)
    table = [headers(target), *([row.get(k, "") for k in keys] for row in rows)]
    path = tmp_path / f"huge{suffix}"
    if suffix == ".csv":
        write_rows(path, table)
    else:  # xlsxwriter stops at Excel's 32,767 characters a cell; openpyxl does not
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        for row in table:
            sheet.append(row)
        book.save(path)
    error = refused(shared, target, path)
    assert f"第 {len(rows) + 1} 行" in error.reason_zh and "超过 10000 个字符" in error.reason_zh


# --- rows: stored as written, refused with a reason, or neutralised on the way out -------


def _error_cells(report: Any) -> list[list[str]]:
    assert report.error_file is not None
    raw = report.error_file.read_text(encoding="utf-8-sig")
    return list(csv.reader(raw.splitlines()))


def _errors_by_row(report: Any) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for error in report.errors:
        found.setdefault(error.row, set()).add(error.column)
    return found


HOSTILE_NAMES = (*FORMULAS, SCRIPT + "青岛某某科技有限公司", '<img src=x onerror="alert(1)">')
BROKEN_NAMES = (
    "青岛\r\n海纳科技有限公司",
    "青岛\n海纳科技有限公司",
    "青岛\r海纳科技有限公司",
    "青岛\t海纳科技有限公司",
    "青岛\x00海纳科技有限公司",
    "青岛\x1b[31m海纳科技有限公司",
    "青岛\u2028海纳科技有限公司",
)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_names_with_line_breaks_or_controls_are_row_errors_and_hostile_names_are_kept(
    db: tuple[Engine, Path], template: Template, suffix: str
) -> None:
    engine, folder = db
    rows = good_rows("applications", template)[: len(HOSTILE_NAMES) + len(BROKEN_NAMES)]
    for row, name in zip(rows, (*HOSTILE_NAMES, *BROKEN_NAMES), strict=True):
        row["name"] = name
    rows[0]["intermediary"] = "青岛\r\n某代理"
    rows[1]["intermediary"] = FORMULAS[1]
    report = submit(
        engine, "applications", write_table(folder / f"names{suffix}", "applications", rows)
    )
    errors = _errors_by_row(report)
    broken = range(len(HOSTILE_NAMES) + 2, len(rows) + 2)
    assert errors == {
        2: {"中介机构"},
        **{row: {"企业名称"} for row in broken},
    }
    assert all("控制字符" in e.reason for e in report.errors)
    stored = _names(engine)
    assert stored == {
        row["credit_code"]: (row["name"], row["intermediary"] or None)
        for row in rows[1 : len(HOSTILE_NAMES)]
    }
    assert all(not cell.startswith(FORMULA_PREFIXES) for r in _error_cells(report) for cell in r)


def _names(engine: Engine) -> dict[str, tuple[str, str | None]]:
    """Name and intermediary of the enterprises imported from the pool."""
    pool = {app.credit_code for app in POOL}
    with engine.connect() as connection:
        found = connection.execute(text("SELECT credit_code, name, intermediary FROM enterprise"))
        return {code: (name, agency) for code, name, agency in found if code in pool}


def test_hostile_names_are_stored_verbatim_and_neutralised_in_every_output(
    db: tuple[Engine, Path], template: Template
) -> None:
    """Names and reasons that are formulas or HTML go in as plain text and come out inert:
    the workbook report writes them as text behind an apostrophe, the HTML report and
    the HTML part of the emails escape them, the text part keeps them as written."""
    engine, folder = db
    rows = good_rows("applications", template)[:8]
    img = HOSTILE_NAMES[4]
    names = (
        FORMULAS[0],
        FORMULAS[1],
        HOSTILE_NAMES[3],
        img,
        FORMULAS[2],
        HOSTILE_NAMES[3],
        img,
        FORMULAS[0],
    )
    for row, name in zip(rows, names, strict=True):
        row["name"] = name
    report = submit(engine, "applications", write_table(folder / "apps.xlsx", "applications", rows))
    assert (report.inserted, report.errors) == (8, [])
    assert {code: name for code, (name, _) in _names(engine).items()} == {
        row["credit_code"]: row["name"] for row in rows
    }
    # Half are returned by their district with a hostile reason, half left waiting.
    returned = [
        {"credit_code": row["credit_code"], "decision": "退回", "reason": FORMULAS[n % 3]}
        for n, row in enumerate(rows[:4])
    ]
    recorded = submit(
        engine, "recommendations", write_table(folder / "rec.csv", "recommendations", returned)
    )
    assert (recorded.applied, recorded.errors) == (4, [])
    with engine.connect() as connection:
        reasons = set(
            connection.execute(
                text("SELECT district_reason FROM application WHERE district_decision = 'returned'")
            ).scalars()
        )
    assert reasons == set(FORMULAS)
    ctx = review.StepContext(
        engine, BATCH, date(2021, 6, 10), policy=review.ReviewPolicy.from_city(CITY)
    )
    review.RUN["district_review"](ctx)

    with Session(engine) as session:
        data = gather(session, year=2021, as_of=date(2021, 6, 30), city=CITY)
    assert {r.name for r in data.rejections} >= {row["name"] for row in rows[:4]}
    book = openpyxl.load_workbook(write_xlsx(data, folder / "report.xlsx"))
    cells = [c for sheet in book.worksheets for line in sheet.iter_rows() for c in line]
    assert all(c.data_type != "f" for c in cells)
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert not [t for t in texts if t.startswith(FORMULA_PREFIXES)]
    for row in rows[:4]:
        name = row["name"]
        assert (("'" + name) if name.startswith(FORMULA_PREFIXES) else name) in texts
    html = render_html(data)
    assert SCRIPT not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    with Session(engine) as session:
        queued = deadline_reminders(session, CITY, as_of=date(2021, 6, 15))
        session.commit()
    assert queued.notices
    with Session(engine) as session:
        outbox = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
    bodies_html = "".join(m.body_html for m in outbox)
    bodies_text = "".join(m.body_text for m in outbox)
    assert all(row["name"] in bodies_text for row in rows[4:])
    assert SCRIPT not in bodies_html and "<img" not in bodies_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in bodies_html
    for queued_message in outbox:
        rendered = Rendered(
            queued_message.kind,
            queued_message.subject,
            queued_message.body_text,
            queued_message.body_html,
        )
        message = build_message(
            rendered,
            sender="hnte@kjj.qingdao.example",
            to=queued_message.recipients.split(","),
            message_id=queued_message.message_id,
        )
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        html_part = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert SCRIPT not in html_part and "<img" not in html_part


@pytest.mark.parametrize("target", RECORD_KINDS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_formulas_and_html_in_free_text_are_kept_as_plain_text(
    db: tuple[Engine, Path], template: Template, target: str, suffix: str
) -> None:
    engine, folder = db
    rows = good_rows(target, template)
    if target == "scores":  # no free text: a formula where a number belongs is refused
        rows[0]["ip"] = FORMULAS[2]
        report = submit(engine, target, write_table(folder / f"s{suffix}", target, rows))
        assert [(e.row, e.column) for e in report.errors] == [(2, "知识产权")]
        assert report.applied == len(rows) - 1
        return
    key = {"objections": "reason", "inspections": "note"}.get(target, "reason")
    values = (*FORMULAS, SCRIPT, "多行\n说明")
    for n, row in enumerate(rows):
        row[key] = values[n % len(values)]
    report = submit(engine, target, write_table(folder / f"t{suffix}", target, rows))
    assert report.errors == [] and report.applied == len(rows)
    table, column = {
        "objections": ("objection", "reason"),
        "inspections": ("application", "inspection_note"),
        "recommendations": ("application", "district_reason"),
        "approvals": ("application", "approval_note"),
    }[target]
    with engine.connect() as connection:
        stored = connection.execute(text(f"SELECT {column} FROM {table}")).scalars()
        assert {value for value in stored if value is not None} == {row[key] for row in rows}


DATES_TOO_LATE = ("2099-01-01", (TODAY + timedelta(days=1)).isoformat(), "9999-12-31")
DATES_TOO_EARLY = ("1949-09-30", "1900-01-01", "0001-01-01")
DATES_IMPOSSIBLE = ("2021-02-29", "2021-13-01", "20210230", "=TODAY()")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_dates_in_the_future_or_before_1949_10_01_are_row_errors(
    db: tuple[Engine, Path], template: Template, suffix: str
) -> None:
    engine, folder = db
    bad = (*DATES_TOO_LATE, *DATES_TOO_EARLY, *DATES_IMPOSSIBLE)
    rows = good_rows("applications", template)[: 2 * len(bad) + 2]
    for n, value in enumerate(bad):
        rows[n]["registered_on"] = value
        rows[len(bad) + n]["applied_on"] = value
    rows[-2]["registered_on"], rows[-1]["applied_on"] = "1949-10-01", TODAY.isoformat()
    report = submit(
        engine, "applications", write_table(folder / f"d{suffix}", "applications", rows)
    )
    errors = _errors_by_row(report)
    assert all("注册日期" in errors[row] for row in range(2, len(bad) + 2))
    assert all("申报日期" in errors[row] for row in range(len(bad) + 2, 2 * len(bad) + 2))
    assert report.inserted == 2 and len(errors) == 2 * len(bad)

    notice = template.at["public_notice"][0]
    objections = [
        {"credit_code": notice, "raised_on": value, "reason": f"异议{n}"}
        for n, value in enumerate((*bad, "1949-10-01", TODAY.isoformat()))
    ]
    recorded = submit(
        engine, "objections", write_table(folder / f"o{suffix}", "objections", objections)
    )
    assert {e.row for e in recorded.errors if e.column == "异议日期"} == set(range(2, len(bad) + 2))
    assert recorded.applied == 2


MONEY_KEYS = ("revenue_y1", "rd_y1", "rd_domestic", "hightech_revenue")
BAD_MONEY = (
    "-1",
    "-0.01",
    "1e20",
    "1E20",
    "100000000000000000000",
    "10000000000000.01",
    "1.234",
    "NaN",
    "inf",
    "∞",
    "=1+1",
)
BAD_COUNTS = ("-5", "99999999999999999999", "3000000000", "1e3", "3.5")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_negative_and_astronomic_amounts_and_counts_are_row_errors(
    db: tuple[Engine, Path], template: Template, suffix: str
) -> None:
    engine, folder = db
    cases = [(k, v) for k in MONEY_KEYS for v in BAD_MONEY]
    cases += [
        (k, v) for k in ("staff_total", "staff_tech", "ip_class1", "ip_class2") for v in BAD_COUNTS
    ]
    pool = good_rows("applications", template)
    rows = [dict(pool[n % len(pool)]) for n in range(len(cases))]
    for n, (row, (key, value)) in enumerate(zip(rows, cases, strict=True)):
        # A distinct valid code per row, so that every row stands or falls on its own.
        row["credit_code"] = synthetic.credit_code(random.Random(n), "370212")
        row[key] = value
    report = submit(
        engine, "applications", write_table(folder / f"m{suffix}", "applications", rows)
    )
    errors = _errors_by_row(report)
    for n, (key, value) in enumerate(cases):
        assert APPLICATION_COLUMNS[key][0] in errors.get(n + 2, set()), (key, value)
    assert report.inserted == 0

    scores = good_rows("scores", template)
    for row, value in zip(
        scores,
        ("-1", "31", "1e20", "99999999999999999999", "7.5", "abc", FORMULAS[0], ""),
        strict=False,
    ):
        row["ip"] = value
    recorded = submit(engine, "scores", write_table(folder / f"s{suffix}", "scores", scores))
    assert {e.row for e in recorded.errors if e.column == "知识产权"} == set(range(2, 10))
    assert recorded.applied == len(scores) - 8


@pytest.mark.parametrize("target", TARGETS)
def test_nul_and_escape_characters_in_any_cell_are_row_errors_on_every_database(
    any_engine: Engine, tmp_path: Path, target: str
) -> None:
    """PostgreSQL text refuses NUL outright: it must be a row error, not a DataError."""
    apps = synthetic.applications(4, seed=33, districts=SHARES, year=2021)
    with unit_of_work(any_engine) as session:
        source = synthetic.write_csv(tmp_path / "apps.csv", apps)
        assert import_applications(session, source, batch_code=BATCH, today=TODAY).inserted == 4
    stage = {
        "recommendations": "submitted",
        "inspections": "onsite_inspection",
        "approvals": "approval",
        "objections": "public_notice",
        "scores": "expert_review",
        "applications": "submitted",
    }[target]
    with any_engine.begin() as connection:
        connection.execute(text("UPDATE application SET stage = :s"), {"s": stage})
    codes = [a.credit_code for a in apps]
    poison = ("a\x00b", "\x1b[2J清屏", "a\x07b", "a\x7fb")
    if target == "applications":
        fresh = synthetic.applications(8, seed=34, districts=SHARES, year=2021)
        rows = [
            {key: app.cells.get(spellings[0], "") for key, spellings in APPLICATION_COLUMNS.items()}
            for app in fresh
        ]
        for n, value in enumerate(poison):
            rows[n]["ip_numbers"], rows[4 + n]["name"] = "ZL1;" + value, value
        key_labels = {"知识产权编号", "企业名称"}
    elif target == "scores":
        rows = [
            {
                "expert_id": value,
                "credit_code": code,
                "ip": "1",
                "conversion": "1",
                "rd_management": "1",
                "growth": "1",
            }
            for value, code in zip(poison, codes, strict=True)
        ]
        key_labels = {"专家编号"}
    else:
        key = {"inspections": "note", "objections": "reason"}.get(target, "reason")
        decision = {
            "recommendations": {"decision": "推荐"},
            "inspections": {"outcome": "通过"},
            "approvals": {"decision": "批准"},
            "objections": {},
        }[target]
        rows = [
            {"credit_code": code, **decision, key: value}
            for value, code in zip(poison, codes, strict=True)
        ]
        key_labels = {label(target, key)}
    report = submit(any_engine, target, write_table(tmp_path / "poison.csv", target, rows))
    assert {e.row for e in report.errors} == set(range(2, len(poison) + 2)) | (
        set(range(6, 10)) if target == "applications" else set()
    )
    assert {e.column for e in report.errors} >= key_labels
    assert "含有控制字符" in " ".join(e.reason for e in report.errors)


# --- the property: per-row errors, good rows kept, bad rows not, never anything else ---


# A value is GOOD, BAD (always reported against its column), LATE (reported against its
# column when nothing else in the row is wrong: the checks that look at the database run
# only on rows that parse), or UNSURE (random: either outcome is fine).
GOOD, BAD, LATE, UNSURE = "good", "bad", "late", "unsure"
FREE_TEXT_GOOD = (*FORMULAS, SCRIPT, '"引号",逗号;分号', "多行\n说明", "\u3000全角空格\u3000", "🚀")
FREE_TEXT_BAD = ("a\x00b", "\x1b[2J", "说" * 1_001)
NAME_GOOD = (
    *HOSTILE_NAMES,
    '青岛"引号",逗号;分号科技',
    "青岛🚀科技",
    "+86 青岛",
    "-青岛",
    "青" * 200,
)
NAME_BAD = (*BROKEN_NAMES, "青" * 201, "")


def _application_mutations(template: Template) -> dict[str, list[tuple[str, str]]]:
    bad_money = [(v, BAD) for v in BAD_MONEY]
    bad_counts = [(v, BAD) for v in BAD_COUNTS]
    return {
        "credit_code": [(v, BAD) for v in ("123", WRONG_CHECK, FORMULAS[2], "")]
        + [(template.at["certified"][0], LATE)],
        "name": [(v, GOOD) for v in NAME_GOOD] + [(v, BAD) for v in NAME_BAD],
        "intermediary": [(v, GOOD) for v in (*NAME_GOOD, "")] + [(v, BAD) for v in NAME_BAD if v],
        "district": [
            ("370212", GOOD),
            ("崂山区", GOOD),
            ("火星区", BAD),
            (FORMULAS[0], BAD),
            ("", BAD),
        ],
        "registered_on": [
            (v, GOOD) for v in ("1949-10-01", "2015年4月20日", "20150420", "2015/4/20")
        ]
        + [(v, BAD) for v in (*DATES_TOO_LATE, *DATES_TOO_EARLY, *DATES_IMPOSSIBLE, "")],
        "applied_on": [(v, GOOD) for v in ("", "2021-05-31")]
        + [(v, BAD) for v in (*DATES_TOO_LATE, *DATES_TOO_EARLY, *DATES_IMPOSSIBLE)],
        "kind": [("renewal", GOOD), ("首次申报", GOOD), ("第三次申报", BAD), ("", BAD)],
        "tech_field": [("新材料", GOOD), ("量子玄学", BAD), (SCRIPT, BAD)],
        "major_incident": [("yes", GOOD), ("0", GOOD), ("maybe", BAD)],
        "ip_numbers": [
            ("ZL1;ZL2；ZL3", GOOD),
            (FORMULAS[0], GOOD),
            ("", GOOD),
            ("ZL\x00", BAD),
            (";".join(["ZL"] * 201), BAD),
        ],
        **{key: bad_money for key in MONEY_KEYS},
        "staff_total": bad_counts + [("0", BAD)],
        "staff_tech": bad_counts,
        "ip_class1": bad_counts,
    }


def _record_mutations(target: str, template: Template) -> dict[str, list[tuple[str, str]]]:
    codes = [(v, BAD) for v in ("123", WRONG_CHECK, OUTSIDER, FORMULAS[2], "")]
    codes.append((template.at["certified"][0], LATE))
    free = [(v, GOOD) for v in FREE_TEXT_GOOD] + [(v, BAD) for v in FREE_TEXT_BAD]
    if target == "scores":
        return {
            "credit_code": codes,
            "expert_id": [("T9999", LATE), ("", BAD), (FORMULAS[0], LATE), ("a\x00b", BAD)],
            **{
                key: [("0", GOOD), (str(maximum), GOOD), ("１５", GOOD), ("+5", GOOD)]
                + [
                    (v, BAD)
                    for v in (
                        "-1",
                        str(maximum + 1),
                        "1e20",
                        "99999999999999999999",
                        "7.5",
                        "abc",
                        FORMULAS[0],
                        "",
                    )
                ]
                for key, maximum in SCORE_MAXIMA.items()
            },
        }
    if target == "objections":
        return {
            "credit_code": codes,
            "raised_on": [(v, GOOD) for v in ("", "2021-05-30", "1949-10-01")]
            + [(v, BAD) for v in (*DATES_TOO_LATE, *DATES_TOO_EARLY, *DATES_IMPOSSIBLE)],
            "reason": free + [("", BAD), ("   ", BAD)],
            "resolution": [("驳回", BAD), (FORMULAS[0], BAD)],
            "note": free,
        }
    decision, reason, _, _ = CHOICES[target]
    return {
        "credit_code": codes,
        decision: [(w, GOOD) for w in WORDS[target]]
        + [(v, BAD) for v in ("maybe", FORMULAS[0], SCRIPT, "")],
        reason: free,
    }


@dataclass
class Plan:
    """The rows of one generated file and what each must come to."""

    rows: list[dict[str, str]]
    expect: list[str]  # GOOD, BAD or UNSURE, per row
    bad_columns: list[set[str]]  # for a BAD row, the columns its errors must name
    oversized: bool = False


def _plan(data: st.DataObject, target: str, template: Template) -> Plan:
    base = good_rows(target, template)
    count = data.draw(st.integers(1, min(len(base), 8)), label="rows")
    picked = data.draw(st.permutations(range(len(base))), label="order")[:count]
    rows = [dict(base[i]) for i in picked]
    mutations = (
        _application_mutations(template)
        if target == "applications"
        else _record_mutations(target, template)
    )
    free_keys = [
        k
        for k in ("name", "intermediary", "reason", "note", "credit_code", "expert_id")
        if k in KINDS[target].columns
    ]
    verdicts: list[dict[str, str]] = [{} for _ in rows]  # per row: key -> verdict
    for n, row in enumerate(rows):
        for _ in range(data.draw(st.integers(0, 2), label="mutations")):
            how = data.draw(st.sampled_from(("table", "table", "table", "random", "duplicate")))
            if how == "table":
                key = data.draw(st.sampled_from(sorted(mutations)))
                row[key], verdicts[n][key] = data.draw(st.sampled_from(mutations[key]))
            elif how == "random":
                key = data.draw(st.sampled_from(free_keys))
                row[key], verdicts[n][key] = data.draw(st.text(max_size=12)), UNSURE
            else:  # the key of another row of the file (its verdict comes along)
                other = data.draw(st.integers(0, count - 1))
                for key in ("credit_code", "expert_id"):
                    if key in rows[other]:
                        row[key] = rows[other][key]
                        verdicts[n][key] = verdicts[other].get(key, GOOD)
    labels = KINDS[target].columns
    plan = Plan(rows, [], [])
    for found in verdicts:
        bad = {labels[k][0] for k, v in found.items() if v == BAD}
        late = {labels[k][0] for k, v in found.items() if v == LATE}
        unsure = UNSURE in found.values()
        # A LATE value is named only when nothing else stops the row first.
        plan.bad_columns.append(bad or (set() if unsure else late))
        plan.expect.append(BAD if bad or late else UNSURE if unsure else GOOD)
    # Rows that share a key may each be the one kept; the rule is checked on the database.
    keys = [_row_key(target, row) for row in rows]
    for n, key in enumerate(keys):
        if keys.count(key) > 1 and plan.expect[n] == GOOD:
            plan.expect[n] = UNSURE
        elif keys.count(key) > 1 and plan.expect[n] == BAD:
            # Still refused, but perhaps only as a duplicate of an earlier row, which names
            # the key's column rather than the bad one.
            plan.bad_columns[n] = set()
    if data.draw(st.integers(0, 11), label="oversize") == 0:
        rows[data.draw(st.integers(0, count - 1))][free_keys[0]] = "x" * 10_001
        plan.oversized = True
    return plan


def _row_key(target: str, row: Mapping[str, str]) -> tuple[str, ...]:
    if target == "scores":
        return (row.get("expert_id", ""), row.get("credit_code", ""))
    if target == "objections":
        return (row.get("credit_code", ""), _stripped(row.get("reason", "")) or "")
    return (row.get("credit_code", ""),)


def _stripped(value: str) -> str | None:
    """A cell as recorded: the reader's padding off, then surrounding whitespace."""
    kept = value.strip(" \u3000\u00a0\ufeff").strip()
    return kept or None


def _effects(engine: Engine, target: str) -> set[tuple[Any, ...]]:
    """What the database holds of the kind of decision ``target`` records."""
    with engine.connect() as connection:
        if target == "applications":
            query = (
                "SELECT a.credit_code, e.name, e.intermediary FROM application a "
                "JOIN enterprise e ON e.credit_code = a.credit_code"
            )
        elif target == "scores":
            query = (
                "SELECT a.credit_code, s.expert_id, s.ip_score, s.conversion_score, "
                "s.rd_management_score, s.growth_score FROM expert_score s "
                "JOIN application a ON a.id = s.application_id"
            )
        elif target == "objections":
            query = (
                "SELECT a.credit_code, o.reason, o.raised_on FROM objection o "
                "JOIN application a ON a.id = o.application_id"
            )
        else:
            _, _, decision, reason = CHOICES[target]
            query = (
                f"SELECT credit_code, {decision}, {reason} FROM application "
                f"WHERE {decision} IS NOT NULL"
            )
        return {tuple(map(str, row)) for row in connection.execute(text(query))}


def _expected_effect(target: str, row: Mapping[str, str]) -> tuple[str, ...]:
    """What a row that is not refused must leave in the database."""
    if target == "applications":
        return (
            row["credit_code"],
            row["name"].strip(" \u3000\u00a0\ufeff"),
            str(_stripped(row.get("intermediary", ""))),
        )
    if target == "scores":
        values = (int(unicodedata.normalize("NFKC", row[k]).strip()) for k in SCORE_KEYS)
        return (row["credit_code"], row["expert_id"], *map(str, values))
    if target == "objections":
        raised = row.get("raised_on", "").strip() or TODAY.isoformat()
        return (row["credit_code"], str(_stripped(row["reason"])), raised)
    decision, reason, _, _ = CHOICES[target]
    word = unicodedata.normalize("NFKC", row[decision]).strip().lower()
    return (row["credit_code"], WORDS[target][word], str(_stripped(row.get(reason, ""))))


def _check_property(
    engine: Engine, folder: Path, target: str, plan: Plan, suffix: str, strict: bool
) -> None:
    path = write_table(folder / f"{target}{suffix}", target, plan.rows)
    before, effects_before = state(engine), _effects(engine, target)
    try:
        report = submit(engine, target, path, strict=strict)
    except FileRejected as error:
        assert plan.oversized, error
        assert path.name in str(error) and "\n" not in str(error)
        assert state(engine) == before
        return
    assert not plan.oversized
    numbers = range(2, len(plan.rows) + 2)  # the header is row 1
    labels = {spellings[0] for spellings in KINDS[target].columns.values()}
    for error in report.errors:
        assert error.row in numbers and error.column in labels and error.reason.strip(), error
    refused_rows = {error.row for error in report.errors}
    for n, expect in enumerate(plan.expect):
        if expect == GOOD:
            assert n + 2 not in refused_rows, [e for e in report.errors if e.row == n + 2]
        elif expect == BAD:
            named = {e.column for e in report.errors if e.row == n + 2}
            assert named and plan.bad_columns[n] <= named, (plan.rows[n], report.errors)
    if report.errors:
        assert report.error_file is not None and report.error_file.exists()
        cells = _error_cells(report)
        assert len(cells) == len(report.errors) + 1
        assert not [c for line in cells for c in line if c.startswith(FORMULA_PREFIXES)]
    if strict and report.errors:
        assert not report.committed and state(engine) == before
        return
    kept = [row for n, row in enumerate(plan.rows) if n + 2 not in refused_rows]
    kept_keys = [_row_key(target, row) for row in kept]
    assert len(kept_keys) == len(set(kept_keys)), "two rows kept for one key"
    expected = {_expected_effect(target, row) for row in kept}
    assert _effects(engine, target) == effects_before | expected


@pytest.mark.parametrize("target", TARGETS)
@EXAMPLES
@given(data=st.data(), suffix=st.sampled_from(SUFFIXES), strict=st.booleans())
def test_any_mix_of_good_and_bad_rows_gives_row_errors_and_keeps_exactly_the_good_rows(
    template: Template, target: str, data: st.DataObject, suffix: str, strict: bool
) -> None:
    plan = _plan(data, target, template)
    with copy_of(template) as (engine, folder):
        _check_property(engine, folder, target, plan, suffix, strict)


# --- email headers ---------------------------------------------------------------------------


BREAKS = ("\r", "\n", "\r\n", "\x00", "\x0b", "\x1b")


@EXAMPLES
@given(
    before=st.text(max_size=20),
    brk=st.sampled_from(BREAKS),
    after=st.text(max_size=20),
    header=st.sampled_from(("subject", "to", "cc", "sender", "message_id")),
)
def test_a_control_character_in_any_header_is_refused(
    before: str, brk: str, after: str, header: str
) -> None:
    values: dict[str, Any] = {
        "sender": "hnte@kjj.qingdao.example",
        "to": ["kjj-shinan@qingdao.example"],
        "cc": [],
        "message_id": make_message_id("overdue_notice|370202|2021-1|x", "kjj.qingdao.example"),
    }
    subject = "逾期通知"
    injected = f"{before}{brk}{after}"
    if header == "subject":
        subject = injected
    elif header in ("to", "cc"):
        values[header] = [f"kjj{injected}@qingdao.example"]
    elif header == "sender":
        values[header] = f"{injected} <hnte@kjj.qingdao.example>"
    else:
        values[header] = f"<{injected}@kjj.qingdao.example>"
    with pytest.raises(ValueError):
        build_message(Rendered("overdue_notice", subject, "t", "<p>h</p>"), **values)


def test_the_time_budget_interrupts_a_call_that_hangs() -> None:
    """A guard on the guard: the per-test budget really fails a test that hangs."""
    signal.alarm(1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        while True:
            time.sleep(0.05)
    assert time.monotonic() - started < 3
    signal.alarm(BUDGET_SECONDS)
