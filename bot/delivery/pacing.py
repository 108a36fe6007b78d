"""Pacing: Telegram's limits kept exactly, overall, per private chat and per group; and no
more requests in flight than the answers' latency calls for, none at all while Telegram is
silent, so that a crash leaves few requests in doubt."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# Telegram counts requests as they arrive; a hair over a second absorbs clock granularity.
WINDOW = 1.002
# Requests in flight: what the rate needs at the latency observed (Little's law), twice over
# for jitter, and never fewer than this.
MIN_IN_FLIGHT = 4
HEADROOM = 2.0
# The latency assumed before the first answer, and the weight of each new answer in it.
FIRST_LATENCY = 0.05
LATENCY_WEIGHT = 0.2
# A request unanswered for this many times the usual latency (and at least STALL_FLOOR
# seconds) means Telegram stopped answering: nothing more leaves until an answer comes.
STALL_FACTOR = 4.0
STALL_FLOOR = 1.0
# While Telegram is silent the probe asks whether it answers again, this often at first,
# then less and less often.
PROBE_FIRST = 1.0
PROBE_MOST = 10.0

Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Pacing:
    """Telegram's limits, as the bot keeps them."""

    per_second: int = 30
    private_interval: float = 1.0
    group_per_minute: int = 20


class Pacer:
    """Exact sliding windows, counted so that they hold on Telegram's side too.

    A request occupies its place in a window from the moment it starts until one window
    after it has been answered: whenever it reached Telegram, the next one cannot land in
    the same window, however the two were delayed on the way.

    A request that left may have reached Telegram, so a crash leaves it in doubt: no more
    leave at once than the observed latency calls for, and none while one has waited far
    longer than usual for its answer. Once a request ended unanswered (timed out, cut),
    Telegram is silent: requests wait until ``probe`` (a harmless request, such as
    ``getMe``) is answered, or without a probe they leave one at a time.
    """

    def __init__(
        self,
        pacing: Pacing,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe: Probe | None = None,
    ) -> None:
        self._pacing = pacing
        self._clock = clock
        self._probe = probe
        self._in_flight = 0
        self._expiries: list[float] = []  # heap: when finished requests leave the window
        self._chat_busy: set[int] = set()
        self._private_free: dict[int, float] = {}
        self._group_ends: dict[int, deque[float]] = {}
        self._paused_until = 0.0
        self._departed: dict[int, float] = {}  # chat → when its request left
        self._latency = FIRST_LATENCY
        self._silent = False
        self._probes_failed = 0
        self._closed = False
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Requests started and not yet answered."""
        return self._in_flight

    @property
    def latency(self) -> float:
        """The answers' usual latency, in seconds (a moving average)."""
        return self._latency

    @property
    def limit(self) -> int:
        """How many requests may be in flight at once, at the latency observed."""
        needed = math.ceil(self._pacing.per_second * self._latency * HEADROOM)
        return max(MIN_IN_FLIGHT, min(self._pacing.per_second, needed))

    @property
    def silent(self) -> bool:
        """Whether Telegram stopped answering (the last request ended unanswered)."""
        return self._silent

    def chat_ready_at(self, chat_id: int, is_group: bool) -> float:
        """When this chat may next be sent to (a clock reading)."""
        if chat_id in self._chat_busy and not is_group:
            # At least an interval after the answer still awaited.
            return self._clock() + self._pacing.private_interval
        if is_group:
            ends = self._group_ends.get(chat_id, ())
            if len(ends) >= self._pacing.group_per_minute:
                return ends[-self._pacing.group_per_minute] + 60.0
            return 0.0
        return self._private_free.get(chat_id, 0.0)

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (Telegram said 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def close(self) -> None:
        """Start nothing more: requests waiting for their turn get False from acquire."""
        self._closed = True
        self._released.set()

    async def acquire(self, chat_id: int, is_group: bool, *, reserve: int = 0) -> bool:
        """Wait until a request to this chat fits every window and Telegram answers, and
        count it as started; False (not started) if the pacer was closed meanwhile.

        With ``reserve`` it also leaves that many places of the overall window free (edits
        do, so that a new alert never waits for the window to clear)."""
        while not self._closed:
            # A busy chat waits on its own, without holding up requests to other chats.
            if await self._wait(self.chat_ready_at(chat_id, is_group) - self._clock()):
                continue
            # Waiting for room beyond the reserve happens outside the lock: requests without
            # a reserve are placed meanwhile.
            if reserve and await self._wait(self._global_wait(reserve)):
                continue
            async with self._lock:  # requests are placed one at a time: the windows stay exact
                while not self._closed and await self._hold():
                    pass
                if self._closed:
                    break
                if self.chat_ready_at(chat_id, is_group) > self._clock():
                    continue  # another request to this chat went first
                if reserve and self._global_wait(reserve) > 0:
                    continue  # a request without a reserve took the room meanwhile
                self._in_flight += 1
                self._chat_busy.add(chat_id)
                return True
        return False

    def depart(self, chat_id: int) -> None:
        """The request to this chat is leaving now: from here on it may reach Telegram."""
        self._departed[chat_id] = self._clock()

    def release(self, chat_id: int, is_group: bool, *, answered: bool | None = True) -> None:
        """The request to this chat has ended: ``answered`` by Telegram (with success or an
        error), or not (a timeout, a cut connection), or ``None`` if it never left."""
        now = self._clock()
        departed = self._departed.pop(chat_id, None)
        if answered and departed is not None:
            self._latency += LATENCY_WEIGHT * (now - departed - self._latency)
        if answered:
            self._silent = False
            self._probes_failed = 0
        elif answered is False:
            self._silent = True
        self._in_flight -= 1
        self._chat_busy.discard(chat_id)
        heapq.heappush(self._expiries, now + WINDOW)
        if is_group:
            ends = self._group_ends.setdefault(chat_id, deque())
            ends.append(now)
            while len(ends) > self._pacing.group_per_minute:
                ends.popleft()
        else:
            self._private_free[chat_id] = now + self._pacing.private_interval
        self._released.set()

    async def _hold(self) -> bool:
        """Wait once (or probe) if no request may start now; False if one may."""
        if await self._wait(self._global_wait()):
            return True
        if self._silent:
            if self._in_flight:  # an answer, or its end, tells more than a new request would
                return await self._wait(math.inf)
            if self._probe is None:
                return False  # the next request is the probe
            try:
                answered = await self._probe()
            except Exception:  # a probe that fails says no more than one that is not answered
                answered = False
            if answered:
                self._silent = False
                self._probes_failed = 0
                return True
            self._probes_failed += 1
            return await self._wait(
                min(PROBE_FIRST * 2.0 ** min(self._probes_failed - 1, 10), PROBE_MOST)
            )
        if self._in_flight >= self.limit or self._stalled():
            return await self._wait(math.inf)
        return False

    def _stalled(self) -> bool:
        if not self._departed:
            return False
        waited = self._clock() - min(self._departed.values())
        return waited > max(STALL_FLOOR, STALL_FACTOR * self._latency)

    def _global_wait(self, reserve: int = 0) -> float:
        now = self._clock()
        while self._expiries and self._expiries[0] <= now:
            heapq.heappop(self._expiries)
        if self._paused_until > now:
            return self._paused_until - now
        if self._in_flight + len(self._expiries) < self._pacing.per_second - reserve:
            return 0.0
        return self._expiries[0] - now if self._expiries else math.inf

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, or until a request is released; False if no wait."""
        if seconds <= 0:
            return False
        self._released.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), min(seconds, 60.0))
        return True
