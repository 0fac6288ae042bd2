"""Room on each page of ``cases`` so that a routine update rewrites the row in place (PostgreSQL).

Every signed update moves its case's chain head (``last_seq``, ``last_hash``, ``updated_at``),
none of them indexed. With full pages PostgreSQL must put the new row version on another page
and add it to all eight of the table's indexes; with free room on the page it makes a
heap-only tuple (HOT) and touches no index. SQLite has no such setting: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE cases SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE cases RESET (fillfactor)")
