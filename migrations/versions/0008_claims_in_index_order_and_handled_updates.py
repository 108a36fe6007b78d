"""due deliveries read in claim order off one index, each feed's newest arrival off
another, and the updates already handled

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        "ix_deliveries_state_due_at_id", "deliveries", ["state", "due_at", "id"], unique=False
    )
    op.drop_index("ix_deliveries_state_due_at", table_name="deliveries")
    op.create_index(
        "ix_articles_feed_id_first_seen_at",
        "articles",
        ["feed_id", "first_seen_at"],
        unique=False,
    )
    op.drop_index("ix_articles_feed_id", table_name="articles")
    op.create_table(
        "handled_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_handled_updates")),
    )
    op.create_index(
        op.f("ix_handled_updates_handled_at"), "handled_updates", ["handled_at"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_handled_updates_handled_at"), table_name="handled_updates")
    op.drop_table("handled_updates")
    op.create_index("ix_articles_feed_id", "articles", ["feed_id"], unique=False)
    op.drop_index("ix_articles_feed_id_first_seen_at", table_name="articles")
    op.create_index("ix_deliveries_state_due_at", "deliveries", ["state", "due_at"], unique=False)
    op.drop_index("ix_deliveries_state_due_at_id", table_name="deliveries")
