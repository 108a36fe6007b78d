"""The sender: drains the outbox at Telegram's pace, once per chat, surviving crashes.

Pacing is the bot's own and exact: at most ``per_second`` requests start in any one-second
window, a private chat gets at most one a second, a group at most ``group_per_minute`` a
minute. A 429 pauses everything for ``retry_after`` and the same row is retried. A request
that may have reached Telegram (a read timeout) is recorded as ``unknown``, never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError, TimedOut

from bot.delivery.pacing import Pacer, Pacing
from storage import deliveries
from storage.chats import migrate_chat
from storage.db import Database, GroupWriter
from storage.deliveries import Claimed
from storage.models import utcnow

log = logging.getLogger(__name__)

Deliver = Callable[[Claimed], Awaitable[None]]
# Causes that prove the request never reached Telegram: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_GONE = ("chat not found", "user not found", "bot was kicked", "group chat was deleted")
MAX_RETRY_DELAY = timedelta(minutes=5)


class Sender:
    """Claims due deliveries, sends them through ``deliver`` and records each outcome."""

    def __init__(
        self,
        db: Database,
        deliver: Deliver,
        *,
        pacing: Pacing = Pacing(),
        concurrency: int = 64,
        stale_after: timedelta = timedelta(hours=2),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._deliver = deliver
        self._pacer = Pacer(pacing)
        self._concurrency = concurrency
        self._stale_after = stale_after
        self._clock = clock
        self._writer = db.group_writer()
        # At a thousand messages a second one statement per row is most of the CPU: rows
        # leaving and rows sent are recorded together, one UPDATE per commit.
        self._leaving = _Batch(self._writer, deliveries.mark_sending)
        self._sent = _Batch(self._writer, partial(_mark_sent, clock=clock))
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """New deliveries are waiting: look now instead of at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Take no more work: rows in flight finish, rows claimed but not begun go back."""
        self._stopping = True
        self._wake.set()

    async def recover(self) -> int:
        """At start: rows in flight when the last process died become ``unknown``."""
        async with self._db.transaction() as session:
            return await deliveries.recover_in_flight(session)

    async def run(self, *, idle: float = 0.5) -> None:
        """Send forever (until cancelled), looking for due rows every ``idle`` seconds."""
        await self.recover()
        try:
            while not self._stopping:
                if await self.send_due() == 0 and not self._stopping:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), idle)
        finally:
            await self._writer.aclose()

    async def send_due(self) -> int:
        """Send one batch of due deliveries; return how many were claimed."""
        now = self._clock()
        async with self._db.transaction() as session:
            await deliveries.drop_stale(session, now - self._stale_after)
            claimed = await deliveries.claim_due(session, now, self._concurrency * 4)
        if not claimed:
            return 0
        slots = asyncio.Semaphore(self._concurrency)

        async def one(row: Claimed) -> None:
            async with slots:
                await self._send(row)

        async with asyncio.TaskGroup() as group:
            for row in claimed:
                group.create_task(one(row))
        return len(claimed)

    async def _send(self, row: Claimed) -> None:
        if self._stopping:  # claimed but not begun: back to the queue for the next process
            await self._put_back(row)
            return
        is_group = row.chat_kind in ("group", "supergroup")
        wait = self._pacer.chat_ready_at(row.chat_id, is_group) - time.monotonic()
        if wait > 1.0:  # don't hold a slot for a busy chat: come back when it is free
            due = self._clock() + timedelta(seconds=wait)
            await self._write(deliveries.retry_later, row.id, due, None, attempted=False)
            return
        await self._pacer.acquire(row.chat_id, is_group)
        if self._stopping:  # stopped while waiting for its turn: it has not begun either
            self._pacer.release(row.chat_id, is_group)
            await self._put_back(row)
            return
        try:
            try:
                # Recorded before the request leaves: a crash from here on may have sent it.
                await self._leaving.add(row.id)
                await self._deliver(row)
            finally:
                self._pacer.release(row.chat_id, is_group)
        except RetryAfter as exc:
            seconds = _seconds(exc.retry_after)
            self._pacer.pause(seconds)
            due = self._clock() + timedelta(seconds=seconds)
            await self._write(deliveries.retry_later, row.id, due, "429 retry after")
        except Forbidden as exc:
            await self._write(deliveries.deactivate_chat, row.chat_id, _short(exc))
        except ChatMigrated as exc:
            await self._write(_migrate, row.chat_id, exc.new_chat_id, row.id, self._clock())
        except TimedOut as exc:
            await self._failed_in_flight(row, exc)
        except BadRequest as exc:
            if any(reason in exc.message.lower() for reason in _GONE):
                await self._write(deliveries.deactivate_chat, row.chat_id, _short(exc))
            else:
                await self._write(deliveries.finish, row.id, deliveries.FAILED, _short(exc))
        except TelegramError as exc:  # NetworkError and the like
            await self._failed_in_flight(row, exc)
        except Exception as exc:  # a rendering bug must not stop the sender
            log.exception("delivery %s failed", row.id)
            await self._write(deliveries.finish, row.id, deliveries.FAILED, _short(exc))
        else:
            await self._sent.add(row.id)

    async def _put_back(self, row: Claimed) -> None:
        await self._write(deliveries.retry_later, row.id, self._clock(), None, attempted=False)

    async def _failed_in_flight(self, row: Claimed, exc: TelegramError) -> None:
        if isinstance(exc.__cause__, _NOT_SENT):
            delay = min(timedelta(seconds=2 ** min(row.attempts, 10)), MAX_RETRY_DELAY)
            await self._write(deliveries.retry_later, row.id, self._clock() + delay, _short(exc))
        else:  # it may have been delivered: resending is how readers get an alert three times
            await self._write(deliveries.finish, row.id, deliveries.UNKNOWN, _short(exc))

    async def _write(
        self, function: Callable[..., Awaitable[object]], *args: object, **kwargs: object
    ) -> None:
        """Record an outcome; outcomes arriving together share one commit."""

        async def job(session: AsyncSession) -> None:
            await function(session, *args, **kwargs)

        await self._writer.run(job)


class _Batch:
    """Group commit of one write for many rows: ids added while a write is being committed
    go together in the next one, as a single statement."""

    def __init__(
        self,
        writer: GroupWriter,
        write: Callable[[AsyncSession, list[int]], Awaitable[None]],
    ) -> None:
        self._writer = writer
        self._write = write
        self._queued: list[tuple[int, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, row_id: int) -> None:
        """Write this row (with the others queued), returning once committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((row_id, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            ids = [row_id for row_id, _ in batch]

            async def job(session: AsyncSession, ids: list[int] = ids) -> None:
                await self._write(session, ids)

            try:
                await self._writer.run(job)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


async def _mark_sent(
    session: AsyncSession, ids: list[int], *, clock: Callable[[], datetime]
) -> None:
    await deliveries.mark_sent(session, ids, clock())


async def _migrate(
    session: AsyncSession, old: int, new: int, delivery_id: int, now: datetime
) -> None:
    await migrate_chat(session, old, new)
    await deliveries.retry_later(session, delivery_id, now, "group became a supergroup")


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]
