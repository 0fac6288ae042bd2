"""When Baton last chased a party: what the customer is told ("we chased them at 14:05").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 08:26:13.383515
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_reminded_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.drop_column('last_reminded_at')

