"""Do more workers finish a batch sooner? (issue 6, item 3)

Starts a `prefect server` backed by PostgreSQL, registers the review-worker deployment
(`hnte deploy`), then for each worker count K runs the same four `batch_review` flow runs
as `batch_throughput.py` (formal check → certification) on a fresh copy of the same data:
K = 0 is the flow alone; K ≥ 1 starts K `prefect worker start` processes and runs the
flow with `workers=K`, so K + 1 processes share every step's windows.

    python benchmarks/workers_speed.py --n 100000 --workers 0,1,2

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / ".work" / "bench-workers"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from batch_throughput import BATCH, DECISIONS, RUNS, database_url, prepare  # noqa: E402
from sqlalchemy import text  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNTE_", "PREFECT_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child(url: str, workers: int) -> dict[str, Any]:
    """The four flow runs with ``workers``, timed (a child process, like the flow's)."""
    os.environ["HNTE_DATABASE_URL"] = url
    from hnte.flows.batch_review import batch_review
    from hnte.models.db import get_engine

    engine = get_engine()
    batch_review("2021-3", workers=0)  # warm-up on an empty batch
    flow_s = 0.0
    stages: dict[str, float] = {}
    for index, as_of in enumerate(RUNS):
        with engine.begin() as c:
            for statement in DECISIONS.get(index, []):
                c.execute(text(statement))
        started = time.perf_counter()
        result = batch_review(BATCH, as_of=as_of, workers=workers)
        flow_s += time.perf_counter() - started
        for step in result["steps"]:
            stages[step["step"]] = stages.get(step["step"], 0.0) + step["seconds"]
    with engine.connect() as c:
        final = dict(c.execute(text("SELECT stage, count(*) FROM application GROUP BY 1")).all())
        by_worker = dict(
            c.execute(text("SELECT worker, count(*) FROM review_chunk GROUP BY 1")).all()
        )
    return {"flow_s": flow_s, "stages": stages, "final": final, "chunks_by_worker": by_worker}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", default="0,1,2", help="worker counts to compare")
    parser.add_argument("--chunk", type=int, default=2_000, help="applications per window")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--child-url")
    parser.add_argument("--child-workers", type=int)
    args = parser.parse_args()
    if args.child_url:
        print(json.dumps(child(args.child_url, args.child_workers)))
        return

    from hnte import synthetic
    from hnte.config.city import load_city
    from hnte.models.db import make_engine

    base = os.environ.get("HNTE_BENCH_PG_URL") or os.environ.get("HNTE_TEST_DATABASE_URL")
    base = base or DEFAULT_PG
    WORK.mkdir(parents=True, exist_ok=True)
    city = load_city()
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(
        args.n, seed=args.seed, districts=shares, year=2021, fakes=max(3, args.n // 2000)
    )
    experts = synthetic.experts(
        320, 80, seed=args.seed, enterprise_codes=[a.credit_code for a in apps[:2000]]
    )

    prefect_db = f"hnte_bench_prefect_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {prefect_db}"))
    host = base.split("://", 1)[1].split("?", 1)[0].rsplit("/", 1)[0]
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-services"],  # fmt: skip
        env=_env(
            PREFECT_HOME=str(WORK / "server"),
            PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://{host}/{prefect_db}",
            PREFECT_UI_ENABLED="false",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[int, dict[str, Any]] = {}
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        for k in (int(x) for x in args.workers.split(",")):
            url, drop = database_url("postgres", f"workers{k}")
            client = _env(
                PREFECT_API_URL=api,
                PREFECT_HOME=str(WORK / f"client-{k}"),
                HNTE_DATABASE_URL=url,
                HNTE_REVIEW_CHUNK=str(args.chunk),
            )
            workers: list[subprocess.Popen[bytes]] = []
            try:
                prepare(url, apps, experts).dispose()
                subprocess.run(
                    [sys.executable, "-m", "hnte.flows.cli", "deploy"], env=client, check=True,
                    capture_output=True,
                )  # fmt: skip
                workers = [
                    subprocess.Popen(
                        [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                         "hnte-review", "--name", f"bench-{k}-{n}", "--limit", "1"],  # fmt: skip
                        env={
                            **client,
                            "PREFECT_HOME": str(WORK / f"worker-{k}-{n}"),
                            "PREFECT_WORKER_QUERY_SECONDS": "1",
                        },
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for n in range(k)
                ]
                out = subprocess.run(
                    [sys.executable, __file__, "--child-url", url, "--child-workers", str(k)],
                    env=client, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if out.returncode:
                    sys.stderr.write(out.stderr[-4000:])
                    raise SystemExit(f"the run with {k} workers failed")
                results[k] = json.loads(out.stdout.strip().splitlines()[-1])
                r = results[k]
                print(
                    f"{k} workers (+ the coordinator): {r['flow_s']:.2f} s, "
                    f"{args.n / r['flow_s']:,.0f} apps/s; windows by process: "
                    f"{sorted(r['chunks_by_worker'].values(), reverse=True)}",
                    flush=True,
                )
            finally:
                for w in workers:
                    w.terminate()
                for w in workers:
                    try:
                        w.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        w.kill()
                        w.wait()
                drop()
    finally:
        server.terminate()
        server.wait(timeout=30)
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {prefect_db} WITH (FORCE)"))
        admin.dispose()
    finals = {json.dumps(r["final"], sort_keys=True) for r in results.values()}
    assert len(finals) == 1, f"the runs ended differently: {finals}"
    figures = {
        "n": args.n,
        "db": "postgres",
        "chunk": args.chunk,
        "flow_s_by_workers": {k: round(r["flow_s"], 2) for k, r in results.items()},
        "stages_s_by_workers": {
            k: {s: round(v, 2) for s, v in r["stages"].items()} for k, r in results.items()
        },
        "final": results[next(iter(results))]["final"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
    }
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
