"""Moving a test database between revisions with Alembic, as `newsbot db upgrade` does."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from storage.db import Database, alembic_config


async def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    """Move the schema to a revision with Alembic, as `newsbot db upgrade` does."""

    def run(connection: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(run)
