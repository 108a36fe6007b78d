"""One sender per bot: a named lock across processes (a PostgreSQL advisory lock)."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import Database


@pytest.mark.postgres
async def test_a_second_holder_waits_until_the_first_lets_go(postgres_url: str) -> None:
    """While one connection holds the lock another waits; it gets the lock once released."""
    first, second = Database(postgres_url), Database(postgres_url)
    order: list[str] = []
    try:
        async with first.exclusive("newsbot-sender-1"):
            waiting = asyncio.create_task(_hold(second, order, "second"))
            await asyncio.sleep(0.3)
            assert order == []  # still waiting
            order.append("first done")
        await asyncio.wait_for(waiting, 5)
        assert order == ["first done", "second"]
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.postgres
async def test_other_names_do_not_wait_and_sqlite_never_waits(
    postgres_url: str, sqlite_url: str
) -> None:
    """Locks of different bots are independent; SQLite (one process) never waits."""
    database, other, lite = Database(postgres_url), Database(postgres_url), Database(sqlite_url)
    try:
        async with database.exclusive("newsbot-sender-1"):
            async with other.exclusive("newsbot-sender-2"):
                pass
            async with lite.exclusive("newsbot-sender-1"), lite.exclusive("newsbot-sender-1"):
                pass
    finally:
        for each in (database, other, lite):
            await each.dispose()


async def _hold(database: Database, order: list[str], name: str) -> None:
    async with database.exclusive("newsbot-sender-1", retry=0.05):
        order.append(name)
