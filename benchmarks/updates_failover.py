"""Benchmark the failover of long polling: ``kill -9`` of the process that polls Telegram,
then how long until a reader's command is answered by the standby that takes over.

Two ``newsbot run`` processes share a PostgreSQL database (a database of the benchmark's
own, dropped at the end) and a fake Bot API; each round kills the poller, sends a command
at once, times its answer, and starts a fresh standby for the next round.

    .venv/bin/python benchmarks/updates_failover.py \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import make_url  # noqa: E402

from storage.db import Database  # noqa: E402
from tests.fakebotapi import FakeBotAPI  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402
from tests.processes import BotProcess, bot_env, wait_until  # noqa: E402

READER = 9001


async def standby(bot: BotProcess) -> None:
    """Start a process and wait until it says it stands by."""
    await bot.spawn()

    async def standing_by() -> bool:
        return "long polling (standby)" in bot.stderr

    await wait_until(standing_by, timeout=30.0, what="the standby's start line")


async def run(admin_url: str, rounds: int) -> list[float]:
    """Seconds from each kill -9 of the poller to the first answer by its successor."""
    name = f"newsbot_failover_{uuid.uuid4().hex[:8]}"
    await execute_as_admin(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
    database_url = url.render_as_string(hide_password=False)
    database = Database(database_url)
    await database.upgrade()
    await database.dispose()
    seconds: list[float] = []
    try:
        async with FakeBotAPI(any_chat=True) as fake:
            env = bot_env(fake, database_url)
            with tempfile.TemporaryDirectory() as scratch:
                directory = Path(scratch)
                runs = iter(range(1_000))

                def process() -> BotProcess:
                    path = directory / f"bot{next(runs)}"
                    path.mkdir()
                    return BotProcess(fake, env, path)

                poller, waiting = process(), process()
                await poller.start()
                await standby(waiting)
                try:
                    for _ in range(rounds):
                        await fake.wait_for(lambda: fake.pending_updates == 0, 10.0)
                        before = len(fake.messages_to(READER))
                        await poller.kill()
                        began = time.monotonic()
                        fake.send_text(READER, "/start")
                        await fake.wait_for_messages(READER, before + 1, 30.0)
                        seconds.append(time.monotonic() - began)
                        poller, waiting = waiting, process()
                        await standby(waiting)
                finally:
                    for bot in (poller, waiting):
                        if bot.running:
                            await bot.kill()
                print(f"409 Conflict answers to getUpdates: {fake.poll_conflicts}")
    finally:
        await execute_as_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server's URL")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    seconds = asyncio.run(run(args.database_url, args.rounds))
    print(
        f"kill -9 of the poller to the standby's first answer, {len(seconds)} rounds: "
        f"median {statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s "
        f"({', '.join(f'{each:.2f}' for each in seconds)})"
    )


if __name__ == "__main__":
    main()
