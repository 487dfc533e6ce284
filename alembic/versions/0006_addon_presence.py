"""add-on presence: who has a ticket's card (viewing) or its reply (drafting) open in Gmail

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addon_presence",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "viewing",
                "drafting",
                name="addon_presence_kind",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_addon_presence_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_addon_presence_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "ticket_id", "kind", name=op.f("pk_addon_presence")),
    )
    with op.batch_alter_table("addon_presence", schema=None) as batch_op:
        batch_op.create_index(
            "ix_addon_presence_ticket_id_seen_at", ["ticket_id", "seen_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("addon_presence", schema=None) as batch_op:
        batch_op.drop_index("ix_addon_presence_ticket_id_seen_at")
    op.drop_table("addon_presence")
