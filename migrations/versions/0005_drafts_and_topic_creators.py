"""editors' drafts in the database, who created each topic when, and no stray channels

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "drafts",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("editor_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("topic_key", sa.String(length=300), nullable=True),
        sa.Column("topic_label", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
    )
    op.create_index(op.f("ix_drafts_expires_at"), "drafts", ["expires_at"], unique=False)
    # Existing topics keep NULL: made before Newsbot counted, they count for no chat.
    op.add_column("topics", sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("topics", sa.Column("created_by", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_topics_created_by_created_at", "topics", ["created_by", "created_at"], unique=False
    )
    # A channel that merely added the bot used to become an active chat, reached by every
    # alert sent to everyone. The operator's channels follow topics or take every breaking
    # story (`newsbot channels add`); the others stop receiving anything.
    chats = sa.table(
        "chats",
        sa.column("id", sa.BigInteger()),
        sa.column("kind", sa.String()),
        sa.column("active", sa.Boolean()),
        sa.column("all_breaking", sa.Boolean()),
    )
    subscriptions = sa.table("subscriptions", sa.column("chat_id", sa.BigInteger()))
    followed = sa.exists().where(subscriptions.c.chat_id == chats.c.id)
    op.execute(
        chats.update()
        .where(
            chats.c.kind == "channel",
            chats.c.active.is_(sa.true()),
            chats.c.all_breaking.is_(sa.false()),
            ~followed,
        )
        .values(active=False)
    )


def downgrade() -> None:
    """Downgrade schema (stray channels stay inactive: nothing chose them)."""
    op.drop_index("ix_topics_created_by_created_at", table_name="topics")
    op.drop_column("topics", "created_by")
    op.drop_column("topics", "created_at")
    op.drop_index(op.f("ix_drafts_expires_at"), table_name="drafts")
    op.drop_table("drafts")
