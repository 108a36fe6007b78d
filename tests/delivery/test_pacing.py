"""The sender's pacing, in real time on a small scale."""

from __future__ import annotations

import asyncio
import time

from bot.delivery.pacing import Pacer, Pacing


def most_in_any_window(times: list[float], width: float) -> int:
    """The largest number of times inside any window of this width."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_never_more_than_the_rate_in_any_second() -> None:
    """Twenty requests to distinct chats at 8 a second never put 9 in one second."""
    pacer = Pacer(Pacing(per_second=8))
    started: list[float] = []

    async def one(chat: int) -> None:
        await pacer.acquire(chat, is_group=False)
        started.append(time.monotonic())
        await asyncio.sleep(0.01)  # the request's round trip
        pacer.release(chat, is_group=False)

    begin = time.monotonic()
    await asyncio.gather(*(one(chat) for chat in range(20)))
    assert most_in_any_window(started, 1.0) <= 8
    assert time.monotonic() - begin < 2.5  # and it does not dawdle: 20 at 8/s is ~2 s


async def test_a_private_chat_gets_one_a_second_without_holding_up_others() -> None:
    """Three requests to one chat are a second apart while other chats go straight through."""
    pacer = Pacer(Pacing(per_second=100))
    times: dict[int, list[float]] = {1: [], 2: []}

    async def one(chat: int) -> None:
        await pacer.acquire(chat, is_group=False)
        times[chat].append(time.monotonic())
        pacer.release(chat, is_group=False)

    begin = time.monotonic()
    await asyncio.gather(one(1), one(1), one(1), one(2))
    gaps = [b - a for a, b in zip(sorted(times[1]), sorted(times[1])[1:], strict=False)]
    assert all(gap >= 0.99 for gap in gaps)
    assert times[2][0] - begin < 0.1


async def test_a_group_gets_its_per_minute_allowance_then_waits() -> None:
    """A group may take its per-minute allowance at once; the next request must wait."""
    pacer = Pacer(Pacing(per_second=100, group_per_minute=3))
    for _ in range(3):
        await asyncio.wait_for(pacer.acquire(-100, is_group=True), 0.5)
        pacer.release(-100, is_group=True)
    assert pacer.chat_ready_at(-100, is_group=True) - time.monotonic() > 59


async def test_a_pause_holds_every_request() -> None:
    """After a 429 pause no request starts before the pause is over."""
    pacer = Pacer(Pacing(per_second=100))
    pacer.pause(0.5)
    begin = time.monotonic()
    await pacer.acquire(7, is_group=False)
    assert time.monotonic() - begin >= 0.49


async def test_a_slow_answer_keeps_its_place_until_a_second_after_it() -> None:
    """A request counts until a second after its answer, so a slow one cannot share a
    Telegram-side second with the request that replaces it."""
    pacer = Pacer(Pacing(per_second=1))
    await pacer.acquire(1, is_group=False)
    await asyncio.sleep(0.3)  # the answer takes a while
    pacer.release(1, is_group=False)
    answered = time.monotonic()
    await pacer.acquire(2, is_group=False)
    assert time.monotonic() - answered >= 0.99
