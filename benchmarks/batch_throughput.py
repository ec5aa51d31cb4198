"""How fast does a batch go from formal check to certification?

On the same generated data this times (a) the real ``batch_review`` flow, per stage;
(b) the floor: the same transitions and events as bare bulk SQL, no Prefect, no ORM;
(c) the naive design: one Prefect task run per application per stage, on a sample,
scaled up. The flow runs in a child process so its peak RSS is its own.

    python benchmarks/batch_throughput.py --n 10000 --db sqlite
    python benchmarks/batch_throughput.py --n 100000 --db postgres   # HNTE_BENCH_PG_URL or local

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".work" / "bench"
os.environ.setdefault("PREFECT_HOME", str(WORK / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402

BATCH = "2021-1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RUNS = (date(2021, 6, 25), date(2021, 7, 30), date(2021, 9, 1), date(2021, 9, 30))
# Decisions people would record between flow runs, as bulk SQL (not what is measured).
DECISIONS = {
    1: [
        "INSERT INTO expert_score (application_id, expert_id, ip_score, conversion_score, "
        "rd_management_score, growth_score, total, recorded_by) SELECT s.application_id, "
        "s.expert_id, 18 + s.application_id % 12, 25, 16, 12, 71 + s.application_id % 12 - 3, "
        "'bench' FROM panel_seat s",
    ],
    2: [
        "UPDATE application SET inspection_outcome = 'passed', inspection_decided_by = 'bench' "
        "WHERE stage = 'onsite_inspection'",
        "UPDATE application SET approval = 'approved', approval_decided_by = 'bench' "
        "WHERE stage IN ('approval', 'onsite_inspection')",
    ],
}


# --- setup -----------------------------------------------------------------------------


def database_url(db: str, tag: str) -> tuple[str, Any]:
    """A fresh empty database for ``tag``; returns its URL and a cleanup function."""
    from hnte.models.db import make_engine

    if db == "sqlite":
        path = WORK / f"{tag}.db"
        WORK.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}", lambda: None
    base = (
        os.environ.get("HNTE_BENCH_PG_URL")
        or os.environ.get("HNTE_TEST_DATABASE_URL")
        or DEFAULT_PG
    )
    schema = f"bench_{tag}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(base)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def prepare(url: str, apps: list[Any], experts: list[Any]) -> Engine:
    """Initialise, load the expert pool and the batch at formal check."""
    from hnte.config.city import load_city
    from hnte.models.db import make_engine
    from hnte.services.setup import init_database
    from hnte.synthetic import load_applications

    engine = make_engine(url)
    init_database(engine, load_city())
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO expert (id, name, kind, employer, active)"
                " VALUES (:i, :n, :k, :e, true)"
            ),
            [{"i": e.id, "n": e.name, "k": e.kind, "e": e.employer} for e in experts],
        )
        load_applications(
            c,
            apps,
            batch_code=BATCH,
            applied_on=date(2021, 5, 31),
            stage="formal_check",
            district_decision="recommended",
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))
    return engine


# --- (a) the flow, in a child process ---------------------------------------------------


def child_flow(url: str) -> dict[str, Any]:
    os.environ["HNTE_DATABASE_URL"] = url
    from hnte.flows.batch_review import batch_review
    from hnte.models.db import get_engine

    engine = get_engine()
    stages: dict[str, float] = {}
    flow_s = 0.0
    decisions_s = 0.0
    batch_review("2021-3", as_of=date(2021, 6, 1))  # warm-up on an empty batch: starts the API
    for index, as_of in enumerate(RUNS):
        started = time.perf_counter()
        with engine.begin() as c:
            for statement in DECISIONS.get(index, []):
                c.execute(text(statement))
        decisions_s += time.perf_counter() - started
        started = time.perf_counter()
        result = batch_review(BATCH, as_of=as_of)
        flow_s += time.perf_counter() - started
        for step in result["steps"]:
            stages[step["step"]] = stages.get(step["step"], 0.0) + step["seconds"]
    with engine.connect() as c:
        final = dict(
            c.execute(text("SELECT stage, count(*) FROM application GROUP BY stage")).all()
        )
        events = c.execute(text("SELECT count(*) FROM stage_event")).scalar_one()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "flow_s": flow_s,
        "stages": stages,
        "decisions_s": decisions_s,
        "final": final,
        "events": events,
        "peak_rss_mb": peak_kb / 1024,
    }


def child_naive(url: str, sample: int) -> dict[str, Any]:
    """One Prefect task run per application per stage, loading and saving ORM objects."""
    os.environ["HNTE_DATABASE_URL"] = url
    from datetime import UTC, datetime

    from prefect import flow, task
    from sqlmodel import Session

    from hnte.models import eligibility
    from hnte.models.db import get_engine
    from hnte.models.tables import Application, Enterprise, StageEvent

    engine = get_engine()

    @task
    def move_one(app_id: int, source: str, target: str) -> None:
        with Session(engine) as s:
            app = s.get(Application, app_id)
            if app is None or app.stage != source:
                return
            if source == "formal_check":
                ent = s.get(Enterprise, app.credit_code)
                figures = eligibility.Figures(
                    ent.registered_on,
                    app.applied_on,
                    ent.tech_field,
                    app.staff_total,  # type: ignore[union-attr]
                    app.staff_tech,
                    (app.revenue_y1_fen,),
                    (app.rd_y1_fen,),
                    app.rd_domestic_fen,
                    app.hightech_revenue_fen,
                    app.ip_class1,
                    app.ip_class2,
                    app.major_incident,
                )
                eligibility.formal_check(figures)
            app.stage, app.version = target, app.version + 1
            s.add(
                StageEvent(
                    application_id=app_id,
                    from_stage=source,
                    to_stage=target,
                    at=datetime.now(UTC),
                    business_date=date(2021, 6, 1),
                    actor="naive",
                )
            )
            s.commit()

    @flow
    def naive(ids: list[int]) -> None:
        for source, target in (
            ("formal_check", "expert_review"),
            ("expert_review", "approval"),
            ("approval", "public_notice"),
            ("public_notice", "certified"),
        ):
            for app_id in ids:
                move_one(app_id, source, target)

    with engine.connect() as c:
        ids = list(
            c.execute(
                text("SELECT id FROM application ORDER BY id LIMIT :n"), {"n": sample}
            ).scalars()
        )
    naive([ids[0]])  # warm-up
    started = time.perf_counter()
    naive(ids[1:])
    elapsed = time.perf_counter() - started
    return {"naive_s_per_app": elapsed / max(1, len(ids) - 1)}


def run_child(mode: str, url: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--url", url, *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"child {mode} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- (b) the floor ----------------------------------------------------------------------


def floor(flow_engine: Engine, floor_engine: Engine) -> float:
    """Replay the flow's transitions as bare bulk SQL: ids to a temp table, one INSERT of
    events, one UPDATE of stages per (run, from, to), certificates in one INSERT."""
    with flow_engine.connect() as c:
        groups = c.execute(
            text(
                "SELECT flow_run_id, from_stage, to_stage, min(id) FROM stage_event "
                "GROUP BY flow_run_id, from_stage, to_stage ORDER BY 4"
            )
        ).all()
        members = {
            (r, f, t): list(
                c.execute(
                    text(
                        "SELECT application_id FROM stage_event WHERE flow_run_id = :r"
                        " AND from_stage = :f AND to_stage = :t"
                    ),
                    {"r": r, "f": f, "t": t},
                ).scalars()
            )
            for r, f, t, _ in groups
        }
    pg = floor_engine.dialect.name == "postgresql"
    started = time.perf_counter()
    with floor_engine.begin() as c:
        c.execute(text("CREATE TEMPORARY TABLE floor_ids (id INTEGER PRIMARY KEY)"))
        for (_, source, target), ids in members.items():
            c.execute(text("DELETE FROM floor_ids"))
            c.execute(text("INSERT INTO floor_ids (id) VALUES (:id)"), [{"id": i} for i in ids])
            c.execute(
                text(
                    "INSERT INTO stage_event (application_id, from_stage, to_stage, at,"
                    " business_date, actor) SELECT id, :f, :t, CURRENT_TIMESTAMP, '2021-06-01',"
                    " 'floor' FROM floor_ids"
                ),
                {"f": source, "t": target},
            )
            c.execute(
                text(
                    "UPDATE application SET stage = :t, version = version + 1 "
                    "WHERE id IN (SELECT id FROM floor_ids)"
                ),
                {"t": target},
            )
            if target == "certified":
                number = (
                    "'GR202137' || lpad(CAST(a.id AS TEXT), 6, '0')"
                    if pg
                    else "'GR202137' || substr('000000' || a.id, -6, 6)"
                )
                c.execute(
                    text(
                        "INSERT INTO certificate (number, credit_code, district_code,"
                        f" application_id, issued_on, expires_on) SELECT {number}, a.credit_code,"
                        " a.district_code, a.id, '2021-09-30', '2024-09-30'"
                        " FROM application a JOIN floor_ids f ON f.id = a.id"
                    )
                )
    return time.perf_counter() - started


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--naive-sample", type=int, default=150)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--child")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child == "flow":
        print(json.dumps(child_flow(args.url)))
        return
    if args.child == "naive":
        print(json.dumps(child_naive(args.url, args.naive_sample)))
        return

    from hnte import synthetic
    from hnte.config.city import load_city

    city = load_city()
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    t0 = time.perf_counter()
    apps = synthetic.applications(
        args.n, seed=args.seed, districts=shares, year=2021, fakes=max(3, args.n // 2000)
    )
    experts = synthetic.experts(
        320, 80, seed=args.seed, enterprise_codes=[a.credit_code for a in apps[:2000]]
    )
    print(f"generated {len(apps)} applications in {time.perf_counter() - t0:.1f}s", flush=True)

    tag = f"{args.db}_{args.n}"
    flow_url, drop_flow = database_url(args.db, f"flow_{tag}")
    floor_url, drop_floor = database_url(args.db, f"floor_{tag}")
    naive_url, drop_naive = database_url(args.db, f"naive_{tag}")
    try:
        t0 = time.perf_counter()
        flow_engine = prepare(flow_url, apps, experts)
        floor_engine = prepare(floor_url, apps, experts)
        naive_engine = prepare(naive_url, apps[: args.naive_sample + 1], experts)
        print(f"loaded three databases in {time.perf_counter() - t0:.1f}s", flush=True)

        flow = run_child("flow", flow_url)
        floor_s = floor(flow_engine, floor_engine)
        naive = run_child("naive", naive_url, "--naive-sample", str(args.naive_sample))
    finally:
        for dispose in ("flow_engine", "floor_engine", "naive_engine"):
            if dispose in locals():
                locals()[dispose].dispose()
        drop_flow(), drop_floor(), drop_naive()

    n = args.n
    naive_total = naive["naive_s_per_app"] * n
    figures = {
        "n": n,
        "db": args.db,
        "flow_s": round(flow["flow_s"], 3),
        "floor_s": round(floor_s, 3),
        "naive_s_per_app": round(naive["naive_s_per_app"], 5),
        "ratio_flow_floor": round(flow["flow_s"] / floor_s, 2),
        "ratio_naive_flow": round(naive_total / flow["flow_s"], 1),
        "peak_rss_mb": round(flow["peak_rss_mb"], 1),
        "stages_s": {k: round(v, 3) for k, v in flow["stages"].items()},
        "events": flow["events"],
        "final": flow["final"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
    }
    print(f"\n{n:,} applications on {args.db}, formal check → certification (4 flow runs)")
    print(f"  final stages: {flow['final']}; stage events: {flow['events']:,}")
    for stage, seconds in flow["stages"].items():
        print(f"  {stage:<18} {seconds:8.2f} s")
    rate = n / flow["flow_s"]
    print(f"  flow (with Prefect, 4 runs)   {flow['flow_s']:8.2f} s  {rate:10,.0f} apps/s")
    print(f"  floor (bare bulk SQL)         {floor_s:8.2f} s  {n / floor_s:10,.0f} apps/s")
    print(
        f"  naive (task per app × stage)  {naive_total:8.2f} s  {n / naive_total:10,.0f} apps/s"
        f"  (measured on {args.naive_sample}, scaled)"
    )
    print(
        f"  flow/floor = {figures['ratio_flow_floor']}×"
        f"   naive/flow = {figures['ratio_naive_flow']}×"
        f"   peak RSS of the flow process = {figures['peak_rss_mb']} MB"
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
