"""What the handlers and jobs share: the database, the followed topics, the editors, and the
values from Settings they need. Built once by the composition root (``bot.app``).

Editors' drafts are not here but in the database (``storage.drafts``): a restart keeps
them, and the «Send» press may reach any process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.delivery.fanout import Topics
from bot.feeds.ingest import Ingestor
from storage.db import Database, GroupWriter
from storage.models import utcnow


@dataclass(slots=True)
class Services:
    """Long-lived services and settings for handlers (factories only, never a session)."""

    db: Database
    topics: Topics
    ingestor: Ingestor
    admins: frozenset[int]
    zone: ZoneInfo
    markers: tuple[str, ...]
    wake_sender: Callable[[], None]
    # The writes of many readers' commands share commits (group commit): at hundreds of
    # commands a second, one transaction each is what limits the bot on SQLite.
    writer: GroupWriter
    clock: Callable[[], datetime] = utcnow
    # Chat languages already read, so an update costs no query for it.
    languages: dict[int, str] = field(default_factory=dict)

    def is_editor(self, user_id: int | None) -> bool:
        """Whether this Telegram user is one of the newsroom's editors."""
        return user_id is not None and user_id in self.admins


__all__ = ["Services"]
