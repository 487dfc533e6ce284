"""gmail sync state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:34:20.548168
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the rows that exist already; new rows get theirs from the models.
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("full_sync_days", sa.Integer(), nullable=False, server_default="30")
        )
        batch_op.add_column(sa.Column("label_ids", sa.JSON(), nullable=False, server_default="{}"))

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("utc_offset_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("label_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("attachments", sa.JSON(), nullable=False, server_default="[]")
        )

    with op.batch_alter_table("ticket_threads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("labels_applied", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("labels_dirty", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.create_index(
            "ix_ticket_threads_mailbox_id_labels_dirty",
            ["mailbox_id", "labels_dirty"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_threads", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_threads_mailbox_id_labels_dirty")
        batch_op.drop_column("labels_dirty")
        batch_op.drop_column("labels_applied")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("attachments")
        batch_op.drop_column("label_ids")
        batch_op.drop_column("utc_offset_minutes")

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("label_ids")
        batch_op.drop_column("full_sync_days")
