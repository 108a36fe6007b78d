"""Queries over the feeds table: add, find, list with article counts, remove."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import String, Update, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Article, Feed


@cache
def feed_column_room(column: str) -> int:
    """How many characters the feeds table holds in ``column`` (a string column)."""
    kind = Feed.metadata.tables[Feed.__tablename__].c[column].type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"feeds.{column} is not a string column of bounded length")
    return kind.length


def add_feed(
    session: AsyncSession,
    url: str,
    *,
    name: str | None = None,
    breaking: bool = False,
    added_in_chat: bool = False,
) -> Feed:
    """Stage a new feed (the caller commits)."""
    feed = Feed(url=url, name=name, breaking=breaking, added_in_chat=added_in_chat)
    session.add(feed)
    return feed


async def get_feed(session: AsyncSession, feed_id: int) -> Feed | None:
    """The feed with this id, or None."""
    return await session.get(Feed, feed_id)


async def get_feed_by_url(session: AsyncSession, url: str) -> Feed | None:
    """The feed with exactly this URL, or None."""
    return await session.scalar(select(Feed).where(Feed.url == url))


async def list_feeds(session: AsyncSession) -> Sequence[Feed]:
    """Every feed, oldest first."""
    return (await session.scalars(select(Feed).order_by(Feed.id))).all()


async def list_due_feeds(session: AsyncSession, now: datetime) -> Sequence[Feed]:
    """Feeds never fetched or whose next fetch time has come."""
    due = or_(Feed.next_fetch_at.is_(None), Feed.next_fetch_at <= now)
    return (await session.scalars(select(Feed).where(due).order_by(Feed.id))).all()


async def list_feeds_with_counts(session: AsyncSession) -> Sequence[tuple[Feed, int]]:
    """Every feed with the number of articles it brought in, oldest feed first."""
    counts = select(Article.feed_id, func.count().label("n")).group_by(Article.feed_id).subquery()
    rows = await session.execute(
        select(Feed, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.feed_id == Feed.id)
        .order_by(Feed.id)
    )
    return [(feed, int(count)) for feed, count in rows]


async def update_feed(session: AsyncSession, feed_id: int, **values: Any) -> bool:
    """Set columns of one feed; False when the feed no longer exists."""
    statement = _update_statement(tuple(sorted(values)))
    parameters = {f"new_{name}": value for name, value in values.items()}
    result = await session.execute(statement, parameters | {"feed_id": feed_id})
    return bool(getattr(result, "rowcount", 0))


@cache
def _update_statement(columns: tuple[str, ...]) -> Update:
    # Built once per set of columns: building and keying a statement costs more than
    # running it, and every poll of every feed runs one.
    table = Feed.metadata.tables[Feed.__tablename__]
    return (
        update(table)
        .where(table.c.id == bindparam("feed_id"))
        .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in columns})
    )


async def remove_feed(session: AsyncSession, feed_id: int) -> None:
    """Delete a feed; its articles stay in the archive without a source."""
    await session.execute(delete(Feed).where(Feed.id == feed_id))
