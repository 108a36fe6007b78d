"""The composition root: builds the database, the HTTP client and the services from Settings.

Nothing else reads :class:`~bot.config.Settings` or creates long-lived resources.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from multiprocessing import get_context

from bot import __version__
from bot.config import Settings
from bot.fetch import Fetcher, FetchLimits
from bot.ingest import Ingestor
from storage.db import Database

USER_AGENT = f"Newsbot/{__version__} (newsroom feed reader; +https://github.com/newsbot/newsbot)"


@dataclass(frozen=True, slots=True)
class Core:
    """The long-lived services every entry point shares."""

    settings: Settings
    db: Database
    fetcher: Fetcher
    ingestor: Ingestor


def fetch_limits(settings: Settings, *, allow_private: bool = True) -> FetchLimits:
    """The fetcher's limits as the operator configured them."""
    return FetchLimits(
        total_timeout=settings.fetch_timeout,
        connect_timeout=settings.connect_timeout,
        max_bytes=settings.max_feed_bytes,
        concurrency=settings.fetch_concurrency,
        per_host=settings.fetch_per_host,
        user_agent=USER_AGENT,
        allow_private=allow_private,
    )


@asynccontextmanager
async def open_core(settings: Settings, *, upgrade: bool = True) -> AsyncIterator[Core]:
    """Open the database (upgrading its schema) and the fetcher; close both on exit."""
    quiet_noisy_loggers()
    db = Database(settings.database_url)
    pool = parse_pool(settings.parse_workers)
    try:
        if upgrade:
            await db.upgrade()
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # garbage collector's full scans, which otherwise stall the event loop for 100+ ms.
        gc.freeze()
        async with Fetcher(fetch_limits(settings)) as fetcher:
            ingestor = Ingestor(
                db,
                fetcher,
                poll_interval=timedelta(seconds=settings.poll_interval),
                backlog_age=settings.backlog_age,
                max_backoff=timedelta(seconds=settings.max_backoff),
                parse_pool=pool,
            )
            try:
                yield Core(settings=settings, db=db, fetcher=fetcher, ingestor=ingestor)
            finally:
                await ingestor.aclose()
    finally:
        await db.dispose()


@cache
def parse_pool(workers: int) -> ProcessPoolExecutor | None:
    """The process pool that parses feeds, one per process, started on first use."""
    if workers == 0:
        return None
    # spawn, not fork: this process has threads (aiosqlite, executors) that fork would copy.
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def quiet_noisy_loggers() -> None:
    """Keep httpx at WARNING: Bot API URLs carry the token."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
