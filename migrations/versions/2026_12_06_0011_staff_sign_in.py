"""Staff sign-in through the organization's identity provider: sessions as expiring staff_tokens rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), server_default='token', nullable=False))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('display_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Without its expiry a sign-in session would be a token that never ends: sessions go first.
    op.execute("DELETE FROM staff_tokens WHERE source = 'oidc'")
    with op.batch_alter_table('staff_tokens', schema=None) as batch_op:
        batch_op.drop_column('subject')
        batch_op.drop_column('display_name')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('source')
