"""``hnte backup FILE``: a consistent copy of the SQLite database, safe while flows run.

Registered in ``cli.py`` with ``app.command("backup")(backup)``; the shared helpers are
imported inside the command, so this module loads before or after ``cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def backup(
    file: Annotated[
        Path, typer.Argument(help="the copy to write, e.g. hnte-2021-06-30.db", show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """备份 SQLite 数据库（流程运行时也可）/ copy the SQLite database, even while flows run.

    To restore: stop hnte, delete the database's -wal and -shm files, copy FILE over the
    database file. PostgreSQL: hnte prints the pg_dump command to use instead.
    """
    from rich.markup import escape

    from hnte.config.settings import get_settings
    from hnte.flows.cli_common import UserError, console, progress_bar
    from hnte.services.backup import BackupError, backup_sqlite

    url = get_settings().database_url.get_secret_value()
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"备份到 {file.name}", total=None)
            target = backup_sqlite(
                url,
                file,
                force=force,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except BackupError as e:
        raise UserError(str(e)) from None
    size = target.stat().st_size
    console.print(
        f"已备份到 {escape(str(target))}（{_size(size)}）/ backup written: "
        f"{escape(str(target))} ({size:,} bytes)",
        highlight=False,
    )


def _size(n: int) -> str:
    """1536 -> "1.5 KB"."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
