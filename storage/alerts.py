"""Alerts and their fan-out: one delivery row per chat, written by the database.

An alert records who it goes to (:class:`Audience`); :func:`fan_out` then writes the
deliveries of its chats in chunks, by chat id, with ``INSERT … SELECT`` from the chats and
their subscriptions, keeping the last chat id written in the alert (the cursor) in the same
transaction: a crash resumes where the last commit left off, and no chat gets two rows.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Insert,
    SQLColumnExpression,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert, lock_key
from storage.deliveries import CLAIMED, PENDING, SENDING, SENT, UNKNOWN
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

log = logging.getLogger(__name__)

# Kinds of alert: the push of a story (its first article, or a later one reaching chats the
# story had not reached), and a development (a later article that adds to the story: a
# reply to each reader's first message of the story).
ALERT, DEVELOPMENT = "alert", "development"
# The deliveries that reached, or are reaching, their chat (a development follows them).
_REACHING = (PENDING, CLAIMED, SENDING, SENT, UNKNOWN)


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
    story_id: int | None = None
    kind: str = ALERT  # ALERT, or DEVELOPMENT: a later article of a story that adds to it
    feed_id: int | None = None  # the feed of its article (None for an editor's alert)


@dataclass(frozen=True, slots=True)
class NewArticle:
    """A stored article that may deserve an alert."""

    id: int
    title: str
    summary: str
    story_id: int | None = None
    feed_id: int | None = None


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
    story_id: int | None = None,
    kind: str = ALERT,
) -> int:
    """Record an alert whose deliveries :func:`fan_out` is to write; its id.

    With ``story_id`` its fan-out follows the story: a chat the story already reached gets
    no second push (an ALERT skips it), and a DEVELOPMENT goes to those chats too.
    """
    alert = Alert(
        article_id=article_id,
        text=text,
        created_by=created_by,
        created_at=now,
        topics=[*topics],
        to_topic_ids=sorted(audience.topic_ids),
        to_all_breaking=audience.all_breaking,
        to_everyone=audience.everyone,
        story_id=story_id,
        kind=kind,
    )
    session.add(alert)
    await session.flush()
    return alert.id


async def fan_out(
    session: AsyncSession, alert_id: int, now: datetime, limit: int
) -> FanOutStep | None:
    """Write the deliveries of the next ``limit`` chats (by id) of the alert's audience and
    move its cursor past them, in the caller's transaction; None when the alert has none
    left to write, is gone, (PostgreSQL) another transaction is writing it now, or it is a
    development of a story whose earlier alerts are still being written (it waits for them).

    The alert's row is locked first, so two fan-outs of one alert take turns (on SQLite
    the write transaction already serialises them) and each reads the cursor the other left.
    """
    query = select(
        Alert.fanout_cursor,
        Alert.to_topic_ids,
        Alert.to_all_breaking,
        Alert.to_everyone,
        Alert.story_id,
        Alert.kind,
    ).where(Alert.id == alert_id, Alert.fanned_out_at.is_(None))
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    cursor, topic_ids, all_breaking, everyone, story_id, kind = row
    wanted = Audience(tuple(topic_ids), all_breaking, everyone)
    if story_id is None:
        chats = [audience_filter(wanted, now)]
    else:
        if postgres:
            # The alerts of one story fan out one at a time (each chunk waits for the other
            # story alerts' chunks to commit), so each sees the chats the others reached.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": lock_key(f"newsbot-story-{story_id}")},
            )
        others = [each for each in await _story_alert_ids(session, story_id) if each != alert_id]
        if kind == DEVELOPMENT and await _still_written(session, others, before=alert_id):
            # The chats the story reached are not all known yet: one passed over now would
            # get the push later and never this development.
            return None
        chats = [_story_filter(wanted, now, kind, others)]
    if cursor is not None:
        chats.append(Chat.id > cursor)
    write = _write_chunk if postgres else _write_chunk_in_two
    last, made = await write(session, alert_id, now, limit, chats)
    progress = {"fanout_cursor": last} if last is not None else {"fanned_out_at": now}
    await session.execute(update(Alert).where(Alert.id == alert_id).values(**progress))
    return FanOutStep(made=made, done=last is None)


def _deliveries_of(
    session: AsyncSession,
    alert_id: int,
    now: datetime,
    chat_id: SQLColumnExpression[int],
    *where: ColumnElement[bool],
    skip_existing: bool = True,
) -> Insert:
    """INSERT … SELECT of a pending delivery of the alert for each chat id selected; with
    ``skip_existing``, a chat that has one already is passed over."""
    values = (literal(alert_id), chat_id, literal(PENDING), literal(now, UTCDateTime()))
    rows = select(*values).where(*where)
    columns = ["alert_id", "chat_id", "state", "due_at"]
    insert = dialect_insert(session)(Delivery).from_select(columns, rows)
    chosen: Insert = insert.on_conflict_do_nothing() if skip_existing else insert
    return chosen


async def _write_chunk(
    session: AsyncSession,
    alert_id: int,
    now: datetime,
    limit: int,
    chats: list[ColumnElement[bool]],
) -> tuple[int | None, int]:
    """PostgreSQL: the deliveries of the next ``limit`` chats in one statement, the chats
    read once; the last chat written (None: none are left after them) and how many rows.

    The chats past the cursor have no delivery of the alert yet (the cursor moves in the
    transaction that writes them), so the rows are inserted plainly, a quarter faster than
    with ON CONFLICT's check of each; were one there all the same, the chunk is written
    again passing it over."""
    picked = select(Chat.id).where(*chats).order_by(Chat.id).limit(limit).cte("picked")

    async def write(skip_existing: bool) -> tuple[int | None, int, int]:
        """The last chat picked, how many were picked and how many rows written."""
        insert = _deliveries_of(session, alert_id, now, picked.c.id, skip_existing=skip_existing)
        written = insert.returning(Delivery.id).cte("written")
        query = select(
            select(func.max(picked.c.id)).scalar_subquery(),
            select(func.count()).select_from(picked).scalar_subquery(),
            select(func.count()).select_from(written).scalar_subquery(),
        )
        last, chunk, made = (await session.execute(query)).one()
        return last, int(chunk), int(made)

    try:
        async with session.begin_nested():
            last, chunk, made = await write(skip_existing=False)
    except IntegrityError:
        log.warning("alert %s: a chat past the fan-out's cursor had a delivery already", alert_id)
        last, chunk, made = await write(skip_existing=True)
    return (last if chunk == limit else None), made


async def _write_chunk_in_two(
    session: AsyncSession,
    alert_id: int,
    now: datetime,
    limit: int,
    chats: list[ColumnElement[bool]],
) -> tuple[int | None, int]:
    """SQLite (no INSERT inside WITH): the chunk's last chat first, then its deliveries."""
    # The index on chats walked once, not the whole audience sorted.
    last = await session.scalar(
        select(Chat.id).where(*chats).order_by(Chat.id).offset(limit - 1).limit(1)
    )
    bounded = [*chats, Chat.id <= last] if last is not None else chats
    result = await session.execute(_deliveries_of(session, alert_id, now, Chat.id, *bounded))
    return last, int(getattr(result, "rowcount", 0) or 0)


async def _still_written(session: AsyncSession, alert_ids: Sequence[int], *, before: int) -> bool:
    """Whether one of these alerts, older than ``before``, still has deliveries to write."""
    earlier = [each for each in alert_ids if each < before]
    if not earlier:
        return False
    query = select(Alert.id).where(Alert.id.in_(earlier), Alert.fanned_out_at.is_(None))
    return await session.scalar(query.limit(1)) is not None


async def _story_alert_ids(session: AsyncSession, story_id: int) -> list[int]:
    """The alerts of a story (a handful): its push, later pushes, developments."""
    query = select(Alert.id).where(Alert.story_id == story_id).order_by(Alert.id)
    return list((await session.scalars(query)).all())


def _story_filter(
    audience: Audience, now: datetime, kind: str, others: Sequence[int]
) -> ColumnElement[bool]:
    """The chats an alert of a story goes to, given the story's other alerts: a push only
    to chats of its audience the story has not reached yet (one push per story); a
    development to its audience and to every chat the story reached.

    The story's other alerts are a handful of ids, so each test is an index lookup per
    chat (the (alert, chat) unique key, or the chat index: on PostgreSQL a merge anti-join
    in chat id order), chats are walked in id order whatever the audience's size, and no
    set of the story's readers is ever built."""
    chats = audience_filter(audience, now)
    if not others:
        return chats
    if kind == DEVELOPMENT:
        reached = exists().where(
            Delivery.chat_id == Chat.id,
            Delivery.alert_id.in_(others),
            Delivery.state.in_(_REACHING),
        )
        return or_(chats, audience_filter(Audience(everyone=True), now) & reached)
    reached = exists().where(Delivery.chat_id == Chat.id, Delivery.alert_id.in_(others))
    return chats & ~reached


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
        select(Article.id, Article.title, Article.summary, Article.story_id, Article.feed_id)
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
            story_id=alert.story_id,
            kind=alert.kind,
            feed_id=article.feed_id if article else None,
        )
        for alert, article, name, title, url in await session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class Outlet:
    """A feed that reported a story: its name and the link of its first article of it."""

    feed_id: int
    name: str
    link: str | None


async def list_story_outlets(session: AsyncSession, story_id: int) -> list[Outlet]:
    """The feeds that reported the story, in the order they first did."""
    query = (
        select(Article.feed_id, Feed.name, Feed.title, Feed.url, Article.link)
        .join(Feed, Feed.id == Article.feed_id)
        .where(Article.story_id == story_id)
        .order_by(Article.first_seen_at, Article.id)
    )
    outlets: dict[int, Outlet] = {}
    for feed_id, name, title, url, link in await session.execute(query):
        if feed_id is not None and feed_id not in outlets:
            outlets[feed_id] = Outlet(feed_id, name or title or url, link)
    return list(outlets.values())


async def list_story_texts(
    session: AsyncSession, story_id: int, before_article: int, limit: int = 20
) -> list[tuple[str, str]]:
    """The titles and summaries of the story's articles stored before this one, newest
    first (at most ``limit``)."""
    query = (
        select(Article.title, Article.summary)
        .where(Article.story_id == story_id, Article.id < before_article)
        .order_by(Article.id.desc())
        .limit(limit)
    )
    return [(title, summary) for title, summary in await session.execute(query)]


async def list_story_feeds(
    session: AsyncSession, story_id: int, except_articles: Collection[int]
) -> set[int | None]:
    """The feeds of the story's articles, but these."""
    query = select(Article.feed_id).where(
        Article.story_id == story_id, Article.id.not_in(except_articles)
    )
    return set((await session.scalars(query.distinct())).all())


async def list_story_members(
    session: AsyncSession, article_ids: Sequence[int]
) -> list[tuple[int, int, int | None]]:
    """Of these articles, those in a story: (article, story, feed)."""
    if not article_ids:
        return []
    query = (
        select(Article.id, Article.story_id, Article.feed_id)
        .where(Article.id.in_(article_ids), Article.story_id.is_not(None))
        .order_by(Article.id)
    )
    return [
        (article, story, feed)
        for article, story, feed in await session.execute(query)
        if story is not None
    ]


async def count_story_readers(session: AsyncSession, story_id: int, now: datetime) -> int:
    """How many chats that receive alerts now the story reached (a development's audience)."""
    others = await _story_alert_ids(session, story_id)
    if not others:
        return 0
    chats = _story_filter(Audience(), now, DEVELOPMENT, others)
    return int(await session.scalar(select(func.count()).select_from(Chat).where(chats)) or 0)


async def has_story_alert(session: AsyncSession, story_id: int) -> bool:
    """Whether the story was already pushed (an alert of it recorded)."""
    query = select(Alert.id).where(Alert.story_id == story_id).limit(1)
    return await session.scalar(query) is not None


async def mark_story_edits(
    session: AsyncSession, story_id: int, now: datetime, *, pushed_since: datetime, most: int
) -> int:
    """The story was confirmed by another outlet: every message of its pushes (not its
    developments) that went out, or may be going out, is to be edited, due now, once; how
    many. Nothing when its first push is older than ``pushed_since`` or reached more than
    ``most`` chats (a story with a million readers costs no million edits per outlet).

    Rows still pending need no edit: they are rendered with the confirmation when sent.
    ``edit_due_at`` is set to ``now`` even where an edit was due already: the sender
    clears it only if it still holds the value it read (a confirmation that arrives while
    the edit is in flight keeps the message due).
    """
    pushes = select(Alert.id, Alert.created_at).where(
        Alert.story_id == story_id, Alert.kind == ALERT
    )
    rows = (await session.execute(pushes.order_by(Alert.id))).all()
    if not rows or rows[0].created_at < pushed_since:
        return 0
    push_ids = [row.id for row in rows]
    reached = await session.scalar(
        select(func.count()).select_from(
            select(Delivery.id).where(Delivery.alert_id.in_(push_ids)).limit(most + 1).subquery()
        )
    )
    if int(reached or 0) > most:
        return 0
    result = await session.execute(
        update(Delivery)
        .where(Delivery.alert_id.in_(push_ids), Delivery.state.in_((CLAIMED, SENDING, SENT)))
        .values(edit_due_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def get_first_message(
    session: AsyncSession, chat_id: int, story_id: int, alert_id: int
) -> tuple[int | None, bool]:
    """The chat's first message of the story (sent for another of its alerts), if any; and
    whether, without one yet, a delivery of the story to the chat is still on its way."""
    query = (
        select(Delivery.message_id, Delivery.state)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(Delivery.chat_id == chat_id, Alert.story_id == story_id, Alert.id != alert_id)
        .order_by(Alert.id)
    )
    waiting = False
    for message_id, state in await session.execute(query):
        if message_id is not None:
            return int(message_id), False
        waiting = waiting or state in (PENDING, CLAIMED, SENDING)
    return None, waiting


__all__ = [
    "ALERT",
    "DEVELOPMENT",
    "AlertRecord",
    "Audience",
    "FanOutStep",
    "NewArticle",
    "Outlet",
    "add_alert",
    "audience_filter",
    "count_audience",
    "count_story_readers",
    "create_alert",
    "fan_out",
    "get_alert",
    "get_first_message",
    "has_story_alert",
    "list_alertable",
    "list_fanning_out",
    "list_followed_among",
    "list_latest_alerts",
    "list_story_feeds",
    "list_story_members",
    "list_story_outlets",
    "list_story_texts",
    "mark_story_edits",
]
