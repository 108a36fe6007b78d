"""feeds added by an editor in a chat, fetched refusing private addresses on every poll

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, never a batch copy of the table (see 0003): with foreign keys on,
# dropping feeds to recreate it would unlink every article from its feed.


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "feeds",
        sa.Column("added_in_chat", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("feeds", "added_in_chat")
