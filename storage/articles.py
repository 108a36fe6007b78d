"""Queries over the articles table: the deduplicating upsert, reading and rewriting the
stored search terms. Search itself is ``storage.search``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.models import Article

# Values per IN list: a statement carries at most 32,767 parameters on asyncpg (and 32,766
# on SQLite), whatever the feed brought.
IN_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class ArticleData:
    """An article as a feed gave it, ready to store."""

    uid: str
    link: str | None
    title: str
    summary: str
    categories: tuple[str, ...]
    published_at: datetime
    alertable: bool
    breaking: bool
    # The link to recognise the same story under another uid (another feed, another guid);
    # None when the link cannot identify one story (e.g. shared by several items).
    link_key: str | None = None
    # What search indexes: the text engine's index_text() of the title and of the summary.
    title_terms: str = ""
    summary_terms: str = ""


@dataclass(slots=True)
class UpsertResult:
    """What storing one feed's items changed."""

    new_ids: list[int] = field(default_factory=list)
    corrected: int = 0
    seen: int = 0


async def upsert_articles(
    session: AsyncSession, feed_id: int, items: Sequence[ArticleData], now: datetime
) -> UpsertResult:
    """Store new items and apply the source's corrections; a story seen before stays one."""
    result = UpsertResult()
    items = _first_of_each(items)
    if not items:
        return result
    existing = await _find_existing(session, items)
    fresh: list[dict[str, Any]] = []
    for item in items:
        article = existing.get(item.uid) or (item.link_key and existing.get(_link(item.link_key)))
        if not article:
            fresh.append(_row(item, feed_id, now))
            continue
        result.seen += 1
        if article.feed_id == feed_id and _differs(article, item):
            await session.execute(
                update(Article)
                .where(Article.id == article.id)
                .values(
                    title=item.title,
                    summary=item.summary,
                    title_terms=item.title_terms,
                    summary_terms=item.summary_terms,
                    categories=list(item.categories),
                    updated_at=now,
                )
            )
            result.corrected += 1
    if fresh:
        # No conflict target: a row whose uid or link_key another writer stored meanwhile (a
        # process storing the same story from another feed) is skipped, and only the rows
        # this insert won come back as new. On PostgreSQL a concurrent uncommitted insert of
        # the same key makes this one wait for its outcome, so exactly one of them wins.
        statement = dialect_insert(session)(Article).on_conflict_do_nothing().returning(Article.id)
        result.new_ids = list((await session.scalars(statement, fresh)).all())
        result.seen += len(fresh) - len(result.new_ids)
    return result


async def list_article_texts(
    session: AsyncSession, after_id: int, limit: int
) -> list[tuple[int, str, str]]:
    """(id, title, summary) of up to ``limit`` articles after ``after_id``, by id."""
    query = (
        select(Article.id, Article.title, Article.summary)
        .where(Article.id > after_id)
        .order_by(Article.id)
        .limit(limit)
    )
    return [(row.id, row.title, row.summary) for row in await session.execute(query)]


async def set_article_terms(session: AsyncSession, terms: Sequence[tuple[int, str, str]]) -> None:
    """Store new search terms: (id, title terms, summary terms) each (the index follows)."""
    if terms:
        await session.execute(
            update(Article),
            [
                {"id": id_, "title_terms": title, "summary_terms": summary}
                for id_, title, summary in terms
            ],
        )


async def get_article(session: AsyncSession, article_id: int) -> Article | None:
    """The article with this id, or None."""
    return await session.get(Article, article_id)


def _first_of_each(items: Sequence[ArticleData]) -> list[ArticleData]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.uid not in seen:
            seen.add(item.uid)
            unique.append(item)
    return unique


def _link(link: str) -> str:
    return "\0link:" + link  # a key no uid can take


async def _find_existing(
    session: AsyncSession, items: Sequence[ArticleData]
) -> dict[str, Article]:
    found: dict[str, Article] = {}
    for start in range(0, len(items), IN_CHUNK):
        chunk = items[start : start + IN_CHUNK]
        condition: ColumnElement[bool] = Article.uid.in_([item.uid for item in chunk])
        if links := [item.link_key for item in chunk if item.link_key]:
            condition = or_(condition, Article.link.in_(links))
        for article in (await session.scalars(select(Article).where(condition))).all():
            found[article.uid] = article
            if article.link:
                found.setdefault(_link(article.link), article)
    return found


def _differs(article: Article, item: ArticleData) -> bool:
    return (article.title, article.summary, list(article.categories)) != (
        item.title,
        item.summary,
        list(item.categories),
    )


def _row(item: ArticleData, feed_id: int, now: datetime) -> dict[str, Any]:
    return {
        "uid": item.uid,
        "feed_id": feed_id,
        "link": item.link,
        "link_key": item.link_key,
        "title": item.title,
        "summary": item.summary,
        "title_terms": item.title_terms,
        "summary_terms": item.summary_terms,
        "categories": list(item.categories),
        "published_at": item.published_at,
        "first_seen_at": now,
        "alertable": item.alertable,
        "breaking": item.breaking,
    }
