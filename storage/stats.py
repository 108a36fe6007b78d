"""The figures an editor's /stats shows: readers, topics, deliveries, failing feeds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.deliveries import count_by_state
from storage.models import Chat, Feed, Subscription
from storage.subscriptions import TopicCount, top_topics


@dataclass(frozen=True, slots=True)
class FeedError:
    """A feed whose last fetch failed."""

    name: str
    error: str
    failures: int


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the bot's audience and delivery health."""

    chats: int
    active_chats: int
    subscriptions: int
    top_topics: list[TopicCount]
    last_hour: dict[str, int]  # deliveries by state, of alerts created in the last hour
    last_day: dict[str, int]
    feeds: int
    feed_errors: list[FeedError]


async def collect_stats(session: AsyncSession, now: datetime) -> Stats:
    """The figures as they are now."""
    chats = await session.scalar(select(func.count()).select_from(Chat)) or 0
    active = await session.scalar(select(func.count()).where(Chat.active.is_(True))) or 0
    subscriptions = (
        await session.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(Chat, Chat.id == Subscription.chat_id)
            .where(Chat.active.is_(True))
        )
        or 0
    )
    feeds = await session.scalar(select(func.count()).select_from(Feed)) or 0
    failing = await session.execute(
        select(Feed.name, Feed.title, Feed.url, Feed.last_error, Feed.failures)
        .where(Feed.last_status == "error")
        .order_by(Feed.failures.desc(), Feed.id)
        .limit(10)
    )
    return Stats(
        chats=int(chats),
        active_chats=int(active),
        subscriptions=int(subscriptions),
        top_topics=await top_topics(session, 5),
        last_hour=await count_by_state(session, now - timedelta(hours=1)),
        last_day=await count_by_state(session, now - timedelta(days=1)),
        feeds=int(feeds),
        feed_errors=[
            FeedError(name or title or url, error or "", int(failures))
            for name, title, url, error, failures in failing
        ],
    )


async def count_feeds_and_readers(session: AsyncSession) -> tuple[int, int]:
    """How many feeds are watched and how many chats receive alerts."""
    feeds = await session.scalar(select(func.count()).select_from(Feed)) or 0
    readers = await session.scalar(select(func.count()).where(Chat.active.is_(True))) or 0
    return int(feeds), int(readers)


__all__ = ["FeedError", "Stats", "collect_stats", "count_feeds_and_readers"]
