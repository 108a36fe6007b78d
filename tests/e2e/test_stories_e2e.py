"""End to end: one push per story through ``newsbot run`` against the fake Bot API and feeds
from a local HTTP server. Three outlets report one event minutes apart: each follower gets
one push, edited in place to name the two others; a lookalike event in another city is a
push of its own; a rising toll is a silent reply to the first alert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.db import Database
from tests.fakebotapi import FakeBotAPI, SentMessage
from tests.feedserver import FeedServer, Item
from tests.processes import (
    add_feed,
    alert_counts,
    alerts_to,
    bot_env,
    feed,
    outbox_empty,
    rfc822,
    running_newsbot,
    seed_followers,
    story,
    wait_until,
)

FOLLOWERS = [801, 802]
OUTLETS = {"agency.xml": "الجزيرة نت", "rt.xml": "روسيا اليوم", "sky.xml": "سكاي نيوز عربية"}


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """A migrated SQLite database."""
    database = Database(sqlite_url)
    yield database
    await database.dispose()


def item(title: str, slug: str, path: str, minutes: int) -> Item:
    """An item of an outlet, published ``minutes`` after the first one (minutes apart)."""
    published = datetime.now(UTC) - timedelta(minutes=10) + timedelta(minutes=minutes)
    return Item(
        title, f"https://{path.removesuffix('.xml')}.example/{slug}", published=rfc822(published)
    )


def confirmed(text: str) -> bool:
    """Whether an alert names the two other outlets as confirming it (in the order their
    articles were stored: the polls of two feeds may come in either order)."""
    others = [OUTLETS["rt.xml"], OUTLETS["sky.xml"]]
    return any(f"أكّدته أيضًا: {a}، {b}\n" in text for a, b in (others, others[::-1]))


def shown(fake: FakeBotAPI, message: SentMessage) -> str:
    """What a message says now, after its edits."""
    return str(fake.message(message.chat_id, message.message_id)["text"])


async def test_three_outlets_one_push_edited_in_place_lookalikes_apart_developments_threaded(
    fake_api: FakeBotAPI, feed_server: FeedServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """Three outlets with the same story minutes apart → one push per follower, edited to
    name the other two; the same event in another city → a second push; a rising toll →
    a silent reply to each follower's first alert; nobody gets a duplicate."""
    await seed_followers(sqlite_db, FOLLOWERS, "سوريا")
    old = story("مصر تستضيف قمة اقتصادية", "egypt", age=timedelta(hours=1))
    for path, name in OUTLETS.items():
        feed_server.add(path, feed(old, title=name))
    env = bot_env(fake_api, sqlite_db.url.render_as_string(hide_password=False))
    adding = [add_feed(feed_server.url(path), env=env, cwd=tmp_path) for path in OUTLETS]
    async with running_newsbot(fake_api, env, tmp_path, *adding):
        idlib = item(
            "عاجل: مقتل 5 أشخاص في انفجار يهز مدينة إدلب السورية", "idlib", "agency.xml", 0
        )
        feed_server.add("agency.xml", feed(idlib, old, title=OUTLETS["agency.xml"]))
        for chat in FOLLOWERS:
            await fake_api.wait_for_messages(chat, 1, timeout=15)

        rt = item("عاجل | مقتل 5 في انفجار بمدينة إدلب شمال غربي سوريا", "idlib", "rt.xml", 3)
        feed_server.add("rt.xml", feed(rt, old, title=OUTLETS["rt.xml"]))
        sky = item("انفجار قوي يضرب مدينة إدلب السورية ويوقع 5 قتلى", "idlib", "sky.xml", 6)
        feed_server.add("sky.xml", feed(sky, old, title=OUTLETS["sky.xml"]))
        await fake_api.wait_for(
            lambda: all(confirmed(shown(fake_api, alerts_to(fake_api, c)[0])) for c in FOLLOWERS),
            timeout=20,
            what="each follower's alert edited to name the two other outlets",
        )
        assert alert_counts(fake_api, FOLLOWERS) == dict.fromkeys(FOLLOWERS, 1)

        aleppo = item(
            "عاجل: مقتل 5 أشخاص في انفجار يهز مدينة حلب السورية", "aleppo", "agency.xml", 7
        )
        feed_server.add("agency.xml", feed(aleppo, idlib, old, title=OUTLETS["agency.xml"]))
        await fake_api.wait_for(
            lambda: alert_counts(fake_api, FOLLOWERS) == dict.fromkeys(FOLLOWERS, 2),
            timeout=15,
            what="the lookalike story in Aleppo pushed too",
        )

        toll = item("عاجل: ارتفاع حصيلة قتلى انفجار إدلب إلى 12", "idlib-toll", "rt.xml", 9)
        feed_server.add("rt.xml", feed(toll, rt, old, title=OUTLETS["rt.xml"]))
        for chat in FOLLOWERS:
            await fake_api.wait_for_messages(chat, 3, timeout=15)
        await wait_until(lambda: outbox_empty(sqlite_db), what="the outbox to empty")

    for chat in FOLLOWERS:
        first, second = alerts_to(fake_api, chat)
        assert "إدلب" in first.plain and "حلب" in second.plain
        assert confirmed(shown(fake_api, first)) and "أكّدته" not in shown(fake_api, second)
        (reply,) = [m for m in fake_api.messages_to(chat) if m.reply_to_message_id]
        assert reply.reply_to_message_id == first.message_id
        assert reply.disable_notification and "12" in reply.plain
        assert len(fake_api.messages_to(chat)) == 3  # two pushes and one reply, no duplicate
