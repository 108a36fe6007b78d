"""From a breaking item in a feed to the outbox: one delivery per following chat, written
with the article, and what the delivery sends (language, quiet hours); the matcher holds
only followed topics, and storage keeps no topic nobody follows for long."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot

from bot.delivery.deliver import AlertDelivery
from bot.delivery.fanout import Fanout, TooManyNewTopics, Topics
from bot.feeds.fetch import Fetcher, FetchLimits
from bot.feeds.ingest import Ingestor
from bot.text.topics import ResolvedTopic, load_catalog, resolve
from storage.alerts import Audience, add_alert, create_alert, fan_out, get_alert
from storage.chats import set_all_breaking, set_muted, set_quiet_hours, upsert_chat
from storage.db import Database
from storage.deliveries import claim_due, deactivate_chat
from storage.feeds import add_feed
from storage.models import Alert, Delivery, Topic
from storage.subscriptions import get_topic_id, list_chat_topic_keys
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer, Item, make_rss

NOW = datetime.now(UTC)
ZONE_UTC = "UTC"


def topic(phrase: str) -> ResolvedTopic:
    """A reader's phrase resolved as /follow resolves it."""
    found = resolve(phrase)
    assert isinstance(found, ResolvedTopic)
    return found


def story(title: str, guid: str, *, minutes_ago: int = 1, link: str | None = None) -> Item:
    """A fresh RSS item."""
    published = format_datetime(NOW - timedelta(minutes=minutes_ago), usegmt=True)
    return Item(title=title, guid=guid, link=link, published=published)


@pytest.fixture
async def topics() -> Topics:
    """The followed topics, empty."""
    return Topics(load_catalog())


@pytest.fixture
async def ingestor(db: Database, topics: Topics) -> AsyncIterator[Ingestor]:
    """An ingestor that fans new breaking articles out to their followers."""
    async with Fetcher(FetchLimits(total_timeout=5, connect_timeout=2)) as fetcher:
        ingest = Ingestor(
            db,
            fetcher,
            poll_interval=timedelta(seconds=60),
            backlog_age=timedelta(hours=12),
            max_backoff=timedelta(hours=1),
            on_new=Fanout(topics),
        )
        yield ingest
        await ingest.aclose()


async def follow(db: Database, topics: Topics, chat_id: int, *phrases: str) -> None:
    """A private chat follows topics, as /follow does."""
    async with db.transaction() as session:
        await upsert_chat(session, chat_id, kind="private")
        for phrase in phrases:
            await topics.follow(session, chat_id, topic(phrase))


async def watched_feed(db: Database, url: str, *, breaking: bool = False) -> int:
    """A feed already fetched once (its next items are alertable)."""
    async with db.transaction() as session:
        feed = add_feed(session, url, breaking=breaking)
        feed.last_success_at = NOW - timedelta(minutes=5)
        await session.flush()
        return feed.id


async def deliveries(db: Database) -> list[tuple[int, int]]:
    """(alert id, chat id) of every delivery row."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(Delivery.alert_id, Delivery.chat_id).order_by(Delivery.chat_id)
        )
        return [(alert_id, chat_id) for alert_id, chat_id in rows]


async def test_a_breaking_story_reaches_each_follower_once(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """A chat following three matching topics gets one delivery; a chat following none, none."""
    await follow(db, topics, 1, "روسيا", "بوتين", "موسكو")
    await follow(db, topics, 2, "روسيا")
    await follow(db, topics, 3, "مصر")
    url = feed_server.add(
        "f.xml", make_rss("F", [story("عاجل: بوتين يصل إلى موسكو في روسيا", "a")])
    )
    feed_id = await watched_feed(db, url)

    outcome = await ingestor.poll_feed(feed_id)

    assert len(outcome.new_ids) == 1
    rows = await deliveries(db)
    assert [chat for _, chat in rows] == [1, 2]
    async with db.sessions() as session:
        alert = await get_alert(session, rows[0][0])
    assert alert is not None and alert.title.startswith("عاجل")
    assert set(alert.topics) >= {"russia"}


async def test_the_same_story_from_two_feeds_and_many_polls_alerts_once(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """Dedup across polls and feeds: one alert, one delivery per chat."""
    await follow(db, topics, 1, "كورسك")
    item = story("عاجل | هجوم على كورسك", "x", link="https://news.example/kursk")
    first = await watched_feed(db, feed_server.add("a.xml", make_rss("A", [item])))
    second = await watched_feed(
        db,
        feed_server.add(
            "b.xml",
            make_rss("B", [story("عاجل: هجوم على كورسك", "y", link="https://news.example/kursk")]),
        ),
    )
    for _ in range(3):
        await ingestor.poll_feed(first)
        await ingestor.poll_feed(second)

    assert await deliveries(db) == [(1, 1)]


async def test_backlog_and_plain_stories_do_not_alert(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """A feed's first batch, an old item and an unmarked item make no alert."""
    await follow(db, topics, 1, "روسيا")
    first_fetch = feed_server.add("new.xml", make_rss("N", [story("عاجل: روسيا تعلن", "n")]))
    async with db.transaction() as session:
        fresh = add_feed(session, first_fetch)
        await session.flush()
        fresh_id = fresh.id
    await ingestor.poll_feed(fresh_id)
    old = story("عاجل: روسيا قديمة", "o", minutes_ago=60 * 24)
    plain = story("روسيا تفتتح معرضا", "p")
    await ingestor.poll_feed(
        await watched_feed(db, feed_server.add("old.xml", make_rss("O", [old, plain])))
    )

    assert await deliveries(db) == []
    async with db.sessions() as session:
        assert (await session.scalars(select(Alert))).all() == []


async def test_a_breaking_feed_alerts_without_a_marker(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """Every new item of a feed added as breaking is breaking."""
    await follow(db, topics, 1, "روسيا")
    url = feed_server.add("b.xml", make_rss("B", [story("روسيا تعلن التعبئة", "b")]))
    await ingestor.poll_feed(await watched_feed(db, url, breaking=True))

    assert [chat for _, chat in await deliveries(db)] == [1]


async def test_muted_and_stopped_chats_are_left_out_and_channels_take_everything(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """A muted chat gets nothing; a channel taking all breaking news gets the story."""
    await follow(db, topics, 1, "روسيا")
    await follow(db, topics, 2, "روسيا")
    async with db.transaction() as session:
        await set_muted(session, 2, NOW + timedelta(hours=2))
        await upsert_chat(session, -100500, kind="channel", title="قناة الأخبار")
        await set_all_breaking(session, -100500, True)
    url = feed_server.add("f.xml", make_rss("F", [story("عاجل: روسيا تعلن", "r")]))
    await ingestor.poll_feed(await watched_feed(db, url))

    assert sorted(chat for _, chat in await deliveries(db)) == [-100500, 1]


async def test_topics_are_rebuilt_from_storage(db: Database, topics: Topics) -> None:
    """A restarted bot matches what readers followed before."""
    await follow(db, topics, 1, "كوريا الشمالية", "طاقة شمسية")
    fresh = Topics(topics.catalog)
    async with db.sessions() as session:
        assert await fresh.load(session) == 2
    assert fresh.match_ids("عاجل: كوريا الشمالية تطلق صاروخا", "")
    assert fresh.match_ids("افتتاح محطة للطاقة الشمسية", "")
    assert not fresh.match_ids("عاجل: كوريا الجنوبية", "")


@pytest.mark.parametrize("language", ["ar", "en"])
async def test_delivery_renders_in_the_chats_language_and_silently_in_quiet_hours(
    db: Database, language: str
) -> None:
    """Quiet hours send with disable_notification; the label is in the chat's language."""
    async with FakeBotAPI(any_chat=True) as fake, Bot(fake.token, base_url=fake.base_url) as bot:
        async with db.transaction() as session:
            await upsert_chat(session, 9, kind="private", language=language)
            # Quiet all day but the current minute's complement: now is inside.
            minute = NOW.hour * 60 + NOW.minute
            await set_quiet_hours(session, 9, (minute - 30) % 1440, (minute + 30) % 1440)
            await upsert_chat(session, 10, kind="private", language=language)
            await create_alert(session, [9, 10], NOW, text="هزة أرضية في أنقرة")
        async with db.transaction() as session:
            rows = await claim_due(session, NOW + timedelta(seconds=1), 10)
        deliver = AlertDelivery(
            bot, db, zone=ZoneInfo(ZONE_UTC), markers=(), catalog=load_catalog()
        )
        for row in rows:
            await deliver(row)

        quiet, loud = fake.messages_to(9)[0], fake.messages_to(10)[0]
        assert quiet.disable_notification and not loud.disable_notification
        label = "عاجل" if language == "ar" else "BREAKING"
        assert quiet.plain.startswith(label)
        assert "هزة أرضية في أنقرة" in quiet.plain


async def test_a_feed_added_in_a_chat_is_polled_refusing_private_addresses(
    db: Database, feed_server: FeedServer
) -> None:
    """Every poll of a feed an editor added from a chat refuses private addresses; the
    operator's feeds on the same server are polled as usual."""
    url = feed_server.add("f.xml", make_rss("F", [story("خبر", "a")]))
    other = feed_server.add("g.xml", make_rss("G", [story("خبر", "b")]))
    async with db.transaction() as session:
        in_chat = add_feed(session, url, added_in_chat=True)
        operator = add_feed(session, other)
        await session.flush()
        in_chat_id, operator_id = in_chat.id, operator.id
    limits = FetchLimits(total_timeout=5, connect_timeout=2)
    strict = FetchLimits(total_timeout=5, connect_timeout=2, allow_private=False)
    async with Fetcher(limits) as fetcher, Fetcher(strict) as chat_fetcher:
        ingest = Ingestor(
            db,
            fetcher,
            chat_fetcher=chat_fetcher,
            poll_interval=timedelta(seconds=60),
            backlog_age=timedelta(hours=12),
            max_backoff=timedelta(hours=1),
        )
        refused = await ingest.poll_feed(in_chat_id)
        polled = await ingest.poll_feed(operator_id)
        await ingest.aclose()
    assert refused.status == "failed" and "private" in (refused.error or "")
    assert polled.status == "fetched"
    assert feed_server.hits["f.xml"] == 0


# -- the followed topics: only those with followers, and storage that does not grow ---------


async def stored_keys(db: Database) -> set[str]:
    """The keys of every stored topic."""
    async with db.sessions() as session:
        return set((await session.scalars(select(Topic.key))).all())


async def unfollow(db: Database, topics: Topics, chat_id: int, phrase: str, now: datetime) -> None:
    """A chat stops following a topic, as /unfollow does."""
    async with db.transaction() as session:
        topic_id = await get_topic_id(session, topic(phrase).key)
        assert topic_id is not None
        assert await topics.unfollow(session, chat_id, topic_id, now=now)


async def test_the_matcher_holds_only_topics_with_followers(db: Database, topics: Topics) -> None:
    """A topic leaves the matcher when its last follower leaves, not before."""
    await follow(db, topics, 1, "كورسك", "طاقة شمسية")
    await follow(db, topics, 2, "كورسك")
    assert len(topics) == 2
    await unfollow(db, topics, 1, "كورسك", NOW)
    await unfollow(db, topics, 1, "طاقة شمسية", NOW)
    assert len(topics) == 1
    assert topics.match_ids("عاجل: هجوم على كورسك", "")
    assert not topics.match_ids("افتتاح محطة للطاقة الشمسية", "")
    await unfollow(db, topics, 2, "كورسك", NOW)
    assert len(topics) == 0 and not topics.match_ids("عاجل: هجوم على كورسك", "")


async def test_loading_follows_what_other_processes_follow_and_unfollow(
    db: Database, topics: Topics
) -> None:
    """Another process's matcher forgets a topic its last follower left here, and takes it
    back when a chat follows it again, however old the topic is."""
    await follow(db, topics, 1, "كورسك")
    elsewhere = Topics(topics.catalog)
    async with db.sessions() as session:
        assert await elsewhere.load(session) == 1
    await unfollow(db, topics, 1, "كورسك", NOW)
    async with db.sessions() as session:
        assert await elsewhere.load(session) == 0
    assert not elsewhere.match_ids("عاجل: هجوم على كورسك", "")
    await follow(db, topics, 2, "كورسك")
    async with db.sessions() as session:
        assert await elsewhere.load(session) == 1
    assert elsewhere.match_ids("عاجل: هجوم على كورسك", "")


async def test_a_chat_creates_only_so_many_new_phrases_a_day(db: Database) -> None:
    """Past its day's worth of new free phrases a chat is refused another, with nothing
    written; unfollowing gives none back; phrases others follow and catalog topics are
    not counted; the next day it may again."""
    topics = Topics(load_catalog(), new_phrases_per_day=3)
    await follow(db, topics, 1, "قمح", "ذرة", "أرز")
    await unfollow(db, topics, 1, "قمح", NOW)
    with pytest.raises(TooManyNewTopics) as refused:
        await follow(db, topics, 1, "شعير")
    assert refused.value.limit == 3
    assert "phrase:شعير" not in await stored_keys(db)
    await follow(db, topics, 2, "شعير")  # another chat has its own quota
    await follow(db, topics, 1, "شعير", "قمح", "روسيا", "مصر")  # all stored already, or catalog
    async with db.transaction() as session:
        tomorrow = NOW + timedelta(days=1, minutes=1)
        await topics.follow(session, 1, topic("سكر"), now=tomorrow)
    assert {"phrase:سكر", "russia", "egypt"} <= await stored_keys(db)


async def test_unused_topics_are_deleted_after_their_day_and_followed_ones_never(
    db: Database, topics: Topics, ingestor: Ingestor, feed_server: FeedServer
) -> None:
    """A sweep deletes the topics nobody follows once the day they were created in is over,
    never a followed one; the alerts recorded keep the keys of the topics they matched."""
    await follow(db, topics, 1, "كورسك", "روسيا")
    url = feed_server.add("f.xml", make_rss("F", [story("عاجل: هجوم على كورسك في روسيا", "k")]))
    await ingestor.poll_feed(await watched_feed(db, url))
    await unfollow(db, topics, 1, "كورسك", NOW)
    async with db.transaction() as session:
        assert await topics.sweep(session, NOW) == 0  # its creator's day is not over
    assert await stored_keys(db) == {"kursk", "russia"}
    async with db.transaction() as session:
        assert await topics.sweep(session, NOW + timedelta(days=2)) == 1
    assert await stored_keys(db) == {"russia"}
    async with db.sessions() as session:
        (alert,) = (await session.scalars(select(Alert))).all()
    assert set(alert.topics) == {"kursk", "russia"}


async def test_a_sweep_never_takes_a_topic_being_followed(db: Database, topics: Topics) -> None:
    """A sweep running while another transaction follows an unused topic leaves the topic
    and the new subscription alone (on PostgreSQL it skips the row the follow holds)."""
    await follow(db, topics, 1, "كورسك")
    await unfollow(db, topics, 1, "كورسك", NOW)
    later = NOW + timedelta(days=2)
    followed, swept = asyncio.Event(), asyncio.Event()

    async def follow_meanwhile() -> None:
        async with db.transaction() as session:
            await upsert_chat(session, 2, kind="private")
            await topics.follow(session, 2, topic("كورسك"), now=later)
            followed.set()
            # Commits once the sweep had its chance (on SQLite the sweep waits for it).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(swept.wait(), 0.5)

    async def sweep() -> int:
        await followed.wait()
        async with db.transaction() as session:
            removed = await Topics(topics.catalog).sweep(session, later)
        swept.set()
        return removed

    _followed, removed = await asyncio.gather(follow_meanwhile(), sweep())
    assert removed == 0
    assert await stored_keys(db) == {"kursk"}
    async with db.sessions() as session:
        assert await list_chat_topic_keys(session, 2) == {"kursk"}


async def test_a_follow_during_a_sweep_stores_the_topic_again(
    db: Database, topics: Topics
) -> None:
    """A chat following a topic that a sweep is deleting waits for it, then stores the
    topic anew and follows it: no error, no follower lost."""
    await follow(db, topics, 1, "كورسك")
    await unfollow(db, topics, 1, "كورسك", NOW)
    later = NOW + timedelta(days=2)
    deleted = asyncio.Event()

    async def sweep() -> int:
        async with db.transaction() as session:
            removed = await Topics(topics.catalog).sweep(session, later)
            deleted.set()
            await asyncio.sleep(0.3)  # the follow below starts meanwhile, and must wait
        return removed

    async def follow_meanwhile() -> None:
        await deleted.wait()
        async with db.transaction() as session:
            await upsert_chat(session, 2, kind="private")
            await topics.follow(session, 2, topic("كورسك"), now=later)

    removed, _followed = await asyncio.gather(sweep(), follow_meanwhile())
    assert removed == 1
    async with db.sessions() as session:
        assert await list_chat_topic_keys(session, 2) == {"kursk"}
    assert topics.match_ids("عاجل: هجوم على كورسك", "")


# -- fan-out at scale: written by the database, in chunks, after the story commits --------


def chunked_ingestor(db: Database, topics: Topics, fetcher: Fetcher, fanout: Fanout) -> Ingestor:
    """An ingestor whose fan-out is ``fanout``."""
    return Ingestor(
        db,
        fetcher,
        poll_interval=timedelta(seconds=60),
        backlog_age=timedelta(hours=12),
        max_backoff=timedelta(hours=1),
        on_new=fanout,
    )


async def alerts_left(db: Database) -> list[int]:
    """The alerts whose fan-out is not finished."""
    async with db.sessions() as session:
        query = select(Alert.id).where(Alert.fanned_out_at.is_(None)).order_by(Alert.id)
        return list((await session.scalars(query)).all())


async def readers(db: Database, topics: Topics, count: int, *phrases: str) -> list[int]:
    """``count`` private chats, ids 1 to ``count``, each following the phrases."""
    async with db.transaction() as session:
        for chat_id in range(1, count + 1):
            await upsert_chat(session, chat_id, kind="private")
            for phrase in phrases:
                await topics.follow(session, chat_id, topic(phrase))
    return list(range(1, count + 1))


async def test_a_large_audience_is_written_after_the_story_in_chunks_by_the_same_rules(
    db: Database, topics: Topics, feed_server: FeedServer
) -> None:
    """Past the first deliveries, written with the story, the fan-out writes the rest in
    chunks of its own; in the end each chat has one delivery, exactly the chats the rules
    pick (matching topics once per chat, muted and stopped chats left out, channels taking
    every breaking story in), as if written all at once."""
    for chat_id in range(1, 12):  # odd chats follow two matching topics, 6 none
        phrases = ["روسيا", "بوتين"] if chat_id % 2 else []
        await follow(db, topics, chat_id, *phrases, *(["موسكو"] if chat_id % 3 else []))
    await follow(db, topics, 20, "مصر")
    async with db.transaction() as session:
        await set_muted(session, 5, NOW + timedelta(hours=2))
        await deactivate_chat(session, 7, "blocked the bot")  # keeps its topics
        await upsert_chat(session, -100500, kind="channel", title="قناة الأخبار")
        await set_all_breaking(session, -100500, True)
    url = feed_server.add(
        "f.xml", make_rss("F", [story("عاجل: بوتين يصل إلى موسكو في روسيا", "a")])
    )
    feed_id = await watched_feed(db, url)
    fanout = Fanout(topics, inline=2, chunk=3)
    async with Fetcher(FetchLimits(total_timeout=5, connect_timeout=2)) as fetcher:
        ingest = chunked_ingestor(db, topics, fetcher, fanout)
        await ingest.poll_feed(feed_id)
        await ingest.aclose()

    first = await deliveries(db)
    assert [chat for _, chat in first] == [-100500, 1]  # the first two by chat id
    assert await alerts_left(db) == [1]
    assert await fanout.expand(db) == 7
    assert await alerts_left(db) == []
    chats = [chat for _, chat in await deliveries(db)]
    # 1..11 follow a matching topic but 6; 5 is muted and 7 blocked the bot.
    assert chats == [-100500, 1, 2, 3, 4, 8, 9, 10, 11]


async def test_a_fanout_cut_short_resumes_where_it_stopped_and_writes_no_chat_twice(
    db: Database, topics: Topics, feed_server: FeedServer
) -> None:
    """A chunk committed stays; a chunk whose transaction died leaves nothing; a fresh
    fan-out (a restarted process) finishes the alert with one delivery per chat."""
    await readers(db, topics, 25, "روسيا")
    url = feed_server.add("f.xml", make_rss("F", [story("عاجل: روسيا تعلن", "r")]))
    feed_id = await watched_feed(db, url)
    async with Fetcher(FetchLimits(total_timeout=5, connect_timeout=2)) as fetcher:
        ingest = chunked_ingestor(db, topics, fetcher, Fanout(topics, inline=4))
        await ingest.poll_feed(feed_id)
        await ingest.aclose()
    (alert_id,) = await alerts_left(db)
    async with db.transaction() as session:
        step = await fan_out(session, alert_id, NOW, 6)
    assert step is not None and (step.made, step.done) == (6, False)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:  # the process dies mid-chunk
            await fan_out(session, alert_id, NOW, 6)
            raise RuntimeError("killed")
    assert len(await deliveries(db)) == 10

    restarted = Fanout(Topics(topics.catalog), chunk=4)
    assert await restarted.expand(db) == 15
    assert [chat for _, chat in await deliveries(db)] == list(range(1, 26))
    assert await alerts_left(db) == []


async def test_a_chat_past_the_cursor_with_a_delivery_already_is_passed_over(
    db: Database, topics: Topics
) -> None:
    """The chunks past the cursor are written without checking each row (PostgreSQL); a
    delivery there all the same (never expected) is kept, the chunk written around it, and
    the alert finished."""
    chats = await readers(db, topics, 8, "روسيا")
    russia = (await stored_topic_ids(db))["russia"]
    async with db.transaction() as session:
        alert_id = await add_alert(session, Audience((russia,)), NOW, text="خبر")
        session.add(Delivery(alert_id=alert_id, chat_id=5, state="sent", due_at=NOW))
    assert await Fanout(topics, chunk=3).expand(db) == 7
    rows = await deliveries(db)
    assert sorted(chat for _, chat in rows) == chats
    assert await alerts_left(db) == []


async def test_two_fanouts_at_once_write_each_chat_once(
    database_url: str, db: Database, topics: Topics
) -> None:
    """Two processes expanding the same alerts at the same time take turns: every chat
    gets one delivery per alert, and every alert is finished."""
    chats = await readers(db, topics, 40, "روسيا")
    russia = (await stored_topic_ids(db))["russia"]
    async with db.transaction() as session:
        alerts = [
            await add_alert(session, Audience((russia,)), NOW, text=f"خبر {n}") for n in range(3)
        ]
    other = Database(database_url)
    try:
        first, second = Fanout(topics, chunk=3), Fanout(Topics(topics.catalog), chunk=3)
        made = await asyncio.gather(first.expand(db), second.expand(other))
    finally:
        await other.dispose()
    assert sum(made) == 3 * 40
    rows = await deliveries(db)
    assert sorted(rows) == sorted((alert_id, chat) for alert_id in alerts for chat in chats)
    assert await alerts_left(db) == []


async def test_other_feeds_are_stored_and_alert_while_a_large_fanout_is_under_way(
    db: Database, topics: Topics, feed_server: FeedServer
) -> None:
    """While a story's fan-out is under way (on PostgreSQL: inside one of its chunks'
    transactions; on SQLite, with one writer at a time, between two chunks), another
    feed's breaking story is stored and alerted without waiting for the fan-out to end."""
    await readers(db, topics, 30, "روسيا", "مصر")
    first = await watched_feed(
        db, feed_server.add("a.xml", make_rss("A", [story("عاجل: روسيا", "a")]))
    )
    second = await watched_feed(
        db, feed_server.add("b.xml", make_rss("B", [story("عاجل: مصر", "b")]))
    )
    fanout = Fanout(topics, inline=5, chunk=10)
    paused, resume = asyncio.Event(), asyncio.Event()
    async with Fetcher(FetchLimits(total_timeout=5, connect_timeout=2)) as fetcher:
        ingest = chunked_ingestor(db, topics, fetcher, fanout)
        await ingest.poll_feed(first)
        expanding = asyncio.create_task(
            fanout.expand(PausingDatabase(db, paused, resume))  # type: ignore[arg-type]
        )
        await asyncio.wait_for(paused.wait(), 30)
        outcome = await asyncio.wait_for(ingest.poll_feed(second), 30)
        stored_meanwhile = await alerts_left(db)
        resume.set()
        await asyncio.wait_for(expanding, 30)
        await ingest.aclose()

    assert len(outcome.new_ids) == 1
    assert stored_meanwhile == [1, 2]  # the first story's fan-out was still under way
    assert await fanout.expand(db) == 25  # the second story's rest
    rows = await deliveries(db)
    for alert_id in (1, 2):
        assert sorted(chat for alert, chat in rows if alert == alert_id) == list(range(1, 31))


class PausingDatabase:
    """A Database whose first fan-out chunk stops to let the test act: on PostgreSQL with
    its transaction open, on SQLite (one writer at a time) once it has committed."""

    def __init__(self, db: Database, paused: asyncio.Event, resume: asyncio.Event) -> None:
        self._db, self._paused, self._resume = db, paused, resume
        self.is_sqlite = db.is_sqlite
        self.sessions = db.sessions

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The real transaction, held open (PostgreSQL) or followed (SQLite) by the pause."""
        async with self._db.transaction() as session:
            yield session
            if not self.is_sqlite:
                await self._pause()
        if self.is_sqlite:
            await self._pause()

    async def _pause(self) -> None:
        if not self._paused.is_set():
            self._paused.set()
            await self._resume.wait()


async def stored_topic_ids(db: Database) -> dict[str, int]:
    """The stored topics' ids by key."""
    async with db.sessions() as session:
        return {key: id_ for id_, key in await session.execute(select(Topic.id, Topic.key))}


@pytest.mark.postgres
async def test_after_a_large_fanout_postgresql_counts_the_rows_waiting(postgres_url: str) -> None:
    """A fan-out writes rows far faster than autovacuum looks (once a minute): it has
    PostgreSQL sample the outbox, so the sender's claims are planned for the rows really
    waiting (read off the index) rather than for an empty table (every due row sorted)."""
    db = Database(postgres_url)
    try:
        async with db.transaction() as session:
            topic_id = await session.scalar(
                text(
                    "INSERT INTO topics (key, label, created_at) VALUES ('big', 'كبير', now())"
                    " RETURNING id"
                )
            )
            for table, columns in (
                ("chats", "(id, kind, language, active, all_breaking, created_at)"),
                ("subscriptions", "(chat_id, topic_id, created_at)"),
            ):
                values = "g, 'private', 'ar', true, false, now()"
                if table == "subscriptions":
                    values = "g, :topic, now()"
                await session.execute(
                    text(
                        f"INSERT INTO {table} {columns} SELECT {values}"  # noqa: S608 - constants
                        " FROM generate_series(1, 12000) g"
                    ),
                    {"topic": topic_id},
                )
            await add_alert(session, Audience((int(topic_id or 0),)), NOW, text="خبر")
        assert await Fanout(Topics(), chunk=5000).expand(db) == 12000
        async with db.sessions() as session:
            counted = await session.scalar(
                text("SELECT reltuples FROM pg_class WHERE relname = 'deliveries'")
            )
        assert counted is not None and counted >= 10000
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(
                text("TRUNCATE deliveries, alerts, subscriptions, chats, topics CASCADE")
            )
        await db.dispose()
