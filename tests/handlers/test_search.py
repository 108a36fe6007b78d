"""/search and /latest through the running bot: results with source, relative time and
link, paging with buttons that edit the message, helpful answers to empty, hostile and
fruitless queries, and the latest breaking alerts without their «عاجل» marker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bot.text.normalise import index_text
from storage.alerts import create_alert
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from tests.botharness import RunningBot, running_bot
from tests.fakebotapi import FakeBotAPI, SentMessage

READER = 501
GROUP = -100500
SOURCE = "وكالة الأنباء"


@pytest.fixture
def newsbot(db: Database, newsbot: RunningBot) -> RunningBot:
    """The running bot on a database emptied after the test (PostgreSQL's outlives it)."""
    return newsbot


async def store(
    newsbot: RunningBot, *stories: tuple[str, timedelta], link: bool = True
) -> list[int]:
    """Store (title, age) stories from one feed, indexed as ingestion indexes them."""
    services = newsbot.services
    now = services.clock()
    async with services.db.transaction() as session:
        feed = add_feed(session, "https://news.example/rss", name=SOURCE)
        # Never due: the watcher must not try to fetch this made-up address.
        feed.next_fetch_at = now + timedelta(days=1)
        await session.flush()
        items = []
        for title, age in stories:
            uid = uuid.uuid4().hex
            summary = "تفاصيل الخبر من المراسل"
            items.append(
                ArticleData(
                    uid=uid,
                    link=f"https://news.example/{uid}" if link else None,
                    title=title,
                    summary=summary,
                    categories=(),
                    published_at=now - age,
                    alertable=False,
                    breaking=False,
                    title_terms=index_text(title),
                    summary_terms=index_text(summary),
                )
            )
        result = await upsert_articles(session, feed.id, items, now)
    return result.new_ids


def links(message: SentMessage) -> list[str]:
    """The URLs of the message's text links."""
    return [entity["url"] for entity in message.entities if entity["type"] == "text_link"]


def bold(message: SentMessage) -> list[str]:
    """The bold pieces of the message's text."""
    return [
        message.plain[entity["offset"] : entity["offset"] + entity["length"]]
        for entity in message.entities
        if entity["type"] == "bold"
    ]


async def test_search_finds_an_arabic_story_with_source_time_and_link(
    newsbot: RunningBot,
) -> None:
    """An Arabic reader's /search shows the story's headline in bold, its source, how long
    ago in Arabic and its link, and no page buttons for a single page."""
    await store(
        newsbot,
        ("بوتين يشكر زعيم كوريا الشمالية على المساعدة في كورسك", timedelta(hours=3)),
        ("مصر تستضيف قمة اقتصادية", timedelta(hours=1)),
    )
    (reply,) = await newsbot.say(READER, "/search كورسك")
    assert bold(reply)[1:] == ["بوتين يشكر زعيم كوريا الشمالية على المساعدة في كورسك"]
    assert SOURCE in reply.plain
    assert "قبل 3 ساعات" in reply.plain  # Babel's Arabic relative time
    (link,) = links(reply)
    assert link.startswith("https://news.example/")
    assert "مصر" not in reply.plain
    assert reply.reply_markup is None
    assert reply.link_preview_options == {"is_disabled": True}


async def test_other_spellings_and_groups_find_it_too(newsbot: RunningBot) -> None:
    """Search reads the query with the text engine (clitics, spellings) and works in a group."""
    await store(newsbot, ("بوتين يشكر زعيم كوريا الشمالية", timedelta(minutes=30)))
    (reply,) = await newsbot.say(
        GROUP, "/search وبوتن", chat_type="supergroup", language_code="en"
    )
    assert "بوتين يشكر زعيم كوريا الشمالية" in bold(reply)
    assert "30 minutes ago" in reply.plain


async def test_pages_turn_with_buttons_that_edit_the_message(newsbot: RunningBot) -> None:
    """Twelve matches make three pages of five: «Next» and «Previous» edit the message in
    place, each page shows its own stories, and the buttons offer only pages that exist."""
    titles = [f"غارة على غزة رقم {number}" for number in range(12)]
    await store(
        newsbot, *((title, timedelta(minutes=number)) for number, title in enumerate(titles))
    )
    (reply,) = await newsbot.say(READER, "/search غزة", language_code="en")
    assert "12 results" in reply.plain and "Page 1 of 3" in reply.plain
    (next_page,) = reply.callback_data
    search = next_page.rsplit(":", 1)[0]
    assert search.startswith("search:") and next_page == f"{search}:2"
    pages = {1: bold(reply)[1:]}

    def buttons() -> list[str]:
        markup = newsbot.fake.message(READER, reply.message_id).get("reply_markup")
        return [button["callback_data"] for button in markup["inline_keyboard"][0]]

    def shown() -> str:
        return str(newsbot.fake.message(READER, reply.message_id)["text"])

    await newsbot.press(READER, reply, f"{search}:2")
    assert "Page 2 of 3" in shown() and buttons() == [f"{search}:1", f"{search}:3"]
    pages[2] = [line for line in shown().splitlines() if line.startswith("غارة")]

    await newsbot.press(READER, reply, f"{search}:3")
    assert "Page 3 of 3" in shown() and buttons() == [f"{search}:2"]
    pages[3] = [line for line in shown().splitlines() if line.startswith("غارة")]

    await newsbot.press(READER, reply, f"{search}:2")
    assert "Page 2 of 3" in shown()
    await newsbot.press(READER, reply, f"{search}:1")
    assert "Page 1 of 3" in shown() and buttons() == [f"{search}:2"]

    assert len(newsbot.fake.messages_to(READER)) == 1  # every page in the same message
    assert len(newsbot.fake.edits) == 4
    assert [len(page) for page in pages.values()] == [5, 5, 2]
    assert sorted(title for page in pages.values() for title in page) == sorted(titles)
    assert pages[1][0] == titles[0]  # the newest first


async def test_an_expired_search_says_so(newsbot: RunningBot) -> None:
    """A page button pressed a day after the search answers with a short note and leaves
    the message as it was."""
    await store(newsbot, *((f"غزة {number}", timedelta(minutes=number)) for number in range(7)))
    (reply,) = await newsbot.say(READER, "/search غزة", language_code="en")
    searched = newsbot.services.clock()
    newsbot.services.clock = lambda: searched + timedelta(hours=25)
    await newsbot.press(READER, reply, reply.callback_data[0])
    assert "expired" in (newsbot.fake.callback_answers[-1].text or "")
    assert newsbot.fake.edits == []


async def test_another_process_turns_the_page_after_a_restart(
    database_url: str, db: Database, fake_api: FakeBotAPI
) -> None:
    """«Next» under a search drawn by one bot process is answered by another process on the
    same database, after the first has stopped: page 2, in place."""
    async with running_bot(database_url, fake_api) as first:
        await store(first, *((f"غارة على غزة رقم {n}", timedelta(minutes=n)) for n in range(7)))
        (reply,) = await first.say(READER, "/search غزة", language_code="en")
    assert "Page 1 of 2" in reply.plain
    async with running_bot(database_url, fake_api) as second:
        await second.press(READER, reply, reply.callback_data[0])
        shown = str(fake_api.message(READER, reply.message_id)["text"])
    assert "Page 2 of 2" in shown
    assert [line for line in shown.splitlines() if line.startswith("غارة")] == [
        "غارة على غزة رقم 5",
        "غارة على غزة رقم 6",
    ]
    assert fake_api.callback_answers[-1].text is None  # no "expired" note


async def test_no_results_and_an_empty_query_get_help(newsbot: RunningBot) -> None:
    """A query nothing matches suggests another spelling or fewer words; no query shows how."""
    await store(newsbot, ("مصر تستضيف قمة اقتصادية", timedelta(hours=1)))
    (nothing,) = await newsbot.say(READER, "/search زلزال في تشيلي", language_code="en")
    assert "Nothing found" in nothing.plain and "fewer words" in nothing.plain
    assert "زلزال في تشيلي" in nothing.plain and nothing.reply_markup is None
    (usage,) = await newsbot.say(READER, "/search", language_code="en")
    assert "/search كورسك" in usage.plain


async def test_hostile_queries_are_answered_normally(newsbot: RunningBot) -> None:
    """Quotes, stars, query syntax and 5,000 characters are plain words to search for: each
    gets one ordinary answer, with the query shown shortened."""
    await store(newsbot, ("قمة OR اقتصادية", timedelta(hours=1)))
    hostile = ['"*(OR', "' OR 1=1; --", "NEAR(قمة", "<b>&amp;", "*" * 50, "قمة " * 1250]
    for query in hostile:
        (reply,) = await newsbot.say(READER, f"/search {query}", language_code="en")
        assert reply.plain, query
        assert len(reply.plain) < 1500
    assert "1 result" in newsbot.fake.texts_to(READER)[0]  # "OR" is a word like any other


async def test_latest_lists_recent_alerts_without_the_marker(newsbot: RunningBot) -> None:
    """/latest shows the newest breaking alerts first: headline without «عاجل», source, how
    long ago and link; an editor's alert is from the newsroom."""
    services = newsbot.services
    (article_id,) = await store(newsbot, ("عاجل: زلزال يضرب تركيا", timedelta(hours=2)))
    async with services.db.transaction() as session:
        await create_alert(
            session, [], services.clock() - timedelta(hours=2), article_id=article_id
        )
        await create_alert(
            session, [], services.clock(), text="اجتماع طارئ لمجلس الأمن", created_by=7001
        )
    (reply,) = await newsbot.say(READER, "/latest", language_code="en")
    headlines = bold(reply)[1:]
    assert headlines == ["اجتماع طارئ لمجلس الأمن", "زلزال يضرب تركيا"]
    assert "عاجل" not in reply.plain
    assert "the newsroom" in reply.plain and SOURCE in reply.plain
    assert "2 hours ago" in reply.plain and "just now" in reply.plain
    assert len(links(reply)) == 1


async def test_latest_before_any_alert(newsbot: RunningBot) -> None:
    """/latest with no alert yet says that alerts will appear there."""
    (reply,) = await newsbot.say(READER, "/latest", language_code="en")
    assert "No breaking news yet" in reply.plain
