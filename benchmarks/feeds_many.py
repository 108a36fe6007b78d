"""Benchmark many feeds polled by one and by several ``newsbot poll`` processes sharing one
PostgreSQL database (feed leases).

A local server (its own process) serves the feeds, unchanged after their first fetch (304
Not Modified). Every feed is fetched once first; then for each process count the pollers
run with a 1 s poll interval, so every feed is always due and the figure is the most they
poll: feeds polled per second (requests the server answered in the window) and the CPU
seconds the pollers spent per feed polled (from /proc: Linux; PostgreSQL's own not counted).

    .venv/bin/python benchmarks/feeds_many.py --feeds 10000 --processes 1 3 \
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import serve_documents  # noqa: E402
from sqlalchemy import insert, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.app import open_core  # noqa: E402
from bot.config import load_settings  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Feed  # noqa: E402
from tests.feedserver import Item, make_rss  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402

NEWSBOT = str(Path(sys.executable).with_name("newsbot"))
TICKS = os.sysconf("SC_CLK_TCK")


def serve(port_queue: Any, feeds: int) -> None:
    """The feed server, in its own process: small feeds with an ETag, and ``/_hits``."""
    documents = {
        f"feed{n}.xml": make_rss(
            f"وكالة {n}", [Item(f"خبر {n}-{i}", f"https://o{n}.example/{i}") for i in range(5)]
        ).encode()
        for n in range(feeds)
    }
    etags = {path: f'"{n:x}"' for n, path in enumerate(documents)}
    serve_documents(documents, etags, port_queue.put, hits=[0])


async def server_hits(port: int) -> int:
    """How many feed requests the server answered so far."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /_hits HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b"\r\n\r\n", 1)[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def run_pollers(
    count: int, url: str, port: int, args: argparse.Namespace
) -> tuple[float, float]:
    """``count`` pollers for the warm-up and the window: (feeds polled a second, CPU
    seconds per feed polled)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
    env |= {
        "NEWSBOT_DATABASE_URL": url,
        "NEWSBOT_POLL_INTERVAL": "1",
        "NEWSBOT_PARSE_WORKERS": "0",
        "NEWSBOT_FETCH_CONCURRENCY": str(args.concurrency),
        # Every feed is on one host here; a newsroom's are on many.
        "NEWSBOT_FETCH_PER_HOST": str(args.concurrency),
    }
    processes = [
        await asyncio.create_subprocess_exec(
            NEWSBOT,
            "poll",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        await asyncio.sleep(args.warmup)
        hits, cpu = await server_hits(port), sum(cpu_seconds(p.pid) for p in processes)
        began = time.monotonic()
        await asyncio.sleep(args.window)
        polled = await server_hits(port) - hits
        spent = sum(cpu_seconds(p.pid) for p in processes) - cpu
        elapsed = time.monotonic() - began
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            await process.wait()
    return polled / elapsed, spent / max(polled, 1)


async def benchmark(args: argparse.Namespace) -> None:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=serve, args=(port_queue, args.feeds), daemon=True)
    server.start()
    port = port_queue.get(timeout=120)
    name = f"newsbot_bench_{uuid.uuid4().hex[:8]}"
    await execute_as_admin(args.database_url, f'CREATE DATABASE "{name}"')
    url = make_url(args.database_url).set(database=name).render_as_string(False)
    print(
        f"{args.feeds} feeds (304 after the first fetch), PostgreSQL, poll interval 1 s, "
        f"fetch concurrency {args.concurrency} a process, {os.cpu_count()} cores, "
        f"window {args.window:g} s after {args.warmup:g} s"
    )
    try:
        db = Database(url)
        await db.upgrade()
        async with db.transaction() as session:
            rows = [{"url": f"http://127.0.0.1:{port}/feed{n}.xml"} for n in range(args.feeds)]
            await session.execute(insert(Feed), rows)
        settings = load_settings(
            database_url=url,
            fetch_concurrency=args.concurrency,
            fetch_per_host=args.concurrency,
            parse_workers=0,
        )
        async with open_core(settings, upgrade=False) as core:
            started = time.monotonic()
            first = await core.ingestor.poll()
            print(
                f"  first fetch of every feed (one process): {first.count('fetched')} fetched "
                f"in {time.monotonic() - started:.1f} s"
            )
        for count in args.processes:
            async with db.transaction() as session:
                await session.execute(update(Feed).values(next_fetch_at=None))
            rate, cpu = await run_pollers(count, url, port, args)
            print(
                f"  {count} process{'es' if count > 1 else ''}: {rate:,.0f} feeds polled/s, "
                f"{cpu * 1000:.2f} ms CPU per feed (pollers)"
            )
        await db.dispose()
    finally:
        server.terminate()
        server.join()
        await execute_as_admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument(
        "--database-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server where the benchmark may create its own database",
    )
    asyncio.run(benchmark(parser.parse_args()))


if __name__ == "__main__":
    main()
