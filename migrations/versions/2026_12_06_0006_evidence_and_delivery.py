"""Evidence and delivery: attachments by digest, the customer's delivery request, ETA on the case.

- ``attachments``: a file of a case, stored by the digest of its cleaned bytes, with its
  ``attachment.added`` event's ``seq``, visibility and who gave it.
- ``deliveries``: one delivery request per case (address, window, PIN, proof digests) and its state.
- ``cases.eta`` / ``eta_first``: the latest and the first expected arrival partners announced.
- ``partners.delivery_slots``: a courier's published delivery windows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('eta', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('eta_first', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_slots', JSON, nullable=True))
    op.create_table(
        'attachments',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('visibility', sa.String(length=10), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=True),
        sa.Column('from_customer', sa.Boolean(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('original_sha256', sa.String(length=64), nullable=False),
        sa.Column('content_type', sa.String(length=40), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=True),
        sa.Column('height', sa.Integer(), nullable=True),
        sa.Column('thumbnail_sha256', sa.String(length=64), nullable=True),
        sa.Column('filename', sa.String(length=200), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_attachments_case_id_cases'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index('ix_attachments_case_id', ['case_id'], unique=False)
        batch_op.create_index('ix_attachments_sha256', ['sha256'], unique=False)
    op.create_table(
        'deliveries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('courier_id', sa.String(length=64), nullable=False),
        sa.Column('handoff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('address', JSON, nullable=True),
        sa.Column('phone', sa.String(length=20), nullable=True),
        sa.Column('instructions', sa.Text(), nullable=True),
        sa.Column('collect_at', sa.String(length=3), nullable=True),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
        sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
        sa.Column('requested_by', sa.String(length=120), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('out_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('pin', sa.String(length=8), nullable=True),
        sa.Column('pin_failures', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('proof', JSON, nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_deliveries_case_id_cases'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['courier_id'], ['partners.id'], name=op.f('fk_deliveries_courier_id_partners')),
        sa.ForeignKeyConstraint(['handoff_id'], ['handoffs.id'], name=op.f('fk_deliveries_handoff_id_handoffs')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
        sa.UniqueConstraint('case_id', name=op.f('uq_deliveries_case_id')),
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_courier_id', ['courier_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_courier_id')
    op.drop_table('deliveries')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_sha256')
        batch_op.drop_index('ix_attachments_case_id')
    op.drop_table('attachments')
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('delivery_slots')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('eta_first')
        batch_op.drop_column('eta')
