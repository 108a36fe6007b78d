"""Updates recorded as handled: the first delivery wins, on each backend, and old records
are forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.db import Database
from storage.handled import add_handled_update, remove_handled_before

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


async def test_an_update_is_first_handled_once_per_bot(db: Database) -> None:
    """The same update id of one bot is first handled once; another bot's is its own."""
    async with db.transaction() as session:
        assert await add_handled_update(session, 1, 500, NOW)
        assert not await add_handled_update(session, 1, 500, NOW)
        assert await add_handled_update(session, 2, 500, NOW)
    async with db.transaction() as session:
        assert not await add_handled_update(session, 1, 500, NOW + timedelta(hours=1))


async def test_records_older_than_the_moment_are_forgotten(db: Database) -> None:
    """Forgetting removes what was handled before the moment, and only that."""
    async with db.transaction() as session:
        await add_handled_update(session, 1, 1, NOW - timedelta(days=3))
        await add_handled_update(session, 1, 2, NOW)
    async with db.transaction() as session:
        assert await remove_handled_before(session, NOW - timedelta(days=2)) == 1
    async with db.transaction() as session:
        assert await add_handled_update(session, 1, 1, NOW)  # forgotten: new again
        assert not await add_handled_update(session, 1, 2, NOW)
