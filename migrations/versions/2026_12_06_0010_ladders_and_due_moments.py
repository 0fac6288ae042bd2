"""Escalation ladders and contact rosters, acknowledgements, and due moments for scorecards.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duty_email', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('duty_phone', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('account_email', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('ladder', JSON, nullable=True))
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ladder_level', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('ladder_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('acked_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ack_reason', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('acked_by', sa.String(length=200), nullable=True))
    op.create_table(
        'due_moments',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=False),
        sa.Column('case_id', ID, nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('met', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_due_moments_case_id_cases'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_due_moments')),
    )
    with op.batch_alter_table('due_moments', schema=None) as batch_op:
        batch_op.create_index('ix_due_moments_partner_id_resolved_at', ['partner_id', 'resolved_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('due_moments', schema=None) as batch_op:
        batch_op.drop_index('ix_due_moments_partner_id_resolved_at')
    op.drop_table('due_moments')
    with op.batch_alter_table('parties', schema=None) as batch_op:
        for column in ('acked_by', 'ack_reason', 'acked_until', 'acked_at', 'ladder_since', 'ladder_level'):
            batch_op.drop_column(column)
    with op.batch_alter_table('partners', schema=None) as batch_op:
        for column in ('ladder', 'account_email', 'duty_phone', 'duty_email'):
            batch_op.drop_column(column)
