"""reply templates: uses, search columns, the shared-shortcut index, mailboxes.timezone

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 16:39:00.616451
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SHARED_SHORTCUT = "visibility = 'shared' AND shortcut IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "template_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("message_excerpt", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_template_uses_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["reply_templates.id"],
            name=op.f("fk_template_uses_template_id_reply_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_template_uses_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_uses")),
    )
    with op.batch_alter_table("template_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_template_uses_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            "ix_template_uses_template_id_used_at", ["template_id", "used_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_template_uses_ticket_id"), ["ticket_id"], unique=False)

    # Server defaults fill the rows that exist already; new rows get theirs from the models.
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC")
        )

    with op.batch_alter_table("reply_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("tag_index", sa.String(length=1301), nullable=False, server_default="")
        )
        batch_op.create_index("ix_reply_templates_owner_id", ["owner_id"], unique=False)
        batch_op.create_index(
            "ix_reply_templates_shared_shortcut",
            ["shortcut", "language"],
            unique=True,
            sqlite_where=sa.text(_SHARED_SHORTCUT),
            postgresql_where=sa.text(_SHARED_SHORTCUT),
        )
    _fill_search_columns()


def _fill_search_columns() -> None:
    """The derived columns of the templates that exist already (templates_replies/models.py
    computes them for new rows): lower-cased name and body, lower-cased tags as "|a|b|"."""
    templates = sa.table(
        "reply_templates",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("body", sa.Text()),
        sa.column("tags", sa.JSON()),
        sa.column("search_text", sa.Text()),
        sa.column("tag_index", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(templates.c.id, templates.c.name, templates.c.body, templates.c.tags)
    ).all()
    for row in rows:
        tags = [str(tag).lower() for tag in row.tags or []]
        conn.execute(
            templates.update()
            .where(templates.c.id == row.id)
            .values(
                search_text=f"{row.name}\n{row.body}".lower(),
                tag_index="|" + "|".join(tags) + "|" if tags else "",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("reply_templates", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_reply_templates_shared_shortcut",
            sqlite_where=sa.text(_SHARED_SHORTCUT),
            postgresql_where=sa.text(_SHARED_SHORTCUT),
        )
        batch_op.drop_index("ix_reply_templates_owner_id")
        batch_op.drop_column("tag_index")
        batch_op.drop_column("search_text")

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("timezone")

    with op.batch_alter_table("template_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_template_uses_ticket_id"))
        batch_op.drop_index("ix_template_uses_template_id_used_at")
        batch_op.drop_index(batch_op.f("ix_template_uses_agent_id"))

    op.drop_table("template_uses")
