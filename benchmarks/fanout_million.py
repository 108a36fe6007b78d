"""Benchmark fan-out at scale on PostgreSQL: one breaking story to 1,000,000 followers.

Seeds the readers with INSERT … SELECT generate_series, stores the story through the real
ingest path (an Ingestor polling a local feed server, with the Fanout in its transaction),
and runs what ``newsbot run`` runs meanwhile: the fan-out task, the real Sender at the paid
rate (Pacing per_second=1000, sending as paid broadcasts through the transport and pool of
``newsbot run``) against the fake Bot API in a process of its own, and the feed watcher's
work on another feed, polled every quarter second. Prints: every delivery row written (s
after the story was stored), the first message received by the fake Bot API, messages/s
while the rows are written and after, and the other feed's poll latency before and during
the fan-out.

    .venv/bin/python benchmarks/fanout_million.py                  # 1,000,000 readers
    .venv/bin/python benchmarks/fanout_million.py --readers 50000  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fanout import Fake, start_fake  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from telegram import Bot  # noqa: E402

from bot.app import SEND_CONNECTIONS, telegram_request  # noqa: E402
from bot.delivery.deliver import AlertDelivery  # noqa: E402
from bot.delivery.fanout import Fanout, Topics  # noqa: E402
from bot.delivery.pacing import Pacing  # noqa: E402
from bot.delivery.sender import Sender  # noqa: E402
from bot.feeds.fetch import Fetcher, FetchLimits  # noqa: E402
from bot.feeds.ingest import Ingestor  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.feeds import add_feed  # noqa: E402
from storage.models import Alert, Delivery, utcnow  # noqa: E402
from tests.feedserver import FeedServer, Item, make_rss  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PAID_RATE = 1000
OTHER_FEED_EVERY = 0.25


def item(title: str, slug: str, age: timedelta = timedelta()) -> Item:
    """An item published ``age`` ago."""
    published = format_datetime(datetime.now(UTC) - age, usegmt=True)
    return Item(title, f"https://news.example/{slug}", published=published)


async def seed(db: Database, readers: int) -> int:
    """``readers`` private chats following روسيا (and a hundred following مصر); the
    topic's id."""
    async with db.transaction() as session:
        topic = await session.scalar(
            text(
                "INSERT INTO topics (key, label, created_at) VALUES ('russia', 'روسيا', now()),"
                " ('egypt', 'مصر', now()) RETURNING id"
            )
        )
        await session.execute(
            text(
                "INSERT INTO chats (id, kind, language, active, all_breaking, created_at)"
                " SELECT g, 'private', 'ar', true, false, now() FROM generate_series(1, :n) g"
            ),
            {"n": readers},
        )
        await session.execute(
            text(
                "INSERT INTO subscriptions (chat_id, topic_id, created_at)"
                " SELECT g, :topic, now() FROM generate_series(1, :n) g"
            ),
            {"n": readers, "topic": topic},
        )
    async with db.engine.connect() as connection:
        await connection.execute(text("COMMIT"))
        await connection.execute(text("ANALYZE"))
    return int(topic or 0)


async def watched(db: Database, url: str) -> int:
    """A feed fetched once already (its next items alert)."""
    async with db.transaction() as session:
        feed = add_feed(session, url)
        feed.last_success_at = utcnow() - timedelta(minutes=5)
        await session.flush()
        return feed.id


async def fanned_out(db: Database) -> bool:
    """Whether every alert has all its deliveries written."""
    async with db.sessions() as session:
        left = await session.scalar(
            select(func.count()).select_from(Alert).where(Alert.fanned_out_at.is_(None))
        )
    return not left


async def other_feed(
    ingestor: Ingestor, feed: FeedServer, feed_id: int, stop: asyncio.Event
) -> list[tuple[float, float]]:
    """Poll another feed, with a new item each time, until ``stop``: (start, seconds)."""
    polls: list[tuple[float, float]] = []
    items: list[Item] = []
    while not stop.is_set():
        items.insert(0, item(f"خبر محلي رقم {len(items)}", f"local-{uuid.uuid4().hex}"))
        feed.add("other.xml", make_rss("محلي", items[:20]))
        began = time.monotonic()
        outcome = await ingestor.poll_feed(feed_id)
        polls.append((began, time.monotonic() - began))
        assert outcome.status == "fetched", outcome
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), OTHER_FEED_EVERY)
    return polls


async def run(args: argparse.Namespace, url: str, fake: Fake) -> None:
    """Seed, store the story, and measure."""
    db = Database(url)
    await db.upgrade()
    began = time.monotonic()
    await seed(db, args.readers)
    print(
        f"seeded {args.readers:,} readers following one topic in {time.monotonic() - began:.1f} s"
    )
    # Telegram's per-chat limits; none overall, as with allow_paid_broadcast.
    await fake.rate_limit({"per_second": None})
    topics = Topics()
    async with (
        FeedServer() as feed,
        Fetcher(FetchLimits(total_timeout=10, connect_timeout=5)) as fetcher,
        Bot(
            fake.token, base_url=fake.base_url, request=telegram_request(SEND_CONNECTIONS)
        ) as bot,  # the transport and pool `newsbot run` sends through
    ):
        async with db.sessions() as session:
            await topics.load(session)
        deliver = AlertDelivery(
            bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=topics.catalog, paid=True
        )
        sender = Sender(db, deliver, pacing=Pacing(per_second=PAID_RATE))
        fanout = Fanout(topics, on_alert=sender.wake)
        ingestor = Ingestor(
            db,
            fetcher,
            poll_interval=timedelta(seconds=60),
            backlog_age=timedelta(hours=12),
            max_backoff=timedelta(hours=1),
            on_new=fanout,
        )
        older = [item("خبر قديم", "old", timedelta(minutes=30))]
        news = await watched(db, feed.add("news.xml", make_rss("وكالة", older)))
        local = await watched(db, feed.add("other.xml", make_rss("محلي", [])))
        tasks = [asyncio.create_task(fanout.run(db))]
        if not args.no_sender:
            tasks.append(asyncio.create_task(sender.run()))
        stop = asyncio.Event()
        polling = asyncio.create_task(other_feed(ingestor, feed, local, stop))
        await asyncio.sleep(3)  # the other feed's latency before the story
        sent_before = (await fake.state())["sent"]
        story = item("عاجل: روسيا تعلن التعبئة العامة", "mobilisation")
        feed.add("news.xml", make_rss("وكالة", [story, *older]))
        poll_began = time.monotonic()
        outcome = await ingestor.poll_feed(news)
        stored = time.monotonic()
        assert outcome.new_ids, outcome
        while not await fanned_out(db):  # noqa: ASYNC110 - it is the database that tells
            await asyncio.sleep(0.05)
        written = time.monotonic()
        # Sending is measured apart while the rows are written and after.
        sent_written = (await fake.state())["sent"]
        first = stored
        if sent_written > sent_before:
            first = (await fake.wait(sent_before, 1, timeout=1))["first_at"]
        target = 0 if args.no_sender else min(args.readers, PAID_RATE * args.seconds)
        target = min(target, args.readers - (sent_written - sent_before))
        window = await fake.wait(sent_written, target, timeout=args.seconds * 3 + 60)
        stop.set()
        polls = await polling
        sender.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ingestor.aclose()
    async with db.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Delivery))
    await db.dispose()

    before = [seconds for start, seconds in polls if start < poll_began]
    during = [seconds for start, seconds in polls if poll_began <= start <= written]
    spread = (window["last_at"] - window["first_at"]) if window["count"] else 0.0
    print(f"story fetched and stored (with the first deliveries): {stored - poll_began:.3f} s")
    print(
        f"all {rows:,} delivery rows written: {written - stored:.2f} s after the story was stored"
    )
    if sent_written > sent_before:
        print(f"first message received by the fake Bot API: {first - stored:.3f} s after")
        meanwhile = sent_written - sent_before
        print(
            f"sending while the rows were written: {meanwhile:,} messages in"
            f" {written - stored:.1f} s = {meanwhile / (written - stored):,.0f}/s"
        )
    if window["count"]:
        print(
            f"sending after: {window['count']:,} messages in {spread:.1f} s ="
            f" {window['count'] / spread:,.0f}/s (steady {window['steady_per_second']:,.0f}/s,"
            f" most in one second {window['max_per_second']}, at most"
            f" {window['most_to_one_chat']} to one chat)"
        )
    print(
        f"other feed polled (fetch + store): before the story p50 {_ms(before, 50)},"
        f" max {_ms(before, 100)} ({len(before)} polls); during the fan-out p50"
        f" {_ms(during, 50)}, max {_ms(during, 100)} ({len(during)} polls)"
    )


def _ms(values: list[float], percentile: int) -> str:
    if not values:
        return "-"
    if percentile == 100:
        return f"{max(values) * 1000:.0f} ms"
    return (
        f"{statistics.quantiles(values, n=100)[percentile - 1] * 1000:.0f} ms"
        if len(values) > 1
        else f"{values[0] * 1000:.0f} ms"
    )


async def main() -> None:
    """Parse the options, make a database of its own, run, drop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=20, help="how long to measure sending")
    parser.add_argument(
        "--no-sender", action="store_true", help="the fan-out alone, with nothing sending"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("NEWSBOT_BENCH_POSTGRES_URL", DEFAULT_URL)
    )
    args = parser.parse_args()
    name = f"newsbot_million_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await execute_as_admin(args.database_url, f'CREATE DATABASE "{name}"')
    url = make_url(args.database_url).set(drivername="postgresql+asyncpg", database=name)
    fake = start_fake()
    try:
        await run(args, url.render_as_string(False), fake)
    finally:
        await fake.close()
        await execute_as_admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
