"""Editors' alerts waiting for confirmation: stored with their expiry, taken once."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Draft

# Bytes of randomness in a draft's id: 8 characters of callback data, unguessable enough
# for a button only its editor sees.
ID_BYTES = 6


async def add_draft(
    session: AsyncSession,
    *,
    editor_id: int,
    text: str,
    topic_key: str | None,
    topic_label: str | None,
    now: datetime,
    expires_at: datetime,
) -> Draft:
    """Store a new draft under a new short id (expired drafts are deleted meanwhile)."""
    await remove_expired_drafts(session, now)
    draft = Draft(
        id=secrets.token_urlsafe(ID_BYTES),
        editor_id=editor_id,
        text=text,
        topic_key=topic_key,
        topic_label=topic_label,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(draft)
    await session.flush()
    return draft


async def get_draft(session: AsyncSession, draft_id: str) -> Draft | None:
    """The draft with this id, expired or not, or None."""
    return await session.scalar(select(Draft).where(Draft.id == draft_id))


async def take_draft(session: AsyncSession, draft_id: str) -> bool:
    """Delete the draft; False if it was already gone (taken by another press, in this
    process or another: on PostgreSQL the second waits for the first to commit)."""
    result = await session.execute(
        delete(Draft).where(Draft.id == draft_id).execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def remove_expired_drafts(session: AsyncSession, now: datetime) -> int:
    """Delete the drafts that expired by now; how many."""
    result = await session.execute(
        delete(Draft).where(Draft.expires_at <= now).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["add_draft", "get_draft", "remove_expired_drafts", "take_draft"]
