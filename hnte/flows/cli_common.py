"""What every hnte command shares: consoles, options, the database check, JSON output."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hnte.config.settings import get_settings

# soft_wrap: a line longer than the terminal is left for the terminal to fold, never cut
# with a newline, so a file path or an error line survives copying and redirection whole.
# Tables still fit the width.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON only")]
BatchOpt = Annotated[str | None, typer.Option("--batch", "-b", help='batch code, e.g. "2021-1"')]
DistrictOpt = Annotated[
    str | None, typer.Option("--district", "-d", help="district name or division code")
]


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def today() -> date:
    return datetime.now(get_settings().tz).date()


def lang() -> str:
    return get_settings().language


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    from hnte.models.db import get_engine

    eng = get_engine()
    # hnte.models.migrate.is_initialised, without importing Alembic (0.1-0.2 s) for a
    # command that only reads.
    if not inspect(eng).has_table("alembic_version"):
        raise UserError(
            "数据库尚未初始化，请先运行 hnte init / the database is not initialised: run hnte init"
        )
    return eng


AsOfOpt = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="business date (default: today, Shanghai)"),
]


def _as_of(value: datetime | None) -> date:
    return value.date() if value else today()


def _resolve(session, resolver, value):  # type: ignore[no-untyped-def]
    try:
        return resolver(session, value)
    except LookupError as e:
        raise UserError(str(e)) from None


def _require_batch(session, code: str) -> None:  # type: ignore[no-untyped-def]
    from hnte.services.importing import get_batch

    get_batch(session, code)
