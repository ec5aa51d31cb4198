"""One ``hnte serve`` scheduler, for the test that runs two of them on one database.

Run as: python scheduler_script.py DATABASE_URL TICKS_FILE

It competes for the lease exactly as ``hnte serve`` does (``start_scheduler``), with the
lease's timings shortened, and its scheduler carries one more job: every second, append
a line "HOLDER UNIX_TIME HELD" to TICKS_FILE, where HELD says whether this process held
the lease when the job fired. It prints its HOLDER once it is competing, and stops
(releasing the lease) on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from hnte.config.settings import Settings, use_settings
from hnte.flows import scheduling

RENEW_EVERY = 0.3  # seconds
TTL = timedelta(seconds=3)


def tick(path: str) -> None:
    held = scheduling.holds_lease()
    with open(path, "a", encoding="utf-8") as out:  # one short append: one whole line
        out.write(f"{scheduling.HOLDER} {time.time():.3f} {int(held)}\n")


def main(database_url: str, ticks: str) -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    use_settings(Settings(database_url=database_url))
    scheduling.RENEW_EVERY = RENEW_EVERY
    scheduling.TTL = TTL
    build = scheduling.build_scheduler

    def build_with_tick(*args: Any) -> Any:
        scheduler = build(*args)
        scheduler.add_job(
            tick,
            IntervalTrigger(seconds=1),
            args=[ticks],
            id="test_tick",
            replace_existing=True,
            misfire_grace_time=1,
        )
        return scheduler

    scheduling.build_scheduler = build_with_tick  # type: ignore[assignment]
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stop = scheduling.start_scheduler()
    print(scheduling.HOLDER, flush=True)
    while not stopped.wait(0.2):
        pass
    stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
