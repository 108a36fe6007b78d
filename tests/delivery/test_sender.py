"""The outbox sender against a fake Bot API, through python-telegram-bot's real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.config import ConfigError, load_settings
from bot.delivery.deliver import AlertDelivery
from bot.delivery.pacing import Pacing
from bot.delivery.sender import Sender
from bot.text.topics import load_catalog
from storage import deliveries
from storage.alerts import create_alert
from storage.chats import migrate_chat, upsert_chat
from storage.db import Database
from storage.deliveries import Claimed
from storage.models import Chat, Delivery
from tests.fakebotapi import FakeBotAPI

PRIVATE = [101, 102, 103, 104, 105]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API that knows the test's chats."""
    async with FakeBotAPI(any_chat=True) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    """python-telegram-bot's Bot on the fake, with a short read timeout."""
    request = HTTPXRequest(read_timeout=0.5, connection_pool_size=64)
    async with Bot(fake.token, base_url=fake.base_url, request=request) as client:
        yield client


def sending_with(bot: Bot) -> Callable[[Claimed], Awaitable[None]]:
    """A deliver function that sends the alert's number as the message."""

    async def deliver(row: Claimed) -> None:
        await bot.send_message(row.chat_id, f"عاجل {row.alert_id}")

    return deliver


async def fan_out(
    db: Database, chats: list[int], *, kind: str = "private", age: timedelta = timedelta(0)
) -> int:
    """Register the chats and write one alert for all of them."""
    async with db.transaction() as session:
        for chat_id in chats:
            await upsert_chat(session, chat_id, kind=kind)
        alert_id, _ = await create_alert(session, chats, datetime.now(UTC) - age, text="خبر")
    return alert_id


async def states(db: Database) -> dict[int, str]:
    """Each delivery's state by chat."""
    async with db.sessions() as session:
        rows = await session.execute(select(Delivery.chat_id, Delivery.state))
        return {chat_id: state for chat_id, state in rows}  # noqa: C416 - rows are Row objects


async def drain(sender: Sender, db: Database, seconds: float = 10) -> None:
    """Run the sender until nothing is pending."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await sender.send_due()
        if "pending" not in (await states(db)).values():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still pending: {await states(db)}")


async def test_every_chat_gets_the_alert_once(db: Database, fake: FakeBotAPI, bot: Bot) -> None:
    """A fan-out reaches every chat exactly once and every row is marked sent."""
    alert_id = await fan_out(db, PRIVATE)
    sender = Sender(db, sending_with(bot))
    await drain(sender, db)
    assert {chat: len(fake.texts_to(chat)) for chat in PRIVATE} == dict.fromkeys(PRIVATE, 1)
    assert fake.texts_to(PRIVATE[0]) == [f"عاجل {alert_id}"]
    assert set((await states(db)).values()) == {"sent"}


async def test_a_blocked_reader_is_deactivated_while_the_others_receive(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """403 deactivates that chat and drops its pending rows; everyone else is served."""
    fake.block(PRIVATE[1])
    await fan_out(db, PRIVATE)
    await fan_out(db, PRIVATE)  # a second alert: the blocked chat's copy must be dropped too
    await drain(Sender(db, sending_with(bot)), db)
    async with db.sessions() as session:
        blocked = await session.get(Chat, PRIVATE[1])
        assert blocked is not None and not blocked.active
        rows = (await session.execute(select(Delivery.chat_id, Delivery.state))).all()
    assert {state for chat, state in rows if chat == PRIVATE[1]} == {"dropped"}
    assert {state for chat, state in rows if chat != PRIVATE[1]} == {"sent"}
    assert all(len(fake.texts_to(chat)) == 2 for chat in PRIVATE if chat != PRIVATE[1])


async def test_429_pauses_and_retries_the_same_row_without_duplicates(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """A 429 holds sending for retry_after and the same row then goes out exactly once."""
    fake.fail_next("sendMessage", 429, retry_after=1, chat_id=PRIVATE[2])
    await fan_out(db, PRIVATE)
    started = asyncio.get_running_loop().time()
    await drain(Sender(db, sending_with(bot)), db)
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert len(fake.texts_to(PRIVATE[2])) == 1
    assert set((await states(db)).values()) == {"sent"}


async def test_a_read_timeout_is_never_resent(db: Database, fake: FakeBotAPI, bot: Bot) -> None:
    """A reply that comes too late may mean delivered: the row is 'unknown', not resent."""
    fake.delay("sendMessage", 1.5, times=1)
    await fan_out(db, [PRIVATE[0]])
    sender = Sender(db, sending_with(bot))
    await sender.send_due()
    await asyncio.sleep(1.5)
    await sender.send_due()
    assert (await states(db)) == {PRIVATE[0]: "unknown"}
    assert len(fake.texts_to(PRIVATE[0])) == 1  # Telegram has it once, and only once


async def test_a_request_that_never_left_is_retried_later(db: Database) -> None:
    """A refused connection proves nothing was sent: the row waits and is tried again."""
    # Not initialised: that would ask the unreachable server who the bot is.
    unreachable = Bot("123456:TEST-TOKEN", base_url="http://127.0.0.1:9/bot")
    await fan_out(db, [PRIVATE[0]])
    await Sender(db, sending_with(unreachable)).send_due()
    await unreachable.shutdown()
    async with db.sessions() as session:
        row = (await session.scalars(select(Delivery))).one()
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.due_at > datetime.now(UTC)


async def test_a_migrated_group_gets_the_alert_at_its_new_id(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """A group that became a supergroup is followed to its new id, keeping its rows."""
    fake.add_chat(-500, chat_type="group", title="غرفة الأخبار")
    new_id = fake.migrate_group(-500, notify=False)
    await fan_out(db, [-500], kind="group")
    await drain(Sender(db, sending_with(bot)), db)
    assert len(fake.texts_to(new_id)) == 1
    async with db.sessions() as session:
        assert await session.get(Chat, -500) is None
        assert await session.get(Chat, new_id) is not None
    assert (await states(db)) == {new_id: "sent"}


async def test_a_group_merged_into_a_known_supergroup_leaves_no_row_behind(db: Database) -> None:
    """Deliveries name their chat without a foreign key: when the supergroup is already
    known, the old group's rows move to it, but for an alert it already has, and none is
    left under the old id."""
    both = await fan_out(db, [-600, -700], kind="group")
    only_old = await fan_out(db, [-600], kind="group")
    async with db.transaction() as session:
        await migrate_chat(session, -600, -700)
    async with db.sessions() as session:
        rows = (await session.execute(select(Delivery.alert_id, Delivery.chat_id))).all()
        assert await session.get(Chat, -600) is None
    assert sorted(rows) == [(both, -700), (only_old, -700)]


async def test_stale_deliveries_are_dropped(db: Database, fake: FakeBotAPI, bot: Bot) -> None:
    """An alert older than the stale age is not pushed any more."""
    await fan_out(db, PRIVATE[:2], age=timedelta(hours=3))
    await Sender(db, sending_with(bot), stale_after=timedelta(hours=2)).send_due()
    assert set((await states(db)).values()) == {"dropped"}
    assert fake.sent == []


async def test_rows_in_flight_at_a_crash_are_not_sent_again(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """After a crash, a row whose request had left becomes 'unknown'; rows the dead sender
    had claimed but not begun are sent like the pending ones."""
    await fan_out(db, PRIVATE[:4])
    async with db.transaction() as session:  # a sender claimed two rows, began one, died
        in_flight, waiting = await deliveries.claim_due(session, datetime.now(UTC), 2)
        await deliveries.mark_sending(session, [in_flight.id])
    sender = Sender(db, sending_with(bot))
    assert await sender.recover() == 1
    await drain(sender, db)
    final = await states(db)
    assert final[in_flight.chat_id] == "unknown" and fake.texts_to(in_flight.chat_id) == []
    assert final[waiting.chat_id] == "sent" and len(fake.texts_to(waiting.chat_id)) == 1
    assert sorted(final.values()) == ["sent", "sent", "sent", "unknown"]


async def test_pacing_keeps_under_the_limit_without_a_single_429(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """With Telegram's limits enforced, 45 chats at 15 a second draw no 429 at all."""
    fake.rate_limit(per_second=15, per_chat_per_second=1)
    chats = list(range(1000, 1045))
    await fan_out(db, chats)
    await drain(Sender(db, sending_with(bot), pacing=Pacing(per_second=15)), db)
    assert fake.too_many == []
    assert fake.max_per_second() <= 15
    assert all(len(fake.texts_to(chat)) == 1 for chat in chats)


async def test_paid_broadcasts_go_past_the_free_rate_without_a_429(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """With paid broadcasts every alert carries allow_paid_broadcast, and 200 chats go at
    100 a second with Telegram's free 30 a second enforced, without a single 429."""
    fake.rate_limit(per_second=30, per_chat_per_second=1)
    chats = list(range(2000, 2200))
    await fan_out(db, chats)
    deliver = AlertDelivery(
        bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=load_catalog(), paid=True
    )
    sender = Sender(db, deliver, pacing=Pacing(per_second=100))
    await drain(sender, db)
    assert fake.too_many == []
    assert fake.max_per_second() > 30
    assert all(message.params.get("allow_paid_broadcast") for message in fake.sent)
    assert fake.sends_per_chat() == dict.fromkeys(chats, 1)
    assert sender.stats.sent == len(chats)


async def test_without_paid_broadcasts_the_free_rate_is_what_telegram_allows(
    db: Database, fake: FakeBotAPI, bot: Bot
) -> None:
    """An alert without allow_paid_broadcast above 30 a second draws a 429 (which the
    sender counts and retries): the fake holds the line the paid flag lifts."""
    fake.rate_limit(per_second=30, per_chat_per_second=1)
    chats = list(range(3000, 3100))
    await fan_out(db, chats)
    deliver = AlertDelivery(bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=load_catalog())
    sender = Sender(db, deliver, pacing=Pacing(per_second=100))
    await drain(sender, db, seconds=30)
    assert fake.too_many and sender.stats.rate_limited > 0
    assert not any("allow_paid_broadcast" in message.params for message in fake.sent)
    assert fake.sends_per_chat() == dict.fromkeys(chats, 1)


def test_a_rate_above_the_free_one_needs_paid_broadcasts() -> None:
    """NEWSBOT_SEND_RATE above 30 without NEWSBOT_PAID_BROADCASTS stops at start with one
    line naming both; with it, up to 1,000 a second is accepted."""
    with pytest.raises(ConfigError) as refused:
        load_settings(send_rate=100)
    message = str(refused.value)
    assert "NEWSBOT_PAID_BROADCASTS" in message and "NEWSBOT_SEND_RATE" in message
    assert len(message.splitlines()) == 1
    assert load_settings(send_rate=1000, paid_broadcasts=True).send_rate == 1000
    assert load_settings(send_rate=30).send_rate == 30
