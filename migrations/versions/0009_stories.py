"""stories: the articles that report one event, the alert that pushed it, and the
message a confirmation edits or a development replies to

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ALTER TABLE ... ADD/DROP COLUMN, never a batch copy of a table: on SQLite with
# foreign keys on, dropping the copied table would cascade (see 0003). SQLite cannot add
# a constraint to a table, nor drop a column that one names: the story columns are plain
# integers on both backends (stories are never deleted, so a link never dangles).


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
    )
    op.create_index(op.f("ix_stories_first_seen_at"), "stories", ["first_seen_at"], unique=False)
    for table in ("articles", "alerts"):
        op.add_column(table, sa.Column("story_id", sa.Integer(), nullable=True))
        op.create_index(op.f(f"ix_{table}_story_id"), table, ["story_id"], unique=False)
    op.add_column(
        "alerts", sa.Column("kind", sa.String(length=20), server_default="alert", nullable=False)
    )
    op.add_column("deliveries", sa.Column("message_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "deliveries", sa.Column("edit_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(op.f("ix_deliveries_edit_due_at"), "deliveries", ["edit_due_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_deliveries_edit_due_at"), table_name="deliveries")
    op.drop_column("deliveries", "edit_due_at")
    op.drop_column("deliveries", "message_id")
    op.drop_column("alerts", "kind")
    for table in ("alerts", "articles"):
        op.drop_index(op.f(f"ix_{table}_story_id"), table_name=table)
        op.drop_column(table, "story_id")
    op.drop_index(op.f("ix_stories_first_seen_at"), table_name="stories")
    op.drop_table("stories")
