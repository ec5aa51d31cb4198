"""Profile the review steps without Prefect, on the throughput benchmark's workload.

Loads the same generated batch as ``batch_throughput.py``, then runs the stage steps
directly (``hnte.services.review.STEPS``) for the same four business dates, with the same
decisions in between, and prints each step's wall time. With ``--profile`` it runs under
pyinstrument and writes an HTML and a text profile under .work/bench; with ``--sql`` it
prints the 25 statements that took longest in all (rows written by ``insert_rows`` go
through the driver directly and are not among them).

    python benchmarks/profile_review.py --n 30000 --db sqlite --profile
    python benchmarks/profile_review.py --n 100000 --db postgres --sql

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import batch_throughput as bench  # noqa: E402
from sqlalchemy import text  # noqa: E402


def _time_statements(engine: Any, into: dict[str, list[float]]) -> None:
    """Record the wall time of every statement, keyed by its first line."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["hnte_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        key = " ".join(statement.split())[:110]
        entry = into.setdefault(key, [0.0, 0])
        entry[0] += time.perf_counter() - conn.info.pop("hnte_started", time.perf_counter())
        entry[1] += 1


def run_steps(url: str, statements: dict[str, list[float]] | None = None) -> dict[str, float]:
    from hnte.models.db import make_engine
    from hnte.services import review
    from hnte.services.review import ReviewPolicy, StepContext

    engine = make_engine(url)
    if statements is not None:
        _time_statements(engine, statements)
    seconds: dict[str, float] = {}
    for index, as_of in enumerate(bench.RUNS):
        with engine.begin() as c:
            for statement in bench.DECISIONS.get(index, []):
                c.execute(text(statement))
        ctx = StepContext(engine, bench.BATCH, as_of, f"run-{index}", ReviewPolicy(), 20_000)
        for name, step in review.STEPS:
            report = step(ctx)
            seconds[name] = seconds.get(name, 0.0) + report.seconds
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sql", action="store_true", help="time each SQL statement")
    args = parser.parse_args()

    from hnte import synthetic
    from hnte.config.city import load_city

    city = load_city()
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(
        args.n, seed=args.seed, districts=shares, year=2021, fakes=max(3, args.n // 2000)
    )
    experts = synthetic.experts(
        320, 80, seed=args.seed, enterprise_codes=[a.credit_code for a in apps[:2000]]
    )
    url, drop = bench.database_url(args.db, f"profile_{args.db}_{args.n}")
    try:
        bench.prepare(url, apps, experts).dispose()
        del apps
        started = time.perf_counter()
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002)
            with profiler:
                seconds = run_steps(url)
            out = bench.WORK / f"profile_{args.db}_{args.n}"
            out.with_suffix(".html").write_text(profiler.output_html())
            out.with_suffix(".txt").write_text(profiler.output_text(unicode=True, show_all=False))
            print(f"profile written to {out}.html / .txt")
        else:
            statements: dict[str, list[float]] | None = {} if args.sql else None
            seconds = run_steps(url, statements)
            slowest = sorted((statements or {}).items(), key=lambda kv: -kv[1][0])
            for key, (spent, count) in slowest[:25]:
                print(f"{spent:8.3f} s {count:6d}×  {key}")
        total = time.perf_counter() - started
    finally:
        drop()
        if args.db == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    figures: dict[str, Any] = {
        "n": args.n,
        "db": args.db,
        "steps_s": round(total, 3),
        "stages_s": {k: round(v, 3) for k, v in seconds.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "pid": os.getpid(),
    }
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
