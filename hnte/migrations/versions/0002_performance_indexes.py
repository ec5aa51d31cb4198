"""performance indexes for the target report and the batch flow

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:15:00

The target report (``hnte targets``) reads the whole certificate register and the whole
stage-event trail; each of its queries now finds an index that holds every column it
reads, in the order it groups by:

- ``ix_certificate_stock`` (district, enterprise, validity): the stock by district is one
  ordered pass, counting distinct enterprises without a sort;
- ``ix_certificate_expiry`` (expiry, validity, district, enterprise): the certificates
  expiring this year, still to renew, as one range; it replaces the index on the expiry
  date alone;
- ``ix_certificate_holder`` (enterprise, issue date, validity): "does this enterprise hold,
  or has it renewed, a certificate" without reading the table; it replaces the index on
  the credit code alone;
- ``ix_certificate_issued`` (issue date, district, enterprise, application): the year's
  recognitions; it replaces ``ix_certificate_validity``, which no query could use;
- ``ix_stage_event_exit`` (from, to, business date): pass rates from the index alone.

``ix_application_move`` stays: dropping it saves ~15% of a move's UPDATE, but without
it PostgreSQL, which cannot estimate a fresh token, plans "rows stamped with this token"
as a scan of the whole (and, after a batch, bloated) application table per statement.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW = (
    (
        "ix_certificate_stock",
        "certificate",
        ["district_code", "credit_code", "expires_on", "issued_on", "revoked_on"],
    ),
    (
        "ix_certificate_expiry",
        "certificate",
        ["expires_on", "issued_on", "revoked_on", "district_code", "credit_code"],
    ),
    (
        "ix_certificate_holder",
        "certificate",
        ["credit_code", "issued_on", "expires_on", "revoked_on"],
    ),
    (
        "ix_certificate_issued",
        "certificate",
        ["issued_on", "district_code", "credit_code", "application_id"],
    ),
    ("ix_stage_event_exit", "stage_event", ["from_stage", "to_stage", "business_date"]),
)
OLD = (
    ("ix_certificate_credit_code", "certificate", ["credit_code"]),
    ("ix_certificate_expires_on", "certificate", ["expires_on"]),
    ("ix_certificate_validity", "certificate", ["district_code", "issued_on", "expires_on"]),
)


def upgrade() -> None:
    for name, table, columns in NEW:
        op.create_index(name, table, columns, unique=False)
    for name, table, _ in OLD:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in OLD:
        op.create_index(name, table, columns, unique=False)
    for name, table, _ in NEW:
        op.drop_index(name, table_name=table)
