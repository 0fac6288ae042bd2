"""Core tables: partners and keys, case types, cases, parties, handoffs, events, staff, idempotency.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 07:22:59.257313
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_types',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('prefix', sa.String(length=5), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_case_types')),
    sa.UniqueConstraint('prefix', name=op.f('uq_case_types_prefix'))
    )
    op.create_table('idempotency_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('principal', sa.String(length=120), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_digest', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('principal', 'key', name=op.f('uq_idempotency_records_principal_key'))
    )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_records_created_at'), ['created_at'], unique=False)

    op.create_table('partners',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('ops_email', sa.String(length=320), nullable=True),
    sa.Column('ops_phone', sa.String(length=20), nullable=True),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('webhook_secret', sa.String(length=200), nullable=True),
    sa.Column('default_cadence_seconds', sa.Integer(), nullable=False),
    sa.Column('escalate_after_seconds', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('calendar', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partners'))
    )
    op.create_table('signature_nonces',
    sa.Column('keyid', sa.String(length=200), nullable=False),
    sa.Column('nonce', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('keyid', 'nonce', name=op.f('pk_signature_nonces'))
    )
    with op.batch_alter_table('signature_nonces', schema=None) as batch_op:
        batch_op.create_index('ix_signature_nonces_expires_at', ['expires_at'], unique=False)

    op.create_table('staff_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_tokens_token_hash'))
    )
    op.create_table('cases',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=20), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=True),
    sa.Column('customer_phone', sa.String(length=20), nullable=True),
    sa.Column('customer_email', sa.String(length=320), nullable=True),
    sa.Column('customer_locale', sa.String(length=10), nullable=False),
    sa.Column('customer_timezone', sa.String(length=64), nullable=False),
    sa.Column('customer_channels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sms_opted_out', sa.Boolean(), nullable=False),
    sa.Column('email_opted_out', sa.Boolean(), nullable=False),
    sa.Column('status_token', sa.String(length=64), nullable=False),
    sa.Column('status_token_locator', sa.String(length=12), nullable=False),
    sa.Column('external_refs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('satisfaction', sa.String(length=20), nullable=True),
    sa.Column('satisfaction_comment', sa.Text(), nullable=True),
    sa.Column('satisfaction_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['partners.id'], name=op.f('fk_cases_owner_id_partners')),
    sa.ForeignKeyConstraint(['type'], ['case_types.code'], name=op.f('fk_cases_type_case_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('ref', name=op.f('uq_cases_ref'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_customer_email'), ['customer_email'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_customer_phone'), ['customer_phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index('ix_cases_status_opened_at', ['status', 'opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_status_token_locator'), ['status_token_locator'], unique=False)

    op.create_table('partner_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('keyid', sa.String(length=200), nullable=False),
    sa.Column('alg', sa.String(length=20), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=True),
    sa.Column('secret', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_keys_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_keys')),
    sa.UniqueConstraint('keyid', name=op.f('uq_partner_keys_keyid'))
    )
    with op.batch_alter_table('partner_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_keys_partner_id'), ['partner_id'], unique=False)

    op.create_table('case_external_refs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_external_refs_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_external_refs'))
    )
    with op.batch_alter_table('case_external_refs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_external_refs_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_external_refs_value'), ['value'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=True),
    sa.Column('visibility', sa.String(length=10), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('body_digest', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_events_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('case_id', 'seq', name=op.f('uq_events_case_id_seq'))
    )
    op.create_table('handoffs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_partner_id', sa.String(length=64), nullable=True),
    sa.Column('to_partner_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accept_by', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_handoffs_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['from_partner_id'], ['partners.id'], name=op.f('fk_handoffs_from_partner_id_partners')),
    sa.ForeignKeyConstraint(['to_partner_id'], ['partners.id'], name=op.f('fk_handoffs_to_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoffs'))
    )
    with op.batch_alter_table('handoffs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handoffs_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_handoffs_to_partner_id'), ['to_partner_id'], unique=False)

    op.create_table('parties',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('responsible', sa.Boolean(), nullable=False),
    sa.Column('cadence_seconds', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_update_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_update_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('promised_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminders_sent', sa.Integer(), nullable=False),
    sa.Column('last_nudged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('watch_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_parties_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_parties_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parties')),
    sa.UniqueConstraint('case_id', 'partner_id', name=op.f('uq_parties_case_id_partner_id'))
    )
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parties_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_parties_watch_at'), ['watch_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_parties_watch_at'))
        batch_op.drop_index(batch_op.f('ix_parties_partner_id'))

    op.drop_table('parties')
    with op.batch_alter_table('handoffs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handoffs_to_partner_id'))
        batch_op.drop_index(batch_op.f('ix_handoffs_case_id'))

    op.drop_table('handoffs')
    op.drop_table('events')
    with op.batch_alter_table('case_external_refs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_external_refs_value'))
        batch_op.drop_index(batch_op.f('ix_case_external_refs_case_id'))

    op.drop_table('case_external_refs')
    with op.batch_alter_table('partner_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_keys_partner_id'))

    op.drop_table('partner_keys')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status_token_locator'))
        batch_op.drop_index('ix_cases_status_opened_at')
        batch_op.drop_index(batch_op.f('ix_cases_owner_id'))
        batch_op.drop_index(batch_op.f('ix_cases_customer_phone'))
        batch_op.drop_index(batch_op.f('ix_cases_customer_email'))

    op.drop_table('cases')
    op.drop_table('staff_tokens')
    with op.batch_alter_table('signature_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_signature_nonces_expires_at')

    op.drop_table('signature_nonces')
    op.drop_table('partners')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_records_created_at'))

    op.drop_table('idempotency_records')
    op.drop_table('case_types')
