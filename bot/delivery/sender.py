"""The sender: drains the outbox at Telegram's pace, once per chat, surviving crashes; then
edits the alerts whose story was confirmed since they were sent.

Pacing is the bot's own and exact: at most ``per_second`` requests start in any one-second
window, a private chat gets at most one a second, a group at most ``group_per_minute`` a
minute, and no more are in flight than the answers' latency calls for (none while Telegram
is silent). A 429 pauses everything for ``retry_after`` and the same row is retried. A
request that may have reached Telegram (a read timeout) is recorded as ``unknown``, never
resent.

Edits go through the same pacer (they count against every limit) and only in a pass that
found no send due: a new alert always goes first, and while the queue is deep edits wait.
An edit is idempotent, so it is never marked before it leaves: a crash leaves it due and
it is made again («message is not modified» ends it quietly), and it is cleared only if no
confirmation came while it was in flight.

A database that fails (locked, unreachable) stops nothing for good: outcomes it could not
record are kept and recorded first once it answers again, and the pass is tried again after
a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.delivery.deliver import NotYet
from bot.delivery.pacing import Pacer, Pacing
from storage import deliveries
from storage.chats import migrate_chat
from storage.db import Database, GroupWriter, is_transient, process_holder
from storage.deliveries import Claimed, DueEdit
from storage.models import utcnow

log = logging.getLogger(__name__)

# Sends a row; the id of the message Telegram made of it (None if it sent nothing).
Deliver = Callable[[Claimed], Awaitable[int | None]]
Edit = Callable[[DueEdit], Awaitable[None]]
# Hears how each pass went: None when it worked, else what failed.
Report = Callable[[BaseException | None], None]
Job = Callable[[AsyncSession], Awaitable[None]]
# Causes that prove the request never reached Telegram: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_GONE = ("chat not found", "user not found", "bot was kicked", "group chat was deleted")
MAX_RETRY_DELAY = timedelta(minutes=5)
# After a failed pass the sender tries again this soon, then less and less often: once the
# database answers again, alerts flow within seconds.
RETRY_FIRST = 0.5
RETRY_MOST = 5.0
# Answers that end an edit for good, quietly: nothing to change, or no message to change.
_EDIT_ENDS = ("message is not modified", "message to edit not found", "message can't be edited")
# An edit whose request failed in transit (it may or may not have been made: making it
# again is harmless) is tried again after this.
EDIT_RETRY = timedelta(seconds=5)
# The share of the sending rate edits leave to new alerts (5 a second of 30).
EDIT_RESERVE = 1 / 6


@dataclass(slots=True)
class SendStats:
    """What this process's sender did since it started, for /metrics."""

    sent: int = 0
    rate_limited: int = 0  # answers 429, retried later
    failed: int = 0  # refused for good (blocked, chat not found…)
    in_doubt: int = 0  # requests whose outcome nobody can know (cut mid-flight)
    edited: int = 0  # sent alerts edited (their story confirmed), or found already current
    edit_failed: int = 0  # edits refused for good (message gone, too old to edit…)


class Sender:
    """Claims due deliveries, sends them through ``deliver`` and records each outcome.

    ``probe`` is a harmless request (``bot.get_me``) that tells when a silent Telegram
    answers again, without leaving an alert in doubt.
    """

    def __init__(
        self,
        db: Database,
        deliver: Deliver,
        *,
        pacing: Pacing = Pacing(),
        concurrency: int = 128,
        stale_after: timedelta = timedelta(hours=2),
        clock: Callable[[], datetime] = utcnow,
        probe: Callable[[], Awaitable[object]] | None = None,
        holder: str | None = None,
        edit: Edit | None = None,
        edit_for: timedelta = timedelta(hours=6),
    ) -> None:
        """``holder``: who this sender is in the claims it writes (default: this process).
        ``edit`` edits a sent alert whose story was confirmed (without it none is), for
        ``edit_for`` after the story's alert was recorded."""
        self._db = db
        self.holder = holder or process_holder()
        self._deliver = deliver
        self._edit = edit
        self._edit_for = edit_for
        # Edits taken at once: about a second's worth, so that a new alert stored meanwhile
        # waits behind them for a second at most.
        self._edit_batch = max(1, min(pacing.per_second, concurrency * 4))
        # Deliveries taken at once: a second's worth at least. Between two batches the
        # sender drains the last requests of one and claims the next: at a thousand a
        # second, batches of a quarter second lost a fifth of the rate in those gaps.
        self._send_batch = max(concurrency * 2, pacing.per_second)
        # Places of each second's window edits leave free, so a new alert leaves at once.
        self._edit_reserve = math.ceil(pacing.per_second * EDIT_RESERVE)
        self._message_ids: dict[int, int] = {}  # rows sent, until their message id is written
        self._pacer = Pacer(pacing, probe=None if probe is None else partial(_answers, probe))
        self._concurrency = concurrency
        self._stale_after = stale_after
        self._clock = clock
        self._writer = db.group_writer()
        # At a thousand messages a second one statement per row is most of the CPU: rows
        # leaving and rows sent are recorded together, one UPDATE per commit.
        self._leaving = _Batch(self._writer, partial(deliveries.mark_sending, holder=self.holder))
        self._sent = _Batch(self._writer, self._mark_sent)
        # Outcomes known but not yet recorded (the database failed): recorded before more
        # rows are claimed. Kept in memory: a crash leaves their rows to recover().
        self._unrecorded: list[Job] = []
        self._trouble: BaseException | None = None  # the pass's first database failure
        self._wake = asyncio.Event()
        self._news = False  # woken for new deliveries during an edit batch: it yields to them
        self._stopped = asyncio.Event()
        self.stats = SendStats()

    @property
    def in_flight(self) -> int:
        """Requests to Telegram started and not yet answered."""
        return self._pacer.in_flight

    def wake(self) -> None:
        """New deliveries are waiting: look now instead of at the next tick (edits not yet
        begun wait for them)."""
        self._news = True
        self._wake.set()

    def stop(self) -> None:
        """Take no more work: rows in flight finish, rows claimed but not begun go back."""
        self._stopped.set()
        self._pacer.close()
        self._wake.set()

    async def recover(self) -> int:
        """At start (and at the end): rows in flight when a sender that is gone stopped, this
        one's last run included, become ``unknown``; rows it had claimed go back."""
        async with self._db.transaction() as session:
            return await deliveries.recover_in_flight(session, self.holder)

    async def run(self, *, idle: float = 0.5, report: Report | None = None) -> None:
        """Send until stopped (or cancelled), looking for due rows every ``idle`` seconds.

        A pass that fails (the database locked or unreachable) is tried again after a
        growing pause. ``report`` hears how each pass went and then owns the logging;
        without it failures are logged here, at ERROR once per streak.
        """
        streak = _Streak(report)
        recovered = False
        try:
            while not self._stopped.is_set():
                try:
                    await self._record_unrecorded()  # before recover() takes their rows
                    if not recovered:
                        await self.recover()
                        recovered = True
                    claimed = await self.send_due()
                    if claimed == 0:  # new alerts first: edits only when none is due
                        claimed = await self.edit_due()
                except Exception as exc:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopped.wait(), streak.failed(exc))
                    continue
                streak.passed()
                if claimed == 0 and not self._stopped.is_set():
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), idle)
        finally:
            with contextlib.suppress(Exception):  # a last chance; else recover() decides
                await self._record_unrecorded()
            await self._leaving.aclose()
            await self._sent.aclose()
            await self._writer.aclose()
            # Stopped or cancelled (the lock lost): settle this run's rows now, so that no
            # row waits for the next start of a sender (another process may send meanwhile).
            with contextlib.suppress(Exception):
                await self.recover()

    async def send_due(self) -> int:
        """Send one batch of due deliveries; return how many were claimed.

        Raises the first database failure met, once every row of the batch has ended; the
        outcomes it kept from being recorded are recorded by the next call.
        """
        await self._record_unrecorded()
        now = self._clock()
        async with self._db.transaction() as session:
            await deliveries.drop_stale(session, now - self._stale_after)
            claimed = await deliveries.claim_due(session, now, self._send_batch, self.holder)
        if not claimed:
            return 0
        slots = asyncio.Semaphore(self._concurrency)

        async def one(row: Claimed) -> None:
            async with slots:
                await self._send(row)

        self._trouble = None
        async with asyncio.TaskGroup() as group:
            for row in claimed:
                group.create_task(one(row))
        self._raise_trouble()
        return len(claimed)

    async def edit_due(self) -> int:
        """Make one batch of due edits; return how many were attempted (edits of busy
        chats are put off, not counted). Raises the first database failure met."""
        if self._edit is None:
            return 0
        await self._record_unrecorded()
        now = self._clock()
        async with self._db.transaction() as session:
            due = await deliveries.claim_edits(
                session, now, self._edit_batch, pushed_since=now - self._edit_for
            )
        if not due:
            return 0
        self._news = False
        slots = asyncio.Semaphore(self._concurrency)
        attempted = 0

        async def one(row: DueEdit) -> None:
            nonlocal attempted
            async with slots:
                attempted += await self._edit_one(row)

        self._trouble = None
        async with asyncio.TaskGroup() as group:
            for row in due:
                group.create_task(one(row))
        self._raise_trouble()
        return attempted

    async def _edit_one(self, row: DueEdit) -> int:
        """Edit one message at the pacer's pace; 1 if the request was made."""
        assert self._edit is not None  # noqa: S101 - edit_due() checked it
        if self._stopped.is_set() or self._news:
            return 0  # stopping, or a new alert goes first: the edit stays due
        is_group = row.chat_kind in ("group", "supergroup")
        wait = self._pacer.chat_ready_at(row.chat_id, is_group) - time.monotonic()
        if wait > 1.0:  # a busy chat: come back when it is free
            later = self._clock() + timedelta(seconds=wait)
            await self._write(deliveries.finish_edit, row, later)
            return 0
        if not await self._pacer.acquire(row.chat_id, is_group, reserve=self._edit_reserve):
            return 0
        answered: bool | None = None
        error: Exception | None = None
        try:
            if self._stopped.is_set() or self._news:
                return 0
            self._pacer.depart(row.chat_id)
            try:
                await self._edit(row)
                answered = True
            except Exception as exc:
                error, answered = exc, _answered(exc)
        finally:
            self._pacer.release(row.chat_id, is_group, answered=answered)
        await self._edited(row, error)
        return 1

    async def _edited(self, row: DueEdit, exc: Exception | None) -> None:
        """Record how an edit ended: cleared (made, or ended for good), or due again."""
        if exc is None:
            self.stats.edited += 1
            await self._write(deliveries.finish_edit, row)
        elif isinstance(exc, RetryAfter):
            seconds = _seconds(exc.retry_after)
            self.stats.rate_limited += 1
            self._pacer.pause(seconds)
            later = self._clock() + timedelta(seconds=seconds)
            await self._write(deliveries.finish_edit, row, later)
        elif isinstance(exc, BadRequest) and "not modified" in exc.message.lower():
            self.stats.edited += 1  # it already says what it should
            await self._write(deliveries.finish_edit, row)
        elif isinstance(exc, Forbidden):
            self.stats.edit_failed += 1
            await self._write(deliveries.deactivate_chat, row.chat_id, _short(exc))
            await self._write(deliveries.finish_edit, row)
        elif isinstance(exc, BadRequest | ChatMigrated):
            # Deleted by the reader or too old to edit (quietly), or refused otherwise.
            if not any(end in str(exc).lower() for end in _EDIT_ENDS):
                log.warning("editing delivery %s was refused: %s", row.id, _short(exc))
            self.stats.edit_failed += 1
            await self._write(deliveries.finish_edit, row)
        elif isinstance(exc, TelegramError | httpx.HTTPError) or is_transient(exc):
            # Made or not, making it again is harmless: try again soon.
            if is_transient(exc):
                self._note(exc)
            later = self._clock() + EDIT_RETRY
            await self._write(deliveries.finish_edit, row, later)
        else:  # refused for another reason, or a rendering bug: it must not stop the sender
            log.warning("editing delivery %s failed: %s", row.id, _short(exc))
            self.stats.edit_failed += 1
            await self._write(deliveries.finish_edit, row)

    async def _send(self, row: Claimed) -> None:
        if self._stopped.is_set():  # claimed but not begun: back to the queue for the next process
            await self._put_back(row)
            return
        is_group = row.chat_kind in ("group", "supergroup")
        wait = self._pacer.chat_ready_at(row.chat_id, is_group) - time.monotonic()
        if wait > 1.0:  # don't hold a slot for a busy chat: come back when it is free
            due = self._clock() + timedelta(seconds=wait)
            await self._write(
                deliveries.retry_later, row.id, due, None, attempted=False, holder=self.holder
            )
            return
        if not await self._pacer.acquire(row.chat_id, is_group):
            await self._put_back(row)  # stopped while waiting for its turn: it has not begun
            return
        if self._stopped.is_set():
            self._pacer.release(row.chat_id, is_group, answered=None)
            await self._put_back(row)
            return
        left, answered, error, ours = False, None, None, True
        message_id: int | None = None
        try:
            try:
                # Recorded before the request leaves: a crash from here on may have sent it.
                ours = await self._leaving.add(row.id)
            except Exception as exc:  # not recorded as leaving, so it must not leave
                self._note(exc)
            else:
                left = ours
                self._pacer.depart(row.chat_id)
                try:
                    message_id = await self._deliver(row)
                    answered = True
                except Exception as exc:
                    error, answered = exc, _answered(exc)
        finally:
            self._pacer.release(row.chat_id, is_group, answered=answered)
        if not ours:
            return  # taken back by recovery meanwhile: another sender sends it
        if not left:
            await self._put_back(row)
        elif error is None:
            await self._record_sent(row, message_id)
        else:
            await self._failed(row, error)

    async def _failed(self, row: Claimed, exc: Exception) -> None:
        if isinstance(exc, NotYet):  # nothing left: back in the queue, not an attempt
            due = self._clock() + timedelta(seconds=exc.seconds)
            await self._write(
                deliveries.retry_later, row.id, due, None, attempted=False, holder=self.holder
            )
        elif isinstance(exc, RetryAfter):
            seconds = _seconds(exc.retry_after)
            self.stats.rate_limited += 1
            self._pacer.pause(seconds)
            due = self._clock() + timedelta(seconds=seconds)
            await self._write(deliveries.retry_later, row.id, due, "429 retry after")
        elif isinstance(exc, Forbidden):
            self.stats.failed += 1
            await self._write(deliveries.deactivate_chat, row.chat_id, _short(exc))
        elif isinstance(exc, ChatMigrated):
            await self._write(_migrate, row.chat_id, exc.new_chat_id, row.id, self._clock())
        elif isinstance(exc, TimedOut):
            await self._failed_in_flight(row, exc)
        elif isinstance(exc, BadRequest):
            if any(reason in exc.message.lower() for reason in _GONE):
                await self._write(deliveries.deactivate_chat, row.chat_id, _short(exc))
            else:
                self.stats.failed += 1
                await self._write(deliveries.finish, row.id, deliveries.FAILED, _short(exc))
        elif isinstance(exc, TelegramError):  # NetworkError and the like
            await self._failed_in_flight(row, exc)
        elif is_transient(exc):  # the database failed while the alert was read: nothing left
            self._note(exc)
            await self._put_back(row)
        else:  # a rendering bug must not stop the sender
            log.error("delivery %s failed", row.id, exc_info=exc)
            self.stats.failed += 1
            await self._write(deliveries.finish, row.id, deliveries.FAILED, _short(exc))

    async def _put_back(self, row: Claimed) -> None:
        await self._write(
            deliveries.retry_later,
            row.id,
            self._clock(),
            None,
            attempted=False,
            holder=self.holder,
        )

    async def _failed_in_flight(self, row: Claimed, exc: TelegramError) -> None:
        if isinstance(exc.__cause__, _NOT_SENT):
            delay = min(timedelta(seconds=2 ** min(row.attempts, 10)), MAX_RETRY_DELAY)
            await self._write(deliveries.retry_later, row.id, self._clock() + delay, _short(exc))
        else:  # it may have been delivered: resending is how readers get an alert three times
            self.stats.in_doubt += 1
            await self._write(deliveries.finish, row.id, deliveries.UNKNOWN, _short(exc))

    async def _record_sent(self, row: Claimed, message_id: int | None) -> None:
        self.stats.sent += 1
        answered_at = self._clock()
        if message_id is not None:
            self._message_ids[row.id] = message_id
        try:
            await self._sent.add(row.id)
        except Exception as exc:
            ids = {row.id: message_id} if message_id is not None else None

            async def job(session: AsyncSession) -> None:
                await deliveries.mark_sent(session, [row.id], answered_at, ids)

            self._keep(job, exc)
        finally:
            self._message_ids.pop(row.id, None)

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        messages = {row: self._message_ids[row] for row in ids if row in self._message_ids}
        await deliveries.mark_sent(session, ids, self._clock(), messages)

    async def _write(
        self, function: Callable[..., Awaitable[object]], *args: object, **kwargs: object
    ) -> None:
        """Record an outcome; outcomes arriving together share one commit."""

        async def job(session: AsyncSession) -> None:
            await function(session, *args, **kwargs)

        await self._record(job)

    async def _record(self, job: Job) -> None:
        try:
            await self._writer.run(job)
        except Exception as exc:
            self._keep(job, exc)

    def _keep(self, job: Job, exc: Exception) -> None:
        """An outcome the database refused: recorded later if the failure may pass (else
        the pass fails with it, logged, and recover() settles the row at the next start)."""
        self._note(exc)
        if is_transient(exc):
            self._unrecorded.append(job)

    def _note(self, exc: BaseException) -> None:
        if self._trouble is None:
            self._trouble = exc

    def _raise_trouble(self) -> None:
        trouble, self._trouble = self._trouble, None
        if trouble is not None:
            raise trouble

    async def _record_unrecorded(self) -> None:
        """Record the outcomes the database refused before; raise if it still does."""
        jobs, self._unrecorded = self._unrecorded, []
        if not jobs:
            return
        self._trouble = None
        await asyncio.gather(*(self._record(job) for job in jobs))
        self._raise_trouble()


class _Streak:
    """Failed passes in a row: each told to ``report``, else logged here, at ERROR once per
    streak (a database down for an hour is one error, not thousands)."""

    def __init__(self, report: Report | None) -> None:
        self._report = report
        self._failures = 0

    def failed(self, exc: BaseException) -> float:
        """Count a failed pass; return the pause before the next."""
        self._failures += 1
        if self._report is not None:
            self._report(exc)
        elif self._failures == 1:
            trace = None if is_transient(exc) else exc  # a database down needs no traceback
            log.error(
                "the sender failed, retrying until it works: %s", _short(exc), exc_info=trace
            )
        else:
            log.debug("the sender failed again: %s", _short(exc))
        return min(RETRY_FIRST * 2.0 ** min(self._failures - 1, 10), RETRY_MOST)

    def passed(self) -> None:
        """A pass worked: the streak, if any, is over."""
        if self._report is not None:
            self._report(None)
        elif self._failures:
            log.warning("the sender works again after %d failed attempts", self._failures)
        self._failures = 0


class _Batch:
    """Group commit of one write for many rows: ids added while a write is being committed
    go together in the next one, as a single statement. A write may return the ids it
    changed (a fenced update); the others were not written."""

    def __init__(
        self,
        writer: GroupWriter,
        write: Callable[[AsyncSession, list[int]], Awaitable[set[int] | None]],
    ) -> None:
        self._writer = writer
        self._write = write
        self._queued: list[tuple[int, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, row_id: int) -> bool:
        """Write this row (with the others queued); once committed, whether it was written."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((row_id, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await done

    async def aclose(self) -> None:
        """Wait for the rows queued to be written (their adders may have been cancelled)."""
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            ids = [row_id for row_id, _ in batch]

            async def job(session: AsyncSession, ids: list[int] = ids) -> set[int] | None:
                return await self._write(session, ids)

            try:
                written = await self._writer.run(job)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # retrieved: an adder cancelled meanwhile leaves no noise
            else:
                for row_id, done in batch:
                    if not done.done():
                        done.set_result(written is None or row_id in written)


async def _answers(probe: Callable[[], Awaitable[object]]) -> bool:
    """Whether Telegram answers ``probe`` (an error it sends is an answer too)."""
    try:
        await probe()
    except TelegramError as exc:
        return bool(_answered(exc))
    return True


def _answered(exc: Exception) -> bool | None:
    """Whether Telegram answered the request that raised ``exc``: False for a timeout or a
    network failure, None for a failure of ours before the request left."""
    if not isinstance(exc, TelegramError):
        return None
    return isinstance(exc, BadRequest) or not isinstance(exc, NetworkError)


async def _migrate(
    session: AsyncSession, old: int, new: int, delivery_id: int, now: datetime
) -> None:
    await migrate_chat(session, old, new)
    await deliveries.retry_later(session, delivery_id, now, "group became a supergroup")


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]
