"""The editors' commands through the running bot: /alert previewed, confirmed once and
delivered (or cancelled), to everyone or to a topic's followers; /feeds, /addfeed (private
addresses refused unless the operator allows them), /removefeed and /stats; and a polite
refusal, with nothing done, for everyone else."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.text.topics import ResolvedTopic, resolve
from storage.alerts import AlertRecord, list_latest_alerts
from storage.chats import upsert_chat
from storage.db import Database
from storage.deliveries import SENT
from storage.feeds import add_feed, list_feeds
from storage.models import Delivery, Draft
from tests.botharness import EDITOR, RunningBot, running_bot
from tests.fakebotapi import FakeBotAPI, SentMessage
from tests.feedserver import FeedServer, Item, make_rss

READER = 501
RUSSIA_FOLLOWERS = (601, 602)
EGYPT_FOLLOWER = 603
REFUSAL = "only the newsroom's editors"


@pytest.fixture
def newsbot(db: Database, newsbot: RunningBot) -> RunningBot:
    """The running bot on a database emptied after the test (PostgreSQL's outlives it)."""
    return newsbot


def topic(phrase: str) -> ResolvedTopic:
    """A catalog topic as a reader would follow it."""
    resolved = resolve(phrase)
    assert isinstance(resolved, ResolvedTopic)
    return resolved


async def readers(newsbot: RunningBot) -> None:
    """Two Arabic readers follow Russia, one follows Egypt."""
    services = newsbot.services
    async with services.db.transaction() as session:
        for chat_id, phrase in [(c, "روسيا") for c in RUSSIA_FOLLOWERS] + [
            (EGYPT_FOLLOWER, "مصر")
        ]:
            await upsert_chat(session, chat_id, kind="private", language="ar")
            await services.topics.follow(session, chat_id, topic(phrase))


async def deliveries(newsbot: RunningBot) -> dict[int, int]:
    """How many delivery rows each chat has."""
    async with newsbot.services.db.sessions() as session:
        rows = await session.execute(
            select(Delivery.chat_id, func.count()).group_by(Delivery.chat_id)
        )
        return dict(rows.all())


async def drafts(newsbot: RunningBot) -> int:
    """How many drafts are stored."""
    async with newsbot.services.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Draft)) or 0)


async def preview(newsbot: RunningBot, text: str, chat_id: int = EDITOR) -> SentMessage:
    """The editor sends /alert and gets the preview (in English)."""
    (reply,) = await newsbot.say(chat_id, text, user_id=EDITOR, language_code="en")
    return reply


async def test_an_editor_alert_is_previewed_confirmed_and_delivered(newsbot: RunningBot) -> None:
    """/alert shows the alert as readers will see it and how many chats it reaches; «Send»
    creates one delivery per receiving chat, the sender delivers it, and the preview says
    how many chats it went to."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert انفجار في مرفأ بيروت")
    assert shown.plain.startswith("BREAKING | انفجار في مرفأ بيروت")
    assert "the newsroom" in shown.plain
    assert "Send this alert to 3 chats?" in shown.plain
    send, cancel = shown.callback_data
    assert send.startswith("alert:send:") and cancel.startswith("alert:cancel:")
    assert await deliveries(newsbot) == {}  # nothing before the editor confirms

    await newsbot.press(EDITOR, shown, send, user_id=EDITOR)
    assert await deliveries(newsbot) == {601: 1, 602: 1, 603: 1}
    for chat_id in (*RUSSIA_FOLLOWERS, EGYPT_FOLLOWER):
        (alert,) = await newsbot.fake.wait_for_messages(chat_id)
        assert "انفجار في مرفأ بيروت" in alert.plain
        assert alert.plain.startswith("عاجل") or alert.plain.startswith("BREAKING")
    edited = newsbot.fake.message(EDITOR, shown.message_id)
    assert "Sent to 3 chats." in edited["text"] and "reply_markup" not in edited
    (record,) = await _latest(newsbot)
    assert record.by_editor and record.title == "انفجار في مرفأ بيروت"


async def test_pressing_send_twice_sends_once(newsbot: RunningBot) -> None:
    """Two presses of «Send» arriving together make one alert: the second is told it was
    already sent."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert اجتماع طارئ")
    send = shown.callback_data[0]
    answered = len(newsbot.fake.callback_answers)
    newsbot.fake.press_button(EDITOR, shown.message_id, send, user_id=EDITOR)
    newsbot.fake.press_button(EDITOR, shown.message_id, send, user_id=EDITOR)
    await newsbot.fake.wait_for(lambda: len(newsbot.fake.callback_answers) == answered + 2)
    assert len(await _latest(newsbot)) == 1
    assert await deliveries(newsbot) == {601: 1, 602: 1, 603: 1}
    answers = [answer.text or "" for answer in newsbot.fake.callback_answers[answered:]]
    assert sorted(answers) == ["Sent to 3 chats.", "This alert was already sent or cancelled."]


async def test_cancel_sends_nothing(newsbot: RunningBot) -> None:
    """«Cancel» edits the preview to say so; no alert, no delivery, no message to readers."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert خبر لن يرسل")
    await newsbot.press(EDITOR, shown, shown.callback_data[1], user_id=EDITOR)
    edited = newsbot.fake.message(EDITOR, shown.message_id)
    assert "Cancelled" in edited["text"] and "reply_markup" not in edited
    assert await _latest(newsbot) == [] and await deliveries(newsbot) == {}
    assert await drafts(newsbot) == 0
    await asyncio.sleep(0.3)
    assert all(not newsbot.fake.messages_to(chat) for chat in (601, 602, 603))


async def test_a_topic_alert_reaches_only_its_followers(newsbot: RunningBot) -> None:
    """/alert TEXT #topic goes to that topic's followers only, tagged with the topic; an
    unfollowed topic is refused before any preview."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert الكرملين يعلن هدنة #روسيا")
    assert "Send this alert to the 2 chats following Russia?" in shown.plain
    assert "#Russia" in shown.plain
    await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
    assert await deliveries(newsbot) == {601: 1, 602: 1}
    for chat_id in RUSSIA_FOLLOWERS:
        (alert,) = await newsbot.fake.wait_for_messages(chat_id)
        assert "الكرملين يعلن هدنة" in alert.plain and "#روسيا" in alert.plain
    assert "Sent to 2 chats." in newsbot.fake.message(EDITOR, shown.message_id)["text"]

    (nobody,) = await newsbot.say(
        EDITOR, "/alert خبر عن كوكب المريخ #كوكب_المريخ", language_code="en"
    )
    assert "Nobody follows #كوكب_المريخ" in nobody.plain and nobody.reply_markup is None
    assert len(await _latest(newsbot)) == 1


async def test_only_the_writing_editor_may_send(
    db: Database, fake_api: FakeBotAPI, database_url: str
) -> None:
    """Another editor pressing «Send» under an editor's preview is refused and the draft
    waits for its editor."""
    other = EDITOR + 1
    async with running_bot(database_url, fake_api, admins=frozenset({EDITOR, other})) as newsbot:
        await readers(newsbot)
        shown = await preview(newsbot, "/alert اختبار المحرر")
        await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=other)
        assert newsbot.fake.callback_answers[-1].show_alert
        assert await _latest(newsbot) == [] and await drafts(newsbot) == 1
        await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
        assert len(await _latest(newsbot)) == 1


async def test_everyone_else_is_refused_and_nothing_happens(
    newsbot: RunningBot, feed_server: FeedServer
) -> None:
    """A reader who is not an editor gets a polite refusal to every editor command, and no
    alert, draft or feed change follows."""
    await readers(newsbot)
    services = newsbot.services
    async with services.db.transaction() as session:
        watched = add_feed(session, "https://news.example/rss", name="وكالة")
        watched.next_fetch_at = services.clock() + timedelta(days=1)  # the watcher leaves it
    url = feed_server.add("feed.xml", make_rss("وكالة", [Item("خبر", "https://n.example/1")]))
    commands = ["/alert خبر مزيف", "/feeds", f"/addfeed {url}", "/removefeed 1", "/stats"]
    for command in commands:
        (reply,) = await newsbot.say(READER, command, language_code="en")
        assert REFUSAL in reply.plain, command
        assert reply.reply_markup is None
    assert await drafts(newsbot) == 0
    assert await _latest(newsbot) == [] and await deliveries(newsbot) == {}
    async with services.db.sessions() as session:
        assert [feed.url for feed in await list_feeds(session)] == ["https://news.example/rss"]
    assert feed_server.hits["feed.xml"] == 0


async def test_a_loopback_feed_is_refused_from_the_chat(
    newsbot: RunningBot, feed_server: FeedServer
) -> None:
    """/addfeed of a feed on 127.0.0.1 is refused (private address) and nothing is kept."""
    url = feed_server.add("feed.xml", make_rss("وكالة", [Item("خبر", "https://n.example/1")]))
    (reply,) = await newsbot.say(EDITOR, f"/addfeed {url}", language_code="en")
    assert "Could not fetch" in reply.plain and "private" in reply.plain
    assert feed_server.hits["feed.xml"] == 0
    async with newsbot.services.db.sessions() as session:
        assert await list_feeds(session) == []
    (usage,) = await newsbot.say(EDITOR, "/addfeed", language_code="en")
    assert "/addfeed https://example.com/rss.xml breaking" in usage.plain
    (bad,) = await newsbot.say(EDITOR, "/addfeed htps//example", language_code="en")
    assert "not a feed address" in bad.plain


async def test_feeds_are_added_listed_and_removed_when_allowed(
    db: Database, fake_api: FakeBotAPI, database_url: str, feed_server: FeedServer
) -> None:
    """With private feeds allowed, /addfeed fetches the feed once and watches it (breaking
    if asked), /feeds lists it with its status, and /removefeed stops watching it."""
    items = [Item(f"خبر رقم {number}", f"https://n.example/{number}") for number in range(3)]
    url = feed_server.add("feed.xml", make_rss("وكالة الأنباء", items))
    async with running_bot(database_url, fake_api, allow_private_feeds=True) as newsbot:
        (added,) = await newsbot.say(EDITOR, f"/addfeed {url} breaking", language_code="en")
        assert "Added feed 1: وكالة الأنباء (3 items archived" in added.plain
        (again,) = await newsbot.say(EDITOR, f"/addfeed {url}", language_code="en")
        assert "already watched: it is feed 1" in again.plain
        async with newsbot.services.db.sessions() as session:
            (feed,) = await list_feeds(session)
        assert feed.breaking and feed.url == url

        (listed,) = await newsbot.say(EDITOR, "/feeds", language_code="en")
        assert "1 feed" in listed.plain and "وكالة الأنباء" in listed.plain
        assert url in listed.plain and "breaking" in listed.plain
        assert "working · 3 articles" in listed.plain

        feed_server.add("gone.xml", "not here", status=404)
        (failed,) = await newsbot.say(
            EDITOR, f"/addfeed {feed_server.url('gone.xml')}", language_code="en"
        )
        assert "Could not fetch" in failed.plain and "HTTP 404" in failed.plain

        (removed,) = await newsbot.say(EDITOR, "/removefeed 1", language_code="en")
        assert "Removed feed 1: وكالة الأنباء" in removed.plain
        (missing,) = await newsbot.say(EDITOR, f"/removefeed {url}", language_code="en")
        assert "no such feed" in missing.plain
        (empty,) = await newsbot.say(EDITOR, "/feeds", language_code="en")
        assert "No feeds yet" in empty.plain
        async with newsbot.services.db.sessions() as session:
            assert await list_feeds(session) == []


async def test_stats_show_the_counts(newsbot: RunningBot) -> None:
    """/stats counts chats, subscriptions, top topics by name, deliveries of the last hour
    and day, and feeds."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert خبر للإحصاء #روسيا")
    await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
    await _until_sent(newsbot, 2)
    (reply,) = await newsbot.say(EDITOR, "/stats", language_code="en")
    text = reply.plain
    assert "3 chats · 3 active" in text
    assert "3 subscriptions" in text
    assert "• Russia: 2 followers" in text and "• Egypt: 1 follower" in text
    assert text.count("2 alerts delivered") == 2  # the last hour and the last day
    assert text.count("0 deliveries failed") == 2
    assert "0 feeds" in text


async def _until_sent(newsbot: RunningBot, count: int) -> None:
    """Wait until the sender has recorded ``count`` deliveries as sent."""
    async with asyncio.timeout(5):
        while True:
            async with newsbot.services.db.sessions() as session:
                sent = await session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.state == SENT)
                )
            if sent == count:
                return
            await asyncio.sleep(0.05)


async def _latest(newsbot: RunningBot) -> list[AlertRecord]:
    """The alerts recorded so far, newest first."""
    async with newsbot.services.db.sessions() as session:
        return list(await list_latest_alerts(session, 10))
