"""Feeds the database cannot take as they are, on SQLite and on PostgreSQL: over-long
validators and links, documents with tens of thousands of entries, and a database that
refuses a feed's write. Each is that feed's problem alone, never a loop or a crash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import Core
from bot.feeds.admin import FeedAddError, FeedAddReason, add_feed_and_fetch
from bot.feeds.parse import MAX_ENTRIES
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed, list_feeds
from storage.models import Article
from tests.botharness import EDITOR, running_bot
from tests.fakebotapi import FakeBotAPI
from tests.faults import REFUSAL, refusing_articles
from tests.feeds import ingesting
from tests.feeds.ingesting import feed_row, watch
from tests.feedserver import FeedServer, Item, make_rss

POISON = "poison"


@asynccontextmanager
async def core_for(url: str, **settings: Any) -> AsyncIterator[Core]:
    """The CLI's services on a test database, parsing in this process."""
    async with ingesting.core_for(url, parse_workers=0, **settings) as core:
        yield core


async def articles(db: Database) -> list[Article]:
    """Every stored article, oldest id first."""
    async with db.sessions() as session:
        return list((await session.scalars(select(Article).order_by(Article.id))).all())


def story(title: str, number: int) -> Item:
    """An item published now, with its own link."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    return Item(title, f"https://news.example/{number}", published=now)


# -- a write the database refuses ------------------------------------------------------------


async def test_a_storage_error_fails_that_feed_alone_and_backs_it_off(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A feed whose articles the database refuses is recorded as failing (error, count,
    backoff, validators kept from before) while every other feed of the cycle is stored."""
    good = feed_server.add("good.xml", make_rss("Good", [story("خبر سليم", 1)]))
    bad = feed_server.add("bad.xml", make_rss("Bad", [story("خبر", 2), story(POISON, 3)]))
    async with core_for(database_url) as core, refusing_articles(db, POISON):
        good_id, bad_id = await watch(db, good), await watch(db, bad)
        started = datetime.now(UTC)
        summary = await core.ingestor.poll()
    outcomes = {outcome.feed_id: outcome for outcome in summary.outcomes}
    assert outcomes[good_id].status == "fetched" and len(outcomes[good_id].new_ids) == 1
    assert outcomes[bad_id].status == "failed"
    assert outcomes[bad_id].error is not None and REFUSAL in outcomes[bad_id].error
    feed = await feed_row(db, bad_id)
    assert (feed.last_status, feed.failures) == ("error", 1)
    assert feed.last_error is not None and REFUSAL in feed.last_error
    assert feed.next_fetch_at is not None
    assert feed.next_fetch_at >= started + timedelta(seconds=2 * 60)  # backed off
    assert feed.etag is None  # the next fetch is a full one: nothing of it was stored
    assert [article.title for article in await articles(db)] == ["خبر سليم"]


async def test_the_watcher_does_not_refetch_a_feed_it_cannot_store(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """The watcher backs off a feed whose write fails instead of fetching it again at once."""
    url = feed_server.add("bad.xml", make_rss("Bad", [story(POISON, 1)]))
    async with core_for(database_url) as core, refusing_articles(db, POISON):
        feed_id = await watch(db, url)
        watcher = asyncio.create_task(core.ingestor.watch(tick=0.01))
        try:
            for _ in range(500):  # until the first poll is recorded
                if (await feed_row(db, feed_id)).last_fetch_at is not None:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # fifty more ticks of the watcher
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert feed_server.hits["bad.xml"] == 1
    assert (await feed_row(db, feed_id)).last_status == "error"


async def test_a_feed_whose_first_fetch_cannot_be_stored_is_not_added(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Adding a feed whose first fetch the database refuses says why and keeps no feed."""
    url = feed_server.add("bad.xml", make_rss("Bad", [story(POISON, 1)]))
    async with core_for(database_url) as core, refusing_articles(db, POISON):
        with pytest.raises(FeedAddError) as raised:
            await add_feed_and_fetch(core.db, core.ingestor, url)
    assert raised.value.reason is FeedAddReason.FETCH_FAILED
    assert REFUSAL in raised.value.detail
    async with db.sessions() as session:
        assert await list_feeds(session) == []


async def test_feeds_shows_a_feed_that_cannot_be_stored_as_failing(
    db: Database, database_url: str, fake_api: FakeBotAPI, feed_server: FeedServer
) -> None:
    """/feeds shows the database's refusal as the feed's last error, with its count."""
    url = feed_server.add("bad.xml", make_rss("Bad", [story(POISON, 1)]))
    async with running_bot(database_url, fake_api) as newsbot:
        feed_id = await watch(db, url, hold=True)
        async with refusing_articles(db, POISON):
            outcome = await newsbot.services.ingestor.poll_feed(feed_id)
        (listed,) = await newsbot.say(EDITOR, "/feeds", language_code="en")
    assert outcome.status == "failed"
    assert "error (1 failure in a row)" in listed.plain and REFUSAL in listed.plain


# -- values too long for their columns --------------------------------------------------------


async def test_overlong_validators_are_not_kept(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """An ETag over 1,024 characters or a Last-Modified over 200 is not stored (nor sent
    back) and the feed is stored; validators that fit are kept."""
    body = make_rss("Agency", [story("خبر", 1)])
    long_etag, long_date = '"' + "e" * 1500 + '"', "x" * 300
    fits_etag, fits_date = '"' + "f" * 1022 + '"', "y" * 200
    long = feed_server.add(
        "long.xml", body, validators=False, headers={"ETag": long_etag, "Last-Modified": long_date}
    )
    fits = feed_server.add(
        "fits.xml", body, validators=False, headers={"ETag": fits_etag, "Last-Modified": fits_date}
    )
    async with core_for(database_url) as core:
        long_id, fits_id = await watch(db, long), await watch(db, fits)
        outcome = await core.ingestor.poll_feed(long_id)
        await core.ingestor.poll_feed(fits_id)
        await core.ingestor.poll_feed(long_id)
    assert outcome.status == "fetched" and len(outcome.new_ids) == 1
    stored = await feed_row(db, long_id)
    assert (stored.etag, stored.last_modified, stored.last_status) == (None, None, "ok")
    assert "If-None-Match" not in feed_server.requests[-1].headers
    kept = await feed_row(db, fits_id)
    assert (kept.etag, kept.last_modified) == (fits_etag, fits_date)


async def test_overlong_links_are_dropped_and_the_items_kept(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A link over 2,048 characters, or over 2,048 bytes of Arabic (past PostgreSQL's index
    limit), is dropped: the item is stored without it, as is the feed's home page."""
    letters = [chr(code) for code in range(0x0621, 0x064B)]
    arabic = "".join(random.Random(7).choice(letters) for _ in range(1400))  # 2,800 bytes
    long_ascii = "https://news.example/" + "a" * 2100
    items = [
        Item("رابط طويل", long_ascii, guid="g-1"),
        Item("رابط عربي طويل", f"https://news.example/{arabic}", guid="g-2"),
        Item("رابط عادي", "https://news.example/ok", guid="g-3"),
    ]
    url = feed_server.add("feed.xml", make_rss("Agency", items, link=long_ascii))
    async with core_for(database_url) as core:
        feed_id = await watch(db, url)
        outcome = await core.ingestor.poll_feed(feed_id)
    assert outcome.status == "fetched", outcome.error
    stored = {article.title: article.link for article in await articles(db)}
    assert stored == {
        "رابط طويل": None,
        "رابط عربي طويل": None,
        "رابط عادي": "https://news.example/ok",
    }
    assert (await feed_row(db, feed_id)).site_link is None


async def test_a_permanent_move_to_an_overlong_url_keeps_the_old_one(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A feed moved permanently to a URL too long to store is fetched and keeps its URL."""
    path = "moved/" + "m" * 2100 + ".xml"
    new = feed_server.add(path, make_rss("Moved", [story("نقل", 1)]))
    old = feed_server.add("old.xml", redirect_to=new, status=301)
    async with core_for(database_url) as core:
        feed_id = await watch(db, old)
        outcome = await core.ingestor.poll_feed(feed_id)
    assert outcome.status == "fetched", outcome.error
    assert (await feed_row(db, feed_id)).url == old


async def test_an_overlong_name_is_cut_to_fit(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A feed's name over 200 characters is shortened to fit rather than failing the add."""
    url = feed_server.add("feed.xml", make_rss("Agency", [story("خبر", 1)]))
    async with core_for(database_url) as core:
        added = await add_feed_and_fetch(core.db, core.ingestor, url, name="وكالة " * 100)
    name = (await feed_row(db, added.id)).name
    assert name is not None and len(name) <= 200 and name.startswith("وكالة وكالة")
    assert added.title == name


async def test_control_characters_in_a_guid_do_not_fail_the_feed(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A guid holding a NUL or a lone surrogate (malformed XML read leniently) is stored
    without them: PostgreSQL's text cannot hold either."""
    document = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        '<item><title>خبر</title><guid isPermaLink="false">g&#0;1&#xD800;z</guid></item>'
        "</channel></rss>"
    )
    url = feed_server.add("feed.xml", document)
    async with core_for(database_url) as core:
        outcome = await core.ingestor.poll_feed(await watch(db, url))
    assert outcome.status == "fetched", outcome.error
    (article,) = await articles(db)
    assert "\x00" not in article.uid and "g1" in article.uid


# -- documents with very many entries ---------------------------------------------------------


async def test_entries_past_the_cap_are_dropped_and_logged(
    db: Database, database_url: str, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A document with more entries than any real feed keeps the first MAX_ENTRIES (feeds
    list the newest first), stores them, and logs how many it dropped."""
    items = [
        Item(f"خبر {number}", f"https://news.example/{number}", guid=f"n-{number}")
        for number in range(MAX_ENTRIES + 3)
    ]
    url = feed_server.add("many.xml", make_rss("Many", items))
    async with core_for(database_url) as core:
        feed_id = await watch(db, url)
        with caplog.at_level(logging.WARNING, logger="bot.feeds.ingest"):
            outcome = await core.ingestor.poll_feed(feed_id)
    assert outcome.status == "fetched" and outcome.items == MAX_ENTRIES
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Article)) == MAX_ENTRIES
        titles = set((await session.scalars(select(Article.title))).all())
    assert f"خبر {MAX_ENTRIES - 1}" in titles and f"خبر {MAX_ENTRIES}" not in titles
    assert any("3 entries" in record.getMessage() for record in caplog.records)


async def test_lists_past_the_parameter_limit_are_stored_in_chunks(db: Database) -> None:
    """Storing more items than one statement may carry parameters (asyncpg: 32,767)
    works, and storing them again finds every one of them."""
    now = datetime.now(UTC)
    items = [
        ArticleData(
            uid=f"u:https://news.example/{number}",
            link=f"https://news.example/{number}",
            link_key=f"https://news.example/{number}",
            title=f"خبر {number}",
            summary="",
            categories=(),
            published_at=now,
            alertable=False,
            breaking=False,
        )
        for number in range(16_400)  # a uid and a link each: past 32,767 parameters
    ]
    async with db.transaction() as session:
        feed = add_feed(session, "https://news.example/feed.xml")
        await session.flush()
        first = await upsert_articles(session, feed.id, items, now)
    async with db.transaction() as session:
        again = await upsert_articles(session, feed.id, items, now)
    assert len(first.new_ids) == len(items)
    assert (again.new_ids, again.seen) == ([], len(items))
