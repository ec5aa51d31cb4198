"""How fast is ``hnte targets`` over a big register?

Loads a generated register into a fresh database — certificates issued since 1999 in
renewal chains (default 1,000,000), applications in batches since 2014 (default 200,000)
with the stage events of their paths — then times, in this process, each query behind
``hnte targets`` and the whole of what the command asks the database for (``--json``:
``still_to_renew`` and ``city_figures`` counting from it; the table: ``city_figures``); then
the command itself in a child process, both ways.

    python benchmarks/targets_speed.py --db sqlite
    python benchmarks/targets_speed.py --db postgres            # HNTE_BENCH_PG_URL or local
    python benchmarks/targets_speed.py --certificates 100000 --applications 20000

The database is the schema at head (``hnte init``); SQLite gets no ANALYZE (hnte never
runs one), PostgreSQL a VACUUM ANALYZE after the load, as autovacuum would. The last line printed
is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from batch_throughput import database_url  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

YEAR = 2021
AS_OF = date(2021, 6, 30)
FIRST_YEAR = 1999  # first certificates of the register
FIRST_BATCH_YEAR = 2014  # first applications kept
PATH = (
    "submitted",
    "district_review",
    "formal_check",
    "expert_review",
    "approval",
    "public_notice",
    "certified",
)
OPEN_2021 = ("district_review", "formal_check", "expert_review", "onsite_inspection", "approval")


def _credit_code(n: int) -> str:
    return f"91370200{n:010d}"


def generate(
    certificates: int, applications: int, districts: list[tuple[str, float]], seed: int
) -> dict[str, list[tuple[Any, ...]]]:
    """Rows for enterprise, batch, certificate, application and stage_event, as tuples."""
    rng = random.Random(f"hnte-targets:{seed}")
    codes, weights = zip(*districts, strict=True)
    enterprises: list[tuple[Any, ...]] = []
    certs: list[list[Any]] = []
    chains: list[list[int]] = []  # per enterprise: indexes into certs, oldest first
    sequence: dict[int, int] = {}
    while len(certs) < certificates:
        n = len(enterprises)
        code = _credit_code(n)
        district = rng.choices(codes, weights)[0]
        enterprises.append(
            (code, f"企业{n}", district, date(1995, 1, 1) + timedelta(days=n % 3000), "电子信息")
        )
        # Later years issue more: the stock grows.
        year = FIRST_YEAR + int((YEAR - FIRST_YEAR + 1) * rng.random() ** 0.7)
        chain: list[int] = []
        while year <= YEAR and len(certs) < certificates:
            if year == YEAR:
                issued = date(YEAR, 1, 10) + timedelta(days=rng.randint(0, 160))
            else:
                issued = date(year, 10, 1) + timedelta(days=rng.randint(0, 80))
            sequence[year] = sequence.get(year, 0) + 1
            expires = issued.replace(year=issued.year + 3)
            revoked = None
            if rng.random() < 0.01:
                revoked = issued + timedelta(days=rng.randint(30, 1000))
            chain.append(len(certs))
            certs.append(
                [
                    f"GR{year}37{sequence[year]:06d}",
                    code,
                    district,
                    None,
                    issued,
                    expires,
                    revoked,
                ]
            )
            if rng.random() > 0.75:
                break
            year += 3
        chains.append(chain)

    batches = [
        (f"{y}-{s}", y, s, f"{y}年第{s}批", 1000 * y + s, date(y, 3 * s, 28), y < YEAR)
        for y in range(FIRST_BATCH_YEAR, YEAR)
        for s in (1, 2, 3)
    ]
    apps: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    taken: set[tuple[str, str]] = set()

    def add(enterprise: int, batch: str, year: int, kind: str, stage: str, steps: int) -> int:
        app_id = len(apps) + 1
        code, _, district, _, _ = enterprises[enterprise]
        taken.add((batch, code))
        apps.append((app_id, batch, code, district, kind, stage, date(year, 5, 31)))
        day = date(year, 6, 1)
        for step in range(steps):
            source, target = PATH[step], PATH[step + 1]
            if step == steps - 1 and stage in ("rejected", "withdrawn"):
                target = stage
            at = datetime(day.year, day.month, day.day, 2, tzinfo=UTC)
            events.append((app_id, source, target, at, day, "bench"))
            day += timedelta(days=9)
        return app_id

    # Certified applications: the certificates issued in the years batches are kept.
    linked = [
        (index, position)
        for index, chain in enumerate(chains)
        for position, cert in enumerate(chain)
        if certs[cert][4].year >= FIRST_BATCH_YEAR
    ]
    rng.shuffle(linked)
    certified = int(applications * 0.7)
    for enterprise, position in linked[:certified]:
        cert = certs[chains[enterprise][position]]
        year = cert[4].year
        batch = f"{year}-{rng.randint(1, 3)}"
        kind = "renewal" if position else "first_time"
        cert[3] = add(enterprise, batch, year, kind, "certified", len(PATH) - 1)
    # Rejected and withdrawn ones in past years, and the open pipeline of this year.
    while len(apps) < applications:
        enterprise = rng.randrange(len(enterprises))
        this_year = rng.random() < 0.35
        year = YEAR if this_year else rng.randint(FIRST_BATCH_YEAR, YEAR - 1)
        batch = f"{year}-{rng.randint(1, 3)}"
        if (batch, enterprises[enterprise][0]) in taken:
            continue
        if this_year:
            stage = rng.choice(OPEN_2021)
            steps = PATH.index(stage) if stage in PATH else 4
        else:
            stage = rng.choice(("rejected", "rejected", "rejected", "withdrawn"))
            steps = rng.randint(2, 5)
        add(enterprise, batch, year, rng.choice(("first_time", "renewal")), stage, steps)
    return {
        "enterprise": enterprises,
        "batch": batches,
        "certificate": [tuple(c) for c in certs],
        "application": apps,
        "stage_event": events,
    }


COLUMNS = {
    "enterprise": ("credit_code", "name", "district_code", "registered_on", "tech_field"),
    "batch": ("code", "year", "sequence", "title", "seed", "application_deadline", "closed"),
    "certificate": (
        "number",
        "credit_code",
        "district_code",
        "application_id",
        "issued_on",
        "expires_on",
        "revoked_on",
    ),
    "application": (
        "id",
        "batch_code",
        "credit_code",
        "district_code",
        "kind",
        "stage",
        "applied_on",
    ),
    "stage_event": ("application_id", "from_stage", "to_stage", "at", "business_date", "actor"),
}
# Application columns the register does not care about, the same for every row.
APPLICATION_FILLER = {
    "version": 1,
    "staff_total": 100,
    "staff_tech": 20,
    "revenue_y1_fen": 10_000_000,
    "rd_y1_fen": 600_000,
    "rd_domestic_fen": 600_000,
    "hightech_revenue_fen": 7_000_000,
    "ip_class1": 1,
    "ip_class2": 0,
    "ip_numbers": "",
    "major_incident": False,
    "source_digest": "",
    "screening_flags": "",
}


def _insert(connection: Any, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """Bulk insert for loading only (COPY on PostgreSQL), independent of hnte's own code so
    that the same script times older versions too."""
    dialect = connection.dialect
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    ]
    if any(processors):
        rows = [
            tuple(v if p is None or v is None else p(v) for v, p in zip(r, processors, strict=True))
            for r in rows
        ]
    names = ", ".join(columns)
    if dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    cursor = connection.connection.cursor()
    cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    cursor.close()


def load(engine: Engine, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    from hnte.models.tables import SQLModel

    tables = SQLModel.metadata.tables
    with engine.begin() as connection:
        for name in ("enterprise", "batch", "application", "certificate", "stage_event"):
            columns = COLUMNS[name]
            data = rows[name]
            if name == "batch":
                known = set(connection.execute(text("SELECT code FROM batch")).scalars())
                data = [r for r in data if r[0] not in known]
            if name == "application":
                columns = columns + tuple(APPLICATION_FILLER)
                filler = tuple(APPLICATION_FILLER.values())
                data = [r + filler for r in data]
            _insert(connection, tables[name], columns, data)
        if engine.dialect.name == "postgresql":
            # The ids were given, not drawn: move the sequence past them.
            connection.execute(
                text("SELECT setval('application_id_seq', (SELECT max(id) FROM application))")
            )
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a load (PostgreSQL 13+ vacuums insert-only tables
        # too): statistics, and the visibility map index-only scans need.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))


def time_queries(engine: Engine, repeat: int) -> dict[str, Any]:
    """Each query behind ``hnte targets`` on its own, then all of them as the command runs
    them; best and first of ``repeat`` runs."""
    from hnte.config.city import load_city
    from hnte.models import target_queries as q
    from hnte.models.db import unit_of_work

    city = load_city()
    defaults = city.projection.default_pass_rate_percent
    steps: dict[str, Callable[[Any], Any]] = {
        "rate_table": lambda s: q.rate_table(s, year=YEAR, defaults=defaults),
        "targets_for": lambda s: q.targets_for(s, year=YEAR),
        "stock_now": lambda s: q.stock_by_district(s, on=AS_OF),
        "stock_start": lambda s: q.stock_by_district(s, on=date(YEAR - 1, 12, 31)),
        "recognitions": lambda s: q.recognitions_by_district(s, year=YEAR, as_of=AS_OF),
        "still_to_renew_counts": lambda s: q.still_to_renew_counts(s, year=YEAR, as_of=AS_OF),
        "pipeline": lambda s: q.pipeline_by_district(s, year=YEAR, as_of=AS_OF),
        "still_to_renew_list": lambda s: q.still_to_renew(s, year=YEAR, as_of=AS_OF),
    }

    def command(s: Any) -> Any:
        """``hnte targets --json`` (and ``--due-csv``): the list, and the counts from it."""
        due = q.still_to_renew(s, year=YEAR, as_of=AS_OF)
        figures = q.city_figures(s, year=YEAR, as_of=AS_OF, city=city, due=due)
        return figures, due

    def command_table(s: Any) -> Any:
        """``hnte targets``: the figures only."""
        return q.city_figures(s, year=YEAR, as_of=AS_OF, city=city)

    timings: dict[str, list[float]] = {}
    # This process's CPU: on SQLite nearly all of the work, and steadier than the wall
    # clock on a shared machine; on PostgreSQL the server's work is not in it.
    cpu_times: dict[str, list[float]] = {}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, step in [
            *steps.items(),
            ("command", command),
            ("command_table", command_table),
        ]:
            with unit_of_work(engine) as session:
                started, cpu = time.perf_counter(), time.process_time()
                results[name] = step(session)
                timings.setdefault(name, []).append(time.perf_counter() - started)
                cpu_times.setdefault(name, []).append(time.process_time() - cpu)
    figures, due = results["command"]
    if results["command_table"] != figures:
        raise SystemExit("the table's figures differ from the JSON's")
    return {
        "first_s": {k: round(v[0], 3) for k, v in timings.items()},
        "best_s": {k: round(min(v), 3) for k, v in timings.items()},
        "cpu_s": {k: round(min(v), 3) for k, v in cpu_times.items()},
        "check": {
            "stock": figures.total.stock,
            "start_stock": figures.total.start_stock,
            "new": figures.total.new_recognitions,
            "renewed": figures.total.re_recognitions,
            "expiring_unrenewed": figures.total.expiring_unrenewed,
            "pipeline": figures.total.pipeline_total,
            "still_to_renew": len(due),
            "projection": round(figures.total.projection, 2),
        },
    }


def time_command(url: str, repeat: int) -> dict[str, float]:
    """``hnte targets`` and ``hnte targets --json`` as a user runs them, and bare interpreter
    + CLI import for scale; best of ``repeat``."""
    env = {**os.environ, "HNTE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    env.setdefault("PREFECT_HOME", str(ROOT / ".work" / "bench" / "prefect"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    out: dict[str, float] = {}
    targets = ["-m", "hnte.flows.cli", "targets", "--as-of", AS_OF.isoformat()]
    for label, args in (
        ("import_s", ["-c", "import hnte.flows.cli"]),
        ("command_s", [*targets, "--json"]),
        ("command_table_s", targets),
    ):
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, *args], env=env, capture_output=True, text=True, check=False
            )
            best = min(best, time.perf_counter() - started)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])
                raise SystemExit(f"{label} failed")
        out[label] = round(best, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--applications", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--keep", action="store_true", help="keep the database, print its URL")
    parser.add_argument(
        "--reuse", metavar="URL", help="time a database kept with --keep; build nothing"
    )
    args = parser.parse_args()

    from hnte.config.city import load_city
    from hnte.models.db import make_engine
    from hnte.services.setup import init_database

    if args.reuse:
        args.db = "sqlite" if args.reuse.startswith("sqlite") else "postgres"
        engine = make_engine(args.reuse)
        queries = time_queries(engine, args.repeat)
        engine.dispose()
        report(args, queries, time_command(args.reuse, args.repeat), loaded=None)
        return
    city = load_city()
    started = time.perf_counter()
    rows = generate(
        args.certificates,
        args.applications,
        [(d.code, d.weight) for d in city.districts],
        args.seed,
    )
    generated = time.perf_counter() - started
    print(
        f"generated {len(rows['certificate']):,} certificates, {len(rows['application']):,}"
        f" applications, {len(rows['stage_event']):,} events in {generated:.1f}s",
        flush=True,
    )
    url, drop = database_url(args.db, f"targets_{args.certificates}")
    engine = make_engine(url)
    try:
        init_database(engine, city)
        started = time.perf_counter()
        load(engine, rows)
        loaded = time.perf_counter() - started
        del rows
        print(f"loaded in {loaded:.1f}s", flush=True)
        queries = time_queries(engine, args.repeat)
        engine.dispose()
        command = time_command(url, args.repeat)
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept: {url}")
        else:
            drop()
            if args.db == "sqlite":
                Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    report(args, queries, command, loaded=loaded)


def report(
    args: argparse.Namespace,
    queries: dict[str, Any],
    command: dict[str, float],
    *,
    loaded: float | None,
) -> None:
    figures = {
        "db": args.db,
        "certificates": args.certificates,
        "applications": args.applications,
        "load_s": None if loaded is None else round(loaded, 1),
        "queries_first_s": queries["first_s"],
        "queries_best_s": queries["best_s"],
        "queries_cpu_s": queries["cpu_s"],
        "command_queries_s": queries["best_s"]["command"],
        "command_table_queries_s": queries["best_s"]["command_table"],
        **command,
        "check": queries["check"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
    }
    for name, seconds in queries["best_s"].items():
        print(
            f"  {name:<24} {seconds:8.3f} s  (first {queries['first_s'][name]:.3f} s,"
            f" cpu here {queries['cpu_s'][name]:.3f} s)"
        )
    print(
        f"  hnte targets --json (child)  {command['command_s']:8.3f} s"
        f"  (python + import alone {command['import_s']:.3f} s)"
    )
    print(f"  hnte targets (child)         {command['command_table_s']:8.3f} s")
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
