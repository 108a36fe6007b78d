"""Pacing: Telegram's limits kept exactly, overall, per private chat and per group."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Telegram counts requests as they arrive; a hair over a second absorbs clock granularity.
WINDOW = 1.002


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
    """

    def __init__(self, pacing: Pacing, clock: Callable[[], float] = time.monotonic) -> None:
        self._pacing = pacing
        self._clock = clock
        self._in_flight = 0
        self._expiries: list[float] = []  # heap: when finished requests leave the window
        self._chat_busy: set[int] = set()
        self._private_free: dict[int, float] = {}
        self._group_ends: dict[int, deque[float]] = {}
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

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

    async def acquire(self, chat_id: int, is_group: bool) -> None:
        """Wait until a request to this chat fits every window, and count it as started."""
        while True:
            # A busy chat waits on its own, without holding up requests to other chats.
            if await self._wait(self.chat_ready_at(chat_id, is_group) - self._clock()):
                continue
            async with self._lock:  # requests are placed one at a time: the windows stay exact
                while await self._wait(self._global_wait()):
                    pass
                if self.chat_ready_at(chat_id, is_group) > self._clock():
                    continue  # another request to this chat went first
                self._in_flight += 1
                self._chat_busy.add(chat_id)
                return

    def release(self, chat_id: int, is_group: bool) -> None:
        """The request to this chat has been answered (or has failed)."""
        now = self._clock()
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

    def _global_wait(self) -> float:
        now = self._clock()
        while self._expiries and self._expiries[0] <= now:
            heapq.heappop(self._expiries)
        if self._paused_until > now:
            return self._paused_until - now
        if self._in_flight + len(self._expiries) < self._pacing.per_second:
            return 0.0
        return self._expiries[0] - now if self._expiries else float("inf")

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, or until a request is released; False if no wait."""
        if seconds <= 0:
            return False
        self._released.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), min(seconds, 60.0))
        return True
