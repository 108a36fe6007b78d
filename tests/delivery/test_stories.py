"""One push per story: the fan-out reaches a chat once per story, a confirmation by another
outlet edits the messages already sent (paced, coalesced, crash-safe), and a development
goes as a silent reply to each reader's first message of the story."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.deliver import AlertDelivery
from bot.delivery.fanout import Fanout, Topics
from bot.delivery.pacing import Pacing
from bot.delivery.sender import Sender
from bot.text.topics import ResolvedTopic, load_catalog, resolve
from storage import deliveries
from storage.alerts import DEVELOPMENT, fan_out, mark_story_edits
from storage.chats import upsert_chat
from storage.db import Database
from storage.models import Alert, Article, Delivery, Feed, Story
from tests.fakebotapi import FakeBotAPI, most_within

CATALOG = load_catalog()
OUTLETS = ("الجزيرة نت", "روسيا اليوم", "سكاي نيوز عربية")


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def topic(phrase: str) -> ResolvedTopic:
    """A reader's phrase resolved as /follow resolves it."""
    found = resolve(phrase, CATALOG)
    assert isinstance(found, ResolvedTopic)
    return found


@pytest.fixture
async def topics() -> Topics:
    """The followed topics, empty."""
    return Topics(CATALOG)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API that knows every chat."""
    async with FakeBotAPI(any_chat=True) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    """python-telegram-bot's Bot on the fake."""
    request = HTTPXRequest(read_timeout=2, connection_pool_size=64)
    async with Bot(fake.token, base_url=fake.base_url, request=request) as client:
        yield client


async def follow(db: Database, topics: Topics, chat_id: int, *phrases: str) -> None:
    """A private chat follows topics, as /follow does."""
    async with db.transaction() as session:
        await upsert_chat(session, chat_id, kind="private")
        for phrase in phrases:
            await topics.follow(session, chat_id, topic(phrase))


async def add_feeds(db: Database) -> list[int]:
    """Three outlets."""
    async with db.transaction() as session:
        feeds = [
            Feed(url=f"https://outlet{n}.example/rss", name=name) for n, name in enumerate(OUTLETS)
        ]
        session.add_all(feeds)
        await session.flush()
        return [feed.id for feed in feeds]


async def new_story(db: Database) -> int:
    """A story row, as the ingest side makes one (set here by hand)."""
    async with db.transaction() as session:
        story = Story(first_seen_at=now(), last_seen_at=now())
        session.add(story)
        await session.flush()
        return story.id


async def store(
    db: Database,
    fanout: Fanout,
    feed_id: int,
    story_id: int | None,
    title: str,
    *,
    breaking: bool = True,
) -> int:
    """Store an article of a story and hand it to the fan-out in the same transaction, as
    ingestion does; its id."""
    async with db.transaction() as session:
        article = Article(
            uid=f"{feed_id}-{title}",
            feed_id=feed_id,
            link=f"https://outlet{feed_id}.example/{abs(hash(title))}",
            title=title,
            summary="",
            published_at=now(),
            alertable=True,
            breaking=breaking,
            story_id=story_id,
        )
        session.add(article)
        await session.flush()
        await fanout.alert_articles(session, [article.id], now())
        return article.id


async def outlets_and_story(db: Database) -> tuple[list[int], int]:
    """Three outlets and a story for their articles."""
    return await add_feeds(db), await new_story(db)


async def follow_each(db: Database, topics: Topics, chats: list[int], *phrases: str) -> None:
    """Each of these private chats follows the topics."""
    for chat_id in chats:
        await follow(db, topics, chat_id, *phrases)


async def per_chat(db: Database) -> dict[int, int]:
    """Deliveries written, by chat."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(Delivery.chat_id, func.count()).group_by(Delivery.chat_id)
        )
        return {chat: int(count) for chat, count in rows}


async def due_edits(db: Database) -> int:
    """Messages waiting for an edit."""
    async with db.sessions() as session:
        query = select(func.count()).where(Delivery.edit_due_at.is_not(None))
        return int(await session.scalar(query) or 0)


def delivery(bot: Bot, db: Database) -> AlertDelivery:
    """The real delivery, rendering in UTC."""
    return AlertDelivery(bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=CATALOG)


def sender(bot: Bot, db: Database) -> Sender:
    """The real sender, with the edit pass."""
    deliver = delivery(bot, db)
    return Sender(db, deliver, edit=deliver.edit)


async def settle(send: Sender, db: Database, seconds: float = 15) -> None:
    """Send and edit until nothing is pending and no edit is due."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await send.send_due() == 0:
            await send.edit_due()
        async with db.sessions() as session:
            pending = await session.scalar(
                select(func.count()).where(Delivery.state.in_(("pending", "claimed")))
            )
        if not pending and not await due_edits(db):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not settle")


async def test_three_outlets_push_once_per_chat_and_a_new_topic_reaches_its_chat_once(
    db: Database, topics: Topics
) -> None:
    """Three outlets report one story: a follower gets one delivery, not three; a chat that
    follows a topic only a later article matched gets that one push; a lookalike story
    elsewhere is a push of its own."""
    await follow(db, topics, 1, "سوريا")
    await follow(db, topics, 2, "سوريا", "تركيا")
    await follow(db, topics, 3, "تركيا")
    fanout = Fanout(topics)
    (first, second, third), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await store(db, fanout, second, story, "عاجل: انفجار يهز إدلب في سوريا")
    await store(db, fanout, third, story, "عاجل | انفجار إدلب السورية قرب الحدود مع تركيا")
    assert await per_chat(db) == {1: 1, 2: 1, 3: 1}
    async with db.sessions() as session:
        alerts = (await session.execute(select(Alert.story_id, Alert.kind))).all()
    assert [tuple(row) for row in alerts] == [(story, "alert")] * 3

    elsewhere = await new_story(db)
    await store(db, fanout, first, elsewhere, "عاجل: انفجار في حلب السورية")
    assert await per_chat(db) == {1: 2, 2: 2, 3: 1}


async def test_an_article_without_a_story_alerts_as_before(db: Database, topics: Topics) -> None:
    """Old archives (no story) alert every follower of every breaking article, as before."""
    await follow(db, topics, 1, "سوريا")
    fanout = Fanout(topics)
    first, second, _ = await add_feeds(db)
    await store(db, fanout, first, None, "عاجل: انفجار في إدلب السورية")
    await store(db, fanout, second, None, "عاجل: انفجار يهز إدلب في سوريا")
    assert await per_chat(db) == {1: 2}


async def test_a_development_goes_to_the_storys_readers(db: Database, topics: Topics) -> None:
    """A later article that adds a toll becomes a development, for every chat the story
    reached; a chat that follows none of its topics is left out."""
    await follow(db, topics, 1, "سوريا")
    await follow(db, topics, 2, "إدلب")
    await follow(db, topics, 3, "روسيا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: مقتل 5 في انفجار بإدلب السورية")
    await store(db, fanout, second, story, "عاجل: ارتفاع حصيلة قتلى انفجار إدلب إلى 12")
    async with db.sessions() as session:
        kinds = (await session.scalars(select(Alert.kind).order_by(Alert.id))).all()
    assert kinds == ["alert", DEVELOPMENT]
    assert await per_chat(db) == {1: 2, 2: 2}


async def test_a_confirmation_marks_only_messages_that_left_and_honours_the_limits(
    db: Database, topics: Topics
) -> None:
    """Another outlet's article marks the story's sent messages for one edit each; rows
    not sent yet are not marked; the same outlet again marks nothing; a story older than
    the limit, or one that reached more chats than the limit, is not edited."""
    for chat in (1, 2, 3):
        await follow(db, topics, chat, "سوريا")
    fanout = Fanout(topics, edit_most=3)
    (first, second, _), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    async with db.transaction() as session:
        await session.execute(
            update(Delivery).where(Delivery.chat_id != 3).values(state="sent", message_id=7)
        )
    await store(db, fanout, second, story, "انفجار يهز إدلب في سوريا", breaking=False)
    assert await due_edits(db) == 2
    async with db.transaction() as session:
        await session.execute(update(Delivery).values(edit_due_at=None))
    await store(db, fanout, first, story, "انفجار إدلب: صور من المكان", breaking=False)
    assert await due_edits(db) == 0

    async with db.transaction() as session:  # the limits, checked directly
        later = now()
        assert await mark_story_edits(session, story, later, pushed_since=later, most=9) == 0
        past = later - timedelta(hours=1)
        assert await mark_story_edits(session, story, later, pushed_since=past, most=2) == 0
        assert await mark_story_edits(session, story, later, pushed_since=past, most=3) == 2


async def test_two_confirmations_make_one_edit_naming_both_outlets(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """Pushed by one outlet and confirmed by two more, each reader's message is edited
    (silently, once per message however many confirmations) to name the two others,
    with links, and nobody gets a second push."""
    readers = [11, 12, 13]
    await follow_each(db, topics, readers, "سوريا")
    fanout = Fanout(topics)
    (first, second, third), story = await outlets_and_story(db)
    send = sender(bot, db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await settle(send, db)
    await store(db, fanout, second, story, "عاجل: انفجار يهز إدلب في سوريا")
    await store(db, fanout, third, story, "انفجار قوي في مدينة إدلب", breaking=False)
    assert await due_edits(db) == len(readers)
    await settle(send, db)
    assert len(fake.sent) == len(readers)
    assert sorted(edit.chat_id for edit in fake.edits if edit.chat_id) == readers
    for chat in readers:
        (message,) = fake.messages_to(chat)
        now_says = fake.message(chat, message.message_id)
        assert "أكّدته أيضًا: روسيا اليوم، سكاي نيوز عربية" in now_says["text"]
        links = [e["url"] for e in now_says["entities"] if e["type"] == "text_link"]
        assert f"https://outlet{second}.example" in " ".join(links)
    assert send.stats.edited == len(readers)


async def test_an_edit_cut_by_a_crash_is_made_again_and_none_is_lost_or_doubled(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """A sender stopped while its edits are in flight (Telegram made them) leaves them due;
    the next sender makes them again, Telegram answers «message is not modified», and
    they end quietly: every message names the confirmation, none is edited twice into
    something else, no alert is sent twice."""
    readers = [21, 22, 23, 24]
    await follow_each(db, topics, readers, "سوريا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    await settle(sender(bot, db), db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await settle(sender(bot, db), db)
    await store(db, fanout, second, story, "انفجار يهز إدلب في سوريا", breaking=False)

    fake.delay("editMessageText", 30)  # carried out at once, answered never (the crash)
    crashed = sender(bot, db)
    editing = asyncio.create_task(crashed.edit_due())
    await fake.wait_for(lambda: len(fake.edits) == len(readers), what="the edits to be made")
    editing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await editing
    fake.delay("editMessageText", 0)
    assert await due_edits(db) == len(readers)  # nothing recorded: all still due

    restarted = sender(bot, db)
    await settle(restarted, db)
    assert await due_edits(db) == 0
    assert len(fake.edits) == len(readers)  # the second round changed nothing
    assert restarted.stats.edited == len(readers) and restarted.stats.edit_failed == 0
    assert len(fake.sent) == len(readers)
    for chat in readers:
        (message,) = fake.messages_to(chat)
        assert "روسيا اليوم" in fake.message(chat, message.message_id)["text"]


async def test_a_confirmation_during_an_edit_keeps_the_message_due(
    db: Database, topics: Topics
) -> None:
    """An edit clears its mark only if no confirmation came while it was in flight: the
    later confirmation is never lost."""
    await follow(db, topics, 1, "سوريا")
    fanout = Fanout(topics)
    (first, second, third), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    async with db.transaction() as session:
        await session.execute(update(Delivery).values(state="sent", message_id=5))
    await store(db, fanout, second, story, "انفجار يهز إدلب", breaking=False)
    async with db.transaction() as session:
        (claimed,) = await deliveries.claim_edits(
            session, now(), 10, pushed_since=now() - timedelta(hours=1)
        )
    await asyncio.sleep(0.01)
    await store(db, fanout, third, story, "انفجار قوي في إدلب", breaking=False)
    async with db.transaction() as session:
        assert not await deliveries.finish_edit(session, claimed)
    assert await due_edits(db) == 1


async def test_a_development_is_a_silent_reply_and_a_missing_message_ends_an_edit_quietly(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """A development reaches each reader as a silent reply to their first alert of the
    story; an edit of a message the reader deleted ends quietly, counted as failed."""
    readers = [31, 32]
    await follow_each(db, topics, readers, "سوريا")
    fanout = Fanout(topics)
    (first, second, third), story = await outlets_and_story(db)
    send = sender(bot, db)
    await store(db, fanout, first, story, "عاجل: مقتل 5 في انفجار بإدلب السورية")
    await settle(send, db)
    await store(db, fanout, second, story, "عاجل: ارتفاع حصيلة قتلى انفجار إدلب إلى 12")
    await settle(send, db)
    for chat in readers:
        pushed, reply = fake.messages_to(chat)
        assert reply.reply_to_message_id == pushed.message_id
        assert reply.disable_notification and not pushed.disable_notification
        assert reply.plain.startswith("تحديث") and "12" in reply.plain

    # The development's outlet confirmed the story too: both pushes name it.
    assert sorted(edit.chat_id for edit in fake.edits if edit.chat_id) == readers
    before = len(fake.edits)
    await bot.delete_message(readers[0], fake.messages_to(readers[0])[0].message_id)
    await store(db, fanout, third, story, "انفجار في إدلب السورية", breaking=False)
    await settle(send, db)
    assert send.stats.edit_failed == 1
    assert [edit.chat_id for edit in fake.edits[before:]] == [readers[1]]


async def test_new_alerts_go_before_due_edits(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """With an edit due and a new alert waiting, the sender sends the alert first."""
    await follow(db, topics, 41, "سوريا")
    await follow(db, topics, 42, "مصر")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    send = sender(bot, db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await settle(send, db)
    await store(db, fanout, second, story, "انفجار يهز إدلب", breaking=False)
    await store(db, fanout, second, await new_story(db), "عاجل: زلزال في القاهرة بمصر")
    await settle(send, db)
    (alert,) = fake.messages_to(42)
    (edit,) = fake.edits
    assert alert.at < edit.at


async def test_edits_and_sends_share_telegrams_limits_without_a_429(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """With Telegram's limits enforced on sends and edits alike, a story pushed to a dozen
    readers and confirmed (every message edited) draws no 429: edits count against the
    overall rate and each chat's own, like sends."""
    fake.rate_limit(per_second=5, per_chat_per_second=1, edits=True)
    readers = list(range(51, 63))
    await follow_each(db, topics, readers, "سوريا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    deliver = delivery(bot, db)
    send = Sender(db, deliver, edit=deliver.edit, pacing=Pacing(per_second=5))
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await settle(send, db)
    await store(db, fanout, second, story, "انفجار يهز إدلب في سوريا", breaking=False)
    await settle(send, db, seconds=30)
    assert fake.too_many == []
    assert sorted(edit.chat_id for edit in fake.edits if edit.chat_id) == readers
    moments = sorted([m.at for m in fake.sent] + [e.at for e in fake.edits])
    assert most_within(moments, 1.0) <= 5


async def test_edits_of_an_old_story_or_a_stopped_chat_are_dropped(
    db: Database, topics: Topics
) -> None:
    """An edit still due once its story is older than the limit, or for a chat that no
    longer receives alerts, is dropped rather than made."""
    for chat in (1, 2):
        await follow(db, topics, chat, "سوريا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    async with db.transaction() as session:
        await session.execute(update(Delivery).values(state="sent", message_id=3))
    await store(db, fanout, second, story, "انفجار يهز إدلب", breaking=False)
    async with db.transaction() as session:
        await deliveries.deactivate_chat(session, 2, "blocked")
        recent = now() - timedelta(hours=1)
        (due,) = await deliveries.claim_edits(session, now(), 10, pushed_since=recent)
        assert due.chat_id == 1
        assert await deliveries.claim_edits(session, now(), 10, pushed_since=now()) == []
    assert await due_edits(db) == 0


async def test_a_429_on_an_edit_pauses_and_the_edit_is_made_once_later(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """Telegram answering an edit with 429 holds everything for retry_after; the edit is
    then made, once."""
    await follow(db, topics, 61, "سوريا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    send = sender(bot, db)
    await store(db, fanout, first, story, "عاجل: انفجار في إدلب السورية")
    await settle(send, db)
    fake.fail_next("editMessageText", 429, retry_after=1)
    await store(db, fanout, second, story, "انفجار يهز إدلب في سوريا", breaking=False)
    await settle(send, db)
    assert send.stats.rate_limited == 1 and send.stats.edited == 1
    (edit,) = fake.edits
    assert edit.chat_id == 61 and edit.plain is not None and "روسيا اليوم" in edit.plain


async def test_a_development_waits_for_the_push_it_replies_to(
    db: Database, topics: Topics, fake: FakeBotAPI, bot: Bot
) -> None:
    """A development due before the story's push to the same chat has gone out waits for
    it, then replies to it: the reader never gets the update as a second, loud push."""
    await follow(db, topics, 71, "سوريا")
    fanout = Fanout(topics)
    (first, second, _), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: مقتل 5 في انفجار بإدلب السورية")
    async with db.transaction() as session:  # the push is held up (a busy chat, say)
        await session.execute(update(Delivery).values(due_at=now() + timedelta(seconds=1)))
    await store(db, fanout, second, story, "عاجل: ارتفاع حصيلة قتلى انفجار إدلب إلى 12")
    await settle(sender(bot, db), db)
    pushed, reply = fake.messages_to(71)
    assert "مقتل 5" in pushed.plain and reply.reply_to_message_id == pushed.message_id
    assert reply.disable_notification and reply.plain.startswith("تحديث")


async def test_a_development_waits_until_the_storys_push_is_written(
    db: Database, topics: Topics
) -> None:
    """A development written while the push of its story is still being written (another
    process took it up meanwhile) waits: every chat the push reaches gets it, none is
    passed over before the push reached it."""
    await follow_each(db, topics, list(range(1, 7)), "سوريا")
    fanout = Fanout(topics, inline=2, chunk=2)
    (first, second, _), story = await outlets_and_story(db)
    await store(db, fanout, first, story, "عاجل: مقتل 5 في انفجار بإدلب السورية")
    await store(db, fanout, second, story, "عاجل: ارتفاع حصيلة قتلى انفجار إدلب إلى 12")
    async with db.sessions() as session:
        push, development = (await session.scalars(select(Alert.id).order_by(Alert.id))).all()
    async with db.transaction() as session:  # another process, while the push is written
        assert await fan_out(session, development, now(), 100) is None
    await fanout.expand(db)
    assert await per_chat(db) == dict.fromkeys(range(1, 7), 2)
    assert push < development
