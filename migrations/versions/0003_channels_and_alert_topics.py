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


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("all_breaking", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("topics", sa.JSON(), server_default="[]", nullable=False))
        batch.create_index(batch.f("ix_alerts_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index(batch.f("ix_alerts_created_at"))
        batch.drop_column("topics")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("all_breaking")
