"""Benchmark one poll cycle over many feeds served from a local HTTP server.

Prints, in one run: the floor (bare httpx fetch + ``feedparser.parse`` with its defaults,
same concurrency), the cold cycle (every feed new: fetch, parse, clean, dedup, store), the
warm cycle (every feed unchanged: 304s), their ratios, and the event loop's worst lag.

    .venv/bin/python benchmarks/ingest.py --feeds 500 --items 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import feedparser  # noqa: E402
import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import open_core  # noqa: E402
from bot.config import load_settings  # noqa: E402
from storage.feeds import add_feed  # noqa: E402
from tests.corpus import HEADLINES  # noqa: E402


def corpus() -> list[str]:
    """Real Arabic headlines to build the items from (one fixed headline without the corpus)."""
    titles = [
        record["headline"].strip()
        for path in sorted(HEADLINES.glob("*.json"))
        for record in json.loads(path.read_text(encoding="utf-8"))["headlines"]
    ]
    return titles or ["عاجل: بوتين يشكر زعيم كوريا الشمالية على المساعدة في كورسك"]


def make_feed(number: int, items: int, titles: list[str], now: float) -> bytes:
    """A realistic RSS 2.0 feed: Arabic titles, HTML descriptions with links and images."""
    rng = random.Random(number)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>',
        f"<title>وكالة رقم {number}</title><link>https://outlet{number}.example/</link>",
        "<description>أخبار عاجلة ومتابعات</description><language>ar</language>",
    ]
    for item in range(items):
        title = rng.choice(titles)
        body = " ".join(rng.choice(titles) for _ in range(6))
        link = f"https://outlet{number}.example/news/{item}?utm_source=rss&amp;utm_medium=feed"
        published = format_datetime(datetime.fromtimestamp(now - item * 600, tz=UTC), usegmt=True)
        description = (
            f'<p><img src="/images/{item}.jpg" alt="صورة" width="600" height="400"/></p>'
            f'<p>{body}</p><p><a href="/news/{item}">اقرأ المزيد</a> '
            f"<strong>{rng.choice(titles)}</strong></p>"
            f"<ul><li>{rng.choice(titles)}</li><li>{rng.choice(titles)}</li></ul>"
        )
        parts.append(
            "<item>"
            f"<title>{title}</title><link>{link}</link>"
            f'<guid isPermaLink="false">outlet{number}-{item}</guid>'
            f"<pubDate>{published}</pubDate>"
            f"<category>سياسة</category><category>الشرق الأوسط</category>"
            f"<description><![CDATA[{description}]]></description>"
            f'<media:thumbnail url="https://outlet{number}.example/images/{item}.jpg"/>'
            "</item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


def serve(port_queue: Any, feeds: int, items: int) -> None:
    """The feed server, in its own process so it does not share the client's core."""
    titles = corpus()
    now = time.time()
    documents = {f"feed{n}.xml": make_feed(n, items, titles, now) for n in range(feeds)}
    etags = {path: f'"{hash(body) & 0xFFFFFFFF:x}"' for path, body in documents.items()}
    size = sum(map(len, documents.values()))
    serve_documents(documents, etags, lambda port: port_queue.put((port, size)), backlog=1024)


def serve_documents(
    documents: dict[str, bytes],
    etags: dict[str, str],
    ready: Callable[[int], None],
    *,
    hits: list[int] | None = None,
    backlog: int = 4096,
) -> None:
    """Serve ``documents`` by path with their ETags (304 when the client has it) until the
    process ends; ``ready`` hears the port. With ``hits``, counts the requests and answers
    ``/_hits`` with the count."""

    async def handle(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if hits is not None:
            if path == "_hits":
                return web.Response(text=str(hits[0]))
            hits[0] += 1
        body, etag = documents.get(path), etags.get(path)
        if body is None or etag is None:
            return web.Response(status=404)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body, headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{path}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog)
        await site.start()
        ready(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


class LagMeter:
    """Measures how late a 5 ms ticker wakes up: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - started - 0.005)

    def __enter__(self) -> LagMeter:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        if not self.lags:
            return "n/a"
        ordered = sorted(self.lags)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        return f"max {max(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


async def timed(label: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[float, str]:
    """Run work once, returning its wall time and the loop lag while it ran."""
    with LagMeter() as meter:
        started = time.perf_counter()
        await work()
        elapsed = time.perf_counter() - started
    print(f"  {label:<44} {elapsed:8.2f} s   loop lag {meter.summary()}", flush=True)
    return elapsed, meter.summary()


async def floor(urls: list[str], concurrency: int) -> None:
    """What a straightforward reader does: fetch with httpx, feedparser.parse with defaults."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(url: str) -> None:
            async with gate:
                response = await client.get(url)
            parsed = await asyncio.to_thread(feedparser.parse, response.content)
            assert parsed.entries

        await asyncio.gather(*(one(url) for url in urls))


async def benchmark(args: argparse.Namespace) -> None:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=serve, args=(port_queue, args.feeds, args.items), daemon=True)
    server.start()
    port, total_bytes = port_queue.get(timeout=120)
    urls = [f"http://127.0.0.1:{port}/feed{n}.xml" for n in range(args.feeds)]
    print(
        f"{args.feeds} feeds x {args.items} items, "
        f"{total_bytes / args.feeds / 1024:.0f} KiB a feed, "
        f"concurrency {args.concurrency}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    try:
        with tempfile.TemporaryDirectory() as scratch:
            url = args.database_url or f"sqlite+aiosqlite:///{scratch}/bench.db"
            settings = load_settings(
                database_url=url,
                fetch_concurrency=args.concurrency,
                fetch_per_host=args.concurrency,
            )
            floor_time, _ = await timed(
                "floor: httpx + feedparser.parse (defaults)", lambda: floor(urls, args.concurrency)
            )
            async with open_core(settings) as core:
                async with core.db.transaction() as session:
                    for feed_url in urls:
                        add_feed(session, feed_url)
                results: dict[str, Any] = {}

                async def cold() -> None:
                    results["cold"] = await core.ingestor.poll()

                async def warm() -> None:
                    results["warm"] = await core.ingestor.poll()

                cold_time, _ = await timed("cold cycle: every feed new (newsbot)", cold)
                warm_time, _ = await timed("warm cycle: every feed unchanged (newsbot)", warm)
            cold_summary, warm_summary = results["cold"], results["warm"]
    finally:
        server.terminate()
        server.join()
    assert cold_summary.count("fetched") == args.feeds, cold_summary.count("failed")
    assert warm_summary.count("unchanged") == args.feeds
    print(f"  articles stored in the cold cycle: {cold_summary.new_articles}")
    print(f"  cold / floor: {cold_time / floor_time:.2f}   (goal <= 0.60)")
    print(f"  warm per feed: {warm_time / args.feeds * 1000:.2f} ms   (goal <= 2 ms)")
    print(
        f"  cold per feed: {cold_time / args.feeds * 1000:.1f} ms, floor per feed: "
        f"{floor_time / args.feeds * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    asyncio.run(benchmark(parser.parse_args()))


if __name__ == "__main__":
    main()
