"""Several processes on one database: each due feed is fetched by one of them (leases), and
a story two of them store at once is stored and alerted once (the unique story key)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.feeds.fetch import Fetcher, FetchLimits
from bot.feeds.ingest import LEASE, Ingestor
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import lease_feeds
from storage.models import Article, utcnow
from tests.feeds.ingesting import feed_row, watch
from tests.feedserver import FeedServer, Item, make_rss
from tests.processes import rfc822, wait_until


class Alerts:
    """The fan-out as the ingestor sees it: counts the articles it is asked to alert."""

    def __init__(self) -> None:
        self.article_ids: list[int] = []

    async def alert_articles(
        self, _session: AsyncSession, article_ids: Sequence[int], _now: datetime
    ) -> int:
        """Record the new articles (one delivery each, as far as the ingestor knows)."""
        self.article_ids.extend(article_ids)
        return len(article_ids)

    def committed(self) -> None:
        """Nothing to wake."""


@asynccontextmanager
async def processes(
    url: str,
    count: int,
    *,
    clock: Callable[[], datetime] = utcnow,
    fetch_timeout: float = 30.0,
) -> AsyncIterator[list[tuple[Ingestor, Alerts]]]:
    """``count`` ingestors as separate processes would have them: each its own Database
    (connections), fetcher and holder, on one database."""
    async with AsyncExitStack() as stack:
        made = []
        for number in range(count):
            database = Database(url)
            stack.push_async_callback(database.dispose)
            fetcher = await stack.enter_async_context(
                Fetcher(FetchLimits(total_timeout=fetch_timeout, concurrency=50, per_host=50))
            )
            alerts = Alerts()
            ingestor = Ingestor(
                database,
                fetcher,
                poll_interval=timedelta(seconds=60),
                backlog_age=timedelta(hours=12),
                max_backoff=timedelta(hours=1),
                on_new=alerts,
                clock=clock,
                holder=f"test-process-{number}",
            )
            stack.push_async_callback(ingestor.aclose)
            made.append((ingestor, alerts))
        yield made


async def test_two_processes_polling_the_same_due_feeds_fetch_each_once(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Two processes polling the due feeds at the same moment fetch each feed once between
    them."""
    paths = [f"f{n}.xml" for n in range(30)]
    feed_ids = []
    for n, path in enumerate(paths):
        feed_server.add(path, make_rss(f"F{n}", [Item(f"خبر {n}", f"https://n.example/{n}")]))
        feed_ids.append(await watch(db, feed_server.url(path)))
    async with processes(database_url, 2) as both:
        summaries = await asyncio.gather(*(ingestor.poll(due_only=True) for ingestor, _ in both))
    assert {path: feed_server.hits[path] for path in paths} == dict.fromkeys(paths, 1)
    assert sum(len(summary.outcomes) for summary in summaries) == len(paths)
    for feed_id in feed_ids:
        feed = await feed_row(db, feed_id)
        assert (feed.leased_by, feed.leased_until) == (None, None)  # released once stored


async def test_leases_taken_at_once_are_disjoint_and_a_dead_holders_run_out(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Leases taken at the same moment never overlap; a feed leased by a process that died
    is free again once its lease has run out, not before."""
    feed_ids = [await watch(db, feed_server.url(f"f{n}.xml")) for n in range(12)]
    other = Database(database_url)
    now = datetime.now(UTC)

    async def take(database: Database, holder: str) -> set[int]:
        async with database.transaction() as session:
            feeds = await lease_feeds(session, holder, now, LEASE, limit=8)
            return {feed.id for feed in feeds}

    try:
        first, second = await asyncio.gather(take(db, "a"), take(other, "b"))
        assert not first & second and first | second == set(feed_ids)
        assert await take(db, "c") == set()
        async with db.transaction() as session:
            later = await lease_feeds(session, "c", now + LEASE + timedelta(seconds=1), LEASE)
        assert {feed.id for feed in later} == set(feed_ids)
        assert {(await feed_row(db, feed_id)).leased_by for feed_id in feed_ids} == {"c"}
    finally:
        await other.dispose()


async def test_a_dead_process_feeds_are_fetched_by_another_after_the_lease(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Feeds a process leased before dying are left alone while the lease lasts, then
    fetched by a live process."""
    paths = [f"f{n}.xml" for n in range(3)]
    for n, path in enumerate(paths):
        feed_server.add(path, make_rss(f"F{n}", [Item(f"خبر {n}", f"https://n.example/{n}")]))
        await watch(db, feed_server.url(path))
    now = datetime.now(UTC)
    async with db.transaction() as session:
        assert len(await lease_feeds(session, "dead", now, LEASE)) == 3
    moment = [now + timedelta(seconds=1)]
    async with processes(database_url, 1, clock=lambda: moment[0]) as [(ingestor, _)]:
        during = await ingestor.poll(due_only=True)
        fetched_during = sum(feed_server.hits.values())
        moment[0] = now + LEASE + timedelta(seconds=1)
        after = await ingestor.poll(due_only=True)
    assert during.outcomes == [] and fetched_during == 0
    assert after.count("fetched") == 3
    assert [feed_server.hits[path] for path in paths] == [1, 1, 1]


async def test_a_long_fetch_keeps_its_lease_and_stopping_gives_it_back(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """While a fetch outlasts the lease, the watcher renews it, so no other process takes
    the feed; when the watcher stops, the lease is given back at once."""
    feed_id = await watch(db, feed_server.add("slow.xml", hang=True))
    async with processes(database_url, 1) as [(ingestor, _)]:
        watcher = asyncio.create_task(ingestor.watch(tick=0.05))
        try:

            async def leased() -> bool:
                return (await feed_row(db, feed_id)).leased_until is not None

            await wait_until(leased, what="the watcher to lease the feed")
            first = (await feed_row(db, feed_id)).leased_until
            assert first is not None

            async def renewed() -> bool:
                until = (await feed_row(db, feed_id)).leased_until
                return until is not None and until > first

            await wait_until(renewed, what="the lease to be renewed")
            async with db.transaction() as session:
                stolen = await lease_feeds(session, "other", datetime.now(UTC), LEASE)
            assert stolen == []
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    feed = await feed_row(db, feed_id)
    assert (feed.leased_by, feed.leased_until) == (None, None)
    assert feed_server.hits["slow.xml"] == 1


async def test_one_story_from_two_feeds_stored_by_two_processes_alerts_once(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Two processes storing the same story from two feeds at the same time store one
    article and alert it once."""
    published = rfc822(datetime.now(UTC))
    for n in range(2):
        feed_server.add(f"f{n}.xml", make_rss(f"F{n}", [Item("قديم", f"https://n.example/o{n}")]))
        await watch(db, feed_server.url(f"f{n}.xml"))
    async with processes(database_url, 2) as both:
        for ingestor, _ in both:  # the first fetch of each feed is backlog, never alerted
            await ingestor.poll(due_only=False)
        for n in range(2):
            story = Item(
                "روسيا تعلن", "https://n.example/story", guid=f"g{n}", published=published
            )
            feed_server.add(f"f{n}.xml", make_rss(f"F{n}", [story]))
        for _, alerts in both:
            alerts.article_ids.clear()
        await asyncio.gather(*(ingestor.poll_feed(n + 1) for n, (ingestor, _) in enumerate(both)))
    assert sum(len(alerts.article_ids) for _, alerts in both) == 1
    async with db.sessions() as session:
        links = (await session.scalars(select(Article.link).order_by(Article.id))).all()
    assert sorted(links) == [
        "https://n.example/o0",
        "https://n.example/o1",
        "https://n.example/story",
    ]


@pytest.mark.postgres
async def test_an_insert_racing_an_uncommitted_one_does_not_store_the_story_twice(
    postgres_url: str, db: Database
) -> None:
    """Storing a story while another process's transaction holds the same story, not yet
    committed (so neither saw the other's), stores it once: the second writer finds it
    taken when the first commits, and does not count it as new."""
    if db.is_sqlite:
        pytest.skip("one process writes a SQLite database at a time")
    feed_ids = [await watch(db, f"https://n.example/feed{n}.xml") for n in range(2)]
    other = Database(postgres_url)
    now = datetime.now(UTC)

    def story(guid: str) -> ArticleData:
        return ArticleData(
            uid=f"g:n.example:{guid}",
            link="https://n.example/story",
            link_key="https://n.example/story",
            title="روسيا تعلن",
            summary="",
            categories=(),
            published_at=now,
            alertable=True,
            breaking=True,
        )

    try:
        async with db.transaction() as first:
            won = await upsert_articles(first, feed_ids[0], [story("a")], now)

            async def second_writer() -> list[int]:
                async with other.transaction() as second:
                    result = await upsert_articles(second, feed_ids[1], [story("b")], now)
                    return result.new_ids

            racing = asyncio.create_task(second_writer())
            await asyncio.sleep(0.5)  # let it look, find nothing and insert (it then waits)
        lost = await racing
    finally:
        await other.dispose()
    assert len(won.new_ids) == 1 and lost == []
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Article)) == 1
