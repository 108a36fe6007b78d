"""The outbox: claiming due deliveries, and recording what became of each.

States: ``pending`` (due at ``due_at``) → ``claimed`` (taken by the sender, waiting for its
turn) → ``sending`` (request in flight) → ``sent``; or ``failed`` (Telegram refused it for
good), ``dropped`` (stale, or the chat is gone), and ``unknown`` (the request may have
reached Telegram: never resent blindly; the operator lists them with :func:`list_in_doubt`
and may put them back in the queue with :func:`resend_in_doubt`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import lock_key
from storage.models import Alert, Article, Chat, Delivery

PENDING, CLAIMED, SENDING, SENT, FAILED, DROPPED, UNKNOWN = (
    "pending",
    "claimed",
    "sending",
    "sent",
    "failed",
    "dropped",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery taken by the sender, with what it needs to send it."""

    id: int
    alert_id: int
    chat_id: int
    chat_kind: str
    attempts: int
    language: str = "ar"
    quiet_from: int | None = None
    quiet_to: int | None = None
    # When it was claimed (the sender's clock): what it says is read after this.
    claimed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DueEdit:
    """A sent message to edit (its story was confirmed), with the edit time it was read
    with: cleared only if still that (:func:`finish_edit`)."""

    id: int
    alert_id: int
    chat_id: int
    chat_kind: str
    message_id: int
    language: str
    due: datetime
    claimed_at: datetime | None = None  # when it was read: what it says is read after this


# The outbox's table: the sender's hot statements are Core ones, without the ORM's
# bookkeeping for objects (none are loaded), at a thousand rows a second.
_OUTBOX = Delivery.metadata.tables[Delivery.__tablename__]
# One statement for every row sent together, with the message Telegram made of each.
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(
        state=SENT,
        sent_at=bindparam("now"),
        error=None,
        attempts=_OUTBOX.c.attempts + 1,
        message_id=func.coalesce(bindparam("message"), _OUTBOX.c.message_id),
    )
)


def liveness_lock(holder: str) -> str:
    """The name of the lock (:meth:`storage.db.Database.exclusive`) a sender holds while it
    may have rows in flight: while it is held, recovery leaves that holder's rows alone."""
    return f"newsbot-holder-{holder}"


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, holder: str | None = None
) -> list[Claimed]:
    """Take up to ``limit`` due deliveries, oldest first, marking them as claimed by
    ``holder`` (the sending process's identity)."""
    query = (
        select(
            Delivery.id,
            Delivery.alert_id,
            Delivery.chat_id,
            Chat.kind,
            Delivery.attempts,
            Chat.language,
            Chat.quiet_from,
            Chat.quiet_to,
        )
        .join(Chat, Chat.id == Delivery.chat_id)
        .where(Delivery.state == PENDING, Delivery.due_at <= now)
        .order_by(Delivery.due_at, Delivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Several processes may send for one bot: each claims rows the others have not.
        query = query.with_for_update(skip_locked=True, of=Delivery)
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    await session.execute(
        update(_OUTBOX).where(_OUTBOX.c.id.in_(ids)).values(state=CLAIMED, claimed_by=holder)
    )
    return [Claimed(*row, claimed_at=now) for row in rows]


async def mark_sending(
    session: AsyncSession, delivery_ids: Collection[int], holder: str | None = None
) -> set[int]:
    """These requests are about to leave: from now on each may reach Telegram. Only rows
    still claimed by ``holder`` are marked, and only those may be sent (the ids returned):
    a row that recovery took back meanwhile belongs to another sender now."""
    fence = [_OUTBOX.c.id.in_(delivery_ids), _OUTBOX.c.state == CLAIMED]
    if holder is not None:
        fence.append(_OUTBOX.c.claimed_by == holder)
    result = await session.execute(
        update(_OUTBOX).where(*fence).values(state=SENDING).returning(_OUTBOX.c.id)
    )
    return set(result.scalars())


async def mark_sent(
    session: AsyncSession,
    delivery_ids: Collection[int],
    now: datetime,
    message_ids: Mapping[int, int] | None = None,
) -> None:
    """Telegram accepted these deliveries (and made these messages of them, by row)."""
    messages = message_ids or {}
    await session.execute(
        _MARK_SENT,
        [{"row": row, "now": now, "message": messages.get(row)} for row in delivery_ids],
    )


async def claim_edits(
    session: AsyncSession, now: datetime, limit: int, *, pushed_since: datetime
) -> list[DueEdit]:
    """The sent messages due for an edit, longest due first (they are not marked: an edit
    is idempotent, and one cut by a crash is simply made again). Edits of stories pushed
    before ``pushed_since``, or to chats that no longer receive alerts, are dropped."""
    # Read from the few rows marked (the index on edit_due_at), not from all the alerts.
    ended = (
        select(Delivery.id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .join(Chat, Chat.id == Delivery.chat_id)
        .where(
            Delivery.edit_due_at.is_not(None),
            or_(Alert.created_at < pushed_since, Chat.active.is_(False)),
        )
    )
    ended_ids = list((await session.scalars(ended)).all())
    if ended_ids:
        await session.execute(
            update(Delivery).where(Delivery.id.in_(ended_ids)).values(edit_due_at=None)
        )
    query = (
        select(
            Delivery.id,
            Delivery.alert_id,
            Delivery.chat_id,
            Chat.kind,
            Delivery.message_id,
            Chat.language,
            Delivery.edit_due_at,
        )
        .join(Chat, Chat.id == Delivery.chat_id)
        .where(
            Delivery.edit_due_at <= now,
            Delivery.state == SENT,
            Delivery.message_id.is_not(None),
        )
        .order_by(Delivery.edit_due_at, Delivery.id)
        .limit(limit)
    )
    return [
        DueEdit(row_id, alert_id, chat_id, kind, message_id, language, due, now)
        for row_id, alert_id, chat_id, kind, message_id, language, due in await session.execute(
            query
        )
        if message_id is not None and due is not None
    ]


async def finish_edit(session: AsyncSession, edit: DueEdit, due: datetime | None = None) -> bool:
    """The edit is made (or ended for good): clear it, or with ``due`` try again then; only
    if no confirmation came meanwhile (the value read is still there), else it stays due.
    Whether it was cleared."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == edit.id, Delivery.edit_due_at == edit.due)
        .values(edit_due_at=due)
    )
    return bool(getattr(result, "rowcount", 0))


async def finish(
    session: AsyncSession,
    delivery_id: int,
    state: str,
    error: str | None = None,
) -> None:
    """Record a delivery's end other than sent (see :func:`mark_sent`): failed, dropped or
    unknown."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(state=state, error=error, attempts=Delivery.attempts + 1)
    )


async def retry_later(
    session: AsyncSession,
    delivery_id: int,
    due_at: datetime,
    error: str | None = None,
    *,
    attempted: bool = True,
    holder: str | None = None,
) -> None:
    """Put a claimed delivery back in the queue, due at ``due_at`` (with ``holder``, only if
    that sender still holds it: another may have taken it back and be sending it)."""
    fence = [Delivery.id == delivery_id]
    if holder is not None:
        fence += [Delivery.claimed_by == holder, Delivery.state.in_((CLAIMED, SENDING))]
    await session.execute(
        update(Delivery)
        .where(*fence)
        .values(
            state=PENDING,
            due_at=due_at,
            error=error,
            attempts=Delivery.attempts + (1 if attempted else 0),
        )
    )


async def deactivate_chat(session: AsyncSession, chat_id: int, reason: str) -> None:
    """Mark a chat inactive (blocked, deactivated, gone) and drop what was pending for it."""
    await session.execute(update(Chat).where(Chat.id == chat_id).values(active=False))
    await session.execute(
        update(Delivery)
        .where(Delivery.chat_id == chat_id, Delivery.state.in_((PENDING, CLAIMED, SENDING)))
        .values(state=DROPPED, error=reason)
    )


async def recover_in_flight(session: AsyncSession, holder: str | None = None) -> int:
    """When a sender starts: requests that were in flight when a sender stopped may have
    reached Telegram, so they are recorded as unknown instead of being sent again; rows
    claimed but never begun go back to the queue. Returns how many were in flight.

    On PostgreSQL (several processes) only the rows of senders that are gone are taken:
    those of ``holder`` (this sender: its last run ended), of no holder, and of holders
    whose :func:`liveness_lock` nobody holds. A live sender's rows are never touched.
    """
    gone = await _gone_holders(session, holder)
    mine: ColumnElement[bool] = true()  # SQLite: one process, every row is this one's
    if gone is not None:
        mine = or_(Delivery.claimed_by.is_(None), Delivery.claimed_by.in_(gone))
    await session.execute(
        update(Delivery).where(Delivery.state == CLAIMED, mine).values(state=PENDING)
    )
    result = await session.execute(
        update(Delivery)
        .where(Delivery.state == SENDING, mine)
        .values(state=UNKNOWN, error="in flight when the sender stopped")
    )
    return int(getattr(result, "rowcount", 0) or 0)


_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND objsubid = 1 AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid))"
)


async def _gone_holders(session: AsyncSession, holder: str | None) -> list[str] | None:
    """The holders of rows in flight whose sender is gone (None on SQLite: all are)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    holders = await session.scalars(
        select(Delivery.claimed_by)
        .where(Delivery.state.in_((CLAIMED, SENDING)), Delivery.claimed_by.is_not(None))
        .distinct()
    )
    gone: list[str] = []
    for each in holders:
        if each is None:
            continue
        key = lock_key(liveness_lock(each)) & 0xFFFFFFFFFFFFFFFF
        alive = await session.scalar(_HELD, {"high": key >> 32, "low": key & 0xFFFFFFFF})
        if each == holder or not alive:
            gone.append(each)
    return gone


async def refresh_statistics(session: AsyncSession) -> None:
    """Have PostgreSQL sample the outbox again. A fan-out writes rows far faster than
    autovacuum notices (it looks once a minute): with the counts of an emptier table the
    planner claims due rows by sorting all of them (1.5 s at a million) instead of reading
    the first off the index (20 ms). SQLite's planner keeps no such counts unless asked."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("ANALYZE deliveries"))


async def drop_stale(session: AsyncSession, created_before: datetime) -> int:
    """Drop pending deliveries of alerts older than the cut-off: old news is not news."""
    stale_alerts = select(Alert.id).where(Alert.created_at < created_before)
    result = await session.execute(
        update(Delivery)
        .where(and_(Delivery.state == PENDING, Delivery.alert_id.in_(stale_alerts)))
        .values(state=DROPPED, error="stale")
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class InDoubt:
    """A delivery whose request may or may not have reached Telegram."""

    id: int
    alert_id: int
    chat_id: int
    chat_title: str | None
    headline: str  # the article's title, or an editor's text
    due_at: datetime  # when it was last due: it was attempted then, or soon after
    error: str | None


@dataclass(frozen=True, slots=True)
class Resent:
    """What :func:`resend_in_doubt` did: rows put back in the queue, and rows left in doubt
    because their alert is stale or their chat no longer receives alerts."""

    queued: int
    stale: int
    inactive: int


async def list_in_doubt(session: AsyncSession, alert_id: int | None = None) -> list[InDoubt]:
    """The deliveries in doubt (of one alert, if given), oldest alert first."""
    query = (
        select(
            Delivery.id,
            Delivery.alert_id,
            Delivery.chat_id,
            Chat.title,
            func.coalesce(Article.title, Alert.text, ""),
            Delivery.due_at,
            Delivery.error,
        )
        .join(Chat, Chat.id == Delivery.chat_id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .outerjoin(Article, Article.id == Alert.article_id)
        .where(Delivery.state == UNKNOWN)
        .order_by(Delivery.alert_id, Delivery.chat_id)
    )
    if alert_id is not None:
        query = query.where(Delivery.alert_id == alert_id)
    return [InDoubt(*row) for row in await session.execute(query)]


async def resend_in_doubt(
    session: AsyncSession,
    now: datetime,
    *,
    created_since: datetime,
    alert_id: int | None = None,
) -> Resent:
    """Put the deliveries in doubt (of one alert, if given) back in the queue, due now: the
    operator's deliberate choice, as a reader may get the alert twice. Rows of alerts created
    before ``created_since`` (the sender would drop them as stale) and of chats that no longer
    receive alerts stay in doubt."""
    in_doubt = [Delivery.state == UNKNOWN]
    if alert_id is not None:
        in_doubt.append(Delivery.alert_id == alert_id)
    fresh = Delivery.alert_id.in_(select(Alert.id).where(Alert.created_at >= created_since))
    active = Delivery.chat_id.in_(select(Chat.id).where(Chat.active.is_(True)))
    counts = (
        await session.execute(
            select(
                func.count().filter(~fresh),
                func.count().filter(fresh, ~active),
            ).where(*in_doubt)
        )
    ).one()
    result = await session.execute(
        update(Delivery)
        .where(*in_doubt, fresh, active)
        .values(state=PENDING, due_at=now, error=None)
    )
    return Resent(
        queued=int(getattr(result, "rowcount", 0) or 0),
        stale=int(counts[0]),
        inactive=int(counts[1]),
    )


async def count_by_state(session: AsyncSession, since: datetime | None = None) -> dict[str, int]:
    """How many deliveries are in each state (of alerts created since ``since``)."""
    query = select(Delivery.state, func.count()).group_by(Delivery.state)
    if since is not None:
        query = query.where(
            Delivery.alert_id.in_(select(Alert.id).where(Alert.created_at >= since))
        )
    return {state: int(count) for state, count in await session.execute(query)}


__all__: Sequence[str] = [
    "CLAIMED",
    "DROPPED",
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "UNKNOWN",
    "Claimed",
    "DueEdit",
    "InDoubt",
    "Resent",
    "claim_due",
    "claim_edits",
    "count_by_state",
    "deactivate_chat",
    "drop_stale",
    "finish",
    "finish_edit",
    "list_in_doubt",
    "liveness_lock",
    "mark_sending",
    "mark_sent",
    "recover_in_flight",
    "resend_in_doubt",
    "retry_later",
]
