"""Benchmark python-telegram-bot's Bot.send_message over HTTPXRequest and over AiohttpRequest.

Starts the fake Bot API (tests/fakebotapi.py, no flood limits) in its own process, then sends
N HTML alerts to distinct chats with C tasks at once through each transport. Prints msg/s, the
client's and the server's CPU per message, and says when the server, not the client, was busy.

    .venv/bin/python benchmarks/telegram_request.py --messages 5000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telegram import Bot  # noqa: E402
from telegram.constants import ParseMode  # noqa: E402
from telegram.request import BaseRequest, HTTPXRequest  # noqa: E402

from bot.delivery.transport import AiohttpRequest  # noqa: E402
from tests.fakebotapi import DEFAULT_TOKEN, FakeBotAPI  # noqa: E402

ALERT = (
    "<b>عاجل</b> | مجلس الأمن يعقد جلسة طارئة لبحث التصعيد في المنطقة\n"
    '<a href="https://example.com/news/2026/09/01/article-123456">التفاصيل</a> — وكالة الأنباء'
)


def serve(conn: Connection) -> None:
    """The fake Bot API, in its own process so it does not share the client's core."""

    async def main() -> None:
        async with FakeBotAPI(any_chat=True, record_requests=False) as fake:
            stop = asyncio.Event()

            def answer() -> None:
                if conn.recv() == "stop":
                    stop.set()
                else:
                    conn.send((len(fake.sent), time.process_time()))

            asyncio.get_running_loop().add_reader(conn.fileno(), answer)
            conn.send(fake.base_url)
            await stop.wait()

    asyncio.run(main())


def server_stats(conn: Connection) -> tuple[int, float]:
    """Messages the server has accepted so far, and its CPU seconds."""
    conn.send("stats")
    count, cpu = conn.recv()
    return int(count), float(cpu)


async def send_all(bot: Bot, chats: Iterator[int], concurrency: int) -> None:
    """Send one alert to each chat, ``concurrency`` requests at a time."""

    async def worker() -> None:
        for chat_id in chats:  # one iterator shared by every worker
            await bot.send_message(chat_id, ALERT, parse_mode=ParseMode.HTML)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(
    label: str,
    make_request: Callable[[], BaseRequest],
    base_url: str,
    conn: Connection,
    first_chat: int,
    args: argparse.Namespace,
) -> None:
    """Send the messages through one transport and print the figures."""
    async with Bot(DEFAULT_TOKEN, base_url=base_url, request=make_request()) as bot:
        # Warm up: open the connections and let PTB build what it caches.
        warm = first_chat + args.messages
        await send_all(bot, iter(range(warm, warm + args.concurrency)), args.concurrency)
        sent_before, server_cpu = server_stats(conn)
        started, cpu = time.perf_counter(), time.process_time()
        await send_all(bot, iter(range(first_chat, first_chat + args.messages)), args.concurrency)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        sent_after, server_cpu_after = server_stats(conn)
    assert sent_after - sent_before == args.messages, (sent_before, sent_after)
    server_cpu = server_cpu_after - server_cpu
    print(
        f"  {label:<28} {args.messages / wall:7,.0f} msg/s   "
        f"client CPU {cpu / args.messages * 1000:.2f} ms/msg   "
        f"server CPU {server_cpu / args.messages * 1000:.2f} ms/msg "
        f"(busy {server_cpu / wall:.0%} of the run)",
        flush=True,
    )


async def benchmark(args: argparse.Namespace, base_url: str, conn: Connection) -> None:
    """Each transport in turn, ``--rounds`` times, on fresh chats."""
    print(
        f"{args.messages} sendMessage to distinct chats, {args.concurrency} at a time, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    transports: list[tuple[str, Callable[[], BaseRequest]]] = [
        ("HTTPXRequest (PTB default)", HTTPXRequest),
        ("AiohttpRequest", AiohttpRequest),
    ]
    first_chat = 1
    for _ in range(args.rounds):
        for label, make_request in transports:
            await measure(label, make_request, base_url, conn, first_chat, args)
            first_chat += args.messages + args.concurrency


def main() -> None:
    """Parse the arguments, start the server process and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="run each transport this often")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    server = context.Process(target=serve, args=(child_conn,), daemon=True)
    server.start()
    try:
        if not conn.poll(60):
            raise SystemExit("the fake Bot API did not start")
        asyncio.run(benchmark(args, conn.recv(), conn))
    finally:
        conn.send("stop")
        server.join(5)


if __name__ == "__main__":
    main()
