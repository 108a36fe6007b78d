"""Queries over chats: registering, settings, deactivation and supergroup migration."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import DIALECT_INSERTS
from storage.deliveries import DROPPED, PENDING
from storage.models import Chat, Delivery, Subscription
from storage.subscriptions import remove_subscriptions


async def get_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    """The chat with this id, or None."""
    return await session.get(Chat, chat_id)


async def migrate_chat(session: AsyncSession, old_id: int, new_id: int) -> None:
    """A group became a supergroup: its subscriptions and deliveries follow the new id.

    Deliveries name their chat without a foreign key (storage.models.Delivery): they are
    moved, or deleted with the old chat, here."""
    if await session.get(Chat, new_id) is None:
        # The foreign key cascades the new id to subscriptions.
        await session.execute(
            update(Delivery).where(Delivery.chat_id == old_id).values(chat_id=new_id)
        )
        await session.execute(update(Chat).where(Chat.id == old_id).values(id=new_id))
        return
    # The supergroup is already known: merge what the old group had into it.
    taken = select(Subscription.topic_id).where(Subscription.chat_id == new_id)
    await session.execute(
        update(Subscription)
        .where(Subscription.chat_id == old_id, Subscription.topic_id.not_in(taken))
        .values(chat_id=new_id)
    )
    alerts = select(Delivery.alert_id).where(Delivery.chat_id == new_id)
    await session.execute(
        update(Delivery)
        .where(Delivery.chat_id == old_id, Delivery.alert_id.not_in(alerts))
        .values(chat_id=new_id)
    )
    # What did not move (the supergroup already had that alert) goes with the old group.
    await session.execute(delete(Delivery).where(Delivery.chat_id == old_id))
    await session.execute(delete(Chat).where(Chat.id == old_id))


async def upsert_chat(
    session: AsyncSession,
    chat_id: int,
    *,
    kind: str,
    title: str | None = None,
    language: str | None = None,
    reactivate: bool = True,
) -> str:
    """Register a chat (or refresh it), active again if it had stopped (unless
    ``reactivate`` is False: a new chat is active all the same); its language.

    ``language`` is the chat's language when it is new; a known chat keeps the one it has.
    One statement: every command of a new reader starts with it.
    """
    statement = _upsert_statement(session.get_bind().dialect.name, reactivate)
    values = {"id": chat_id, "kind": kind, "title": title, "language": language or "ar"}
    language_stored: str | None = await session.scalar(statement, values)
    assert language_stored is not None  # noqa: S101 - inserted or updated, a row comes back
    return language_stored


@cache
def _upsert_statement(dialect: str, reactivate: bool) -> Any:
    """Built once per dialect: building ``excluded`` copies every column of the table."""
    insert = DIALECT_INSERTS[dialect](Chat).values(
        id=bindparam("id"),
        kind=bindparam("kind"),
        title=bindparam("title"),
        language=bindparam("language"),
        active=True,
    )
    refreshed: dict[str, Any] = {
        "kind": insert.excluded.kind,
        "title": func.coalesce(insert.excluded.title, Chat.title),
    }
    if reactivate:
        refreshed["active"] = True
    return insert.on_conflict_do_update(index_elements=[Chat.id], set_=refreshed).returning(
        Chat.language
    )


async def set_language(session: AsyncSession, chat_id: int, language: str) -> None:
    """The language the chat is answered and alerted in."""
    await session.execute(update(Chat).where(Chat.id == chat_id).values(language=language))


async def set_muted(session: AsyncSession, chat_id: int, until: datetime | None) -> None:
    """No alerts for the chat until then (None: alerts again)."""
    await session.execute(update(Chat).where(Chat.id == chat_id).values(muted_until=until))


async def set_quiet_hours(
    session: AsyncSession, chat_id: int, start: int | None, end: int | None
) -> None:
    """Alerts arrive silently between these minutes of the local day (None: never)."""
    await session.execute(
        update(Chat).where(Chat.id == chat_id).values(quiet_from=start, quiet_to=end)
    )


async def set_all_breaking(session: AsyncSession, chat_id: int, value: bool) -> None:
    """Whether the chat receives every breaking story, whatever it follows."""
    await session.execute(update(Chat).where(Chat.id == chat_id).values(all_breaking=value))


async def stop_chat(session: AsyncSession, chat_id: int) -> int:
    """The chat wants nothing more: inactive, no subscriptions, nothing pending.

    Returns how many topics it followed.
    """
    removed = await remove_subscriptions(session, chat_id)
    await session.execute(
        update(Chat).where(Chat.id == chat_id).values(active=False, all_breaking=False)
    )
    await session.execute(
        update(Delivery)
        .where(Delivery.chat_id == chat_id, Delivery.state == PENDING)
        .values(state=DROPPED, error="the chat stopped")
    )
    return removed
