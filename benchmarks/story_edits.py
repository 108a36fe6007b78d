"""Benchmark the confirmation edits of one story: pushed to N followers, then confirmed by
another outlet, how long until every follower's message names it, at Telegram's 30
messages a second (edits counted in the same windows by the fake Bot API, which answers
429 past them).

The push is sent at 1,000 a second (paid broadcasts), so that the edits are what is
measured; five seconds into the edits a new alert (another story, to a reader of another
topic) is stored, and how soon it leaves is measured too. The sender and the fake Bot API
share this process's event loop.

    .venv/bin/python benchmarks/story_edits.py                  # 1,200 followers, SQLite
    .venv/bin/python benchmarks/story_edits.py --chats 300
    .venv/bin/python benchmarks/story_edits.py --database-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PTB_TIMEDELTA", "true")

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from telegram import Bot  # noqa: E402

from bot.delivery.deliver import AlertDelivery  # noqa: E402
from bot.delivery.fanout import Fanout, Topics  # noqa: E402
from bot.delivery.pacing import Pacing  # noqa: E402
from bot.delivery.sender import Sender  # noqa: E402
from bot.delivery.transport import AiohttpRequest  # noqa: E402
from bot.text.topics import ResolvedTopic, load_catalog, resolve  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Article, Chat, Delivery, Feed, Story, Subscription  # noqa: E402
from storage.subscriptions import upsert_topic  # noqa: E402
from tests.fakebotapi import FakeBotAPI, most_within  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402

FIRST_CHAT = 1_000_000


async def store(db: Database, fanout: Fanout, feed_id: int, story_id: int, title: str) -> None:
    """An article of the story, handed to the fan-out in its transaction, as ingestion does."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        article = Article(
            uid=f"{feed_id}-{title}",
            feed_id=feed_id,
            link=f"https://outlet{feed_id}.example/story",
            title=title,
            published_at=now,
            alertable=True,
            breaking=True,
            story_id=story_id,
        )
        session.add(article)
        await session.flush()
        await fanout.alert_articles(session, [article.id], now)


async def run(database_url: str, chats: int, rate: int) -> None:
    """Push, confirm, and print how long the edits took."""
    db = Database(database_url)
    await db.upgrade()
    catalog = load_catalog()
    syria, egypt = resolve("سوريا", catalog), resolve("مصر", catalog)
    assert isinstance(syria, ResolvedTopic) and isinstance(egypt, ResolvedTopic)
    other_reader = FIRST_CHAT - 1
    async with db.transaction() as session:
        stored = await upsert_topic(session, syria.key, syria.label)
        other = await upsert_topic(session, egypt.key, egypt.label)
        ids = range(FIRST_CHAT, FIRST_CHAT + chats)
        session.add_all(Chat(id=chat, kind="private") for chat in [other_reader, *ids])
        await session.flush()
        session.add_all(Subscription(chat_id=chat, topic_id=stored.id) for chat in ids)
        session.add(Subscription(chat_id=other_reader, topic_id=other.id))
        feeds = [Feed(url=f"https://outlet{n}.example/rss", name=f"وكالة {n}") for n in (1, 2)]
        session.add_all(feeds)
        story = Story(first_seen_at=datetime.now(UTC), last_seen_at=datetime.now(UTC))
        quake = Story(first_seen_at=datetime.now(UTC), last_seen_at=datetime.now(UTC))
        session.add_all([story, quake])
        await session.flush()
        first, second, story_id, quake_id = feeds[0].id, feeds[1].id, story.id, quake.id
    topics = Topics(catalog)
    fanout = Fanout(topics, edit_most=chats)
    async with FakeBotAPI(any_chat=True, record_requests=False) as fake:
        request = AiohttpRequest(connection_pool_size=256)
        async with Bot(fake.token, base_url=fake.base_url, request=request) as bot:
            deliver = AlertDelivery(
                bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=catalog, paid=True
            )
            pushing = Sender(db, deliver, pacing=Pacing(per_second=1000))
            await store(db, fanout, first, story_id, "عاجل: انفجار في إدلب السورية")
            await fanout.expand(db)
            started = time.monotonic()
            while len(fake.sent) < chats:
                await pushing.send_due()
            print(f"pushed to {chats} chats in {time.monotonic() - started:.1f} s (1,000/s)")

            fake.rate_limit(per_second=rate, per_chat_per_second=1, edits=True)
            editing = Sender(db, deliver, edit=deliver.edit, pacing=Pacing(per_second=rate))
            fanout = Fanout(topics, edit_most=chats, on_alert=editing.wake)
            await asyncio.sleep(1.0)  # each chat's last send leaves its one-second window
            confirmed = time.monotonic()
            await store(db, fanout, second, story_id, "انفجار يهز إدلب في سوريا")
            alerted_at: float | None = None
            while True:
                if alerted_at is None and time.monotonic() - confirmed > 5:
                    alerted_at = time.monotonic()
                    await store(db, fanout, first, quake_id, "عاجل: زلزال يضرب القاهرة في مصر")
                if await editing.send_due() == 0 and await editing.edit_due() == 0:
                    async with db.sessions() as session:
                        due = await session.scalar(
                            select(func.count()).where(Delivery.edit_due_at.is_not(None))
                        )
                    if not due:
                        break
                    await asyncio.sleep(0.05)
            took = time.monotonic() - confirmed
            edits = [edit.at for edit in fake.edits]
            (new,) = fake.messages_to(other_reader)
            assert alerted_at is not None
            print(
                f"a new alert stored 5 s into the edits left {new.at - alerted_at:.2f} s later "
                f"(edits made before it: {sum(1 for at in edits if at < new.at)})"
            )
            print(
                f"confirmation → all {len(edits)} messages edited: {took:.1f} s at {rate}/s "
                f"(edits leave a sixth of the rate to new alerts: ideal "
                f"{chats / (rate - math.ceil(rate / 6)):.1f} s); "
                f"most in any second: {most_within(edits, 1.0)}; "
                f"429s: {len(fake.too_many)}; sends during the edits: {len(fake.sent) - chats}; "
                f"editMessageText requests: {fake.calls['editMessageText']}"
            )
    await db.dispose()


async def main() -> None:
    """Parse the arguments and run on a fresh database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1200)
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--database-url", help="a PostgreSQL server to make a database on")
    args = parser.parse_args()
    if args.database_url:
        name = f"newsbot_bench_{uuid.uuid4().hex[:8]}"
        await execute_as_admin(args.database_url, f'CREATE DATABASE "{name}"')
        url = make_url(args.database_url).set(drivername="postgresql+asyncpg", database=name)
        try:
            await run(url.render_as_string(hide_password=False), args.chats, args.rate)
        finally:
            await execute_as_admin(args.database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        return
    with tempfile.TemporaryDirectory() as directory:
        await run(f"sqlite+aiosqlite:///{directory}/bench.db", args.chats, args.rate)


if __name__ == "__main__":
    asyncio.run(main())
