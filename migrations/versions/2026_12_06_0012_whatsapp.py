"""WhatsApp as a customer channel: its own opt-out, and the time of the customer's last inbound message.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('whatsapp_opted_out', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('whatsapp_inbound_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # WhatsApp rows still queued would name a channel the older code cannot send: they end suppressed.
    op.execute("UPDATE notifications SET state = 'suppressed', next_attempt_at = NULL "
               "WHERE channel = 'whatsapp' AND state IN ('pending', 'sending')")
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('whatsapp_inbound_at')
        batch_op.drop_column('whatsapp_opted_out')
