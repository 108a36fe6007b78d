"""What a chat's buttons need between two updates (a search's query and when it was made),
kept in the database under a short random id the buttons carry, so the next press may
reach any process and survives a restart. Each state expires; expired ones are deleted
as new ones are stored."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import UIState

# Bytes of randomness in an id: 8 characters of callback data (Telegram allows 64 bytes),
# and a press can only reach a state of its own chat (the chat is checked too).
ID_BYTES = 6


async def add_ui_state(
    session: AsyncSession,
    *,
    chat_id: int,
    kind: str,
    data: dict[str, Any],
    now: datetime,
    expires_at: datetime,
) -> str:
    """Store a new state and return its id (expired states are deleted meanwhile)."""
    await remove_expired_ui_states(session, now)
    state = UIState(
        id=secrets.token_urlsafe(ID_BYTES),
        chat_id=chat_id,
        kind=kind,
        data=data,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(state)
    await session.flush()
    return state.id


async def get_ui_state(
    session: AsyncSession, state_id: str, *, chat_id: int, kind: str, now: datetime
) -> dict[str, Any] | None:
    """The data of this chat's state of this kind, or None if unknown, another chat's, or
    expired."""
    return await session.scalar(
        select(UIState.data).where(
            UIState.id == state_id,
            UIState.chat_id == chat_id,
            UIState.kind == kind,
            UIState.expires_at > now,
        )
    )


async def remove_expired_ui_states(session: AsyncSession, now: datetime) -> int:
    """Delete the states that expired by now; how many."""
    result = await session.execute(
        delete(UIState)
        .where(UIState.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["add_ui_state", "get_ui_state", "remove_expired_ui_states"]
