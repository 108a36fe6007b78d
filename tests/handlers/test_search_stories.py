"""/latest and /search show stories, not articles: one line per story with how many other
outlets reported it, the best article of each story once, and a button listing a story's
articles."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bot.feeds.stories import StoryAssigner
from bot.text.normalise import index_text
from storage.alerts import create_alert
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from tests.botharness import RunningBot
from tests.handlers.test_search import bold, links

READER = 501
OUTLETS = ["الجزيرة", "سكاي نيوز عربية", "بي بي سي عربي", "الأناضول"]
KYIV = [
    "روسيا تشن هجوما واسعا بالمسيرات على العاصمة الأوكرانية كييف",
    "هجوم روسي بالمسيرات والصواريخ على كييف يوقع 3 قتلى",
    "مقتل ثلاثة أشخاص في هجوم روسي بطائرات مسيرة على كييف",
    "كييف: ثلاثة قتلى في هجوم روسي واسع بالمسيرات",
]
BRIDGE = "بلدية كييف تفتتح جسرا جديدا فوق نهر دنيبرو"


@pytest.fixture
def newsbot(db: Database, newsbot: RunningBot) -> RunningBot:
    """The running bot on a database emptied after the test (PostgreSQL's outlives it)."""
    return newsbot


async def report(newsbot: RunningBot, *reports: tuple[int, str, timedelta]) -> list[int]:
    """Store (outlet, title, age) reports, each from its outlet's feed, put in stories as
    ingestion puts them; their ids."""
    services = newsbot.services
    now = services.clock()
    async with services.db.transaction() as session:
        feeds = []
        for index, name in enumerate(OUTLETS):
            feed = add_feed(session, f"https://outlet{index}.example/rss", name=name)
            feed.next_fetch_at = now + timedelta(days=1)  # never due: made-up addresses
            feeds.append(feed)
        await session.flush()
        feed_ids = [feed.id for feed in feeds]
    assigner = StoryAssigner()
    ids = []
    for outlet, title, age in reports:
        uid = uuid.uuid4().hex
        item = ArticleData(
            uid=uid,
            link=f"https://outlet{outlet}.example/{uid}",
            title=title,
            summary="",
            categories=(),
            published_at=now - age,
            alertable=False,
            breaking=False,
            title_terms=index_text(title),
        )
        async with services.db.transaction() as session:
            new = await upsert_articles(session, feed_ids[outlet], [item], now - age)
            await assigner.assign(session, new.new_ids, now - age)
        ids += new.new_ids
    return ids


async def test_search_shows_each_story_once_with_a_button_listing_its_outlets(
    newsbot: RunningBot,
) -> None:
    """Three outlets' reports of one attack and another Kyiv story: /search shows two
    results, the attack once with «and 2 other outlets»; its button lists the three
    articles in place, and «Back» returns to the results."""
    await report(
        newsbot,
        (0, KYIV[0], timedelta(minutes=30)),
        (1, KYIV[1], timedelta(minutes=20)),
        (2, KYIV[2], timedelta(minutes=10)),
        (3, BRIDGE, timedelta(minutes=5)),
    )
    (reply,) = await newsbot.say(READER, "/search كييف", language_code="en")
    assert "2 results" in reply.plain
    assert len(bold(reply)) == 3  # the header and two stories
    assert reply.plain.count("and 2 other outlets") == 1
    (story_button,) = reply.callback_data  # one page: only the story's button
    assert story_button.startswith("search:") and story_button.count(":") == 3
    assert len(story_button.encode()) <= 64

    def shown() -> str:
        return str(newsbot.fake.message(READER, reply.message_id)["text"])

    await newsbot.press(READER, reply, story_button)
    assert "Reported by 3 outlets" in shown()
    for name, title in zip(OUTLETS, KYIV[:3], strict=False):
        assert name in shown() and title in shown()
    assert BRIDGE not in shown()
    back = newsbot.fake.message(READER, reply.message_id)["reply_markup"]["inline_keyboard"]
    (back_button,) = (button["callback_data"] for row in back for button in row)
    await newsbot.press(READER, reply, back_button)
    assert "2 results" in shown() and "and 2 other outlets" in shown()
    assert len(newsbot.fake.messages_to(READER)) == 1  # all in the same message


async def test_latest_lists_stories_with_how_many_outlets_reported_them(
    newsbot: RunningBot,
) -> None:
    """Two alerts of one story reported by four outlets and an editor's alert: /latest
    shows two lines, the story by its first alert's headline with «ونقلته 3 مصادر أخرى»."""
    services = newsbot.services
    ids = await report(
        newsbot,
        (0, KYIV[0], timedelta(minutes=40)),
        (1, KYIV[1], timedelta(minutes=30)),
        (2, KYIV[2], timedelta(minutes=20)),
        (3, KYIV[3], timedelta(minutes=10)),
    )
    now = services.clock()
    async with services.db.transaction() as session:
        await create_alert(session, [], now - timedelta(minutes=40), article_id=ids[0])
        await create_alert(session, [], now - timedelta(minutes=10), article_id=ids[3])
        await create_alert(session, [], now, text="اجتماع طارئ لمجلس الأمن", created_by=7001)
    (reply,) = await newsbot.say(READER, "/latest")
    assert bold(reply)[1:] == ["اجتماع طارئ لمجلس الأمن", KYIV[0]]
    assert "ونقلته 3 مصادر أخرى" in reply.plain
    assert len(links(reply)) == 1


async def test_latest_says_one_other_outlet_in_words(newsbot: RunningBot) -> None:
    """A story reported by two outlets says «ونقله مصدر آخر», without a numeral."""
    services = newsbot.services
    ids = await report(
        newsbot, (0, KYIV[0], timedelta(minutes=40)), (1, KYIV[1], timedelta(minutes=30))
    )
    async with services.db.transaction() as session:
        await create_alert(session, [], services.clock(), article_id=ids[0])
    (reply,) = await newsbot.say(READER, "/latest")
    assert "ونقله مصدر آخر" in reply.plain
