"""Updates already handled: Telegram delivers an update again when the process that
fetched it died before confirming it, or when a webhook's answer was lost. The first
process to record an update handles it; a second delivery, to any process, is dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.models import HandledUpdate


async def add_handled_update(
    session: AsyncSession, bot_id: int, update_id: int, now: datetime
) -> bool:
    """Record that the update is being handled; False if it already was (by any process)."""
    statement = (
        dialect_insert(session)(HandledUpdate)
        .values(bot_id=bot_id, update_id=update_id, handled_at=now)
        .on_conflict_do_nothing()
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def remove_handled_before(session: AsyncSession, moment: datetime) -> int:
    """Forget the updates handled before ``moment``; how many."""
    result = await session.execute(delete(HandledUpdate).where(HandledUpdate.handled_at < moment))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["add_handled_update", "remove_handled_before"]
