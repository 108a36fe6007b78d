"""Alerts and their fan-out: one delivery row per chat, written with the alert."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.models import Alert, Article, Delivery, Feed, Subscription, Topic


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """What an alert says: an article's title and summary, or an editor's text."""

    id: int
    title: str
    summary: str
    categories: tuple[str, ...]
    link: str | None
    source: str | None  # the feed's name; None for an editor's alert
    published: datetime
    topics: tuple[str, ...]
    by_editor: bool


@dataclass(frozen=True, slots=True)
class NewArticle:
    """A stored article that may deserve an alert."""

    id: int
    title: str
    summary: str


async def create_alert(
    session: AsyncSession,
    chat_ids: Iterable[int],
    now: datetime,
    *,
    article_id: int | None = None,
    text: str | None = None,
    created_by: int | None = None,
    topics: Sequence[str] = (),
) -> tuple[int, int]:
    """Record an alert and one pending delivery per distinct chat; (alert id, deliveries)."""
    alert = Alert(
        article_id=article_id, text=text, created_by=created_by, created_at=now, topics=[*topics]
    )
    session.add(alert)
    await session.flush()
    rows = [
        {"alert_id": alert.id, "chat_id": chat_id, "state": "pending", "due_at": now}
        for chat_id in dict.fromkeys(chat_ids)
    ]
    if rows:
        table = Delivery.metadata.tables[Delivery.__tablename__]
        await session.execute(dialect_insert(session)(table).on_conflict_do_nothing(), rows)
    return alert.id, len(rows)


async def list_alertable(session: AsyncSession, article_ids: Sequence[int]) -> list[NewArticle]:
    """Of these articles, the breaking, alertable ones that have no alert yet."""
    if not article_ids:
        return []
    query = (
        select(Article.id, Article.title, Article.summary)
        .outerjoin(Alert, Alert.article_id == Article.id)
        .where(
            Article.id.in_(article_ids),
            Article.alertable.is_(True),
            Article.breaking.is_(True),
            Alert.id.is_(None),
        )
        .order_by(Article.id)
    )
    return [NewArticle(*row) for row in await session.execute(query)]


async def get_alert(session: AsyncSession, alert_id: int) -> AlertRecord | None:
    """What the alert says, or None if it is gone."""
    records = await _records(session, Alert.id == alert_id, limit=1)
    return records[0] if records else None


async def list_latest_alerts(session: AsyncSession, limit: int = 5) -> list[AlertRecord]:
    """The most recent alerts, newest first."""
    return await _records(session, true(), limit=limit)


async def list_followed_among(
    session: AsyncSession, chat_ids: Collection[int], keys: Collection[str]
) -> dict[int, set[str]]:
    """Of these topic keys (an alert's matched topics), those each of these chats follows
    now; a chat following none of them is left out."""
    if not chat_ids or not keys:
        return {}
    query = (
        select(Subscription.chat_id, Topic.key)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(Subscription.chat_id.in_(chat_ids), Topic.key.in_(keys))
    )
    followed: dict[int, set[str]] = {}
    for chat_id, key in await session.execute(query):
        followed.setdefault(chat_id, set()).add(key)
    return followed


async def _records(
    session: AsyncSession, condition: ColumnElement[bool], *, limit: int
) -> list[AlertRecord]:
    query = (
        select(Alert, Article, Feed.name, Feed.title, Feed.url)
        .outerjoin(Article, Article.id == Alert.article_id)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .where(condition)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    )
    return [
        AlertRecord(
            id=alert.id,
            title=article.title if article else alert.text or "",
            summary=article.summary if article else "",
            categories=tuple(article.categories) if article else (),
            link=article.link if article else None,
            source=(name or title or url) if article else None,
            published=article.published_at if article else alert.created_at,
            topics=tuple(alert.topics),
            by_editor=article is None,
        )
        for alert, article, name, title, url in await session.execute(query)
    ]


__all__ = [
    "AlertRecord",
    "NewArticle",
    "create_alert",
    "get_alert",
    "list_alertable",
    "list_followed_among",
    "list_latest_alerts",
]
