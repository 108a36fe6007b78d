"""The stories' storage on SQLite and PostgreSQL: creating and touching stories, linking
articles, the reads that warm a grouper up and catch up, and the listings readers and
operators see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.alerts import create_alert
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from storage.models import Story
from storage.stories import (
    count_articles,
    count_outlets,
    get_alert_stories,
    get_story_ids,
    last_article_id,
    link_articles,
    list_articles_after,
    list_articles_by_time,
    list_stories,
    list_story_articles,
    list_window_articles,
    save_stories,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def item(uid: str, published: datetime) -> ArticleData:
    """An article as a feed gives it."""
    return ArticleData(
        uid=uid,
        link=f"https://news.example/{uid}",
        title=f"عنوان {uid}",
        summary=f"ملخص {uid}",
        categories=("سياسة",),
        published_at=published,
        alertable=False,
        breaking=False,
    )


@pytest.fixture
async def stored(db: Database) -> tuple[list[int], list[int]]:
    """Two feeds; four articles published an hour apart, the first three from alternating
    feeds, the last two days old: (feed ids, article ids)."""
    async with db.transaction() as session:
        feeds = [add_feed(session, f"https://f{i}.example/rss", name=f"مصدر {i}") for i in (0, 1)]
        await session.flush()
        feed_ids = [feed.id for feed in feeds]
        ids = []
        for index, published in enumerate(
            [NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)]
        ):
            new = await upsert_articles(
                session, feed_ids[index % 2], [item(f"a{index}", published)], NOW
            )
            ids += new.new_ids
        old = await upsert_articles(
            session, feed_ids[0], [item("old", NOW - timedelta(days=2))], NOW
        )
        ids += old.new_ids
    return feed_ids, ids


async def test_stories_are_created_linked_and_touched(
    db: Database, stored: tuple[list[int], list[int]]
) -> None:
    """save_stories creates a story named after its first article and later only moves its
    last-seen time forward; link_articles puts articles in it."""
    _, ids = stored
    async with db.transaction() as session:
        await save_stories(session, {ids[0]: (NOW, NOW)})
        await link_articles(session, {ids[0]: ids[0], ids[1]: ids[0]})
        await save_stories(session, {ids[0]: (NOW + timedelta(hours=1), NOW + timedelta(hours=1))})
        await save_stories(session, {ids[0]: (NOW - timedelta(hours=5), NOW - timedelta(hours=5))})
    async with db.sessions() as session:
        story = await session.get(Story, ids[0])
        assert story is not None
        assert story.first_seen_at == NOW
        assert story.last_seen_at == NOW + timedelta(hours=1)
        assert await get_story_ids(session, ids) == {ids[0]: ids[0], ids[1]: ids[0]}
        assert await count_articles(session) == 4
        assert await count_articles(session, without_story=True) == 2


async def test_the_reads_that_warm_up_and_catch_up(
    db: Database, stored: tuple[list[int], list[int]]
) -> None:
    """The window lists only articles in a story published since its start, in id order and
    below a given id; catching up lists every article after an id, in id order; the archive
    reads in publication order, a chunk at a time."""
    _, ids = stored
    async with db.transaction() as session:
        await save_stories(session, dict.fromkeys(ids, (NOW, NOW)))
        await link_articles(session, {id_: id_ for id_ in ids[:2] + ids[3:]})
    async with db.sessions() as session:
        window = await list_window_articles(session, NOW - timedelta(hours=36))
        assert [row.id for row in window] == ids[:2]  # the third is in no story, the last old
        assert window[0].title == "عنوان a0" and window[0].summary == "ملخص a0"
        assert window[0].story_id == ids[0]
        assert window[0].published_at == NOW - timedelta(hours=3)
        below = await list_window_articles(session, NOW - timedelta(hours=36), before_id=ids[1])
        assert [row.id for row in below] == ids[:1]
        assert await last_article_id(session) == max(ids)
        assert await last_article_id(session, before_id=ids[0]) == 0
        after = await list_articles_after(session, ids[0])
        assert [row.id for row in after] == ids[1:]
        assert after[1].story_id is None
        first = await list_articles_by_time(session, None, 2)
        assert [row.id for row in first] == [ids[3], ids[0]]  # the oldest first
        rest = await list_articles_by_time(session, (first[-1].published_at, first[-1].id), 5)
        assert [row.id for row in rest] == ids[1:3]


async def test_listings_of_stories_and_their_outlets(
    db: Database, stored: tuple[list[int], list[int]]
) -> None:
    """Stories list newest first with their articles oldest first, each with its feed's
    name and link; outlets count distinct feeds (or those besides one); an alert's story
    is its article's."""
    feed_ids, ids = stored
    async with db.transaction() as session:
        await save_stories(session, {ids[0]: (NOW - timedelta(hours=3),) * 2})
        await save_stories(session, {ids[3]: (NOW - timedelta(hours=1),) * 2})
        await link_articles(session, {ids[0]: ids[0], ids[1]: ids[0], ids[2]: ids[0]})
        await link_articles(session, {ids[3]: ids[3]})
        alert, _ = await create_alert(session, [], NOW, article_id=ids[1])
        editors, _ = await create_alert(session, [], NOW, text="نص المحرر", created_by=1)
    async with db.sessions() as session:
        listed = await list_stories(session, NOW - timedelta(days=1))
        assert [story.id for story in listed] == [ids[3], ids[0]]
        big = listed[1]
        assert [a.id for a in big.articles] == ids[:3]
        assert [a.feed for a in big.articles] == ["مصدر 0", "مصدر 1", "مصدر 0"]
        assert big.articles[0].link == "https://news.example/a0"
        assert big.articles[0].categories == ("سياسة",)
        assert big.outlets == 2 and listed[0].outlets == 1
        assert await list_stories(session, NOW - timedelta(hours=2)) == listed[:1]
        assert await list_stories(session, NOW - timedelta(days=1), limit=1) == listed[:1]
        assert [a.id for a in await list_story_articles(session, ids[0], limit=2)] == ids[:2]
        assert await count_outlets(session, [ids[0], ids[3]]) == {ids[0]: 2, ids[3]: 1}
        besides = await count_outlets(session, [ids[0]], besides={ids[0]: feed_ids[1]})
        assert besides == {ids[0]: 1}
        assert await count_outlets(session, [999_999]) == {999_999: 0}
        assert await get_alert_stories(session, [alert, editors]) == {alert: ids[0]}
