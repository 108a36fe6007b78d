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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError, TimedOut

from storage import deliveries
from storage.chats import migrate_chat
from storage.db import Database
from storage.deliveries import Claimed
from storage.models import utcnow

log = logging.getLogger(__name__)

Deliver = Callable[[Claimed], Awaitable[None]]
# Causes that prove the request never reached Telegram: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_GONE = ("chat not found", "user not found", "bot was kicked", "group chat was deleted")
MAX_RETRY_DELAY = timedelta(minutes=5)
# Telegram counts requests as they arrive, we as they leave: a little margin keeps a
# request that travelled faster than its predecessor out of the same second.
WINDOW = 1.015


@dataclass(frozen=True, slots=True)
class Pacing:
    """Telegram's limits, as the bot keeps them."""

    per_second: int = 30
    private_interval: float = 1.0
    group_per_minute: int = 20


class Pacer:
    """Exact sliding windows: a request may start only when every window has room."""

    def __init__(self, pacing: Pacing, clock: Callable[[], float] = time.monotonic) -> None:
        self._pacing = pacing
        self._clock = clock
        self._recent: deque[float] = deque()
        self._private_last: dict[int, float] = {}
        self._group_recent: dict[int, deque[float]] = {}
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def chat_ready_at(self, chat_id: int, is_group: bool) -> float:
        """When this chat may next be sent to (a clock reading)."""
        if is_group:
            sent = self._group_recent.get(chat_id)
            if sent is not None and len(sent) >= self._pacing.group_per_minute:
                return sent[0] + 60.0
            return 0.0
        last = self._private_last.get(chat_id)
        return 0.0 if last is None else last + self._pacing.private_interval

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (Telegram said 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self, chat_id: int, is_group: bool) -> None:
        """Wait until a request to this chat fits every window, and count it."""
        while True:
            # A busy chat waits on its own, without holding up requests to other chats.
            chat_wait = self.chat_ready_at(chat_id, is_group) - self._clock()
            if chat_wait > 0:
                await asyncio.sleep(chat_wait)
                continue
            async with self._lock:  # requests are placed one at a time: the windows stay exact
                while True:
                    now = self._clock()
                    while self._recent and self._recent[0] <= now - WINDOW:
                        self._recent.popleft()
                    full = len(self._recent) >= self._pacing.per_second
                    wait = max(
                        self._paused_until - now, (self._recent[0] + WINDOW - now) if full else 0.0
                    )
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                if self.chat_ready_at(chat_id, is_group) > now:
                    continue  # another request to this chat went first
                self._record(chat_id, is_group, now)
                return

    def _record(self, chat_id: int, is_group: bool, now: float) -> None:
        self._recent.append(now)
        if is_group:
            group = self._group_recent.setdefault(chat_id, deque())
            group.append(now)
            while len(group) > self._pacing.group_per_minute:
                group.popleft()
        else:
            self._private_last[chat_id] = now


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
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New deliveries are waiting: look now instead of at the next tick."""
        self._wake.set()

    async def recover(self) -> int:
        """At start: rows in flight when the last process died become ``unknown``."""
        async with self._db.transaction() as session:
            return await deliveries.recover_in_flight(session)

    async def run(self, *, idle: float = 0.5) -> None:
        """Send forever (until cancelled), looking for due rows every ``idle`` seconds."""
        await self.recover()
        try:
            while True:
                if await self.send_due() == 0:
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
        is_group = row.chat_kind in ("group", "supergroup")
        wait = self._pacer.chat_ready_at(row.chat_id, is_group) - time.monotonic()
        if wait > 1.0:  # don't hold a slot for a busy chat: come back when it is free
            due = self._clock() + timedelta(seconds=wait)
            await self._write(deliveries.retry_later, row.id, due, None, attempted=False)
            return
        await self._pacer.acquire(row.chat_id, is_group)
        try:
            await self._deliver(row)
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
                await self._write(
                    deliveries.finish, row.id, deliveries.FAILED, self._clock(), _short(exc)
                )
        except TelegramError as exc:  # NetworkError and the like
            await self._failed_in_flight(row, exc)
        except Exception as exc:  # a rendering bug must not stop the sender
            log.exception("delivery %s failed", row.id)
            await self._write(
                deliveries.finish, row.id, deliveries.FAILED, self._clock(), _short(exc)
            )
        else:
            await self._write(deliveries.finish, row.id, deliveries.SENT, self._clock())

    async def _failed_in_flight(self, row: Claimed, exc: TelegramError) -> None:
        if isinstance(exc.__cause__, _NOT_SENT):
            delay = min(timedelta(seconds=2 ** min(row.attempts, 10)), MAX_RETRY_DELAY)
            await self._write(deliveries.retry_later, row.id, self._clock() + delay, _short(exc))
        else:  # it may have been delivered: resending is how readers get an alert three times
            await self._write(
                deliveries.finish, row.id, deliveries.UNKNOWN, self._clock(), _short(exc)
            )

    async def _write(
        self, function: Callable[..., Awaitable[object]], *args: object, **kwargs: object
    ) -> None:
        """Record an outcome; outcomes arriving together share one commit."""

        async def job(session: AsyncSession) -> None:
            await function(session, *args, **kwargs)

        await self._writer.run(job)


async def _migrate(
    session: AsyncSession, old: int, new: int, delivery_id: int, now: datetime
) -> None:
    await migrate_chat(session, old, new)
    await deliveries.retry_later(session, delivery_id, now, "group became a supergroup")


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]
