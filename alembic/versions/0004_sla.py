"""SLA: at-risk instants and the pause clock on tickets, holiday subdivisions on calendars

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("business_calendars", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holiday_subdivision", sa.String(length=16), nullable=True))

    # The server default fills the rows that exist already; new rows get theirs from the model.
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_response_at_risk_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolution_at_risk_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("sla_paused_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("sla_paused_minutes", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(
            "ix_tickets_status_first_response_due_at",
            ["status", "first_response_due_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tickets_status_resolution_due_at", ["status", "resolution_due_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_status_resolution_due_at")
        batch_op.drop_index("ix_tickets_status_first_response_due_at")
        batch_op.drop_column("sla_paused_minutes")
        batch_op.drop_column("sla_paused_at")
        batch_op.drop_column("resolution_at_risk_at")
        batch_op.drop_column("first_response_at_risk_at")

    with op.batch_alter_table("business_calendars", schema=None) as batch_op:
        batch_op.drop_column("holiday_subdivision")
