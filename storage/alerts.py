"""Alerts and their fan-out: one delivery row per chat, written with the alert."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.models import Alert, Delivery


async def create_alert(
    session: AsyncSession,
    chat_ids: Iterable[int],
    now: datetime,
    *,
    article_id: int | None = None,
    text: str | None = None,
    created_by: int | None = None,
) -> tuple[int, int]:
    """Record an alert and one pending delivery per distinct chat; (alert id, deliveries)."""
    alert = Alert(article_id=article_id, text=text, created_by=created_by, created_at=now)
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


__all__ = ["create_alert"]
