"""The expert pool: add or update experts and their declared conflicts."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session

from hnte.models.tables import Expert, ExpertConflict


def upsert_experts(
    session: Session,
    experts: Iterable[tuple[str, str, str, str]],
    conflicts: Iterable[tuple[str, str]] = (),
) -> int:
    """(id, name, kind, employer) rows and (expert id, credit code) conflicts; caller commits."""
    count = 0
    for expert_id, name, kind, employer in experts:
        session.merge(Expert(id=expert_id, name=name, kind=kind, employer=employer))
        count += 1
    session.flush()
    for expert_id, credit_code in conflicts:
        session.merge(ExpertConflict(expert_id=expert_id, credit_code=credit_code))
    session.flush()
    return count
