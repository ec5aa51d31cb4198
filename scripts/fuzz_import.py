"""Fuzz the application importer: mutate a valid sample file byte by byte, cell by cell
and inside its XML, import every mutant into a fresh copy of a database that already
holds the sample, and report each outcome that is neither an import report nor
``FileRejected``.

    python scripts/fuzz_import.py --seconds 60
    python scripts/fuzz_import.py --iterations 2000 --seed 7 --sample data/sample-2021-1.csv

A worker process does the imports under a memory ceiling; the parent restarts it when it
dies (calamine aborts the whole process on some inputs, which no ``except`` can catch)
and keeps the input that killed it. Inputs that raised, broke a report's invariants, ran
past --timeout or killed the worker are saved under --out. Exit status 1 if there was
any; the last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = "2021-1"
TODAY = date(2021, 6, 1)
DEFAULT_SAMPLE = ROOT / "data" / "sample-2021-1.xlsx"
HOSTILE = (
    '=HYPERLINK("http://x","y")',
    "=cmd|' /C calc'!A0",
    "@SUM(1)",
    "+1",
    "-1",
    "-0.01",
    "<script>alert(1)</script>",
    "青岛\r\n海纳",
    "青岛\n",
    "\t",
    "\x00",
    "\x1b[2J",
    "\u2028",
    "\ufeff",
    "\u3000",
    " ",
    "",
    "1e20",
    "1E308",
    "100000000000000000000",
    "99999999999999999999999",
    "NaN",
    "inf",
    "∞",
    "0",
    "3.14159",
    "1,234,567.89",
    "１２３４",
    "2099-01-01",
    "1949-09-30",
    "1949-10-01",
    "0001-01-01",
    "9999-12-31",
    "2021-02-29",
    "20210230",
    "2021年13月1日",
    "是",
    "否",
    "maybe",
    "首次申报",
    "重新认定",
    "崂山区",
    "370212",
    "火星区",
    "电子信息",
    "量子玄学",
    "ZL1;ZL2；ZL3",
    ";" * 300,
    "91370212MA3C00001X",
    "123",
    "统一社会信用代码",
    "企业名称",
    "_x0000_",
    "&amp;",
    "]]>",
    "\U0001f680",
    "\ufffd",
    "\u202e",
    "a" * 1_001,
    "青" * 201,
)
XML_TOKENS = (
    b"<",
    b">",
    b"/",
    b'"',
    b"'",
    b"&",
    b"&#0;",
    b"&#xFFFF;",
    b'r="XFD1"',
    b'r="A1048576"',
    b'<c r="B2" t="e"><v>#REF!</v></c>',
    b't="d"',
    b't="n"',
    b"<v>1e400</v>",
    b"<v>nan</v>",
    b"<v>-1e308</v>",
    b't="b"',
    b"<v>2</v>",
    b"9999999999",
    b"\x00",
    b"\xff\xfe",
    b'<!DOCTYPE x [<!ENTITY a "aaaa">]>',
    b's="99999"',
    b"<v>99999999</v>",
    b't="s"',
    b"<v>-1</v>",
    b"<row>",
    b"</row>",
    b"<c>",
    b"</c>",
    b"<is><t>x</t></is>",
)

# Ranges random cell text is drawn from: ASCII, controls, Latin-1, CJK, full-width forms,
# line and paragraph separators and bidi controls, emoji (no surrogates).
CODE_POINTS = (
    (0x20, 0x7F),
    (0x00, 0x20),
    (0x80, 0x100),
    (0x4E00, 0x9FA6),
    (0xFF01, 0xFF5F),
    (0x2000, 0x2070),
    (0x1F300, 0x1F650),
)


# --- the parent: run workers until the budget is spent, restart them when they die -----


def main() -> int:
    args = _arguments()
    if args.worker:
        return _work(args)
    if args.iterations is None and args.seconds is None:
        args.seconds = 60.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary: dict[str, Any] = {"iterations": 0, "outcomes": Counter(), "problems": []}
    start = 0
    while True:
        left = None if args.seconds is None else args.seconds - (time.monotonic() - started)
        if (left is not None and left <= 0) or (
            args.iterations is not None and start >= args.iterations
        ):
            break
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--start",
            str(start),
            "--seed",
            str(args.seed),
            "--sample",
            str(args.sample),
            "--out",
            str(out),
            "--rows",
            str(args.rows),
            "--timeout",
            str(args.timeout),
            "--memory-mb",
            str(args.memory_mb),
        ]
        if args.iterations is not None:
            command += ["--iterations", str(args.iterations)]
        if left is not None:
            command += ["--seconds", f"{left:.1f}"]
        done = subprocess.run(command, capture_output=True, text=True)
        report = out / "worker.json"
        if report.exists():
            part = json.loads(report.read_text(encoding="utf-8"))
            report.unlink()
            summary["iterations"] += part["iterations"]
            summary["outcomes"].update(part["outcomes"])
            summary["problems"] += part["problems"]
            start = part["next"]
        if done.returncode == 0:
            continue
        # The worker died mid-import: keep what it was reading, go on after it. Its
        # outcomes since it last saved them are lost, not the input that killed it.
        current = json.loads((out / "current.json").read_text(encoding="utf-8"))
        kept = out / f"crash-{current['iteration']}{current['suffix']}"
        shutil.copy(out / f"current{current['suffix']}", kept)
        problem = {
            "iteration": current["iteration"],
            "mode": current["mode"],
            "kind": "crash",
            "detail": f"worker exit {done.returncode}: {done.stderr.strip()[-300:]}",
            "file": str(kept),
        }
        print(f"CRASH {json.dumps(problem, ensure_ascii=False)}", flush=True)
        summary["iterations"] += 1
        summary["outcomes"]["crash"] += 1
        summary["problems"].append(problem)
        start = current["iteration"] + 1
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["outcomes"] = dict(summary["outcomes"])
    print(json.dumps(summary, ensure_ascii=False))
    return 1 if summary["problems"] else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, help="stop after this many mutants")
    parser.add_argument("--seconds", type=float, help="stop after this long (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed, the same mutants")
    parser.add_argument(
        "--sample", type=Path, default=DEFAULT_SAMPLE, help="a valid .xlsx or .csv application list"
    )
    parser.add_argument("--rows", type=int, default=40, help="sample rows to mutate")
    parser.add_argument(
        "--out", default=str(ROOT / ".work" / "fuzz"), help="where the offending inputs go"
    )
    parser.add_argument("--timeout", type=int, default=60, help="seconds one import may take")
    parser.add_argument(
        "--memory-mb", type=int, default=4096, help="address-space ceiling of the worker"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


# --- the worker ---------------------------------------------------------------------------


def _work(args: argparse.Namespace) -> int:
    ceiling = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    from hnte.models.application_rows import APPLICATION_COLUMNS
    from hnte.services.tabular import FileRejected

    out = Path(args.out)
    table = _sample_table(Path(args.sample), args.rows)
    labels = {spellings[0] for spellings in APPLICATION_COLUMNS.values()}
    with tempfile.TemporaryDirectory(prefix="hnte-fuzz-") as scratch:
        folder = Path(scratch)
        template = _template(folder, table)
        bases = {
            ".csv": _csv_bytes(table, "utf-8-sig"),
            ".xlsx": _xlsx_bytes(table, folder / "base.xlsx"),
        }
        outcomes: Counter[str] = Counter()
        problems: list[dict[str, Any]] = []
        started = time.monotonic()
        iteration = args.start
        while (args.iterations is None or iteration < args.iterations) and (
            args.seconds is None or time.monotonic() - started < args.seconds
        ):
            rng = random.Random(f"{args.seed}:{iteration}")
            mode, suffix, content = _mutant(rng, table, bases, folder)
            current = out / f"current{suffix}"
            current.write_bytes(content)
            (out / "current.json").write_text(
                json.dumps({"iteration": iteration, "mode": mode, "suffix": suffix}),
                encoding="utf-8",
            )
            try:
                kind, detail = _import(template, folder, suffix, content, labels, args.timeout)
            except FileRejected:
                kind, detail = "rejected", ""
            except BaseException as exc:  # noqa: BLE001 - anything else is what we look for
                if isinstance(exc, KeyboardInterrupt):
                    raise
                kind = "exception"
                detail = "".join(traceback.format_exception_only(exc)).strip()[:500]
            outcomes[kind] += 1
            if kind not in ("report", "rejected"):
                kept = out / f"{kind}-{iteration}{suffix}"
                shutil.copy(current, kept)
                problem = {
                    "iteration": iteration,
                    "mode": mode,
                    "kind": kind,
                    "detail": detail,
                    "file": str(kept),
                }
                problems.append(problem)
                print(f"PROBLEM {json.dumps(problem, ensure_ascii=False)}", flush=True)
            iteration += 1
            if iteration % 25 == 0:  # what a crash of this worker must not lose
                _save(out, outcomes, problems, iteration)
    _save(out, outcomes, problems, iteration)
    return 0


def _save(out: Path, outcomes: Counter[str], problems: list[dict[str, Any]], after: int) -> None:
    (out / "worker.json").write_text(
        json.dumps(
            {
                "iterations": sum(outcomes.values()),
                "outcomes": outcomes,
                "problems": problems,
                "next": after,
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )


def _sample_table(path: Path, rows: int) -> list[list[str]]:
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            table = list(csv.reader(handle))
    else:
        import python_calamine

        with python_calamine.CalamineWorkbook.from_path(path) as book:
            table = [
                ["" if v is None else str(v) for v in row]
                for row in book.get_sheet_by_index(0).to_python()
            ]
    return table[: rows + 1]


def _template(folder: Path, table: list[list[str]]) -> Path:
    """An initialised database holding the sample, half of it moved past 已提交, so that
    mutants also take the update and the refused-update paths."""
    from sqlalchemy import text

    from hnte.config.city import load_city
    from hnte.models.db import make_engine, unit_of_work
    from hnte.services.importing import import_applications
    from hnte.services.setup import init_database

    path = folder / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    init_database(engine, load_city())
    source = folder / "sample.csv"
    source.write_bytes(_csv_bytes(table, "utf-8-sig"))
    with unit_of_work(engine) as session:
        import_applications(session, source, batch_code=BATCH, today=TODAY)
    with engine.begin() as connection:
        connection.execute(text("UPDATE application SET stage = 'formal_check' WHERE id % 2 = 0"))
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _import(
    template: Path, folder: Path, suffix: str, content: bytes, labels: set[str], timeout: int
) -> tuple[str, str]:
    """Import one mutant into a fresh copy of the template: ("report" | "invariant" |
    "hang", detail); FileRejected and anything else propagate."""
    from hnte.models.db import make_engine, unit_of_work
    from hnte.services.importing import import_applications

    work = folder / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copy(template, work / "hnte.db")
    path = work / f"mutant{suffix}"
    path.write_bytes(content)
    engine = make_engine(f"sqlite:///{work / 'hnte.db'}")

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"import took over {timeout} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(timeout)
    try:
        with unit_of_work(engine) as session:
            report = import_applications(session, path, batch_code=BATCH, today=TODAY)
    except TimeoutError as exc:
        return "hang", str(exc)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        engine.dispose()
    broken = [
        e
        for e in report.errors
        if not (isinstance(e.row, int) and e.row >= 1 and e.column in labels and e.reason.strip())
    ]
    if broken:
        return "invariant", f"malformed row errors: {broken[:3]!r}"[:500]
    if report.errors and (report.error_file is None or not report.error_file.exists()):
        return "invariant", "row errors without an error file"
    return "report", ""


# --- mutants ------------------------------------------------------------------------------


def _mutant(
    rng: random.Random, table: list[list[str]], bases: dict[str, bytes], folder: Path
) -> tuple[str, str, bytes]:
    mode = rng.choices(("bytes", "cells", "xml"), (3, 5, 2))[0]
    if mode == "bytes":
        suffix = rng.choice((".csv", ".xlsx"))
        return mode, suffix, _mutate_bytes(rng, bases[suffix])
    if mode == "xml":
        return mode, ".xlsx", _mutate_xml(rng, bases[".xlsx"])
    cells = _mutate_cells(rng, table)
    if rng.random() < 0.5:
        encoding = rng.choices(
            ("utf-8-sig", "utf-8", "gb18030", "utf-16", "latin-1"), (6, 3, 3, 1, 1)
        )[0]
        return f"cells/{encoding}", ".csv", _csv_bytes(cells, encoding)
    return "cells/xlsx", ".xlsx", _xlsx_bytes(cells, folder / "mutant.xlsx", rng)


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not raw:
            break
        at = rng.randrange(len(raw))
        operation = rng.random()
        if operation < 0.45:
            raw[at] = rng.randrange(256)
        elif operation < 0.65:
            raw[at:at] = rng.randbytes(rng.randint(1, 16))
        elif operation < 0.8:
            del raw[at : at + rng.randint(1, 64)]
        elif operation < 0.95:
            other = rng.randrange(len(raw))
            raw[at:at] = raw[other : other + rng.randint(1, 256)]
        else:
            del raw[at:]
    return bytes(raw)


def _mutate_xml(rng: random.Random, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = rng.choice([n for n in members if n.endswith((".xml", ".rels"))])
    raw = bytearray(members[name])
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(raw))
        operation = rng.random()
        if operation < 0.35:
            raw[at] = rng.randrange(256)
        elif operation < 0.7:
            raw[at:at] = rng.choice(XML_TOKENS)
        elif operation < 0.85:
            del raw[at : at + rng.randint(1, 20)]
        else:
            other = rng.randrange(len(raw))
            raw[at:at] = raw[other : other + rng.randint(1, 40)]
    members[name] = bytes(raw)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return buffer.getvalue()


def _mutate_cells(rng: random.Random, table: list[list[str]]) -> list[list[str]]:
    cells = [list(row) for row in table]
    for _ in range(rng.randint(1, 6)):
        operation = rng.random()
        r = rng.randrange(len(cells)) if rng.random() < 0.1 else rng.randrange(1, len(cells))
        if operation < 0.6 and cells[r]:
            cells[r][rng.randrange(len(cells[r]))] = _hostile_value(rng)
        elif operation < 0.7:
            cells.insert(rng.randrange(1, len(cells) + 1), list(cells[r]))  # a duplicate row
        elif operation < 0.78 and len(cells) > 2:
            del cells[rng.randrange(1, len(cells))]
        elif operation < 0.86 and cells[0]:
            column = rng.randrange(len(cells[0]))
            for row in cells:
                if column < len(row):
                    del row[column]
        elif operation < 0.93:
            cells.insert(rng.randrange(0, 3), [_hostile_value(rng)] * rng.randint(0, 3))
        else:
            cells[r] = cells[r][: rng.randrange(len(cells[r]) + 1)]  # a short row
    return cells


def _hostile_value(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(HOSTILE)
    if pick < 0.95:
        return "".join(
            chr(rng.randrange(*rng.choice(CODE_POINTS))) for _ in range(rng.randint(0, 12))
        )
    return rng.choice(("x", "青")) * rng.choice((10_001, 200_000))


def _csv_bytes(table: list[list[str]], encoding: str) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(table)
    return buffer.getvalue().encode(encoding, errors="replace")


def _xlsx_bytes(table: list[list[str]], path: Path, rng: random.Random | None = None) -> bytes:
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(path),
        {"strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    )
    sheet = book.add_worksheet()
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            if rng is not None and rng.random() < 0.05 and _number(value) is not None:
                sheet.write_number(r, c, _number(value))  # as Excel stores typed numbers
            else:
                sheet.write_string(r, c, value[:32_767])
    book.close()
    return path.read_bytes()


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) < 1e300 else None


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.exit(main())
