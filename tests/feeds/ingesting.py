"""What the ingestion tests share: the services the CLI builds, and feeds as stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.app import Core, open_core
from bot.config import load_settings
from storage.db import Database
from storage.feeds import add_feed
from storage.models import Feed


@asynccontextmanager
async def core_for(url: str, **settings: Any) -> AsyncIterator[Core]:
    """The same services the CLI builds, on a test database."""
    options: dict[str, Any] = {"poll_interval": 60, "fetch_per_host": 8} | settings
    async with open_core(load_settings(database_url=url, **options)) as core:
        yield core


async def watch(db: Database, url: str, *, breaking: bool = False, hold: bool = False) -> int:
    """Add a feed the way `newsbot feeds add` stores it (``hold``: not due for a day, so a
    running bot's watcher leaves it to the test)."""
    async with db.transaction() as session:
        feed = add_feed(session, url, breaking=breaking)
        if hold:
            feed.next_fetch_at = datetime.now(UTC) + timedelta(days=1)
        await session.flush()
        return feed.id


async def feed_row(db: Database, feed_id: int) -> Feed:
    """A feed as stored now."""
    async with db.sessions() as session:
        feed = await session.get(Feed, feed_id)
        assert feed is not None
        return feed
