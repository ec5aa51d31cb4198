"""The demo's local mail server, in its own process: saves each message as an .eml file.

    python -m hnte.flows.demo_smtp PORT FOLDER

It runs apart from the demo so that receiving mail does not compete with sending it for
one interpreter; it stops on SIGTERM.
"""

from __future__ import annotations

import csv
import signal
import sys
import threading
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

FIELDS = ["file", "to", "subject", "date"]


class Mailbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        self.index = (folder / "index.csv").open("w", newline="", encoding="utf-8-sig")
        self.writer = csv.DictWriter(self.index, fieldnames=FIELDS)
        self.writer.writeheader()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        raw = envelope.original_content or envelope.content
        headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
        name = f"{self.count:05d}.eml"
        (self.folder / name).write_bytes(raw)
        self.writer.writerow({"file": name, "to": ", ".join(envelope.rcpt_tos),
                              "subject": str(headers["Subject"]), "date": str(headers["Date"])})
        self.index.flush()
        return "250 OK"


def main() -> None:
    from aiosmtpd.controller import Controller

    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    mailbox = Mailbox(folder)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()
    mailbox.index.close()


if __name__ == "__main__":
    main()
