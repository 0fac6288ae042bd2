"""Bag scans: tags scanned by partners, matched to open cases, kept 30 days while unmatched.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'bag_scans',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('bag_tag', sa.String(length=10), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('station', sa.String(length=3), nullable=True),
        sa.Column('point', sa.String(length=20), nullable=False),
        sa.Column('flight', sa.String(length=10), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('case_id', ID, nullable=True),
        sa.Column('matched_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_bag_scans_case_id_cases'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_bag_scans_partner_id_partners')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_bag_scans')),
        sa.UniqueConstraint('fingerprint', name=op.f('uq_bag_scans_fingerprint')),
    )
    with op.batch_alter_table('bag_scans', schema=None) as batch_op:
        batch_op.create_index('ix_bag_scans_bag_tag', ['bag_tag'], unique=False)
        batch_op.create_index('ix_bag_scans_received_at', ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bag_scans', schema=None) as batch_op:
        batch_op.drop_index('ix_bag_scans_received_at')
        batch_op.drop_index('ix_bag_scans_bag_tag')
    op.drop_table('bag_scans')
