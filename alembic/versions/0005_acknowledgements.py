"""acknowledgements: outbox threading headers and backoff, rate-limit indexes, mailbox
acknowledgement settings and breaker state, the installation secret

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 18:00:00.000000
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the rows that exist already; new rows get theirs from the models.
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_html", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("in_reply_to", sa.String(length=998), nullable=True))
        batch_op.add_column(sa.Column("references", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_outbox_mailbox_kind_to_created",
            ["mailbox_id", "kind", "to_address", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_outbox_mailbox_kind_created", ["mailbox_id", "kind", "created_at"], unique=False
        )

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ack_per_sender_hour", sa.Integer(), nullable=False, server_default="3")
        )
        batch_op.add_column(
            sa.Column("ack_per_sender_day", sa.Integer(), nullable=False, server_default="10")
        )
        batch_op.add_column(
            sa.Column("ack_same_subject_minutes", sa.Integer(), nullable=False, server_default="10")
        )
        batch_op.add_column(
            sa.Column("ack_breaker_per_minute", sa.Integer(), nullable=False, server_default="60")
        )
        batch_op.add_column(
            sa.Column("ack_paused_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("ack_alert", sa.String(length=1000), nullable=True))
    # A mailbox's own acknowledgement templates (app/mailboxes/models.py says why a table).
    op.create_table(
        "mailbox_ack_templates",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_mailbox_ack_templates_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["reply_templates.id"],
            name=op.f("fk_mailbox_ack_templates_template_id_reply_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "kind", name=op.f("pk_mailbox_ack_templates")),
    )
    with op.batch_alter_table("mailbox_ack_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mailbox_ack_templates_template_id"), ["template_id"], unique=False
        )

    installation_secrets = op.create_table(
        "installation_secrets",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.LargeBinary(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation_secrets")),
    )
    # The key that signs our Message-IDs when INBOXDESK_SECRET_KEY is not set
    # (app/acknowledgements/signing.py): random, made once, here.
    op.bulk_insert(
        installation_secrets,
        [{"id": 1, "value": secrets.token_bytes(32), "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("installation_secrets")
    with op.batch_alter_table("mailbox_ack_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_ack_templates_template_id"))
    op.drop_table("mailbox_ack_templates")

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("ack_alert")
        batch_op.drop_column("ack_paused_until")
        batch_op.drop_column("ack_breaker_per_minute")
        batch_op.drop_column("ack_same_subject_minutes")
        batch_op.drop_column("ack_per_sender_day")
        batch_op.drop_column("ack_per_sender_hour")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_mailbox_kind_created")
        batch_op.drop_index("ix_outbox_mailbox_kind_to_created")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("references")
        batch_op.drop_column("in_reply_to")
        batch_op.drop_column("is_html")
