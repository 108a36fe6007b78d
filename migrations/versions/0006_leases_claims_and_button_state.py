"""several processes on one database: feed leases, race-free story keys, claims with their
holder, button state in the database, and broken feeds reported once

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ALTER TABLE ... ADD/DROP COLUMN, never a batch copy of a table: on SQLite with
# foreign keys on, dropping the copied table would cascade (see 0003).


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("feeds", sa.Column("leased_by", sa.String(length=64), nullable=True))
    op.add_column("feeds", sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("feeds", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deliveries", sa.Column("claimed_by", sa.String(length=64), nullable=True))
    op.add_column("articles", sa.Column("link_key", sa.String(length=2048), nullable=True))
    # The stories stored so far: the first article of each link holds it.
    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer()),
        sa.column("link", sa.String()),
        sa.column("link_key", sa.String()),
    )
    others = articles.alias("others")
    first_of_link = (
        sa.select(sa.func.min(others.c.id)).where(others.c.link == articles.c.link)
    ).scalar_subquery()
    op.execute(
        sa.update(articles)
        .where(articles.c.link.is_not(None), articles.c.id == first_of_link)
        .values(link_key=articles.c.link)
    )
    op.create_index(op.f("ix_articles_link_key"), "articles", ["link_key"], unique=True)
    op.create_table(
        "ui_states",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_states")),
    )
    op.create_index(op.f("ix_ui_states_chat_id"), "ui_states", ["chat_id"], unique=False)
    op.create_index(op.f("ix_ui_states_expires_at"), "ui_states", ["expires_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_ui_states_expires_at"), table_name="ui_states")
    op.drop_index(op.f("ix_ui_states_chat_id"), table_name="ui_states")
    op.drop_table("ui_states")
    op.drop_index(op.f("ix_articles_link_key"), table_name="articles")
    op.drop_column("articles", "link_key")
    op.drop_column("deliveries", "claimed_by")
    op.drop_column("feeds", "reported_at")
    op.drop_column("feeds", "leased_until")
    op.drop_column("feeds", "leased_by")
