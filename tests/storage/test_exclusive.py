"""One sender per bot: a named lock across processes (a PostgreSQL advisory lock) on a
connection of its own; claims that carry their holder, and recovery that takes back only the
rows of a sender that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from storage import deliveries
from storage.alerts import create_alert
from storage.chats import upsert_chat
from storage.db import Database
from storage.models import Base, Delivery


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


@pytest.mark.postgres
async def test_the_lock_lives_on_a_connection_outside_the_pool(postgres_url: str) -> None:
    """While held, the lock's connection is none of the pool's (no pre-ping, recycle or
    checkout can swap it), and the pool's own connections stay free for queries."""
    database = Database(postgres_url)
    try:
        async with database.exclusive("newsbot-sender-3"):
            assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            async with database.sessions() as session:
                holders = await session.scalar(text(_HOLDERS), {"me": True})
            assert holders == 1
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_recovery_spares_a_live_senders_rows_and_takes_a_dead_ones(
    postgres_url: str,
) -> None:
    """Two processes: while the first sender's liveness lock is held, the second's recovery
    leaves its claimed and in-flight rows alone; once its connection is gone (the process
    died) they are taken back: in flight → unknown, claimed → pending."""
    first, second = Database(postgres_url), Database(postgres_url)
    alive, release = asyncio.Event(), asyncio.Event()

    async def live() -> None:
        async with first.exclusive(deliveries.liveness_lock("first")):
            alive.set()
            await release.wait()

    try:
        ids = await _fan_out(first, range(8801, 8805))
        living = asyncio.create_task(live())
        await asyncio.wait_for(alive.wait(), 5)
        async with first.transaction() as session:
            claimed = await deliveries.claim_due(session, datetime.now(UTC), 10, "first")
            assert await deliveries.mark_sending(session, ids[:2], "first") == set(ids[:2])
        assert len(claimed) == 4
        async with second.transaction() as session:
            assert await deliveries.recover_in_flight(session, "second") == 0
        assert await _states(second) == {
            ids[0]: "sending",
            ids[1]: "sending",
            ids[2]: "claimed",
            ids[3]: "claimed",
        }
        release.set()  # the first process dies: its session, and its lock, end
        await living
        async with second.transaction() as session:
            assert await deliveries.recover_in_flight(session, "second") == 2
        assert await _states(second) == {
            ids[0]: "unknown",
            ids[1]: "unknown",
            ids[2]: "pending",
            ids[3]: "pending",
        }
    finally:
        await _empty(first)
        await first.dispose()
        await second.dispose()


@pytest.mark.postgres
async def test_a_row_taken_back_never_leaves_from_its_old_claimer(postgres_url: str) -> None:
    """A row recovery put back in the queue and another sender claimed is not marked as
    leaving by the sender that claimed it first: that one does not send it."""
    database = Database(postgres_url)
    try:
        ids = await _fan_out(database, [8811])
        async with database.transaction() as session:
            await deliveries.claim_due(session, datetime.now(UTC), 10, "old")
        async with database.transaction() as session:
            await deliveries.recover_in_flight(session, "new")  # "old" holds no liveness lock
            await deliveries.claim_due(session, datetime.now(UTC), 10, "new")
        async with database.transaction() as session:
            assert await deliveries.mark_sending(session, ids, "old") == set()
            await deliveries.retry_later(
                session, ids[0], datetime.now(UTC), attempted=False, holder="old"
            )
            assert await deliveries.mark_sending(session, ids, "new") == set(ids)
        assert await _states(database) == {ids[0]: "sending"}
    finally:
        await _empty(database)
        await database.dispose()


_HOLDERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
    "database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND (pid = pg_backend_pid()) <> :me"
)


async def _fan_out(database: Database, chats: Iterable[int]) -> list[int]:
    """Private chats and one alert for them; the delivery ids, in chat order."""
    chat_ids = list(chats)
    async with database.transaction() as session:
        for chat_id in chat_ids:
            await upsert_chat(session, chat_id, kind="private")
        await create_alert(session, chat_ids, datetime.now(UTC), text="خبر")
    async with database.sessions() as session:
        rows = await session.scalars(select(Delivery.id).order_by(Delivery.chat_id))
        return list(rows)


async def _states(database: Database) -> dict[int, str]:
    async with database.sessions() as session:
        rows = await session.execute(select(Delivery.id, Delivery.state))
        return {row.id: row.state for row in rows}


async def _empty(database: Database) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
