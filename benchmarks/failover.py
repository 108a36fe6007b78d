"""Benchmark the sender's failover: two ``newsbot run`` processes on one PostgreSQL database,
a fan-out in progress, ``kill -9`` of the process holding the sender; prints the time from
the kill to the next message the fake Bot API received (from the other process), per round.

    .venv/bin/python benchmarks/failover.py --database-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.alerts import create_alert  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Delivery  # noqa: E402
from tests.fakebotapi import FakeBotAPI  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402
from tests.processes import (  # noqa: E402
    BotProcess,
    bot_env,
    outbox_empty,
    seed_followers,
    wait_until,
)

READERS = 300
RATE = 30


async def sender_pid(db: Database, since: int) -> int | None:
    """The OS pid of the process that claimed the latest rows (holder host:pid:random)."""
    async with db.sessions() as session:
        holder = await session.scalar(
            select(Delivery.claimed_by)
            .where(Delivery.claimed_by.is_not(None), Delivery.id > since)
            .order_by(Delivery.id.desc())
            .limit(1)
        )
    return None if holder is None else int(holder.split(":")[-2])


async def last_delivery(db: Database) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(Delivery.id).order_by(Delivery.id.desc())) or 0)


async def round_once(fake: FakeBotAPI, db: Database, bots: list[BotProcess], number: int) -> float:
    """One alert to every reader; kill -9 its sender mid-way; seconds until the next send."""
    await wait_until(lambda: outbox_empty(db), timeout=120, what="the last round's fan-out")
    since = await last_delivery(db)
    chats = range(number * 10_000 + 1, number * 10_000 + 1 + READERS)
    await seed_followers(db, chats, "روسيا")
    async with db.transaction() as session:
        await create_alert(session, chats, datetime.now(UTC), text=f"خبر {number}")
    target = len(fake.sent) + 60
    await fake.wait_for(lambda: len(fake.sent) >= target, 60, "the fan-out under way")
    pid = await sender_pid(db, since)
    pids = {bot.process.pid: bot for bot in bots if bot.process is not None and bot.running}
    assert pid in pids, f"the sender {pid} is none of {sorted(pids)}"
    victim = pids[pid]
    await victim.kill()
    killed = time.monotonic()
    await fake.wait_for(
        lambda: bool(fake.sent) and fake.sent[-1].at > killed, 60, "a send after the kill"
    )
    after = next(message.at for message in fake.sent if message.at > killed)
    await victim.spawn()  # back as the standby for the next round
    await standing(bots)
    return after - killed


async def standing(bots: list[BotProcess]) -> None:
    """Wait until every process has said it is running (its sender task has started)."""

    async def up() -> bool:
        # Up once it has announced as many runs as it was spawned (one .out file a run).
        return all(
            bot.stderr.count("running as @") >= len(list(bot.directory.glob("newsbot-*.out")))
            for bot in bots
        )

    await wait_until(up, timeout=60, what="every process up")


async def benchmark(database_url: str, rounds: int) -> None:
    admin = make_url(database_url)
    name = f"newsbot_failover_{uuid.uuid4().hex[:8]}"
    await execute_as_admin(database_url, f'CREATE DATABASE "{name}"')
    url = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(False)
    db = Database(url)
    bots: list[BotProcess] = []
    try:
        await db.upgrade()
        with tempfile.TemporaryDirectory() as scratch:
            async with FakeBotAPI(any_chat=True, record_requests=False) as fake:
                for index in range(2):
                    directory = Path(scratch) / str(index)
                    directory.mkdir()
                    bots.append(BotProcess(fake, bot_env(fake, url, send_rate=RATE), directory))
                    await bots[-1].spawn()

                await standing(bots)
                figures = [await round_once(fake, db, bots, number) for number in range(rounds)]
                for bot in bots:
                    if bot.running:
                        await bot.kill()
        print(
            f"failover, kill -9 of the sender ({rounds} rounds, 2 processes, PostgreSQL, "
            f"{READERS} readers at {RATE}/s): "
            + ", ".join(f"{seconds:.2f} s" for seconds in figures)
            + f"; median {statistics.median(figures):.2f} s, worst {max(figures):.2f} s"
        )
    finally:
        for bot in bots:
            if bot.running:
                await bot.kill()
        await db.dispose()
        await execute_as_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(benchmark(args.database_url, args.rounds))


if __name__ == "__main__":
    main()
