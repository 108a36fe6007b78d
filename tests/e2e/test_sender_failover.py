"""End to end on PostgreSQL: two `newsbot run` processes share one bot and one database.
Only one sends; when it dies (kill -9) or loses its lock's connection, the other takes over
within seconds, nobody gets an alert twice, and only requests truly in flight are in doubt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot.delivery.pacing import MIN_IN_FLIGHT
from storage.alerts import create_alert
from storage.db import Database, lock_key
from storage.deliveries import SENT, UNKNOWN
from storage.models import Delivery
from tests.fakebotapi import FakeBotAPI
from tests.outages import cut_connections
from tests.processes import (
    BotProcess,
    bot_env,
    deliveries_in,
    outbox_empty,
    seed_followers,
    wait_until,
)

pytestmark = pytest.mark.postgres

READERS = list(range(70001, 70301))  # a fan-out of 300 chats: ten seconds at 30 a second
RATE = 30


async def sender_backend(db: Database, bot_id: int) -> int | None:
    """The server process (backend pid) whose session holds the bot's sender lock."""
    key = lock_key(f"newsbot-sender-{bot_id}") & 0xFFFFFFFFFFFFFFFF
    async with db.sessions() as session:
        return await session.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "objsubid = 1 AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid)"
            ),
            {"high": key >> 32, "low": key & 0xFFFFFFFF},
        )


async def senders(db: Database) -> set[int]:
    """The OS pids of the processes that claimed the rows sent so far (holder host:pid:…)."""
    async with db.sessions() as session:
        holders = await session.scalars(
            select(Delivery.claimed_by).where(Delivery.state == SENT).distinct()
        )
        return {int(holder.split(":")[-2]) for holder in holders if holder}


async def sent_by(db: Database) -> list[tuple[int, datetime]]:
    """For each row sent: the OS pid of the process that sent it, and when."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(Delivery.claimed_by, Delivery.sent_at).where(Delivery.state == SENT)
        )
        return [
            (int(holder.split(":")[-2]), at)
            for holder, at in rows
            if holder is not None and at is not None
        ]


async def two_processes(fake: FakeBotAPI, db: Database, tmp_path: Path) -> list[BotProcess]:
    """Two `newsbot run` on one database; the first started alone, so it holds the sender."""
    url = db.url.render_as_string(hide_password=False)
    bots = []
    for name in ("first", "second"):
        directory = tmp_path / name
        directory.mkdir()
        bots.append(BotProcess(fake, bot_env(fake, url, send_rate=RATE), directory))
    await bots[0].spawn()

    async def sending() -> bool:
        return await sender_backend(db, fake.bot_id) is not None

    await wait_until(sending, timeout=30, what="the first process to hold the sender")
    await bots[1].spawn()

    async def second_up() -> bool:  # said so once its sender task started (and waits)
        return "running as @" in bots[1].stderr

    await wait_until(second_up, timeout=30, what="the second process to stand by")
    return bots


async def fan_out(db: Database) -> None:
    """Readers following a topic, and an editor's alert to all of them."""
    await seed_followers(db, READERS, "روسيا")
    async with db.transaction() as session:
        await create_alert(session, READERS, datetime.now(UTC), text="روسيا تعلن هدنة")


async def settled_once_each(fake: FakeBotAPI, db: Database) -> set[int]:
    """Wait until every delivery is sent or in doubt; assert nobody got the alert twice and
    every sent row arrived; return the chats in doubt."""

    async def accounted() -> bool:
        return await outbox_empty(db) and len(await deliveries_in(db, SENT, UNKNOWN)) == len(
            READERS
        )

    await wait_until(accounted, timeout=60, what="every delivery sent or in doubt")
    received = fake.sends_per_chat()
    assert max(received[chat] for chat in READERS) == 1, "a reader got the alert twice"
    sent = set(await deliveries_in(db, SENT))
    assert all(received[chat] == 1 for chat in sent)
    return set(await deliveries_in(db, UNKNOWN))


async def test_kill_9_of_the_sender_the_other_resumes_within_seconds_nothing_twice(
    fake_api: FakeBotAPI, pg_db: Database, tmp_path: Path
) -> None:
    """Mid-fan-out the process holding the sender is killed with -9: the other process
    sends the rest within 10 s, no reader gets the alert twice, and only the handful of
    requests in flight at the kill are in doubt."""
    bots = await two_processes(fake_api, pg_db, tmp_path)
    first, second = bots
    try:
        await fan_out(pg_db)
        await fake_api.wait_for(lambda: len(fake_api.sent) >= 60, 30, "the fan-out under way")
        assert first.process is not None and await senders(pg_db) == {first.process.pid}
        await first.kill()
        at_kill = len(fake_api.sent)
        await fake_api.wait_for(
            lambda: len(fake_api.sent) > at_kill, 10, "alerts from the other process"
        )
        in_doubt = await settled_once_each(fake_api, pg_db)
        assert second.process is not None
        assert second.process.pid in await senders(pg_db)
        assert len(in_doubt) <= MIN_IN_FLIGHT
        await second.stop_cleanly()
    finally:
        for bot in bots:
            if bot.running:
                await bot.kill()


async def test_a_sender_whose_lock_connection_is_cut_stops_and_the_other_takes_over(
    fake_api: FakeBotAPI, pg_db: Database, tmp_path: Path
) -> None:
    """Mid-fan-out the server ends the session holding the sender lock: that process stops
    sending at once (it may no longer be the only sender), the other takes the lock and
    sends the rest, and nobody gets the alert twice."""
    bots = await two_processes(fake_api, pg_db, tmp_path)
    first, second = bots
    try:
        await fan_out(pg_db)
        await fake_api.wait_for(lambda: len(fake_api.sent) >= 60, 30, "the fan-out under way")
        backend = await sender_backend(pg_db, fake_api.bot_id)
        assert backend is not None
        assert await cut_connections(pg_db, pid=backend) == 1
        in_doubt = await settled_once_each(fake_api, pg_db)
        assert first.process is not None and second.process is not None
        assert await senders(pg_db) == {first.process.pid, second.process.pid}
        assert len(in_doubt) <= MIN_IN_FLIGHT
        # Never two senders: once the other sent its first, the cut one recorded at most
        # the answers to the requests it had in flight.
        sent = await sent_by(pg_db)
        taken_over = min(at for pid, at in sent if pid == second.process.pid)
        late = [at for pid, at in sent if pid == first.process.pid and at > taken_over]
        assert len(late) <= MIN_IN_FLIGHT
        for bot in bots:
            await bot.terminate()
    finally:
        for bot in bots:
            if bot.running:
                await bot.kill()
