"""triage automation: rule match mode, team caps and round-robin turn, shifts and time off,
waiting assignment, SLA escalations

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 19:48:14.955824
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name=op.f("ck_agent_shifts_minute_range"),
        ),
        sa.CheckConstraint(
            "weekday >= 0 AND weekday <= 6", name=op.f("ck_agent_shifts_weekday_range")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_shifts_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_shifts")),
    )
    with op.batch_alter_table("agent_shifts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_shifts_agent_id"), ["agent_id"], unique=False)

    op.create_table(
        "agent_time_off",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_time_off_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_time_off")),
    )
    with op.batch_alter_table("agent_time_off", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agent_time_off_agent_id_ends_on", ["agent_id", "ends_on"], unique=False
        )

    op.create_table(
        "escalation_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_escalation_rules_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_rules")),
    )
    op.create_table(
        "sla_escalations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_sla_escalations_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_escalations")),
        sa.UniqueConstraint(
            "ticket_id",
            "deadline",
            "stage",
            "due_at",
            name=op.f("uq_sla_escalations_ticket_id_deadline_stage_due_at"),
        ),
    )
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("match", sa.String(length=8), server_default="all", nullable=False)
        )

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_cap", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_assigned_agent_id", sa.Integer(), nullable=True))

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "awaiting_assignment", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.create_index(
            "ix_tickets_awaiting_assignment_team_id",
            ["awaiting_assignment", "team_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_awaiting_assignment_team_id")
        batch_op.drop_column("awaiting_assignment")

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("last_assigned_agent_id")
        batch_op.drop_column("agent_cap")

    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_column("match")

    op.drop_table("sla_escalations")
    op.drop_table("escalation_rules")
    with op.batch_alter_table("agent_time_off", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_time_off_agent_id_ends_on")

    op.drop_table("agent_time_off")
    with op.batch_alter_table("agent_shifts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_shifts_agent_id"))

    op.drop_table("agent_shifts")
