"""Alerts and their fan-out: one delivery row per chat, written by the database.

An alert records who it goes to (:class:`Audience`); :func:`fan_out` then writes the
deliveries of its chats in chunks, by chat id, with ``INSERT … SELECT`` from the chats and
their subscriptions, keeping the last chat id written in the alert (the cursor) in the same
transaction: a crash resumes where the last commit left off, and no chat gets two rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, false, func, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.deliveries import PENDING
from storage.models import (
    Alert,
    Article,
    Chat,
    Delivery,
    Feed,
    Subscription,
    Topic,
    UTCDateTime,
)


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


@dataclass(frozen=True, slots=True)
class Audience:
    """Who an alert goes to: the followers of these topics, and with ``all_breaking`` the
    chats that take every breaking story; or, with ``everyone``, every chat that receives
    alerts. Of them, only active, unmuted chats, as they are when the fan-out reaches them."""

    topic_ids: tuple[int, ...] = ()
    all_breaking: bool = False
    everyone: bool = False


@dataclass(frozen=True, slots=True)
class FanOutStep:
    """What one step of an alert's fan-out wrote: deliveries made, and whether every chat
    of the audience now has its delivery."""

    made: int
    done: bool


async def add_alert(
    session: AsyncSession,
    audience: Audience,
    now: datetime,
    *,
    article_id: int | None = None,
    text: str | None = None,
    created_by: int | None = None,
    topics: Sequence[str] = (),
) -> int:
    """Record an alert whose deliveries :func:`fan_out` is to write; its id."""
    alert = Alert(
        article_id=article_id,
        text=text,
        created_by=created_by,
        created_at=now,
        topics=[*topics],
        to_topic_ids=sorted(audience.topic_ids),
        to_all_breaking=audience.all_breaking,
        to_everyone=audience.everyone,
    )
    session.add(alert)
    await session.flush()
    return alert.id


async def fan_out(
    session: AsyncSession, alert_id: int, now: datetime, limit: int
) -> FanOutStep | None:
    """Write the deliveries of the next ``limit`` chats (by id) of the alert's audience and
    move its cursor past them, in the caller's transaction; None when the alert has none
    left to write, is gone, or (PostgreSQL) another transaction is writing it now.

    The alert's row is locked first, so two fan-outs of one alert take turns (on SQLite
    the write transaction already serialises them) and each reads the cursor the other left.
    """
    query = select(
        Alert.fanout_cursor, Alert.to_topic_ids, Alert.to_all_breaking, Alert.to_everyone
    ).where(Alert.id == alert_id, Alert.fanned_out_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    cursor, topic_ids, all_breaking, everyone = row
    chats = [audience_filter(Audience(tuple(topic_ids), all_breaking, everyone), now)]
    if cursor is not None:
        chats.append(Chat.id > cursor)
    # The chunk's last chat: the index on chats walked once, not the whole audience sorted.
    last = await session.scalar(
        select(Chat.id).where(*chats).order_by(Chat.id).offset(limit - 1).limit(1)
    )
    if last is not None:
        chats.append(Chat.id <= last)
    rows = select(
        literal(alert_id),
        Chat.id,
        literal(PENDING),
        literal(now, UTCDateTime()),
    ).where(*chats)
    columns = ["alert_id", "chat_id", "state", "due_at"]
    insert = dialect_insert(session)(Delivery).from_select(columns, rows)
    result = await session.execute(insert.on_conflict_do_nothing())
    made = int(getattr(result, "rowcount", 0) or 0)
    progress = {"fanout_cursor": last} if last is not None else {"fanned_out_at": now}
    await session.execute(update(Alert).where(Alert.id == alert_id).values(**progress))
    return FanOutStep(made=made, done=last is None)


async def list_fanning_out(session: AsyncSession) -> list[int]:
    """The alerts whose deliveries are not all written yet, oldest first."""
    query = select(Alert.id).where(Alert.fanned_out_at.is_(None)).order_by(Alert.id)
    return list((await session.scalars(query)).all())


async def count_audience(session: AsyncSession, audience: Audience, now: datetime) -> int:
    """How many chats the audience holds now."""
    query = select(func.count()).select_from(Chat).where(audience_filter(audience, now))
    return int(await session.scalar(query) or 0)


def audience_filter(audience: Audience, now: datetime) -> ColumnElement[bool]:
    """The condition on :class:`Chat` picking the audience's chats that receive alerts now
    (active, not muted): the fan-out's one rule."""
    receiving = Chat.active.is_(True) & or_(Chat.muted_until.is_(None), Chat.muted_until <= now)
    return receiving & _wanted(audience)


def _wanted(audience: Audience) -> ColumnElement[bool]:
    """The chats of the audience, active or not."""
    if audience.everyone:
        return true()
    wanted: list[ColumnElement[bool]] = []
    if audience.topic_ids:
        # EXISTS, probing the (chat, topic) unique index per chat: the chats are walked in
        # id order and each chunk stops at its last chat, with no set of followers built.
        wanted.append(
            exists().where(
                Subscription.chat_id == Chat.id,
                Subscription.topic_id.in_(audience.topic_ids),
            )
        )
    if audience.all_breaking:
        wanted.append(Chat.all_breaking.is_(True))
    return or_(*wanted) if wanted else false()


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
    """Record an alert and one pending delivery per distinct chat of this list, all written
    at once; (alert id, deliveries)."""
    alert = Alert(
        article_id=article_id,
        text=text,
        created_by=created_by,
        created_at=now,
        topics=[*topics],
        fanned_out_at=now,
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
    "Audience",
    "FanOutStep",
    "NewArticle",
    "add_alert",
    "audience_filter",
    "count_audience",
    "create_alert",
    "fan_out",
    "get_alert",
    "list_alertable",
    "list_fanning_out",
    "list_followed_among",
    "list_latest_alerts",
]
