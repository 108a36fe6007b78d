"""The poll cycle against a local feed server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Article
from tests.corpus import FEEDS, feed_documents
from tests.feeds.ingesting import core_for, feed_row, watch
from tests.feedserver import FeedServer, Item, make_rss

ARABIC = re.compile(r"[\u0600-\u06FF]")
MOJIBAKE = re.compile(r"[ØÙÚÛ][\u0080-\u00FF]")


def rfc822(moment: datetime) -> str:
    """A date as RSS writes it."""
    return format_datetime(moment, usegmt=True)


async def articles(db: Database) -> list[Article]:
    """Every stored article, oldest id first."""
    async with db.sessions() as session:
        return list((await session.scalars(select(Article).order_by(Article.id))).all())


def test_the_feed_corpus_is_present() -> None:
    """The feed corpus is in tests/data/feeds, so the test over it cannot pass vacuously."""
    assert len(feed_documents()) >= 20, f"the feed corpus is missing from {FEEDS}"


@pytest.mark.parametrize("path", feed_documents(), ids=lambda path: path.name)
async def test_every_feed_document_is_ingested(
    path: Path, feed_server: FeedServer, sqlite_url: str
) -> None:
    """Each real and edge-case document of the corpus is fetched and stored, sensibly."""
    async with core_for(sqlite_url) as core:
        url = feed_server.add(path.name, path.read_bytes(), content_type="application/xml")
        feed_id = await watch(core.db, url)
        outcome = await core.ingestor.poll_feed(feed_id)
        stored = await articles(core.db)
    assert outcome.status == "fetched", outcome.error
    assert len(stored) == outcome.items
    for article in stored:
        assert article.title.strip()
        assert not MOJIBAKE.search(article.title), article.title
        assert "<script" not in article.title.lower() and "<script" not in article.summary
        assert article.published_at.tzinfo is not None
        assert article.link is None or article.link.startswith(("http://", "https://"))
        assert not article.alertable  # the first fetch is backlog
    if "aljazeera" in path.name or "ennahar" in path.name or "urdu" in path.name:
        assert len(stored) >= 20
        assert all(ARABIC.search(article.title) for article in stored[:10])


async def test_second_poll_is_conditional_and_parses_nothing(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """An unchanged feed answers 304 to the second poll and nothing is parsed or stored."""
    now = datetime.now(UTC)
    body = make_rss("Agency", [Item("خبر أول", "https://news.example/1", published=rfc822(now))])
    url = feed_server.add("feed.xml", body)
    async with core_for(database_url) as core:
        feed_id = await watch(db, url)
        first = await core.ingestor.poll_feed(feed_id)
        second = await core.ingestor.poll_feed(feed_id)
    assert first.status == "fetched" and len(first.new_ids) == 1
    assert second.status == "unchanged" and second.items == 0
    assert feed_server.not_modified["feed.xml"] == 1
    assert feed_server.requests[-1].headers["If-None-Match"]
    assert (await feed_row(db, feed_id)).last_status == "unchanged"


async def test_dedup_across_polls_feeds_and_tracking_parameters(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """The same story from the next poll, another feed or a tracked link stays one article."""
    now = datetime.now(UTC)
    story = Item("روسيا تعلن", "https://news.example/a/1", published=rfc822(now))
    other = Item("خبر آخر", "https://news.example/a/2", published=rfc822(now))
    first = feed_server.add("one.xml", make_rss("One", [story, other]), validators=False)
    tracked = Item(
        "روسيا تعلن",
        "https://NEWS.example/a/1?utm_source=rss&utm_medium=feed&fbclid=xyz#top",
        guid="another-guid-7",
        published=rfc822(now),
    )
    second = feed_server.add("two.xml", make_rss("Two", [tracked], link="https://two.example/"))
    async with core_for(database_url) as core:
        one_id = await watch(db, first)
        two_id = await watch(db, second)
        await core.ingestor.poll_feed(one_id)
        again = await core.ingestor.poll_feed(one_id)  # no validators: parsed again
        other_feed = await core.ingestor.poll_feed(two_id)
    assert again.status == "fetched" and again.new_ids == ()
    assert other_feed.new_ids == ()
    stored = await articles(db)
    assert [article.link for article in stored] == [
        "https://news.example/a/1",
        "https://news.example/a/2",
    ]


async def test_same_guid_is_one_article(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Two items with the same guid (even with different links) are one story."""
    now = datetime.now(UTC)
    items = [
        Item("عنوان", "https://news.example/x?id=1", guid="story-1", published=rfc822(now)),
        Item("عنوان", "https://news.example/x?id=1&amp=1", guid="story-1", published=rfc822(now)),
    ]
    url = feed_server.add("feed.xml", make_rss("Agency", items))
    async with core_for(database_url) as core:
        await core.ingestor.poll_feed(await watch(db, url))
    assert len(await articles(db)) == 1


async def test_items_sharing_one_link_are_not_merged(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Distinct items that all point at the home page stay distinct (no over-eager dedup)."""
    now = datetime.now(UTC)
    items = [
        Item(f"خبر رقم {n}", "https://news.example/", guid=f"g{n}", published=rfc822(now))
        for n in range(3)
    ]
    url = feed_server.add("feed.xml", make_rss("Agency", items))
    async with core_for(database_url) as core:
        await core.ingestor.poll_feed(await watch(db, url))
    assert len(await articles(db)) == 3


async def test_correction_updates_title_and_keeps_first_seen(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A corrected title or summary from the source updates the article, first-seen kept."""
    now = datetime.now(UTC)
    item = Item("بوتين يشكر زعيم كوريا", "https://news.example/s", published=rfc822(now))
    url = feed_server.add("feed.xml", make_rss("Agency", [item]))
    async with core_for(database_url) as core:
        feed_id = await watch(db, url)
        await core.ingestor.poll_feed(feed_id)
        (before,) = await articles(db)
        fixed = Item(
            "بوتين يشكر زعيم كوريا الشمالية",
            "https://news.example/s",
            description="تصحيح",
            published=rfc822(now),
        )
        feed_server.add("feed.xml", make_rss("Agency", [fixed]))
        outcome = await core.ingestor.poll_feed(feed_id)
    (after,) = await articles(db)
    assert outcome.corrected == 1 and outcome.new_ids == ()
    assert after.id == before.id
    assert after.title == "بوتين يشكر زعيم كوريا الشمالية" and after.summary == "تصحيح"
    assert after.first_seen_at == before.first_seen_at
    assert after.updated_at is not None


async def test_backlog_is_archived_without_alerting(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """The first fetch and items older than the backlog age are stored but never alert."""
    now = datetime.now(UTC)
    old = Item("قديم", "https://news.example/old", published=rfc822(now - timedelta(hours=30)))
    first = Item("أول", "https://news.example/first", published=rfc822(now))
    url = feed_server.add("feed.xml", make_rss("Agency", [first]))
    async with core_for(database_url, backlog_hours=12) as core:
        feed_id = await watch(db, url)
        await core.ingestor.poll_feed(feed_id)
        fresh = Item("جديد", "https://news.example/new", published=rfc822(now))
        undated = Item("بلا تاريخ", "https://news.example/undated")
        feed_server.add("feed.xml", make_rss("Agency", [fresh, undated, old, first]))
        await core.ingestor.poll_feed(feed_id)
    alertable = {article.title: article.alertable for article in await articles(db)}
    assert alertable == {"أول": False, "جديد": True, "بلا تاريخ": True, "قديم": False}


async def test_future_and_missing_dates_become_first_seen(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A published time in the future or missing is replaced by the first-seen time."""
    future = rfc822(datetime.now(UTC) + timedelta(days=3))
    items = [
        Item("مستقبل", "https://news.example/f", published=future),
        Item("بلا", "https://news.example/n"),
    ]
    url = feed_server.add("feed.xml", make_rss("Agency", items))
    async with core_for(database_url) as core:
        await core.ingestor.poll_feed(await watch(db, url))
    for article in await articles(db):
        assert article.published_at == article.first_seen_at


async def test_failures_back_off_exponentially_and_keep_the_error(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A failing feed waits longer after each failure, up to the cap, and shows its error."""
    url = feed_server.add("broken.xml", "oops", status=500)
    async with core_for(database_url, poll_interval=10, max_backoff=100) as core:
        feed_id = await watch(db, url)
        waits = []
        for _ in range(5):
            started = datetime.now(UTC)
            outcome = await core.ingestor.poll_feed(feed_id)
            feed = await feed_row(db, feed_id)
            assert feed.next_fetch_at is not None
            waits.append(round((feed.next_fetch_at - started).total_seconds()))
        assert outcome.status == "failed"
        skipped = await core.ingestor.poll(due_only=True)
    assert waits == [20, 40, 80, 100, 100]
    assert feed.failures == 5 and feed.last_status == "error"
    assert feed.last_error is not None and "500" in feed.last_error
    assert skipped.outcomes == []  # not due yet


async def test_recovery_clears_the_error(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """After a failure, the next good fetch resets the failure count and the error."""
    url = feed_server.add("feed.xml", "down", status=503)
    async with core_for(database_url) as core:
        feed_id = await watch(db, url)
        await core.ingestor.poll_feed(feed_id)
        feed_server.add("feed.xml", make_rss("Agency", [Item("عاد", "https://news.example/b")]))
        await core.ingestor.poll_feed(feed_id)
    feed = await feed_row(db, feed_id)
    assert (feed.failures, feed.last_error, feed.last_status) == (0, None, "ok")


async def test_oversized_feed_is_refused(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A body past the size cap, counted after decompression, fails the feed cleanly."""
    huge = make_rss("Big", [Item("x" * 50, f"https://news.example/{n}") for n in range(3000)])
    url = feed_server.add("big.xml", huge, gzip=True)
    async with core_for(database_url, max_feed_bytes=64 * 1024) as core:
        outcome = await core.ingestor.poll_feed(await watch(db, url))
    assert outcome.status == "failed"
    assert outcome.error is not None and "larger" in outcome.error
    assert len(gzip.compress(huge.encode())) < 64 * 1024  # the cap is on decompressed bytes
    assert await articles(db) == []


async def test_permanent_redirect_updates_the_stored_url(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """A feed that moved permanently is fetched and its new URL stored; a temporary move not."""
    new = feed_server.add("new.xml", make_rss("Moved", [Item("نقل", "https://news.example/m")]))
    old = feed_server.add("old.xml", redirect_to=new, status=301)
    temporary = feed_server.add("temp.xml", redirect_to=new, status=302)
    async with core_for(database_url) as core:
        moved_id = await watch(db, old)
        temp_id = await watch(db, temporary)
        assert (await core.ingestor.poll_feed(moved_id)).status == "fetched"
        assert (await core.ingestor.poll_feed(temp_id)).status == "fetched"
    assert (await feed_row(db, moved_id)).url == new
    assert (await feed_row(db, temp_id)).url == temporary


async def test_a_hanging_server_does_not_delay_the_others(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Feeds on a server that never answers time out alone; the others finish at once."""
    hang = feed_server.add("hang.xml", hang=True)
    good = [
        feed_server.add(
            f"good{n}.xml", make_rss("Agency", [Item("خبر", f"https://n.example/{n}")])
        )
        for n in range(5)
    ]
    finished: dict[int, float] = {}
    # Parsed in this process: what is measured is the fetching, not a worker pool's start.
    async with core_for(database_url, fetch_timeout=6, fetch_per_host=10, parse_workers=0) as core:
        hang_id = await watch(db, hang)
        good_ids = [await watch(db, url) for url in good]
        started = time.monotonic()
        summary = await core.ingestor.poll(
            on_progress=lambda outcome: finished.setdefault(
                outcome.feed_id, time.monotonic() - started
            )
        )
    assert summary.count("fetched") == 5 and summary.count("failed") == 1
    # The others were done long before the hanging one gave up (ordering, not a stopwatch).
    assert max(finished[feed_id] for feed_id in good_ids) < finished[hang_id] - 2.0
    assert finished[hang_id] >= 6.0
    assert "timed out" in (await feed_row(db, hang_id)).last_error  # type: ignore[operator]


async def test_breaking_feed_marks_its_items(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Every item of a feed added with --breaking is recorded as breaking."""
    url = feed_server.add("feed.xml", make_rss("Urgent", [Item("خبر", "https://n.example/u")]))
    async with core_for(database_url) as core:
        await core.ingestor.poll_feed(await watch(db, url, breaking=True))
    assert [article.breaking for article in await articles(db)] == [True]


async def test_concurrent_polls_of_overlapping_feeds_store_each_story_once(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Many feeds carrying the same stories, polled concurrently, store each story once."""
    now = datetime.now(UTC)
    stories = [
        Item(f"قصة {n}", f"https://n.example/s{n}", published=rfc822(now)) for n in range(20)
    ]
    urls = [feed_server.add(f"f{n}.xml", make_rss(f"F{n}", stories)) for n in range(8)]
    async with core_for(database_url) as core:
        for url in urls:
            await watch(db, url)
        summary = await core.ingestor.poll()
    assert summary.new_articles == 20
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Article)) == 20


async def test_watcher_polls_due_feeds_and_a_hanging_one_holds_up_none(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """The watcher polls each due feed; one that never answers does not hold up the rest."""
    hang = feed_server.add("hang.xml", hang=True)
    good = feed_server.add("good.xml", make_rss("Agency", [Item("خبر", "https://n.example/w")]))
    async with core_for(database_url, poll_interval=1, fetch_timeout=30) as core:
        hang_id = await watch(db, hang)
        good_id = await watch(db, good)
        watcher = asyncio.create_task(core.ingestor.watch(tick=0.05))
        try:
            deadline = time.monotonic() + 10
            while feed_server.hits["good.xml"] < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert feed_server.hits["good.xml"] >= 3  # polled again each interval
    assert feed_server.hits["hang.xml"] == 1  # still in flight, not piled up
    assert (await feed_row(db, good_id)).last_status in ("ok", "unchanged")
    assert (await feed_row(db, hang_id)).last_fetch_at is None
