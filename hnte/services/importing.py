"""Import application lists: validate every row, keep the good ones, report the bad ones.

Idempotent by (batch, credit code) and a digest of the row: importing the same file
again changes nothing; a corrected row replaces an application only while it is still
``submitted``. With ``strict`` any bad row means nothing is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlmodel import Session

from hnte.models.application_rows import (
    APPLICATION_COLUMNS,
    REQUIRED_COLUMNS,
    ApplicationRow,
    RowError,
    validate_row,
)
from hnte.models.stages import Stage
from hnte.models.tables import Application, Batch, District, Enterprise
from hnte.services.tabular import Limits, read_table, write_error_report

_CHUNK = 2_000


class UnknownBatch(LookupError):
    def __init__(self, code: str):
        super().__init__(f"批次 {code} 不存在，请先运行 hnte init / unknown batch {code}")


@dataclass
class ImportReport:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_file: Path | None = None
    committed: bool = False

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.errors})


def district_lookup(session: Session) -> dict[str, str]:
    """Name or division code → code, as the 所属区市 column may hold either."""
    lookup: dict[str, str] = {}
    for code, name in session.exec(select(District.code, District.name)).all():  # type: ignore[call-overload]
        lookup[code] = code
        lookup[name] = code
    return lookup


def get_batch(session: Session, code: str) -> Batch:
    batch = session.get(Batch, code)
    if batch is None:
        raise UnknownBatch(code)
    return batch


def import_applications(
    session: Session,
    path: Path,
    *,
    batch_code: str,
    today: date,
    strict: bool = False,
    limits: Limits | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate and import ``path`` into ``batch_code``; commits unless nothing may be kept."""
    batch = get_batch(session, batch_code)
    table = read_table(
        path, APPLICATION_COLUMNS, required=REQUIRED_COLUMNS, limits=limits or Limits()
    )
    districts = district_lookup(session)
    report = ImportReport(rows=len(table.rows))

    good: list[ApplicationRow] = []
    first_row_of: dict[str, int] = {}
    for number, cells in table.rows:
        result = validate_row(number, cells, districts=districts, today=today)
        if isinstance(result, list):
            report.errors.extend(result)
            continue
        earlier = first_row_of.setdefault(result.credit_code, number)
        if earlier != number:
            report.errors.append(
                RowError(
                    number,
                    "统一社会信用代码",
                    f"与第 {earlier} 行重复 / duplicate of row {earlier}",
                )
            )
            continue
        good.append(result)

    existing = _existing_applications(session, batch_code, [r.credit_code for r in good])
    inserts: list[ApplicationRow] = []
    updates: list[tuple[int, ApplicationRow]] = []
    for row in good:
        found = existing.get(row.credit_code)
        if found is None:
            inserts.append(row)
        elif found[1] == row.digest():
            report.unchanged += 1
        elif found[2] == Stage.SUBMITTED.value:
            updates.append((found[0], row))
        else:
            stage = Stage(found[2])
            report.errors.append(
                RowError(
                    row.row,
                    "统一社会信用代码",
                    f"该企业本批次申报已进入「{stage.label_zh}」阶段，不能再修改数据"
                    f" / already in {stage.value}, figures can no longer change",
                )
            )

    if report.errors:
        report.error_file = write_error_report(path, report.errors)
        if strict:
            return report

    _upsert_enterprises(session, [*inserts, *(r for _, r in updates)])
    applied_default = batch.application_deadline
    for start in range(0, len(inserts), _CHUNK):
        chunk = inserts[start : start + _CHUNK]
        session.connection().execute(
            insert(Application),
            [_application_values(r, batch_code, applied_default) for r in chunk],
        )
        if progress:
            progress(len(chunk))
    for application_id, row in updates:
        values = _application_values(row, batch_code, applied_default)
        session.connection().execute(
            update(Application)
            .where(Application.id == application_id, Application.stage == Stage.SUBMITTED.value)
            .values(values)
        )
    report.inserted, report.updated = len(inserts), len(updates)
    session.commit()
    report.committed = True
    return report


def _existing_applications(
    session: Session, batch_code: str, credit_codes: Sequence[str]
) -> dict[str, tuple[int, str, str]]:
    found: dict[str, tuple[int, str, str]] = {}
    for start in range(0, len(credit_codes), 900):
        chunk = credit_codes[start : start + 900]
        for app_id, code, digest, stage in session.connection().execute(
            select(
                Application.id,
                Application.credit_code,
                Application.source_digest,
                Application.stage,
            ).where(Application.batch_code == batch_code, Application.credit_code.in_(chunk))  # type: ignore[attr-defined]
        ):
            found[code] = (app_id, digest, stage)
    return found


def _upsert_enterprises(session: Session, rows: Sequence[ApplicationRow]) -> None:
    connection = session.connection()
    codes = [r.credit_code for r in rows]
    known: set[str] = set()
    for start in range(0, len(codes), 900):
        known.update(
            connection.execute(
                select(Enterprise.credit_code).where(
                    Enterprise.credit_code.in_(codes[start : start + 900])  # type: ignore[attr-defined]
                )
            ).scalars()
        )
    new = [_enterprise_values(r) for r in rows if r.credit_code not in known]
    for start in range(0, len(new), _CHUNK):
        connection.execute(insert(Enterprise), new[start : start + _CHUNK])
    for row in rows:
        if row.credit_code in known:
            connection.execute(
                update(Enterprise)
                .where(Enterprise.credit_code == row.credit_code)
                .values(_enterprise_values(row))
            )


def _enterprise_values(row: ApplicationRow) -> dict[str, object]:
    return {
        "credit_code": row.credit_code,
        "name": row.name,
        "district_code": row.district_code,
        "registered_on": row.registered_on,
        "tech_field": row.tech_field,
        "intermediary": row.intermediary,
    }


def _pad(values: tuple[int, ...]) -> tuple[int | None, int | None, int | None]:
    padded: list[int | None] = [*values, None, None, None]
    return padded[0], padded[1], padded[2]


def _application_values(row: ApplicationRow, batch_code: str, applied_default: date) -> dict:
    revenue, rd = _pad(row.revenue_fen), _pad(row.rd_fen)
    return {
        "batch_code": batch_code,
        "credit_code": row.credit_code,
        "district_code": row.district_code,
        "kind": row.kind,
        "stage": Stage.SUBMITTED.value,
        "version": 1,
        "applied_on": row.applied_on or applied_default,
        "staff_total": row.staff_total,
        "staff_tech": row.staff_tech,
        "revenue_y1_fen": revenue[0],
        "revenue_y2_fen": revenue[1],
        "revenue_y3_fen": revenue[2],
        "rd_y1_fen": rd[0],
        "rd_y2_fen": rd[1],
        "rd_y3_fen": rd[2],
        "rd_domestic_fen": row.rd_domestic_fen,
        "hightech_revenue_fen": row.hightech_revenue_fen,
        "ip_class1": row.ip_class1,
        "ip_class2": row.ip_class2,
        "ip_numbers": ";".join(row.ip_numbers),
        "major_incident": row.major_incident,
        "source_digest": row.digest(),
    }
