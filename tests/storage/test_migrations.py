"""The migrations keep every row: a stairway over every revision, on SQLite and PostgreSQL.

At each revision's predecessor every kept table gets a row, linked to the rows of the
tables it refers to; the upgrade, then a downgrade and an upgrade again, must keep them
all, still linked. The revisions and the tables are read from Alembic and the database
itself, so a revision added later is covered as it lands.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic.script import Script, ScriptDirectory

from storage.db import Database, alembic_config
from tests.storage.migrating import migrate

T = TypeVar("T")

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# What an upgrade must never lose: the archive and the readers' side.
KEPT = ("feeds", "articles", "chats", "topics", "subscriptions", "alerts", "deliveries")

# Every reflected foreign key of the kept tables is checked; these, at least, must be,
# with or without a foreign key (deliveries have none since 0010): (table, column) → the
# table it points to.
LINKS = {
    ("articles", "feed_id"): "feeds",
    ("subscriptions", "chat_id"): "chats",
    ("subscriptions", "topic_id"): "topics",
    ("alerts", "article_id"): "articles",
    ("deliveries", "alert_id"): "alerts",
    ("deliveries", "chat_id"): "chats",
}

# Oldest first.
REVISIONS: list[Script] = list(
    reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
)

# Table name -> primary key -> the row's foreign key values.
Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


def kept_tables(connection: sa.Connection) -> list[sa.Table]:
    """The kept tables this revision has, as reflected, each after the tables it refers to."""
    present = set(sa.inspect(connection).get_table_names()) & set(KEPT)
    metadata = sa.MetaData()
    metadata.reflect(connection, only=sorted(present))
    # KEPT lists each table after those it points to, foreign key or not.
    return sorted(metadata.tables.values(), key=lambda table: KEPT.index(table.name))


def is_link(column: sa.Column[Any]) -> bool:
    """Whether the column points at another table's row: a foreign key, or a declared link."""
    return bool(column.foreign_keys) or (column.table.name, column.name) in LINKS


def parent_of(column: sa.Column[Any]) -> str | None:
    """The table the column points to, if it is a link."""
    for key in column.foreign_keys:
        return key.column.table.name
    return LINKS.get((column.table.name, column.name))


def sample(column: sa.Column[Any], number: int) -> object:
    """A value of the column's type, unique to the row ``number`` where the type allows."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.Integer):
        return number
    if isinstance(kind, sa.DateTime):
        return NOW
    if isinstance(kind, sa.JSON):
        return []
    if isinstance(kind, sa.Enum):
        return kind.enums[0]
    if isinstance(kind, sa.String):
        # The number first, so that a short column keeps the row's own value.
        return f"{number} {column.table.name}.{column.name}"[: kind.length]
    raise TypeError(f"the stairway cannot fill {column} ({kind!r}): teach sample() its type")


def needs_value(column: sa.Column[Any]) -> bool:
    """Whether an insert must name the column: a key, or required with no default."""
    defaulted = column.server_default is not None or column.computed is not None
    return column.primary_key or not (column.nullable or defaulted)


def populate(connection: sa.Connection, numbers: Iterator[int]) -> Rows:
    """One row in each kept table, each foreign key pointing at the row just put in its
    parent table; returns the rows as `observe` will read them."""
    inserted: dict[str, dict[str, Any]] = {}
    rows: Rows = {}
    for table in kept_tables(connection):
        number = next(numbers)
        row: dict[str, Any] = {}
        for column in table.columns:
            parent = parent_of(column)
            if parent in inserted:
                row[column.name] = inserted[parent]["id"]
            elif needs_value(column):
                row[column.name] = sample(column, number)
        connection.execute(table.insert().values(row))
        inserted[table.name] = row
        rows[table.name] = {
            tuple(row[column.name] for column in table.primary_key.columns): {
                column.name: row[column.name] for column in table.columns if is_link(column)
            }
        }
    return rows


def observe(connection: sa.Connection) -> Rows:
    """Every row of the kept tables, by primary key, with the values of its foreign keys."""
    rows: Rows = {}
    for table in kept_tables(connection):
        keys = list(table.primary_key.columns)
        links = [column for column in table.columns if is_link(column)]
        rows[table.name] = {
            tuple(record[: len(keys)]): {
                column.name: value
                for column, value in zip(links, record[len(keys) :], strict=True)
            }
            for record in connection.execute(sa.select(*keys, *links))
        }
    return rows


async def run_sync(db: Database, work: Callable[..., T], *args: Any) -> T:
    """``work(connection, *args)`` in one transaction of its own."""
    async with db.engine.begin() as connection:
        return await connection.run_sync(work, *args)


async def assert_kept(db: Database, expected: Rows, when: str) -> None:
    """Every row of ``expected`` is in the tables that exist now, with the same links, and
    no row has come or gone (a table the schema no longer has takes its rows with it). A
    link the revision adds starts empty."""
    observed: Rows = await run_sync(db, observe)
    for name, rows in observed.items():
        for key, links in rows.items():
            before = expected.get(name, {}).get(key, {})
            added = {column: links.pop(column) for column in set(links) - set(before)}
            assert all(value is None for value in added.values()), f"{when}: {name} {added}"
    assert observed == {name: expected.get(name, {}) for name in observed}, when


@pytest.mark.parametrize("script", REVISIONS, ids=[script.revision for script in REVISIONS])
async def test_a_revision_keeps_every_row_and_every_link(
    blank_database: str, script: Script
) -> None:
    """Upgrading to a revision from the one before keeps every feed, article, chat, topic,
    subscription, alert and delivery and what each points to; so do down and up again."""
    previous = script.down_revision
    assert previous is None or isinstance(previous, str), "the stairway walks a straight line"
    db = Database(blank_database)
    try:
        if previous is not None:
            await migrate(db, previous)
        expected: Rows = await run_sync(db, populate, itertools.count(1))
        for table, column in LINKS:
            for links in expected.get(table, {}).values():
                assert links[column] is not None, f"{table}.{column} left unlinked"

        await migrate(db, script.revision)
        await assert_kept(db, expected, f"upgrading to {script.revision}")

        await migrate(db, previous or "base", down=True)
        await assert_kept(db, expected, f"downgrading from {script.revision}")
        await migrate(db, script.revision)
        await assert_kept(db, expected, f"upgrading to {script.revision} again")
    finally:
        await db.dispose()
