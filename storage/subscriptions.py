"""Topics and who follows them: following, unfollowing, and the followers of a story."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import DIALECT_INSERTS, dialect_insert
from storage.models import Chat, Subscription, Topic


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


async def upsert_topic(session: AsyncSession, key: str, label: str) -> Topic:
    """The topic with this key, created with this label if it is new."""
    await session.execute(
        dialect_insert(session)(Topic)
        .values(key=key, label=label)
        .on_conflict_do_nothing(index_elements=[Topic.key])
    )
    topic = await get_topic_by_key(session, key)
    assert topic is not None  # noqa: S101 - inserted or already there
    return topic


async def list_topics(session: AsyncSession, after_id: int = 0) -> Sequence[Topic]:
    """Every topic anyone has followed (the matcher is built from them), or those added
    after ``after_id``."""
    query = select(Topic).where(Topic.id > after_id).order_by(Topic.id)
    return (await session.scalars(query)).all()


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
    ``all_breaking`` the chats that take every breaking story."""
    wanted = []
    if topic_ids:
        followers = select(Subscription.chat_id).where(Subscription.topic_id.in_(topic_ids))
        wanted.append(Chat.id.in_(followers))
    if all_breaking:
        wanted.append(Chat.all_breaking.is_(True))
    if not wanted:
        return []
    receiving = Chat.active.is_(True) & or_(Chat.muted_until.is_(None), Chat.muted_until <= now)
    return list((await session.scalars(select(Chat.id).where(receiving, or_(*wanted)))).all())


async def list_receiving_chats(session: AsyncSession, now: datetime) -> list[int]:
    """Every active, unmuted chat (an editor's alert to everyone)."""
    query = select(Chat.id).where(
        Chat.active.is_(True), or_(Chat.muted_until.is_(None), Chat.muted_until <= now)
    )
    return list((await session.scalars(query)).all())


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
    "get_topic",
    "get_topic_by_key",
    "list_chat_topic_keys",
    "list_chat_topics",
    "list_followers",
    "list_receiving_chats",
    "list_topics",
    "remove_subscription",
    "remove_subscriptions",
    "top_topics",
    "upsert_topic",
]
