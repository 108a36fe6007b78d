"""Stories: the articles that report one event, whichever feeds carried them.

Storage only: which story an article is in is decided by the text engine
(``bot.text.stories``) and written here. Every query reads an index: articles by id (the
primary key), by story (``ix_articles_story_id``) or by publication time
(``ix_articles_published_at_id``); stories by when they were first seen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.articles import IN_CHUNK
from storage.db import DIALECT_INSERTS
from storage.models import Alert, Article, Feed, Story


@dataclass(frozen=True, slots=True)
class ArticleText:
    """What grouping reads of an article: its words, its times and its story (if any)."""

    id: int
    title: str
    summary: str
    published_at: datetime
    first_seen_at: datetime
    story_id: int | None


@dataclass(frozen=True, slots=True)
class StoryArticle:
    """An article as a story lists it."""

    id: int
    feed_id: int | None
    feed: str  # the feed's display name ("" once the feed is gone)
    title: str
    link: str | None
    published_at: datetime
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoryListing:
    """A story with its articles (oldest first) and how many feeds carried it."""

    id: int
    first_seen_at: datetime
    last_seen_at: datetime
    articles: tuple[StoryArticle, ...]

    @property
    def outlets(self) -> int:
        """How many feeds reported it."""
        return len({article.feed_id for article in self.articles})


async def save_stories(
    session: AsyncSession, seen: Mapping[int, tuple[datetime, datetime]]
) -> None:
    """Create stories and touch others, in one statement: story id → (first seen, last
    seen). A new story is created with both; a story that exists keeps its first-seen time
    and takes the later last-seen time. A story's id is the id of its first article."""
    if not seen:
        return
    statement = _save_statement(session.get_bind().dialect.name)
    rows = [
        {"id": story, "first_seen_at": first, "last_seen_at": last}
        for story, (first, last) in sorted(seen.items())
    ]
    await session.execute(statement, rows[0] if len(rows) == 1 else rows)


@cache
def _save_statement(dialect: str) -> Any:
    """The upsert of save_stories for this backend, built once (it runs with every article
    stored)."""
    stories = Story.__table__  # the table itself: no ORM work for a plain upsert
    insert = DIALECT_INSERTS[dialect](stories)
    later = case(
        (insert.excluded.last_seen_at > stories.c.last_seen_at, insert.excluded.last_seen_at),
        else_=stories.c.last_seen_at,
    )
    return insert.on_conflict_do_update(
        index_elements=[stories.c.id], set_={"last_seen_at": later}
    )


_LINK = (
    update(Article.__table__)  # type: ignore[arg-type]
    .where(Article.__table__.c.id == bindparam("article"))
    .values(story_id=bindparam("story"))
)


async def link_articles(session: AsyncSession, story_of: Mapping[int, int]) -> None:
    """Put each article (id → story id) in its story."""
    rows = [{"article": article, "story": story} for article, story in story_of.items()]
    if rows:  # one row (the usual case) without executemany's extra work
        await session.execute(_LINK, rows[0] if len(rows) == 1 else rows)


_ARTICLES = Article.__table__.c  # plain columns: no ORM work on these hot reads
_TEXT = (
    _ARTICLES.id,
    _ARTICLES.title,
    _ARTICLES.summary,
    _ARTICLES.published_at,
    _ARTICLES.first_seen_at,
    _ARTICLES.story_id,
)


def _texts(
    rows: Sequence[tuple[int, str, str, datetime, datetime, int | None]],
) -> list[ArticleText]:
    return [ArticleText(*row) for row in rows]


async def list_window_articles(
    session: AsyncSession, since: datetime, *, before_id: int | None = None
) -> list[ArticleText]:
    """The articles in a story published since ``since`` (and with an id below
    ``before_id``), in arrival (id) order: what warms a grouper up."""
    query = select(*_TEXT).where(Article.published_at >= since, Article.story_id.is_not(None))
    if before_id is not None:
        query = query.where(Article.id < before_id)
    rows = await session.execute(query.order_by(Article.id))
    return _texts([tuple(row) for row in rows])


async def last_article_id(session: AsyncSession, *, before_id: int | None = None) -> int:
    """The highest article id (below ``before_id``), 0 for none."""
    query = select(func.max(Article.id))
    if before_id is not None:
        query = query.where(Article.id < before_id)
    return int(await session.scalar(query) or 0)


_AFTER = select(*_TEXT).where(_ARTICLES.id > bindparam("after")).order_by(_ARTICLES.id)


async def list_articles_after(
    session: AsyncSession, after_id: int, *, limit: int | None = None
) -> list[ArticleText]:
    """The articles with an id above ``after_id``, in id order (what other processes
    stored since this one last looked, and the new ones)."""
    query = _AFTER if limit is None else _AFTER.limit(limit)
    rows = await session.execute(query, {"after": after_id})
    return _texts([tuple(row) for row in rows])


async def list_articles_by_time(
    session: AsyncSession, after: tuple[datetime, int] | None, limit: int
) -> list[ArticleText]:
    """Up to ``limit`` articles in publication order (ties by id), after the
    (published_at, id) ``after``: the archive, a chunk at a time."""
    query = select(*_TEXT)
    if after is not None:
        published, id_ = after
        query = query.where(
            or_(
                Article.published_at > published,
                and_(Article.published_at == published, Article.id > id_),
            )
        )
    query = query.order_by(Article.published_at, Article.id).limit(limit)
    return _texts([tuple(row) for row in await session.execute(query)])


async def count_articles(session: AsyncSession, *, without_story: bool = False) -> int:
    """How many articles are stored (``without_story``: in no story, as those stored before
    stories were kept)."""
    query = select(func.count()).select_from(Article)
    if without_story:
        query = query.where(Article.story_id.is_(None))
    return int(await session.scalar(query) or 0)


async def get_story_ids(session: AsyncSession, article_ids: Collection[int]) -> dict[int, int]:
    """The story of each of these articles that is in one."""
    ids = list(article_ids)
    found: dict[int, int] = {}
    for start in range(0, len(ids), IN_CHUNK):
        query = select(Article.id, Article.story_id).where(
            Article.id.in_(ids[start : start + IN_CHUNK]), Article.story_id.is_not(None)
        )
        found.update(
            {id_: story for id_, story in await session.execute(query) if story is not None}
        )
    return found


async def get_alert_stories(session: AsyncSession, alert_ids: Collection[int]) -> dict[int, int]:
    """The story each of these alerts pushed (its own, else its article's), for those that
    pushed one (an editor's own text pushes none)."""
    ids = list(alert_ids)
    found: dict[int, int] = {}
    for start in range(0, len(ids), IN_CHUNK):
        query = (
            select(Alert.id, func.coalesce(Alert.story_id, Article.story_id))
            .outerjoin(Article, Article.id == Alert.article_id)
            .where(Alert.id.in_(ids[start : start + IN_CHUNK]))
        )
        found.update({id_: story for id_, story in await session.execute(query) if story})
    return found


async def count_outlets(
    session: AsyncSession,
    story_ids: Collection[int],
    *,
    besides: Mapping[int, int | None] | None = None,
) -> dict[int, int]:
    """How many feeds carried each of these stories; with ``besides`` (story → a feed id),
    how many other than that feed."""
    ids = sorted(set(story_ids))
    besides = besides or {}
    counts: dict[int, int] = {}
    for start in range(0, len(ids), IN_CHUNK):
        query = (
            select(Article.story_id, Article.feed_id)
            .where(Article.story_id.in_(ids[start : start + IN_CHUNK]))
            .distinct()
        )
        for story, feed in await session.execute(query):
            if story is None:
                continue
            if story not in besides or besides[story] != feed:
                counts[story] = counts.get(story, 0) + 1
    return {story: counts.get(story, 0) for story in ids}


async def list_stories(
    session: AsyncSession, since: datetime, *, limit: int | None = None
) -> list[StoryListing]:
    """The stories first seen since ``since``, newest first, with their articles."""
    query = (
        select(Story)
        .where(Story.first_seen_at >= since)
        .order_by(Story.first_seen_at.desc(), Story.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    stories = list((await session.scalars(query)).all())
    articles = await _articles_of(session, [story.id for story in stories])
    return [
        StoryListing(
            story.id, story.first_seen_at, story.last_seen_at, tuple(articles.get(story.id, ()))
        )
        for story in stories
    ]


async def list_story_articles(
    session: AsyncSession, story_id: int, *, limit: int | None = None
) -> list[StoryArticle]:
    """The articles of one story, oldest first (up to ``limit``)."""
    return (await _articles_of(session, [story_id], limit=limit)).get(story_id, [])


async def _articles_of(
    session: AsyncSession, story_ids: Sequence[int], *, limit: int | None = None
) -> dict[int, list[StoryArticle]]:
    found: dict[int, list[StoryArticle]] = {}
    for start in range(0, len(story_ids), IN_CHUNK):
        query = (
            select(
                Article.story_id,
                Article.id,
                Article.feed_id,
                func.coalesce(Feed.name, func.nullif(Feed.title, ""), Feed.url, ""),
                Article.title,
                Article.link,
                Article.published_at,
                Article.categories,
            )
            .outerjoin(Feed, Feed.id == Article.feed_id)
            .where(Article.story_id.in_(story_ids[start : start + IN_CHUNK]))
            .order_by(Article.story_id, Article.published_at, Article.id)
        )
        for story, id_, feed_id, feed, title, link, published, categories in await session.execute(
            query
        ):
            if story is None:
                continue
            listed = found.setdefault(story, [])
            if limit is None or len(listed) < limit:
                listed.append(
                    StoryArticle(
                        id_, feed_id, feed, title, link, published, tuple(categories or ())
                    )
                )
    return found


__all__ = [
    "ArticleText",
    "StoryArticle",
    "StoryListing",
    "count_articles",
    "count_outlets",
    "get_alert_stories",
    "get_story_ids",
    "last_article_id",
    "link_articles",
    "list_articles_after",
    "list_articles_by_time",
    "list_stories",
    "list_story_articles",
    "list_window_articles",
    "save_stories",
]
