"""Long polling when several processes serve one bot: exactly one of them calls getUpdates.

Telegram answers 409 Conflict when two requests poll one bot's updates at once, so the
process that polls holds an advisory lock (:meth:`storage.db.Database.exclusive`) for as
long as it does. The others stand by, trying the lock every second, and the first to get
it once the poller dies (its connection closes and PostgreSQL frees the lock) polls on from
Telegram's confirmed offset. A poller whose lock connection is cut stops polling at once.
On SQLite the lock is a no-op: the one process polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from telegram import Update
from telegram.error import Conflict, TelegramError
from telegram.ext import Updater

from storage.db import Database

log = logging.getLogger(__name__)

# How often a standby process tries the lock: the longest a dead poller goes unreplaced
# is about this plus the lock guard's check.
LOCK_RETRY = 1.0
# getUpdates' long-poll timeout, as python-telegram-bot's run_polling.
POLL_TIMEOUT = timedelta(seconds=10)
ROLE = "updates"


def updates_lock(bot_id: int) -> str:
    """The name of the lock the polling process of bot ``bot_id`` holds."""
    return f"newsbot-updates-{bot_id}"


class UpdatesLeadership:
    """Polls Telegram for the bot's updates while this process holds the updates lock.

    :meth:`run` is a long-running task: it waits for the lock, polls until cancelled, and
    raises :class:`storage.db.LockLost` if the lock's connection is cut. ``roles`` holds
    ``"updates"`` while this process polls.
    """

    def __init__(
        self,
        db: Database,
        updater: Updater,
        *,
        bot_id: int,
        roles: set[str],
        retry: float = LOCK_RETRY,
    ) -> None:
        self._db = db
        self._updater = updater
        self._lock = updates_lock(bot_id)
        self._roles = roles
        self._retry = retry
        self._leading = asyncio.Event()
        self._standing_by = False

    async def run(self) -> None:
        """Wait for the lock, then poll until cancelled (or until the lock is lost)."""
        async with self._db.exclusive(self._lock, retry=self._retry):
            self._leading.set()
            if self._standing_by:
                log.warning("took over long polling: this process now fetches the bot's updates")
            try:
                await self._poll()
            finally:
                self._leading.clear()
                self._standing_by = True  # whoever polls next took over from this one

    async def leading_within(self, seconds: float) -> bool:
        """Whether this process takes the lock within ``seconds`` (it does at once when
        nobody holds it); if not, it stands by and says so when it takes over."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._leading.wait(), seconds)
        self._standing_by = not self._leading.is_set()
        return not self._standing_by

    async def _poll(self) -> None:
        starting = asyncio.create_task(
            self._updater.start_polling(
                timeout=POLL_TIMEOUT,
                allowed_updates=Update.ALL_TYPES,
                error_callback=_polling_failed,
            )
        )
        try:
            await asyncio.shield(starting)
            self._roles.add(ROLE)
            await asyncio.Event().wait()  # poll until cancelled: a stop, or the lock lost
        finally:
            self._roles.discard(ROLE)
            # The Updater cannot be stopped halfway through starting (it would be left
            # "running" with nothing to stop): let the start finish, then stop it, which
            # confirms the offset of the updates it fetched.
            await asyncio.wait({starting})
            if starting.exception() is None and self._updater.running:
                await self._updater.stop()


def _polling_failed(error: TelegramError) -> None:
    """One line per failed getUpdates (python-telegram-bot retries with backoff)."""
    if isinstance(error, Conflict):
        log.warning(
            "Telegram says another program polls this bot's updates (%s): is the token "
            "used by a newsbot on another database, or by something else?",
            error.message,
        )
    else:
        log.warning("polling Telegram for updates failed, retrying: %s", error.message)
