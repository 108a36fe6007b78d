"""Alembic environment: async engines, run from `newsbot db upgrade` or Alembic's CLI."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql.schema import SchemaItem

from storage.db import default_database_url
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = os.environ.get("NEWSBOT_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    return url or default_database_url()


# The search index lives outside the models because it differs by backend (see migration
# 0002): FTS5's virtual table and its shadow tables on SQLite, a generated tsvector column
# and its GIN index on PostgreSQL. Autogenerate would otherwise offer to drop them.
_SEARCH_TABLE = "articles_fts"
_SEARCH_COLUMN = ("articles", "search_vector")
_SEARCH_INDEX = "ix_articles_search_vector"


def _include_object(
    item: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if type_ == "table" and name is not None:
        return name != _SEARCH_TABLE and not name.startswith(_SEARCH_TABLE + "_")
    if type_ == "column":
        table = getattr(item, "table", None)
        return (getattr(table, "name", None), name) != _SEARCH_COLUMN
    if type_ == "index":
        return name != _SEARCH_INDEX
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    asyncio.run(_run_async())
