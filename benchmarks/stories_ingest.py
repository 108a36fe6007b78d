"""Benchmark stories at ingest: the cost of placing an article through ``StoryAssigner``.

    .venv/bin/python benchmarks/stories_ingest.py [--window-size 50000] [--articles 500]
        [--batch 1] [--database-url URL]

Stores ``--window-size`` synthetic articles (recombined from tests/data/stories, as
benchmarks/stories.py makes them) published over the last 30 hours, each in a story of its
own (with ``--regroup``: grouped by ``regroup``, the `newsbot stories --regroup` path, and
timed), warms a fresh assigner up from storage
as a starting process does, then stores ``--articles`` more one per transaction, as a feed
bringing one new item does (``--batch``: that many a transaction), and prints the median
and p95 time ``assign`` takes per article (the grouper, its queries and its writes), beside
the grouper's share and the whole transaction's.
SQLite in a temporary directory by default.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stories import load, synthetic  # noqa: E402
from bot.feeds.stories import StoryAssigner, regroup  # noqa: E402
from bot.text.stories import Placement, StoryGrouper  # noqa: E402
from storage.articles import ArticleData, upsert_articles  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.feeds import add_feed  # noqa: E402


def _article(uid: str, title: str, summary: str, published: datetime) -> ArticleData:
    return ArticleData(
        uid=uid,
        link=f"https://news.example/{uid}",
        title=title,
        summary=summary,
        categories=(),
        published_at=published,
        alertable=False,
        breaking=False,
    )


async def run(url: str, size: int, count: int, batch: int, grouped: bool) -> None:
    """Fill, group, warm up and measure."""
    db = Database(url)
    await db.upgrade()
    records = load()
    now = datetime.now(UTC)
    made = synthetic(records, size + count, random.Random(13))
    shift = now - timedelta(hours=30) - datetime.fromisoformat(made[0]["published"])
    async with db.transaction() as session:
        feed = add_feed(session, "https://bench.example/rss")
        await session.flush()
        feed_id = feed.id
    started = time.perf_counter()
    for start in range(0, size, 5_000):
        async with db.transaction() as session:
            await upsert_articles(
                session,
                feed_id,
                [
                    _article(
                        r["id"],
                        r["title"],
                        r["summary"],
                        datetime.fromisoformat(r["published"]) + shift,
                    )
                    for r in made[start : min(start + 5_000, size)]
                ],
                now,
            )
    print(f"stored {size} articles in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    if grouped:
        done = await regroup(db, timedelta(hours=36))
        seconds = time.perf_counter() - started
        print(
            f"regroup: {done.placed} articles into {done.stories} stories in {seconds:.1f} s "
            f"({seconds / max(1, done.placed) * 1000:.2f} ms an article)"
        )
    else:  # a story each: what the grouper costs depends on the words, not on the stories
        async with db.transaction() as session:
            await session.execute(text("UPDATE articles SET story_id = id"))
            await session.execute(
                text(
                    "INSERT INTO stories (id, first_seen_at, last_seen_at) "
                    "SELECT id, first_seen_at, first_seen_at FROM articles"
                )
            )
    async with db.sessions() as session:
        await session.execute(text("SELECT 1"))
        trips = []
        for _ in range(200):
            began = time.perf_counter()
            await session.execute(text("SELECT 1"))
            trips.append((time.perf_counter() - began) * 1000)
    print(f"one database round trip (SELECT 1): median {statistics.median(trips):.2f} ms")
    assigner = StoryAssigner(timedelta(hours=36))
    grouper_ms: list[float] = []
    add = StoryGrouper.add

    def timed_add(self: StoryGrouper, *args: Any) -> Placement:
        began = time.perf_counter()
        try:
            return add(self, *args)
        finally:
            grouper_ms.append((time.perf_counter() - began) * 1000)

    StoryGrouper.add = timed_add  # type: ignore[method-assign]
    assign_ms, whole_ms = [], []
    fresh = made[size:]
    for index in range(0, len(fresh), batch):
        at = now + timedelta(seconds=index)
        items = [
            _article("new" + r["id"], r["title"], r["summary"], at)
            for r in fresh[index : index + batch]
        ]
        began = time.perf_counter()
        async with db.transaction() as session:
            await assigner.lock(session)
            new = await upsert_articles(session, feed_id, items, at)
            placing = time.perf_counter()
            await assigner.assign(session, new.new_ids, at)
            placed = time.perf_counter()
        ended = time.perf_counter()
        assigner.committed(new.new_ids)
        if index == 0:
            print(f"warm-up from storage ({size} in the window): {placed - placing:.1f} s")
            continue
        assign_ms.append((placed - placing) * 1000 / len(items))
        whole_ms.append((ended - began) * 1000 / len(items))
    grouped_ms = [sum(grouper_ms[i : i + batch]) / batch for i in range(0, len(grouper_ms), batch)]
    figures_of = {
        "assign": assign_ms,
        "of which the grouper": grouped_ms[1:],
        "whole transaction": whole_ms,
    }
    for name, figures in figures_of.items():
        figures.sort()
        print(
            f"{name}, {size} articles in the window, {batch} a transaction: median "
            f"{statistics.median(figures):.2f} ms, p95 {figures[int(len(figures) * 0.95)]:.2f} ms "
            "per article"
        )
    await db.dispose()


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-size", type=int, default=50_000)
    parser.add_argument("--articles", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1, help="new articles a transaction")
    parser.add_argument(
        "--regroup", action="store_true", help="group the window with regroup (slow), not 1:1"
    )
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(directory) / 'stories.db'}"
        asyncio.run(
            run(url, args.window_size, (args.articles + 1) * args.batch, args.batch, args.regroup)
        )


if __name__ == "__main__":
    main()
