"""Connections PostgreSQL cut (a restart, a failover): replaced, and a lock they held is
known to be lost; and SQLite's busy timeout, as a test or an operator sets it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.db import SQLITE_BUSY_TIMEOUT_MS, Database, LockLost
from tests.outages import cut_connections


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_cut_is_replaced(postgres_url: str) -> None:
    """After the server ended the pooled connection the next session still works."""
    database = Database(postgres_url)
    try:
        async with database.sessions() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        await cut_connections(database)
        async with database.sessions() as session:
            assert await session.scalar(text("SELECT 2")) == 2
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_a_lock_whose_connection_is_cut_is_known_lost(postgres_url: str) -> None:
    """When the connection holding the advisory lock is cut, the block inside is cancelled
    with LockLost (another process may hold the lock by then); the lock can be taken again."""
    database, other = Database(postgres_url), Database(postgres_url)
    inside = asyncio.Event()

    async def hold() -> None:
        async with database.exclusive("newsbot-sender-9", retry=0.1):
            inside.set()
            await asyncio.sleep(30)

    try:
        holding = asyncio.create_task(hold())
        await asyncio.wait_for(inside.wait(), 5)
        await cut_connections(database)
        with pytest.raises(LockLost):
            await asyncio.wait_for(holding, 5)
        async with asyncio.timeout(5), other.exclusive("newsbot-sender-9", retry=0.1):
            pass
    finally:
        await database.dispose()
        await other.dispose()


@pytest.mark.postgres
async def test_cancelling_a_lock_holder_still_cancels_it(postgres_url: str) -> None:
    """A cancellation from outside (a stop) is a cancellation, not a lost lock, and the lock
    is released."""
    database = Database(postgres_url)
    inside = asyncio.Event()

    async def hold() -> None:
        async with database.exclusive("newsbot-sender-10", retry=0.1):
            inside.set()
            await asyncio.sleep(30)

    try:
        holding = asyncio.create_task(hold())
        await asyncio.wait_for(inside.wait(), 5)
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
        async with asyncio.timeout(5), database.exclusive("newsbot-sender-10", retry=0.1):
            pass
    finally:
        await database.dispose()


async def test_the_sqlite_busy_timeout_comes_from_the_option_or_the_url(sqlite_url: str) -> None:
    """SQLite waits SQLITE_BUSY_TIMEOUT_MS for a lock, or the constructor's busy_timeout, or
    the URL's ?timeout= (seconds, as sqlite3's own)."""
    with_url = make_url(sqlite_url).update_query_dict({"timeout": "1.5"}).render_as_string(False)
    expected = {
        Database(sqlite_url): SQLITE_BUSY_TIMEOUT_MS,
        Database(sqlite_url, busy_timeout=0.25): 250,
        Database(with_url): 1500,
    }
    for database, milliseconds in expected.items():
        try:
            async with database.sessions() as session:
                assert await session.scalar(text("PRAGMA busy_timeout")) == milliseconds
        finally:
            await database.dispose()
