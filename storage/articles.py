"""Queries over the articles table: deduplicating upsert and archive search."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.models import Article


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
                    categories=list(item.categories),
                    updated_at=now,
                )
            )
            result.corrected += 1
    if fresh:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            insert(Article)
            .on_conflict_do_nothing(index_elements=[Article.uid])
            .returning(Article.id)
        )
        result.new_ids = list((await session.scalars(statement, fresh)).all())
    return result


async def search_articles(
    session: AsyncSession, words: Iterable[str], *, limit: int = 20
) -> Sequence[Article]:
    """Newest articles whose title or summary contains every word (case-insensitive)."""
    conditions = []
    for word in words:
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                Article.title.ilike(pattern, escape="\\"),
                Article.summary.ilike(pattern, escape="\\"),
            )
        )
    if not conditions:
        return []
    statement = (
        select(Article)
        .options(joinedload(Article.feed))
        .where(and_(*conditions))
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


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
    uids = [item.uid for item in items]
    links = [item.link_key for item in items if item.link_key]
    condition: ColumnElement[bool] = Article.uid.in_(uids)
    if links:
        condition = or_(condition, Article.link.in_(links))
    found: dict[str, Article] = {}
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
        "title": item.title,
        "summary": item.summary,
        "categories": list(item.categories),
        "published_at": item.published_at,
        "first_seen_at": now,
        "alertable": item.alertable,
        "breaking": item.breaking,
    }
