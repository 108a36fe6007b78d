"""Sends in doubt: few requests in flight when Telegram stops answering, a sender that
outlives a failing database, and the rows in doubt listed and resent on purpose."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.pacing import MIN_IN_FLIGHT, Pacer, Pacing
from bot.delivery.sender import Sender
from storage import deliveries
from storage.alerts import create_alert
from storage.chats import upsert_chat
from storage.db import Database
from storage.deliveries import Claimed
from storage.models import Chat, Delivery
from tests.fakebotapi import FakeBotAPI
from tests.outages import write_locked

CHATS = list(range(3001, 3061))
# Telegram stops answering for far longer than any test waits.
PARTITION = 60.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API that knows every chat."""
    async with FakeBotAPI(any_chat=True) as server:
        yield server


@asynccontextmanager
async def telegram(fake: FakeBotAPI, read_timeout: float) -> AsyncIterator[Bot]:
    """python-telegram-bot's Bot on the fake, giving up on an answer after ``read_timeout``."""
    request = HTTPXRequest(read_timeout=read_timeout, connection_pool_size=64)
    async with Bot(fake.token, base_url=fake.base_url, request=request) as bot:
        yield bot


def sending_with(bot: Bot) -> Callable[[Claimed], Awaitable[None]]:
    """A deliver function that sends the alert's number as the message."""

    async def deliver(row: Claimed) -> None:
        await bot.send_message(row.chat_id, f"عاجل {row.alert_id}")

    return deliver


async def fan_out(
    db: Database, chats: list[int], *, age: timedelta = timedelta(0), due_in: float = 0.0
) -> int:
    """Register the chats and write one alert for all of them (due ``due_in`` seconds on)."""
    async with db.transaction() as session:
        for chat_id in chats:
            await upsert_chat(session, chat_id, kind="private")
        alert_id, _ = await create_alert(session, chats, datetime.now(UTC) - age, text="خبر")
        if due_in:
            due = datetime.now(UTC) + timedelta(seconds=due_in)
            await session.execute(
                update(Delivery).where(Delivery.alert_id == alert_id).values(due_at=due)
            )
    return alert_id


async def states(db: Database) -> dict[int, str]:
    """Each delivery's state by delivery id."""
    async with db.sessions() as session:
        rows = await session.execute(select(Delivery.id, Delivery.state))
        return {row.id: row.state for row in rows}


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:  # noqa: ASYNC109 - a deadline naming what it waited for
    """Wait until ``condition()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def crash(task: asyncio.Task[None]) -> None:
    """End a sender as kill -9 would: at once, whatever is in flight."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- Telegram stops answering ---------------------------------------------------------------


async def test_when_telegram_stops_answering_few_requests_are_left_in_doubt(
    db: Database, fake: FakeBotAPI
) -> None:
    """With no answers coming back, the sender stops opening requests after a handful (not
    its whole second's budget of 30): a crash then leaves only those in doubt."""
    fake.delay("sendMessage", PARTITION)
    await fan_out(db, CHATS)
    async with telegram(fake, read_timeout=PARTITION) as bot:
        sender = Sender(db, sending_with(bot), pacing=Pacing(per_second=30))
        running = asyncio.create_task(sender.run())
        await fake.wait_for(lambda: fake.sent, what="the first request")
        await asyncio.sleep(2.0)  # two seconds' budget at 30 a second: 60 requests
        assert len(fake.sent) <= MIN_IN_FLIGHT, f"{len(fake.sent)} requests left unanswered"
        assert sender.in_flight == len(fake.sent)
        await crash(running)
    await Sender(db, sending_with(bot)).recover()  # as the next start does, if none did
    assert list((await states(db)).values()).count(deliveries.UNKNOWN) == len(fake.sent)


async def test_while_telegram_is_silent_only_a_probe_asks_until_it_answers_again(
    db: Database, fake: FakeBotAPI
) -> None:
    """Requests that timed out make Telegram 'silent': no alert leaves (each would be one
    more in doubt) until the probe (getMe) is answered; then every other row is sent."""
    await fan_out(db, CHATS)
    async with telegram(fake, read_timeout=0.3) as bot:
        fake.delay("sendMessage", PARTITION)
        fake.delay("getMe", PARTITION)
        sender = Sender(db, sending_with(bot), pacing=Pacing(per_second=30), probe=bot.get_me)
        running = asyncio.create_task(sender.run())
        # Bot() asked getMe once when it started; then the sender probed, and probed again.
        await fake.wait_for_call("getMe", 3, timeout=10)
        stuck = len(fake.sent)
        assert 1 <= stuck <= MIN_IN_FLIGHT
        fake.delay("sendMessage", 0)
        fake.delay("getMe", 0)

        async def all_done() -> bool:
            ended = {deliveries.SENT, deliveries.UNKNOWN}
            return set((await states(db)).values()) <= ended

        await eventually(all_done, "every row sent or in doubt", timeout=20)
        sender.stop()
        await running
    final = list((await states(db)).values())
    assert final.count(deliveries.UNKNOWN) == stuck
    assert final.count(deliveries.SENT) == len(CHATS) - stuck
    assert fake.sends_per_chat() == dict.fromkeys(CHATS, 1)  # the ones in doubt had arrived


async def test_no_more_requests_leave_than_the_latency_calls_for() -> None:
    """At 30 a second with quick answers only a handful are in flight at once: the next
    leaves when one is answered."""
    pacer = Pacer(Pacing(per_second=30))
    for chat in range(MIN_IN_FLIGHT):
        assert await pacer.acquire(chat, is_group=False)
        pacer.depart(chat)
    waiting = asyncio.create_task(pacer.acquire(99, is_group=False))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    pacer.release(0, is_group=False)
    assert await asyncio.wait_for(waiting, 1.0)


async def test_a_request_unanswered_far_longer_than_usual_holds_the_next() -> None:
    """One request waiting over a second for its answer (the usual is a tenth) stops the
    next from leaving until it ends; an end without an answer lets one at a time go."""
    pacer = Pacer(Pacing(per_second=30))
    assert await pacer.acquire(1, is_group=False)
    pacer.depart(1)
    await asyncio.sleep(1.1)
    waiting = asyncio.create_task(pacer.acquire(2, is_group=False))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    pacer.release(1, is_group=False, answered=False)  # it timed out: Telegram is silent
    assert await asyncio.wait_for(waiting, 1.0)
    pacer.depart(2)
    assert pacer.silent
    third = asyncio.create_task(pacer.acquire(3, is_group=False))
    await asyncio.sleep(0.3)
    assert not third.done()  # one probe at a time while silent
    pacer.release(2, is_group=False)  # answered: Telegram is back
    assert await asyncio.wait_for(third, 1.0)
    assert not pacer.silent


async def test_closing_the_pacer_frees_the_requests_waiting_for_their_turn() -> None:
    """A stopping sender's rows waiting for their turn get False at once, not a turn."""
    pacer = Pacer(Pacing(per_second=1))
    assert await pacer.acquire(1, is_group=False)
    waiting = asyncio.create_task(pacer.acquire(2, is_group=False))
    await asyncio.sleep(0.1)
    pacer.close()
    assert await asyncio.wait_for(waiting, 1.0) is False


# --- the database fails ---------------------------------------------------------------------


async def test_a_locked_database_delays_the_sender_but_never_ends_it(
    sqlite_url: str, fake: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """While another program holds the write lock past the busy timeout every pass fails;
    the sender keeps trying (one ERROR for the streak), and sends once the lock is gone."""
    db = Database(sqlite_url, busy_timeout=0.2)
    try:
        await fan_out(db, CHATS[:3], due_in=0.5)
        async with telegram(fake, read_timeout=5.0) as bot:
            sender = Sender(db, sending_with(bot))
            running = asyncio.create_task(sender.run())
            async with write_locked(Path(db.url.database or "")):
                await asyncio.sleep(2.0)  # the rows fell due; several passes failed
                assert not running.done()
                assert fake.sent == []
            await fake.wait_for(lambda: len(fake.sent) == 3, timeout=10, what="the 3 alerts")
            sender.stop()
            await running
        assert set((await states(db)).values()) == {deliveries.SENT}
    finally:
        await db.dispose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == [
        "the sender failed, retrying until it works"
    ]
    assert any("works again" in r.getMessage() for r in caplog.records)


# --- the operator and the rows in doubt -----------------------------------------------------


async def test_rows_in_doubt_are_listed_and_resent_only_when_asked(db: Database) -> None:
    """The rows in doubt are listed with their alert, chat and error; resending one alert's
    puts them back in the queue, leaving a stale alert's and a stopped chat's in doubt."""
    fresh = await fan_out(db, [4001, 4002, 4003])
    stale = await fan_out(db, [4001], age=timedelta(hours=3))
    async with db.transaction() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.chat_id != 4003)
            .values(state=deliveries.UNKNOWN, error="Timed out")
        )
        await session.execute(update(Chat).where(Chat.id == 4002).values(active=False))
    async with db.sessions() as session:
        listed = await deliveries.list_in_doubt(session)
        only_fresh = await deliveries.list_in_doubt(session, fresh)
    assert [(row.alert_id, row.chat_id, row.headline, row.error) for row in listed] == [
        (fresh, 4001, "خبر", "Timed out"),
        (fresh, 4002, "خبر", "Timed out"),
        (stale, 4001, "خبر", "Timed out"),
    ]
    assert [row.chat_id for row in only_fresh] == [4001, 4002]

    now = datetime.now(UTC)
    async with db.transaction() as session:
        resent = await deliveries.resend_in_doubt(
            session, now, created_since=now - timedelta(hours=2), alert_id=fresh
        )
    assert resent == deliveries.Resent(queued=1, stale=0, inactive=1)
    async with db.transaction() as session:
        everything = await deliveries.resend_in_doubt(
            session, now, created_since=now - timedelta(hours=2)
        )
    assert everything == deliveries.Resent(queued=0, stale=1, inactive=1)
    async with db.sessions() as session:
        rows = (
            await session.execute(select(Delivery.alert_id, Delivery.chat_id, Delivery.state))
        ).all()
    assert sorted(rows) == sorted(
        [
            (fresh, 4001, deliveries.PENDING),
            (fresh, 4002, deliveries.UNKNOWN),
            (fresh, 4003, deliveries.PENDING),
            (stale, 4001, deliveries.UNKNOWN),
        ]
    )
