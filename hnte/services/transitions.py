"""The one function that moves applications between stages, for a whole set at once.

A move is three statements in the caller's transaction: fill a work table with the
candidates and the version each was read at, one ``UPDATE … FROM`` the work table that
moves only rows still at that version and stage (so two writers never both move an
application), and one ``INSERT … SELECT`` that writes a stage event for exactly the rows
this call moved, found by a token the ``UPDATE`` stamped on them.

The work table is filled with COPY (PostgreSQL) or multi-row INSERTs (SQLite), and the
statements reach the applications through it by primary key (or through the token's
index), so on SQLite a move costs in proportion to its candidates, not to the size of the
application table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    Table,
    Text,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.schema import CreateTable
from sqlmodel import Session

from hnte.models.stages import Stage, TransitionRefused, require_transition
from hnte.models.tables import Application, StageEvent

_work_metadata = MetaData()
# A per-connection scratch table; it never holds anything between two moves.
move_work = Table(
    "hnte_move",
    _work_metadata,
    Column("application_id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer),
    Column("reason", Text),
    Column("actor", Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
# SQLite's historical limit of bound values per statement (newer builds allow 32,766).
_SQLITE_VARIABLES = 999
# (id, reason), or (id, version read earlier, reason, actor)
Candidate = tuple[int, str | None] | tuple[int, int | None, str | None, str | None]


def prepare_scratch(connection: Connection, table: Table) -> None:
    """Create the temporary ``table`` on this connection if needed, and empty it."""
    connection.execute(CreateTable(table, if_not_exists=True))
    connection.execute(table.delete())


def insert_rows(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    skip_existing: bool = False,
) -> None:
    """Insert plain tuples, in ``columns`` order, as fast as the driver allows.

    PostgreSQL gets one ``COPY``; SQLite one ``executemany`` of a prepared statement. Each
    value goes through its column type's bind processor first, so what is stored is what
    an ORM or Core insert of the same values would store. With ``skip_existing`` a row
    whose key is already there (another writer's, identical) is left out, not an error.
    """
    dialect = connection.dialect
    processors = [
        (i, p)
        for i, name in enumerate(columns)
        if (p := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    if processors:
        rows = (_processed(row, processors) for row in rows)
    preparer = dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in columns)
    target = preparer.format_table(table)
    if dialect.name == "postgresql":
        copy_into = target
        if skip_existing:
            # COPY has no ON CONFLICT: copy into a scratch twin, then insert what is new.
            copy_into = preparer.quote(f"hnte_copy_{table.name}")
            connection.exec_driver_sql(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {copy_into} (LIKE {target})"
                " ON COMMIT DELETE ROWS"
            )
            connection.exec_driver_sql(f"DELETE FROM {copy_into}")
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            with cursor.copy(f"COPY {copy_into} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        if skip_existing:
            connection.exec_driver_sql(
                f"INSERT INTO {target} ({names}) SELECT {names} FROM {copy_into}"
                " ON CONFLICT DO NOTHING"
            )
        return
    # Many rows per statement: a third less time than one statement per row.
    per_statement = max(1, _SQLITE_VARIABLES // len(columns))
    one = "(" + ", ".join("?" for _ in columns) + ")"
    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
    statement = f"{verb} INTO {target} ({names}) VALUES "
    left: list[Sequence[Any]] = []
    source = iter(rows)

    def full_chunks() -> Iterator[list[Any]]:
        while True:
            chunk = list(islice(source, per_statement))
            if len(chunk) < per_statement:
                left.extend(chunk)
                return
            yield [value for row in chunk for value in row]

    cursor = connection.connection.cursor()
    try:
        cursor.executemany(statement + ", ".join([one] * per_statement), full_chunks())
        if left:
            cursor.executemany(statement + one, left)
    finally:
        cursor.close()


def _processed(row: Sequence[Any], processors: list[tuple[int, Any]]) -> list[Any]:
    values = list(row)
    for i, process in processors:
        if values[i] is not None:
            values[i] = process(values[i])
    return values


@dataclass
class MoveResult:
    source: Stage
    target: Stage
    moved: int = 0
    skipped: int = 0  # candidates another writer moved first
    by_district: dict[str, int] = field(default_factory=dict)
    token: str = ""  # stamped on the moved rows' move_token, to find them in the same unit


def move(
    session: Session,
    *,
    source: Stage,
    target: Stage,
    candidates: Select[Any] | Sequence[Candidate],
    actor: str,
    as_of: date,
    flow_run_id: str | None = None,
    values: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> MoveResult:
    """Move ``candidates`` from ``source`` to ``target``; the caller commits.

    ``candidates`` is either a SELECT of (application id, version, reason, actor) — the
    set-based form the batch flow uses — or a list of (application id, reason) pairs,
    whose version is read now, or of (id, version, reason, actor) read earlier. A null
    actor falls back to ``actor``. With ``strict`` every listed application must be at
    ``source`` or nothing moves. ``values`` are extra columns set on every moved row.
    """
    require_transition(source, target)
    connection = session.connection()
    prepare_scratch(connection, move_work)
    if isinstance(candidates, Select):
        connection.execute(
            insert(move_work).from_select(
                ["application_id", "version", "reason", "actor"], candidates
            )
        )
    else:
        unread = _fill_work_table(connection, candidates)
        if unread:
            current = (
                select(Application.version)
                .where(Application.id == move_work.c.application_id)
                .scalar_subquery()
            )
            connection.execute(
                update(move_work).where(move_work.c.version.is_(None)).values(version=current)
            )
        if strict:
            _refuse_strays(session, source, target)

    total = connection.execute(select(func.count()).select_from(move_work)).scalar_one()
    if not total:
        return MoveResult(source, target)
    token = uuid.uuid4().hex
    assignments: dict[str, Any] = {
        "stage": target.value,
        "version": Application.version + 1,
        "stage_since": as_of,
        "move_token": token,
        "decision_reason": func.coalesce(move_work.c.reason, Application.decision_reason),
        **(values or {}),
    }
    moved = connection.execute(
        update(Application)
        .where(
            Application.id == move_work.c.application_id,
            Application.version == move_work.c.version,
            Application.stage == source.value,
            # Redundant for the result; it makes SQLite walk the work table and look each
            # application up by id instead of scanning the whole application table.
            Application.id.in_(select(move_work.c.application_id)),  # type: ignore[union-attr]
        )
        .values(assignments)
        .execution_options(synchronize_session=False)
    ).rowcount
    stamped = _stamped(token)
    connection.execute(
        insert(StageEvent).from_select(
            [
                "application_id",
                "from_stage",
                "to_stage",
                "at",
                "business_date",
                "actor",
                "reason",
                "flow_run_id",
            ],
            select(
                move_work.c.application_id,
                literal(source.value),
                literal(target.value),
                literal(datetime.now(UTC).replace(tzinfo=None)),
                literal(as_of),
                func.coalesce(move_work.c.actor, literal(actor)),
                move_work.c.reason,
                literal(flow_run_id),
            )
            .select_from(move_work)
            .join(Application, stamped),
        )
    )
    by_district = dict(
        connection.execute(
            select(Application.district_code, func.count())
            .select_from(move_work)
            .join(Application, stamped)
            .group_by(Application.district_code)
        ).all()
    )
    return MoveResult(source, target, moved, total - moved, by_district, token)


def _stamped(token: str) -> Any:
    """Join condition from the work table to the applications a move stamped with ``token``."""
    return (Application.id == move_work.c.application_id) & (Application.move_token == token)


def _fill_work_table(connection: Connection, candidates: Sequence[Candidate]) -> bool:
    """Copy the candidates into the work table; True if some have a version still to read."""
    unread = False

    def rows() -> Iterable[tuple[int, int | None, str | None, str | None]]:
        nonlocal unread
        for c in candidates:
            row = _work_row(c)
            unread = unread or row[1] is None
            yield row

    insert_rows(connection, move_work, ("application_id", "version", "reason", "actor"), rows())
    return unread


def _work_row(candidate: Candidate) -> tuple[int, int | None, str | None, str | None]:
    if len(candidate) == 2:
        return (candidate[0], None, candidate[1], None)
    return candidate  # type: ignore[return-value]


def _refuse_strays(session: Session, source: Stage, target: Stage) -> None:
    connection = session.connection()
    missing = connection.execute(
        select(move_work.c.application_id).where(move_work.c.version.is_(None)).limit(1)
    ).first()
    if missing is not None:
        raise TransitionRefused(
            f"#{missing[0]}", source, target, "申请不存在 / no such application"
        )
    stray = connection.execute(
        select(Application.credit_code, Application.stage)
        .join(move_work, move_work.c.application_id == Application.id)
        .where(Application.stage != source.value)
        .limit(1)
    ).first()
    if stray is not None:
        credit_code, stage = stray
        require_transition(Stage(stage), target, credit_code)
        raise TransitionRefused(credit_code, stage, target, f"不在「{source.label_zh}」阶段")


def move_one_each(
    session: Session,
    *,
    target: Stage,
    applications: Sequence[tuple[int, str | None]],
    actor: str,
    as_of: date,
    flow_run_id: str | None = None,
) -> list[MoveResult]:
    """Move explicit applications, whatever stage each is in, to ``target`` (withdraw, reject).

    Every application's own (stage → target) must be in the stage table; otherwise nothing
    moves and the refusal names the first application that cannot.
    """
    by_stage: dict[Stage, list[Candidate]] = {}
    if not applications:
        return []
    ids = [a for a, _ in applications]
    reasons = dict(applications)
    rows: list[tuple[int, str, str]] = []
    for start in range(0, len(ids), 900):
        rows += [
            (r[0], r[1], r[2])
            for r in session.connection().execute(
                select(Application.id, Application.credit_code, Application.stage).where(
                    Application.id.in_(ids[start : start + 900])  # type: ignore[union-attr]
                )
            )
        ]
    for application_id, credit_code, stage in rows:
        require_transition(Stage(stage), target, credit_code)
        by_stage.setdefault(Stage(stage), []).append((application_id, reasons[application_id]))
    return [
        move(
            session,
            source=stage,
            target=target,
            candidates=group,
            actor=actor,
            as_of=as_of,
            flow_run_id=flow_run_id,
            strict=True,
        )
        for stage, group in by_stage.items()
    ]
