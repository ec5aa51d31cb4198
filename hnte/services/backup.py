"""A consistent copy of the SQLite database, taken while flows keep writing to it.

The copy uses SQLite's online backup API inside one read transaction on the source, so
every page comes from the same snapshot. In WAL mode (how hnte opens SQLite) that read
transaction neither waits for a writer nor holds one up. Without it each ``backup`` step
reads a fresh snapshot and the API starts over whenever another connection has
committed since the last step: measured here against a writer committing in a loop, a
10 MB copy took 7,572 steps instead of 251, and a busier writer can keep it from ever
finishing.

The copy is written beside the target under a temporary name, checked, then renamed, so
a failed backup never leaves half a file under the target's name.

PostgreSQL has its own tool for this, ``pg_dump``; hnte prints the command instead.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

PAGES_PER_STEP = 1024  # 4 MB at SQLite's default page size: a step between progress calls
_SIDECARS = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """A backup refused or failed; the message is one line for a person."""


def pg_dump_command(url: str, target: Path | str) -> str:
    """The ``pg_dump`` command for ``url``, writing ``target``; never with the password."""
    parsed = make_url(url)
    parts = ["pg_dump", "-Fc"]
    if parsed.host:
        parts += ["-h", parsed.host]
    parts += ["-p", str(parsed.port or 5432)]
    if parsed.username:
        parts += ["-U", parsed.username]
    parts.append(parsed.database or "")
    return " ".join(shlex.quote(p) for p in parts) + f" > {shlex.quote(str(target))}"


def sqlite_path(url_or_path: str | Path, target: Path | str = "FILE") -> Path:
    """The database file behind a SQLite URL or a plain path; refuses anything else."""
    if isinstance(url_or_path, Path) or "://" not in url_or_path:
        return Path(url_or_path)
    try:
        parsed = make_url(url_or_path)
    except Exception:  # noqa: BLE001 - an unparsable URL is refused below, without echoing it
        raise BackupError("数据库地址无法解析 / the database URL cannot be parsed") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        raise BackupError(
            "PostgreSQL 数据库请用 pg_dump 备份（密码从 ~/.pgpass 或 PGPASSWORD 读取）/ back up "
            f"PostgreSQL with pg_dump: {pg_dump_command(url_or_path, target)}"
        )
    if backend != "sqlite":
        raise BackupError(f"不支持备份 {backend} 数据库 / cannot back up a {backend} database")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("内存数据库无法备份 / an in-memory database has no file to back up")
    return Path(parsed.database)


def backup_sqlite(
    url_or_path: str | Path,
    target: Path,
    *,
    force: bool = False,
    pages: int = PAGES_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Copy the SQLite database to ``target`` (one consistent snapshot) and return it.

    Refuses to overwrite ``target`` without ``force``. ``progress(copied, total)`` is
    called with page counts after each step of ``pages`` pages.
    """
    source = sqlite_path(url_or_path, target)
    if not source.is_file():
        raise BackupError(f"数据库文件不存在：{source} / no database file at {source}")
    if target.is_dir():
        raise BackupError(f"目标是文件夹：{target} / the target is a folder; give a file name")
    if not target.parent.is_dir():
        raise BackupError(f"文件夹不存在：{target.parent} / no such folder")
    if target.exists():
        if target.resolve() == source.resolve():
            raise BackupError(f"不能备份到数据库自身：{target} / the target is the database itself")
        if not force:
            raise BackupError(f"文件已存在：{target}（用 --force 覆盖） / file exists, use --force")
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        _copy(source, partial, pages, progress)
        # A -wal left by whatever file was there before would be replayed into the copy.
        for suffix in _SIDECARS:
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(partial, target)
    except sqlite3.Error as e:
        raise BackupError(f"备份失败 / backup failed: {e}") from None
    finally:
        for suffix in ("", *_SIDECARS):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
    return target


def _copy(
    source: Path, partial: Path, pages: int, progress: Callable[[int, int], None] | None
) -> None:
    # mode=rw: a mistyped path is an error, not a new empty database.
    uri = f"{source.resolve().as_uri()}?mode=rw"
    with contextlib.closing(
        sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60)
    ) as src, contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as dest:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the snapshot starts here
        try:
            src.backup(
                dest,
                pages=pages,
                progress=(lambda _s, left, total: progress(total - left, total))
                if progress
                else None,
            )
        finally:
            src.execute("COMMIT")
        (verdict,) = dest.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"备份副本校验失败 / the copy failed its check: {verdict}")
