"""How many queued notices per second does the outbox dispatcher send?

Queues ``--messages`` real notices (a rendered deadline reminder in Chinese, each with
its own dedupe key, Message-ID and liaison) and sends them with ``smtp.dispatch`` over
one connection to an aiosmtpd server in a separate process that accepts and counts every
message. Also times turning one row into the bytes sent, on its own.

    python benchmarks/outbox_speed.py --messages 10000 --db sqlite
    python benchmarks/outbox_speed.py --messages 10000 --db postgres
    python benchmarks/outbox_speed.py --messages 2000 --profile     # pyinstrument, text

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from email.generator import BytesGenerator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from batch_throughput import database_url  # noqa: E402

SENDER = "gaoqi@kjj.qingdao.example"
NOW = datetime(2021, 6, 1, 1, 0, tzinfo=UTC)


# --- the mail server, in its own process ---------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        self.bytes += len(envelope.original_content or envelope.content)
        return "250 2.0.0 OK queued"


def serve(port: int) -> None:
    """Accept and count until SIGTERM, then print the count as JSON."""
    from aiosmtpd.controller import Controller

    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    controller.stop()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    seconds = cpu.ru_utime + cpu.ru_stime
    print(json.dumps({"received": sink.count, "bytes": sink.bytes, "cpu": seconds}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the notices ---------------------------------------------------------------------


def notice() -> Any:
    from hnte.models.stages import Stage
    from hnte.notifications.contexts import DeadlineReminder, EnterpriseLine
    from hnte.notifications.render import render

    context = DeadlineReminder(
        city_name="青岛市",
        year=2021,
        as_of=date(2021, 6, 1),
        district_name="市南区",
        district_code="370202",
        batch_title="2021年第一批高新技术企业认定",
        stage=Stage.DISTRICT_REVIEW,
        deadline=date(2021, 6, 10),
        working_days_left=7,
        waiting_total=12,
        waiting=tuple(
            EnterpriseLine(f"91370202MA3C{i:06d}", f"青岛海川智能科技有限公司{i}")
            for i in range(12)
        ),
    )
    return render("deadline_reminder", context)


def queue(engine: Any, count: int) -> dict[str, int]:
    from hnte.models.db import unit_of_work
    from hnte.notifications import outbox

    rendered = notice()
    with unit_of_work(engine) as session:
        for n in range(count):
            outbox.enqueue(
                session,
                kind="deadline_reminder",
                dedupe_key=f"deadline_reminder:370202:2021-1:{n:06d}",
                recipients=[f"区联络员{n % 7} <liaison{n}@shinan.qingdao.example>"],
                cc=["gaoqi@kjj.qingdao.example"],
                subject=f"{rendered.subject}（{n}）",
                text=rendered.text,
                html=rendered.html,
                message_id=f"<deadline-reminder.{n}@kjj.qingdao.example>",
                period="2021-06-01",
                district_code="370202",
                batch_code="2021-1",
                now=NOW,
            )
        session.commit()
    return {"text_chars": len(rendered.text), "html_chars": len(rendered.html)}


def time_build(engine: Any, settings: Any) -> float:
    """Microseconds to turn one row into the bytes sent (500 rows, 4 times each)."""
    from io import BytesIO

    from sqlmodel import select

    from hnte.models.db import unit_of_work
    from hnte.models.tables import OutboxMessage
    from hnte.notifications import smtp

    def as_sent(row: Any) -> bytes:
        built = getattr(smtp, "build_wire", lambda *a, **k: None)(
            row, sender=settings.smtp_sender, tz=settings.tz
        )
        if built is not None:
            return built
        message = smtp.build_mime(row, sender=settings.smtp_sender, tz=settings.tz)
        out = BytesIO()  # what smtplib.send_message does with it
        BytesGenerator(out, policy=message.policy).flatten(message, linesep="\r\n")
        return out.getvalue()

    with unit_of_work(engine) as session:
        rows = list(session.exec(select(OutboxMessage).limit(500)))
    started = time.perf_counter()
    for _ in range(4):
        for row in rows:
            as_sent(row)
    return (time.perf_counter() - started) / (4 * len(rows)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from hnte.config.city import load_city
    from hnte.config.settings import Settings
    from hnte.models.db import make_engine
    from hnte.notifications.smtp import dispatch
    from hnte.services.setup import init_database

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the mail server did not start")
    url, drop = database_url(args.db, f"outbox_{args.messages}")
    engine = make_engine(url)
    received: dict[str, int] = {}
    try:
        init_database(engine, load_city())
        sizes = queue(engine, args.messages)
        settings = Settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_sender=SENDER,
            smtp_timeout=30.0,
            smtp_username=None,
            smtp_password=None,
        )
        build_us = time_build(engine, settings)
        client_cpu = 0.0
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                report = dispatch(engine, settings, now=NOW, limit=args.messages)
            print(profiler.output_text(unicode=True, show_all=False))
        else:
            cpu = time.process_time()
            report = dispatch(engine, settings, now=NOW, limit=args.messages)
            client_cpu = time.process_time() - cpu
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        received = json.loads(lines[-1]) if lines else {}
        engine.dispose()
        drop()
        if args.db == "sqlite":
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    figures = {
        "db": args.db,
        "messages": args.messages,
        "sent": report.sent,
        "received": received.get("received"),
        "seconds": round(report.elapsed, 3),
        "messages_per_s": round(report.rate, 1),
        "build_message_us": round(build_us, 1),
        # CPU per message: this process (build, smtplib, database client) and the server
        # (startup included, a few ms); on a shared machine these vary less than the rate.
        "client_cpu_us": round(client_cpu / max(1, report.attempted) * 1e6),
        "server_cpu_us": round(
            received.get("cpu", 0) / max(1, received.get("received", 1)) * 1e6
        ),
        "message_bytes": round(received.get("bytes", 0) / max(1, received.get("received", 1))),
        **sizes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
    }
    print(
        f"{report.sent:,} of {args.messages:,} sent in {report.elapsed:.2f} s ="
        f" {report.rate:,.0f} messages/s; building one message {build_us:,.0f} µs"
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
