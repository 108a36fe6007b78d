"""End to end: ``newsbot run`` as a process, as an operator runs it, against the fake Bot API
and feeds from a local HTTP server. Readers act through updates; what they receive is read
back from the fake. Every bot is stopped with SIGTERM and must exit 0 promptly, with no
traceback or error logged."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.chats import stop_chat
from storage.db import Database
from storage.deliveries import DROPPED, SENT, UNKNOWN
from storage.models import Chat
from storage.subscriptions import add_subscription, upsert_topic
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer, Item
from tests.processes import (
    EDITOR,
    BotProcess,
    add_feed,
    alert_counts,
    alerts_to,
    bot_env,
    deliveries_in,
    feed,
    kursk_stories,
    outbox_empty,
    press,
    rfc822,
    running_newsbot,
    say,
    seed_followers,
    settle,
    story,
    topic,
    wait_until,
)

# The sender's requests in flight at most (bot.delivery.sender.Sender's default concurrency).
SENDER_CONCURRENCY = 64
OLD = timedelta(hours=1)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def url_of(db: Database) -> str:
    """The plain URL a process can be given."""
    return db.url.render_as_string(hide_password=False)


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """A migrated SQLite database (for tests whose behaviour does not depend on the backend)."""
    database = Database(sqlite_url)
    yield database
    await database.dispose()


# --- backlog, dedup, blocked readers, 429 ---------------------------------------------------


async def test_the_backlog_is_archived_never_pushed(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """Breaking items already in a feed when it is added (by an editor in the chat, or by
    the operator), or older than BACKLOG_HOURS when they appear, never alert; a fresh one
    does, once."""
    follower = 501
    await seed_followers(sqlite_db, [follower], "روسيا")
    marked = feed_server.add(
        "marked.xml", feed(story("عاجل: روسيا تعلن التعبئة", "old-marked", age=OLD))
    )
    desk = feed_server.add(
        "desk.xml", feed(story("روسيا تستدعي السفير", "old-desk", age=timedelta(minutes=5)))
    )
    env = bot_env(fake_api, url_of(sqlite_db), backlog_hours=2, allow_private_feeds="true")
    adding = add_feed(desk, env=env, cwd=tmp_path, breaking=True)
    async with running_newsbot(fake_api, env, tmp_path, adding):
        # The bot itself fetches this one for the first time, with its fan-out wired in.
        (added,) = await say(fake_api, EDITOR, f"/addfeed {marked}")
        assert "وكالة الأنباء" in added.plain  # added, under the feed's title
        feed_server.add(
            "desk.xml",
            feed(
                story("روسيا تغلق مجالها الجوي", "stale", age=timedelta(hours=3)),
                story("روسيا وأوكرانيا تتبادلان الأسرى", "fresh"),
                story("روسيا تستدعي السفير", "old-desk", age=timedelta(minutes=5)),
            ),
        )
        await fake_api.wait_for_messages(follower, 1, timeout=10)
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")
    (alert,) = fake_api.messages_to(follower)
    assert "تتبادلان الأسرى" in alert.plain


async def test_one_story_in_two_feeds_on_many_polls_alerts_each_chat_once(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """The same story (same link) in two feeds, seen on many polls, and matching three
    topics one chat follows, reaches every follower exactly once."""
    three_topics, one_topic = 601, 602
    await seed_followers(sqlite_db, [three_topics, one_topic], "روسيا")
    async with sqlite_db.transaction() as session:
        for phrase in ("بوتين", "موسكو"):
            followed = topic(phrase)
            stored = await upsert_topic(session, followed.key, followed.label)
            await add_subscription(session, three_topics, stored.id)
    quiet = feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD))
    first = feed_server.add("agency.xml", quiet)
    second = feed_server.add("paper.xml", quiet)
    env = bot_env(fake_api, url_of(sqlite_db), parse_workers=1)  # feeds parsed in a pool
    async with running_newsbot(
        fake_api,
        env,
        tmp_path,
        add_feed(first, env=env, cwd=tmp_path),
        add_feed(second, env=env, cwd=tmp_path),
    ):
        link = "https://news.example/putin-moscow?utm_source=rss"
        first_seen = Item("عاجل: بوتين يعلن من موسكو أن روسيا ستردّ", link, published=rfc822(now()))
        feed_server.add("agency.xml", feed(first_seen))
        await fake_api.wait_for_messages(one_topic, 1, timeout=10)
        # Polled again with other news beside it, and carried by the second feed under its
        # own guid and headline: the same story still.
        later = story("عاجل: زلزال في تركيا", "quake")
        feed_server.add("agency.xml", feed(later, first_seen))
        copy = Item("عاجل | بوتين: روسيا ستردّ", link, guid="paper-1", published=rfc822(now()))
        feed_server.add("paper.xml", feed(copy))
        await settle(sqlite_db, feed_server.hits, "paper.xml", polls=2)
    assert alert_counts(fake_api, [three_topics, one_topic]) == {three_topics: 1, one_topic: 1}
    assert len(fake_api.sent) == 2


async def test_a_blocked_reader_is_deactivated_while_the_others_receive(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """A 403 for one reader deactivates that chat and drops its delivery; everyone else
    gets the alert."""
    followers = [701, 702, 703, 704, 705]
    blocked = 703
    await seed_followers(sqlite_db, followers, "روسيا")
    fake_api.block(blocked)
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(sqlite_db))
    adding = add_feed(url, env=env, cwd=tmp_path, breaking=True)
    async with running_newsbot(fake_api, env, tmp_path, adding):
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        others = [chat for chat in followers if chat != blocked]
        await fake_api.wait_for(
            lambda: all(fake_api.messages_to(chat) for chat in others),
            timeout=10,
            what="the alerts",
        )
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")
    assert alert_counts(fake_api, others) == dict.fromkeys(others, 1)
    assert fake_api.messages_to(blocked) == []
    async with sqlite_db.sessions() as session:
        active = dict((await session.execute(select(Chat.id, Chat.active))).all())
    assert active == {chat: chat != blocked for chat in followers}
    assert (await deliveries_in(sqlite_db))[blocked] == DROPPED


async def test_429_is_honoured_and_nobody_gets_a_duplicate(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """When Telegram answers 429 (a stricter limit than the bot's, and an injected one) the
    bot waits retry_after and sends the same row again: every follower exactly once."""
    followers = list(range(801, 813))
    await seed_followers(sqlite_db, followers, "روسيا")
    fake_api.rate_limit(per_second=4, retry_after=1)
    fake_api.fail_next("sendMessage", 429, retry_after=1)
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(sqlite_db))
    adding = add_feed(url, env=env, cwd=tmp_path, breaking=True)
    async with running_newsbot(fake_api, env, tmp_path, adding):
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        await fake_api.wait_for(
            lambda: all(fake_api.messages_to(chat) for chat in followers),
            timeout=30,
            what="every follower's alert",
        )
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")
    assert fake_api.sends_per_chat() == dict.fromkeys(followers, 1)
    assert fake_api.too_many, "the fake never answered 429: the test proves nothing"
    assert set((await deliveries_in(sqlite_db)).values()) == {SENT}


# --- crashes and stops during a fan-out ------------------------------------------------------


async def test_kill_9_during_a_fanout_then_restart_sends_each_follower_once(
    fake_api: FakeBotAPI, feed_server: FeedServer, db: Database, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a fan-out to 300 chats, then a restart: nobody gets the
    alert twice, and only requests that were in flight (recorded 'unknown') may be missing."""
    followers = list(range(10_001, 10_301))
    await seed_followers(db, followers, "روسيا")
    fake_api.rate_limit(per_second=100)
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(db), send_rate=100, paid_broadcasts="true")
    bot = BotProcess(fake_api, env, tmp_path)
    try:
        await asyncio.gather(bot.start(), add_feed(url, env=env, cwd=tmp_path, breaking=True))
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        await fake_api.wait_for(lambda: len(fake_api.sent) >= 100, timeout=15, what="100 sent")
        await bot.kill()
        at_kill = len(fake_api.sent)
        assert at_kill < len(followers), "the fan-out ended before the kill"
        await bot.start()

        async def accounted() -> bool:
            states = await deliveries_in(db, SENT, UNKNOWN)
            return len(states) == len(followers) and await outbox_empty(db)

        await wait_until(accounted, timeout=30, what="every delivery sent or unknown")
        await bot.stop_cleanly()
    finally:
        if bot.running:
            await bot.kill()
    received = fake_api.sends_per_chat()
    assert max(received.values()) == 1, "a follower got the alert twice"
    unknown = set(await deliveries_in(db, UNKNOWN))
    missing = set(followers) - set(received)
    assert missing <= unknown, "a delivery neither sent nor recorded as unknown"
    assert len(unknown) <= SENDER_CONCURRENCY, (
        f"{len(unknown)} rows recorded 'unknown', {len(missing)} followers never alerted: "
        f"only the requests in flight at the kill (at most {SENDER_CONCURRENCY}) may be"
    )
    assert set(received) <= set(followers)


async def test_sigterm_mid_fanout_releases_the_rest_for_the_next_process(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """SIGTERM during a fan-out stops promptly and cleanly; the next process sends the rest,
    and every follower gets exactly one alert, none left 'unknown'."""
    followers = list(range(20_001, 20_101))
    await seed_followers(sqlite_db, followers, "روسيا")
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(sqlite_db), send_rate=40, paid_broadcasts="true")
    bot = BotProcess(fake_api, env, tmp_path)
    try:
        await asyncio.gather(bot.start(), add_feed(url, env=env, cwd=tmp_path, breaking=True))
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        await fake_api.wait_for(lambda: len(fake_api.sent) >= 10, timeout=15, what="10 sent")
        seconds = await bot.stop_cleanly()
        assert seconds < 5
        assert len(fake_api.sent) < len(followers), "the fan-out ended before SIGTERM"
        assert await deliveries_in(sqlite_db, UNKNOWN) == {}
        await bot.start()
        await fake_api.wait_for(
            lambda: len(fake_api.sent) >= len(followers), timeout=20, what="every follower"
        )
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")
        await bot.stop_cleanly()
    finally:
        if bot.running:
            await bot.kill()
    assert fake_api.sends_per_chat() == dict.fromkeys(followers, 1)
    assert set((await deliveries_in(sqlite_db)).values()) == {SENT}


# --- what a new reader does ------------------------------------------------------------------


async def test_a_new_reader_follows_gets_one_arabic_alert_finds_it_and_stops(
    fake_api: FakeBotAPI, feed_server: FeedServer, db: Database, tmp_path: Path
) -> None:
    """/start, /follow روسيا, a breaking story appears: one Arabic «عاجل» alert to each
    follower and none to anyone else; /search finds it; after /stop no more alerts."""
    reader, fellow, egypt_fan, browser = 1101, 1102, 1103, 1104
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(db))
    async with running_newsbot(
        fake_api, env, tmp_path, add_feed(url, env=env, cwd=tmp_path)
    ) as bot:
        # The operator sees that it is up, as whom, with how much, and how it listens.
        assert re.search(
            r"^newsbot: running as @NewsbotTestBot: [01] feeds?, 0 readers, long polling$",
            bot.stderr,
            re.MULTILINE,
        ), bot.stderr
        for chat, command in (
            (reader, "/follow روسيا"),
            (fellow, "/follow روسيا"),
            (egypt_fan, "/follow مصر"),
            (browser, None),
        ):
            welcome = await say(fake_api, chat, "/start")
            assert welcome[0].plain
            if command:
                await say(fake_api, chat, command)
        replies = {chat: len(fake_api.messages_to(chat)) for chat in (egypt_fan, browser)}

        title = "عاجل: روسيا تعلن هدنة في كورسك بعد محادثات مع أوكرانيا"
        link = "https://news.example/kursk-truce"
        feed_server.add(
            "news.xml",
            feed(
                Item(
                    title,
                    link,
                    description="أعلن الكرملين هدنة. وقال إنها تبدأ الليلة.",
                    published=rfc822(now()),
                ),
                story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD),
            ),
        )
        await fake_api.wait_for(
            lambda: alerts_to(fake_api, reader) and alerts_to(fake_api, fellow),
            timeout=10,
            what="the followers' alerts",
        )
        await settle(db, feed_server.hits, "news.xml", polls=1)
        assert alert_counts(fake_api, [reader, fellow]) == {reader: 1, fellow: 1}
        assert {chat: len(fake_api.messages_to(chat)) for chat in replies} == replies
        (alert,) = alerts_to(fake_api, reader)
        assert alert.plain.startswith("عاجل")
        assert alert.plain.count("عاجل") == 1, alert.plain  # the marker left the headline
        assert "روسيا تعلن هدنة في كورسك" in alert.plain and "#روسيا" in alert.plain
        assert alert.parse_mode == "HTML"
        assert any(entity["type"] == "bold" for entity in alert.entities)
        assert [e["url"] for e in alert.entities if e["type"] == "text_link"] == [link]

        (found,) = await say(fake_api, reader, "/search هدنة كورسك")
        assert "روسيا تعلن هدنة في كورسك" in found.plain
        assert link in [e.get("url") for e in found.entities]

        await say(fake_api, reader, "/stop")
        feed_server.add(
            "news.xml",
            feed(
                story("عاجل: روسيا تغلق مجالها الجوي", "airspace"),
                Item(title, link, published=rfc822(now())),
            ),
        )
        await fake_api.wait_for(
            lambda: len(alerts_to(fake_api, fellow)) == 2, timeout=10, what="the second alert"
        )
        await wait_until(lambda: outbox_empty(db), what="the outbox to empty")
    assert alert_counts(fake_api, [reader, fellow]) == {reader: 1, fellow: 2}
    assert bot.stderr.strip().splitlines()[-1].startswith("newsbot: stopped")


# --- editors ---------------------------------------------------------------------------------


async def test_an_editor_previews_and_sends_an_alert_a_reader_may_not(
    fake_api: FakeBotAPI, sqlite_db: Database, tmp_path: Path
) -> None:
    """An editor's /alert shows a preview with «send» and pressing it pushes the alert once
    to every active chat, while a reader's /alert is refused and sends nothing."""
    readers = [1201, 1202, 1203]
    stopped = 1204
    await seed_followers(sqlite_db, [*readers, stopped], "روسيا")
    async with sqlite_db.transaction() as session:
        await stop_chat(session, stopped)
    env = bot_env(fake_api, url_of(sqlite_db))
    async with running_newsbot(fake_api, env, tmp_path):
        (refusal,) = await say(fake_api, 1301, "/alert انفجار قرب محطة الكهرباء")
        assert refusal.reply_markup is None

        (preview,) = await say(fake_api, EDITOR, "/alert انفجار قرب محطة الكهرباء في المدينة")
        (send,) = [data for data in preview.callback_data if data.startswith("alert:send:")]
        assert preview.plain.startswith("عاجل")
        assert await deliveries_in(sqlite_db) == {}  # a preview alone queues nothing

        await press(fake_api, EDITOR, preview, send, user_id=EDITOR)
        await fake_api.wait_for(
            lambda: all(alerts_to(fake_api, chat) for chat in readers),
            timeout=10,
            what="the editor's alert",
        )
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")
    for chat in readers:
        (alert,) = fake_api.messages_to(chat)
        assert alert.plain.startswith("عاجل") and "انفجار قرب محطة الكهرباء" in alert.plain
    assert fake_api.messages_to(stopped) == []
    assert fake_api.messages_to(1301) == [refusal]


# --- search ----------------------------------------------------------------------------------


async def test_search_pages_through_the_archive_with_buttons(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """/search answers the first page with a «next» button; pressing it shows the next
    page in place, with a «previous» button, and no story twice."""
    items = kursk_stories()  # seven stories: search shows each once
    url = feed_server.add("news.xml", feed(*items))
    env = bot_env(fake_api, url_of(sqlite_db))
    async with running_newsbot(fake_api, env, tmp_path, add_feed(url, env=env, cwd=tmp_path)):
        (first,) = await say(fake_api, 1401, "/search كورسك")
        (next_page,) = first.callback_data
        edits = len(fake_api.edits)
        await press(fake_api, 1401, first, next_page)
        await fake_api.wait_for(lambda: len(fake_api.edits) > edits, what="the page to turn")
    second = fake_api.edits[-1]
    assert second.message_id == first.message_id
    assert second.plain is not None and second.reply_markup is not None
    (previous,) = [row[0]["callback_data"] for row in second.reply_markup["inline_keyboard"]]
    assert previous != next_page and previous.startswith("search:")

    def links(text: str) -> set[str]:
        return {f"kursk-{n}" for n in range(1, 8) if f"رقم {n} " in text}

    assert len(links(first.plain)) == 5 and len(links(second.plain)) == 2
    assert links(first.plain) | links(second.plain) == {f"kursk-{n}" for n in range(1, 8)}


@pytest.mark.parametrize("method", ["getMe", "deleteWebhook"])
async def test_sigterm_while_starting_exits_cleanly(
    method: str, fake_api: FakeBotAPI, sqlite_url: str, tmp_path: Path
) -> None:
    """A SIGTERM that arrives while the bot is still starting (checking its token, or
    about to poll with its services open) ends it with status 0 and no error logged."""
    fake_api.delay(method, 3.0)
    bot = BotProcess(fake_api, bot_env(fake_api, sqlite_url), tmp_path)
    await bot.spawn()
    try:
        await fake_api.wait_for(lambda: fake_api.calls[method] > 0, timeout=20)
        await bot.stop_cleanly()
    finally:
        if bot.running:
            await bot.kill()
    assert "ERROR" not in bot.stderr, bot.stderr


# --- quiet hours ------------------------------------------------------------------------------


async def test_alerts_during_quiet_hours_arrive_silently(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """A reader whose /quiet FROM-TO covers now gets the alert silently (not dropped);
    another follower gets it with sound."""
    reader, loud = 1501, 1502
    hour = now().hour  # quiet for two hours from this one: covers now even if the hour turns
    url = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, url_of(sqlite_db))
    adding = add_feed(url, env=env, cwd=tmp_path, breaking=True)
    async with running_newsbot(fake_api, env, tmp_path, adding):
        for chat in (reader, loud):
            await say(fake_api, chat, "/follow روسيا")
        await say(fake_api, reader, f"/quiet {hour}-{(hour + 2) % 24}")
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        await fake_api.wait_for(
            lambda: alerts_to(fake_api, reader) and alerts_to(fake_api, loud),
            timeout=10,
            what="the alerts",
        )
    (silent,) = alerts_to(fake_api, reader)
    (ringing,) = alerts_to(fake_api, loud)
    assert silent.disable_notification and not ringing.disable_notification
