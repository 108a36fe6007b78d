"""alerts fanned out by the database in chunks: who an alert goes to, and how far its
fan-out has got

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ALTER TABLE ... ADD/DROP COLUMN, never a batch copy of a table: on SQLite with
# foreign keys on, dropping the copied table would cascade (see 0003).


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "alerts", sa.Column("to_topic_ids", sa.JSON(), server_default="[]", nullable=False)
    )
    op.add_column(
        "alerts",
        sa.Column("to_all_breaking", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "alerts",
        sa.Column("to_everyone", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("alerts", sa.Column("fanout_cursor", sa.BigInteger(), nullable=True))
    op.add_column("alerts", sa.Column("fanned_out_at", sa.DateTime(timezone=True), nullable=True))
    # The alerts stored so far wrote all their deliveries with them.
    alerts = sa.table(
        "alerts",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("fanned_out_at", sa.DateTime(timezone=True)),
    )
    op.execute(sa.update(alerts).values(fanned_out_at=alerts.c.created_at))
    op.create_index(op.f("ix_alerts_fanned_out_at"), "alerts", ["fanned_out_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_alerts_fanned_out_at"), table_name="alerts")
    op.drop_column("alerts", "fanned_out_at")
    op.drop_column("alerts", "fanout_cursor")
    op.drop_column("alerts", "to_everyone")
    op.drop_column("alerts", "to_all_breaking")
    op.drop_column("alerts", "to_topic_ids")
