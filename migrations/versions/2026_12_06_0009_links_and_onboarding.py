"""One-tap update links for parties, partner invitations (onboarding), sandbox cases.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        'party_links',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('case_id', ID, nullable=False),
        sa.Column('party_id', ID, nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_party_links_case_id_cases'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['party_id'], ['parties.id'], name=op.f('fk_party_links_party_id_parties'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_party_links')),
        sa.UniqueConstraint('party_id', name=op.f('uq_party_links_party_id')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_party_links_token_hash')),
    )
    op.create_table(
        'partner_invitations',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('partner_id', sa.String(length=64), nullable=False),
        sa.Column('partner', JSON, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('joined_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('webhook_tested_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('webhook_result', JSON, nullable=True),
        sa.Column('sandbox_case_id', ID, nullable=True),
        sa.ForeignKeyConstraint(['sandbox_case_id'], ['cases.id'],
                                name=op.f('fk_partner_invitations_sandbox_case_id_cases'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_invitations')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_partner_invitations_token_hash')),
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sandbox', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('sandbox')
    op.drop_table('partner_invitations')
    op.drop_table('party_links')
