"""channels that take every breaking story, and the topics an alert matched

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, never a batch copy of the table: SQLite adds a column with a constant
# default (and drops one, since 3.35) in place, whereas a copy drops and recreates the
# table, and with foreign keys on, dropping chats deletes every subscription and delivery
# and dropping alerts every delivery. (Alembic's batch mode copies on SQLite whenever the
# default is an expression such as sa.false(), and for any drop_column.)


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "chats",
        sa.Column("all_breaking", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("alerts", sa.Column("topics", sa.JSON(), server_default="[]", nullable=False))
    op.create_index(op.f("ix_alerts_created_at"), "alerts", ["created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_alerts_created_at"), table_name="alerts")
    op.drop_column("alerts", "topics")
    op.drop_column("chats", "all_breaking")
