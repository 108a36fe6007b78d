"""Queries over chats: registering, settings, deactivation and supergroup migration."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Chat, Delivery, Subscription


async def get_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    """The chat with this id, or None."""
    return await session.get(Chat, chat_id)


async def migrate_chat(session: AsyncSession, old_id: int, new_id: int) -> None:
    """A group became a supergroup: its subscriptions and deliveries follow the new id."""
    if await session.get(Chat, new_id) is None:
        # Foreign keys cascade the new id to subscriptions and deliveries.
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
    await session.execute(delete(Chat).where(Chat.id == old_id))


async def upsert_chat(
    session: AsyncSession,
    chat_id: int,
    *,
    kind: str,
    title: str | None = None,
    language: str | None = None,
) -> Chat:
    """Register a chat (or refresh it), active again if it had stopped."""
    chat = await session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, kind=kind, title=title, language=language or "ar", active=True)
        session.add(chat)
    else:
        chat.kind, chat.title, chat.active = kind, title or chat.title, True
        if language:
            chat.language = language
    await session.flush()
    return chat
