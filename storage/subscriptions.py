"""Topics and who follows them: following, unfollowing, and the followers of a story."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.alerts import Audience, audience_filter
from storage.db import DIALECT_INSERTS, dialect_insert
from storage.models import Chat, Subscription, Topic, utcnow

# Ids per statement where a list of them is bound (SQLite and asyncpg cap parameters).
CHUNK = 500


@dataclass(frozen=True, slots=True)
class TopicCount:
    """A topic and how many active chats follow it."""

    key: str
    label: str
    followers: int


async def get_topic(session: AsyncSession, topic_id: int) -> Topic | None:
    """The topic with this id, or None."""
    return await session.get(Topic, topic_id)


async def get_topic_by_key(session: AsyncSession, key: str) -> Topic | None:
    """The topic with this key, or None."""
    return await session.scalar(select(Topic).where(Topic.key == key))


async def get_topic_id(session: AsyncSession, key: str, *, to_follow: bool = False) -> int | None:
    """The id of the topic with this key, or None.

    ``to_follow`` holds the row until the transaction ends (PostgreSQL's FOR KEY SHARE,
    as the subscription's foreign key would): :func:`remove_unused_topics` then leaves it
    alone, and a topic it is deleting right now is None here, to be created again.
    """
    query = select(Topic.id).where(Topic.key == key)
    if to_follow:
        query = query.with_for_update(read=True, key_share=True)
    return await session.scalar(query)


async def upsert_topic(
    session: AsyncSession,
    key: str,
    label: str,
    *,
    created_by: int | None = None,
    now: datetime | None = None,
) -> Topic:
    """The topic with this key, created with this label (by this chat) if it is new."""
    await session.execute(
        dialect_insert(session)(Topic)
        .values(key=key, label=label, created_by=created_by, created_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=[Topic.key])
    )
    topic = await get_topic_by_key(session, key)
    assert topic is not None  # noqa: S101 - inserted or already there
    return topic


async def count_created_topics(
    session: AsyncSession, chat_id: int, since: datetime, *, key_prefix: str = ""
) -> int:
    """How many topics (with keys starting ``key_prefix``) the chat created since then,
    whether still followed or not."""
    query = select(func.count()).where(
        Topic.created_by == chat_id,
        Topic.created_at >= since,
        Topic.key.startswith(key_prefix, autoescape=True),
    )
    return int(await session.scalar(query) or 0)


async def list_topics(session: AsyncSession, ids: Collection[int]) -> list[Topic]:
    """The topics with these ids (those that still exist), by id."""
    wanted = sorted(ids)
    found: list[Topic] = []
    for start in range(0, len(wanted), CHUNK):
        query = select(Topic).where(Topic.id.in_(wanted[start : start + CHUNK]))
        found += (await session.scalars(query.order_by(Topic.id))).all()
    return found


def _followed() -> Any:
    return exists().where(Subscription.topic_id == Topic.id)


async def list_followed_topic_ids(session: AsyncSession) -> set[int]:
    """The ids of the topics at least one chat follows (the matcher holds just these)."""
    return set((await session.scalars(select(Topic.id).where(_followed()))).all())


async def has_followers(session: AsyncSession, topic_id: int) -> bool:
    """Whether any chat follows the topic."""
    query = select(Subscription.id).where(Subscription.topic_id == topic_id).limit(1)
    return await session.scalar(query) is not None


async def remove_unused_topics(session: AsyncSession, created_before: datetime) -> int:
    """Delete the topics nobody follows that were created before then (or before Newsbot
    kept count); how many. A topic with followers is never deleted.

    On PostgreSQL the topics are locked first, skipping those a follow holds (see
    :func:`get_topic_id`), and checked again once locked: a follower who committed
    meanwhile keeps the topic, where the cascade would otherwise take their subscription.
    """
    old = or_(Topic.created_at.is_(None), Topic.created_at < created_before)
    unused = select(Topic.id).where(old, ~_followed()).with_for_update(skip_locked=True, of=Topic)
    ids = list((await session.scalars(unused)).all())
    removed = 0
    for start in range(0, len(ids), CHUNK):
        result = await session.execute(
            delete(Topic)
            .where(Topic.id.in_(ids[start : start + CHUNK]), ~_followed())
            .execution_options(synchronize_session=False)
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


async def add_subscription(session: AsyncSession, chat_id: int, topic_id: int) -> bool:
    """The chat follows the topic; False if it already did."""
    statement = _subscribe_statement(session.get_bind().dialect.name)
    result = await session.execute(statement, {"chat_id": chat_id, "topic_id": topic_id})
    return bool(getattr(result, "rowcount", 0))


@cache
def _subscribe_statement(dialect: str) -> Any:
    """Built once per dialect: following is the commonest write of all."""
    return (
        DIALECT_INSERTS[dialect](Subscription)
        .values(chat_id=bindparam("chat_id"), topic_id=bindparam("topic_id"))
        .on_conflict_do_nothing(index_elements=[Subscription.chat_id, Subscription.topic_id])
    )


async def remove_subscription(session: AsyncSession, chat_id: int, topic_id: int) -> bool:
    """The chat stops following the topic; False if it did not follow it."""
    result = await session.execute(
        delete(Subscription).where(
            Subscription.chat_id == chat_id, Subscription.topic_id == topic_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def remove_subscriptions(session: AsyncSession, chat_id: int) -> int:
    """The chat follows nothing any more; how many topics it followed."""
    result = await session.execute(delete(Subscription).where(Subscription.chat_id == chat_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def list_chat_topics(session: AsyncSession, chat_id: int) -> Sequence[Topic]:
    """The topics a chat follows, in the order it followed them."""
    query = (
        select(Topic)
        .join(Subscription, Subscription.topic_id == Topic.id)
        .where(Subscription.chat_id == chat_id)
        .order_by(Subscription.id)
    )
    return (await session.scalars(query)).all()


async def list_chat_topic_keys(session: AsyncSession, chat_id: int) -> set[str]:
    """The keys of the topics a chat follows."""
    return set((await session.scalars(_TOPIC_KEYS, {"chat_id": chat_id})).all())


_TOPIC_KEYS = (
    select(Topic.key)
    .join(Subscription, Subscription.topic_id == Topic.id)
    .where(Subscription.chat_id == bindparam("chat_id"))
)


async def list_followers(
    session: AsyncSession, topic_ids: Collection[int], now: datetime, *, all_breaking: bool = True
) -> list[int]:
    """Active, unmuted chats following any of the topics (each once), and with
    ``all_breaking`` the chats that take every breaking story: an alert's audience, by the
    rule its fan-out follows."""
    audience = Audience(tuple(topic_ids), all_breaking=all_breaking)
    return list(
        (await session.scalars(select(Chat.id).where(audience_filter(audience, now)))).all()
    )


async def top_topics(session: AsyncSession, limit: int = 10) -> list[TopicCount]:
    """The most followed topics by active chats, most followed first."""
    followers = func.count(Subscription.id)
    query = (
        select(Topic.key, Topic.label, followers)
        .join(Subscription, Subscription.topic_id == Topic.id)
        .join(Chat, Chat.id == Subscription.chat_id)
        .where(Chat.active.is_(True))
        .group_by(Topic.id, Topic.key, Topic.label)
        .order_by(followers.desc(), Topic.label)
        .limit(limit)
    )
    return [
        TopicCount(key, label, int(count)) for key, label, count in await session.execute(query)
    ]


__all__ = [
    "TopicCount",
    "add_subscription",
    "count_created_topics",
    "get_topic",
    "get_topic_by_key",
    "get_topic_id",
    "has_followers",
    "list_chat_topic_keys",
    "list_chat_topics",
    "list_followed_topic_ids",
    "list_followers",
    "list_topics",
    "remove_subscription",
    "remove_subscriptions",
    "remove_unused_topics",
    "top_topics",
    "upsert_topic",
]
