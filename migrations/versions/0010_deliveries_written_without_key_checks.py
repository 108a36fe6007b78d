"""deliveries written without foreign-key checks, and only the messages due for an edit
in the edit index

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A fan-out to a million readers writes a million deliveries: their two foreign keys were
# checked row by row, nearly half the time (storage/models.py, Delivery). SQLite cannot
# drop a constraint, so there the table is copied (batch mode). That is safe for this
# table alone: no table refers to deliveries, so dropping the old copy deletes nothing else
# (unlike chats or alerts, see 0003).
_KEYS = (
    ("fk_deliveries_alert_id_alerts", "alerts", ["alert_id"], {"ondelete": "CASCADE"}),
    (
        "fk_deliveries_chat_id_chats",
        "chats",
        ["chat_id"],
        {"ondelete": "CASCADE", "onupdate": "CASCADE"},
    ),
)
_DUE = sa.text("edit_due_at IS NOT NULL")


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index("ix_deliveries_edit_due_at", table_name="deliveries")
    with op.batch_alter_table("deliveries", recreate="auto") as batch:
        for name, _, _, _ in _KEYS:
            batch.drop_constraint(name, type_="foreignkey")
    op.create_index(
        "ix_deliveries_edit_due_at",
        "deliveries",
        ["edit_due_at"],
        unique=False,
        postgresql_where=_DUE,
        sqlite_where=_DUE,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_deliveries_edit_due_at", table_name="deliveries")
    with op.batch_alter_table("deliveries", recreate="auto") as batch:
        for name, parent, columns, actions in _KEYS:
            batch.create_foreign_key(name, parent, columns, ["id"], **actions)
    op.create_index("ix_deliveries_edit_due_at", "deliveries", ["edit_due_at"], unique=False)
