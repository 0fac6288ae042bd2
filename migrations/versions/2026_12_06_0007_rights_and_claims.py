"""Rights, deadlines and claims: rule dates per case, claims, and what rights count from.

- ``cases.delivered_at``: when the item reached the customer; ``cases.itinerary``: which rules apply.
- ``case_deadlines``: each rule's date on a case, with the watchdog's next look (``watch_at``).
- ``claims``: a customer's claim, its decision and payment; amounts as decimal strings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('itinerary', JSON, nullable=True))
    op.create_table(
        'case_deadlines',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('case_id', ID, nullable=False),
        sa.Column('code', sa.String(length=60), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('remind_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('watch_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_deadlines_case_id_cases'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_case_deadlines')),
        sa.UniqueConstraint('case_id', 'code', name=op.f('uq_case_deadlines_case_id_code')),
    )
    with op.batch_alter_table('case_deadlines', schema=None) as batch_op:
        batch_op.create_index('ix_case_deadlines_watch_at', ['watch_at'], unique=False)
    op.create_table(
        'claims',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('case_id', ID, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('items', JSON, nullable=False),
        sa.Column('totals', JSON, nullable=False),
        sa.Column('filed_by', sa.String(length=120), nullable=False),
        sa.Column('filed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('answer_due', sa.DateTime(timezone=True), nullable=False),
        sa.Column('watch_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decision', sa.String(length=20), nullable=True),
        sa.Column('decided_amount', sa.String(length=24), nullable=True),
        sa.Column('decided_currency', sa.String(length=3), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('decided_by', sa.String(length=120), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('paid_reference', sa.String(length=200), nullable=True),
        sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_claims_case_id_cases'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_claims')),
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index('ix_claims_case_id', ['case_id'], unique=False)
        batch_op.create_index('ix_claims_watch_at', ['watch_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index('ix_claims_watch_at')
        batch_op.drop_index('ix_claims_case_id')
    op.drop_table('claims')
    with op.batch_alter_table('case_deadlines', schema=None) as batch_op:
        batch_op.drop_index('ix_case_deadlines_watch_at')
    op.drop_table('case_deadlines')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('itinerary')
        batch_op.drop_column('delivered_at')
