"""Queries over the feeds table: add, find, list with article counts, remove; the leases
that let several processes share the polling (each due feed fetched by one of them)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    String,
    Update,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.articles import IN_CHUNK
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


async def lease_feeds(
    session: AsyncSession,
    holder: str,
    now: datetime,
    lease: timedelta,
    *,
    due_only: bool = True,
    limit: int | None = None,
    exclude: Collection[int] = (),
) -> Sequence[Feed]:
    """Take the feeds nobody holds (due ones only, with ``due_only``), the longest due
    first, up to ``limit``, but none of ``exclude``: they are ``holder``'s until
    ``now + lease``; by id.

    One statement: on PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``, so
    processes leasing at once each get other feeds and none waits for another; SQLite
    (one process, writes serialised by ``BEGIN IMMEDIATE``) needs and gets no row lock.
    """
    free = or_(Feed.leased_until.is_(None), Feed.leased_until <= now)
    if due_only:
        free = and_(free, or_(Feed.next_fetch_at.is_(None), Feed.next_fetch_at <= now))
    if exclude:
        free = and_(free, Feed.id.not_in(list(exclude)))
    chosen = (
        select(Feed.id)
        .where(free)
        .order_by(Feed.next_fetch_at.asc().nulls_first(), Feed.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Feed)
        .where(Feed.id.in_(chosen.scalar_subquery()))
        .values(leased_by=holder, leased_until=now + lease)
        .returning(Feed)
        .execution_options(synchronize_session=False)
    )
    feeds = (await session.scalars(statement)).all()
    return sorted(feeds, key=lambda feed: feed.id)


async def renew_leases(
    session: AsyncSession, holder: str, feed_ids: Collection[int], until: datetime
) -> None:
    """Extend ``holder``'s leases of these feeds (their polls still run) to ``until``."""
    ids = sorted(feed_ids)
    for start in range(0, len(ids), IN_CHUNK):
        await session.execute(
            update(Feed)
            .where(Feed.leased_by == holder, Feed.id.in_(ids[start : start + IN_CHUNK]))
            .values(leased_until=until)
            .execution_options(synchronize_session=False)
        )


async def release_leases(session: AsyncSession, holder: str, feed_ids: Collection[int]) -> None:
    """Give back ``holder``'s leases of these feeds (it stopped polling them): other
    processes may take them at once."""
    ids = sorted(feed_ids)
    for start in range(0, len(ids), IN_CHUNK):
        await session.execute(
            update(Feed)
            .where(Feed.leased_by == holder, Feed.id.in_(ids[start : start + IN_CHUNK]))
            .values(leased_by=None, leased_until=None)
            .execution_options(synchronize_session=False)
        )


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


async def list_feeds_with_newest(
    session: AsyncSession,
) -> Sequence[tuple[Feed, datetime | None]]:
    """Every feed with when its newest article was first seen (None: it has none)."""
    # One index lookup a feed (feed_id, first_seen_at), not a pass over the archive.
    newest = (
        select(func.max(Article.first_seen_at))
        .where(Article.feed_id == Feed.id)
        .correlate(Feed)
        .scalar_subquery()
    )
    rows = await session.execute(select(Feed, newest))
    return [(feed, _aware(value)) for feed, value in rows]


async def list_arrivals(session: AsyncSession, feed_id: int, limit: int) -> Sequence[datetime]:
    """When the feed's newest ``limit`` articles were first seen, newest first."""
    query = (
        select(Article.first_seen_at)
        .where(Article.feed_id == feed_id)
        .order_by(Article.first_seen_at.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def swap_reported(
    session: AsyncSession, feed_id: int, expected: datetime | None, new: datetime | None
) -> bool:
    """Set the feed's ``reported_at`` to ``new`` if it still is ``expected``: of several
    processes making the same change, exactly one gets True (and tells the editors)."""
    still = Feed.reported_at.is_(None) if expected is None else Feed.reported_at == expected
    result = await session.execute(
        update(Feed)
        .where(Feed.id == feed_id, still)
        .values(reported_at=new)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _aware(value: datetime | str | None) -> datetime | None:
    # An aggregate loses the column's type: SQLite hands back text, without a zone.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return None if value is None else value.replace(tzinfo=value.tzinfo or UTC)
