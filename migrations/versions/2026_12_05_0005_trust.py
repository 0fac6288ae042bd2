"""Trust between organizations: webhook circuit breaker, inbound messages once, erased cases.

- ``partners.webhook_failures`` / ``webhook_paused_until``: consecutive failed deliveries to a
  partner's receiver and, past a threshold, when its deliveries may be tried again (circuit breaker).
- ``inbound_messages``: each Twilio ``MessageSid`` processed once.
- ``cases.erased_at``: the customer's data was erased; the status link no longer opens the case.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('webhook_paused_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'inbound_messages',
        sa.Column('sid', sa.String(length=64), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sid', name=op.f('pk_inbound_messages')),
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_messages_received_at', ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_messages_received_at')
    op.drop_table('inbound_messages')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('webhook_paused_until')
        batch_op.drop_column('webhook_failures')
