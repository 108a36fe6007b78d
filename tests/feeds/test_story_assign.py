"""Stories assigned as articles are stored: through the real Ingestor and a local feed
server, by several processes on one database, and across a transaction rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.feeds.stories import StoryAssigner
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.models import Article, Story
from tests.feeds.ingesting import core_for, watch
from tests.feeds.test_ingest import rfc822
from tests.feedserver import FeedServer, Item, make_rss

KYIV = [
    ("روسيا تشن هجوما واسعا بالمسيرات على العاصمة الأوكرانية كييف", ""),
    (
        "هجوم روسي بالمسيرات والصواريخ على كييف يوقع 3 قتلى",
        "قالت السلطات الأوكرانية إن الدفاعات الجوية أسقطت معظم المسيرات.",
    ),
    ("مقتل ثلاثة أشخاص في هجوم روسي بطائرات مسيرة على كييف", ""),
]
IDLIB = "انفجار سيارة مفخخة وسط إدلب يوقع قتلى وجرحى"
ALEPPO = "انفجار سيارة مفخخة وسط حلب يوقع قتلى وجرحى"


async def stories_by_title(db: Database) -> dict[str, int | None]:
    """Each stored article's story, by title."""
    async with db.sessions() as session:
        rows = await session.execute(select(Article.title, Article.story_id))
        return dict(rows.all())


async def story_ids(db: Database) -> set[int]:
    """The ids of the stories stored."""
    async with db.sessions() as session:
        return set((await session.scalars(select(Story.id))).all())


def serve(server: FeedServer, name: str, items: list[tuple[str, str, datetime]]) -> str:
    """Put a feed of these (title, summary, published) items on the server; its URL."""
    rss = make_rss(
        name,
        [
            Item(
                title, f"https://{name}.example/{index}", description=summary, published=rfc822(at)
            )
            for index, (title, summary, at) in enumerate(items)
        ],
    )
    return server.add(f"{name}.xml", rss)


async def test_three_feeds_with_one_story_minutes_apart_make_one_story(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Three outlets reporting one event minutes apart, each polled in turn, put their
    articles in one story; an unrelated article starts its own."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with core_for(database_url) as core:
        for index, (title, summary) in enumerate(KYIV):
            items = [(title, summary, now - timedelta(minutes=30 - 10 * index))]
            if index == 0:
                items.append((IDLIB, "", now - timedelta(hours=2)))
            feed_id = await watch(core.db, serve(feed_server, f"outlet{index}", items))
            outcome = await core.ingestor.poll_feed(feed_id)
            assert outcome.status == "fetched", outcome.error
        found = await stories_by_title(core.db)
        stored = await story_ids(core.db)
    assert None not in found.values()
    assert len({found[title] for title, _ in KYIV}) == 1
    assert found[IDLIB] != found[KYIV[0][0]]
    assert stored == set(found.values())


async def test_lookalike_stories_in_two_cities_stay_two(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """The same template about a car bomb in إدلب and in حلب, the same hour, from two
    feeds: two stories."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with core_for(database_url) as core:
        first = await watch(core.db, serve(feed_server, "one", [(IDLIB, "", now)]))
        second = await watch(core.db, serve(feed_server, "two", [(ALEPPO, "", now)]))
        await core.ingestor.poll_feed(first)
        await core.ingestor.poll_feed(second)
        found = await stories_by_title(core.db)
    assert found[IDLIB] is not None and found[ALEPPO] is not None
    assert found[IDLIB] != found[ALEPPO]


async def test_two_processes_catch_up_on_each_other(
    db: Database, database_url: str, feed_server: FeedServer
) -> None:
    """Two processes (each its own assigner) storing the reports of one event in turns put
    them in one story: each learns what the other stored since it last looked."""
    now = datetime.now(UTC).replace(microsecond=0)
    urls = [
        serve(feed_server, f"p{index}", [(title, summary, now - timedelta(minutes=9 - index))])
        for index, (title, summary) in enumerate(KYIV)
    ]
    async with core_for(database_url) as one, core_for(database_url) as two:
        feeds = [await watch(one.db, url) for url in urls]
        await one.ingestor.poll_feed(feeds[0])
        await two.ingestor.poll_feed(feeds[1])  # warms up from storage: sees the first
        await one.ingestor.poll_feed(feeds[2])  # catches up: sees the second
        found = await stories_by_title(one.db)
    assert len({found[title] for title, _ in KYIV}) == 1
    assert None not in found.values()


def article(uid: str, title: str, published: datetime) -> ArticleData:
    """An article as a feed gives it."""
    return ArticleData(
        uid=uid,
        link=f"https://news.example/{uid}",
        title=title,
        summary="",
        categories=(),
        published_at=published,
        alertable=True,
        breaking=False,
    )


async def store(
    db: Database, assigner: StoryAssigner, items: list[ArticleData], now: datetime
) -> dict[int, int]:
    """Store articles and put them in stories, in one transaction, as the Ingestor does."""
    async with db.transaction() as session:
        await assigner.lock(session)
        new = await upsert_articles(session, None, items, now)  # type: ignore[arg-type]
        return await assigner.assign(session, new.new_ids, now)


class RolledBack(Exception):
    """Raised to roll a test's transaction back."""


async def test_a_rolled_back_transaction_leaves_nothing_wrong(db: Database) -> None:
    """Stories placed in a transaction that rolls back are forgotten: a later article
    (on SQLite, one reusing the rolled-back article's id) never joins a story that does not
    exist, nor the rolled-back one's; the next report of the event starts a story of its
    own, and the one after joins it."""
    now = datetime.now(UTC)
    assigner = StoryAssigner()
    await store(db, assigner, [article("old", IDLIB, now - timedelta(hours=1))], now)
    with pytest.raises(RolledBack):
        async with db.transaction() as session:
            await assigner.lock(session)
            new = await upsert_articles(
                session,
                None,
                [article("k0", KYIV[0][0], now)],
                now,  # type: ignore[arg-type]
            )
            placed = await assigner.assign(session, new.new_ids, now)
            assert len(placed) == 1
            raise RolledBack
    unrelated = await store(db, assigner, [article("a", ALEPPO, now)], now)
    later = await store(db, assigner, [article("k1", KYIV[1][0], now)], now)
    last = await store(db, assigner, [article("k2", KYIV[2][0], now)], now)
    found = await stories_by_title(db)
    stored = await story_ids(db)
    assert KYIV[0][0] not in found
    assert set(found.values()) <= stored
    assert list(later.values()) == list(last.values())
    assert list(later.values()) != list(unrelated.values())
    assert len({found[IDLIB], found[ALEPPO], found[KYIV[1][0]]}) == 3


async def test_a_fresh_process_learns_the_window_from_storage(db: Database) -> None:
    """An assigner started after others stored the first report puts the next one in the
    same story, and an article older than the window starts one of its own."""
    now = datetime.now(UTC)
    first = await store(db, StoryAssigner(), [article("k0", KYIV[0][0], now)], now)
    fresh = StoryAssigner(timedelta(hours=36))
    second = await store(db, fresh, [article("k1", KYIV[1][0], now)], now)
    old = await store(db, fresh, [article("k2", KYIV[2][0], now - timedelta(days=3))], now)
    assert list(first.values()) == list(second.values())
    assert list(old.values()) != list(first.values())
