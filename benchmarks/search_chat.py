"""Benchmark /search as a reader meets it: update in, reply out, at archive scale.

Seeds the synthetic Arabic archive of benchmarks/search.py (200,000 articles by default;
``--articles 2000000`` streams them), indexed as the app indexes them, then runs the real
Application (tests/botharness.py) against the fake Bot API and sends /search updates from
twenty readers: rare, mid-frequency and common words, two-word phrases and names, and a
press of «التالي» under every other answer that has one. Each latency is from the update
being queued at the fake Telegram to the reply (or the page's edit) reaching it. Prints
p50/p95/worst per kind and overall, on SQLite and on PostgreSQL; ``--profile`` adds the
functions the measured pass spent most time in (cProfile).

    .venv/bin/python benchmarks/search_chat.py
    .venv/bin/python benchmarks/search_chat.py --articles 2000000 --skip-sqlite
    .venv/bin/python benchmarks/search_chat.py --articles 20000 --profile
    .venv/bin/python benchmarks/search_chat.py --articles 2000000 --keep /var/tmp/newsbot
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from benchmarks.search import (  # noqa: E402
    NOW,
    _connect,
    arguments,
    build_queries,
    counted,
    iter_rows,
    load_postgres,
    load_sqlite,
    report,
)
from storage.db import Database  # noqa: E402
from tests.botharness import RunningBot, running_bot  # noqa: E402
from tests.fakebotapi import FakeBotAPI  # noqa: E402

THROUGH_CHAT = "/search through chat, ms (update in, reply out; second pass)"

READERS = [1_000 + number for number in range(20)]
# Reader-facing kinds only: the «A|B» alternatives of benchmarks/search.py are no chat text.
KINDS = ("rare", "mid", "common", "two words", "name")


@dataclass(frozen=True, slots=True)
class Search:
    """One /search a reader sends: its kind and its text."""

    kind: str
    text: str


def searches(frequency: Counter[str], total: int, seed: int) -> list[Search]:
    """The queries of benchmarks/search.py that a reader could type, shuffled."""
    chosen = [
        Search(query.kind, query.label)
        for query in build_queries(frequency, total, seed)
        if query.kind in KINDS
    ]
    random.Random(seed).shuffle(chosen)
    return chosen


async def measure(url: str, chosen: Sequence[Search], profile: bool) -> dict[str, list[float]]:
    """Each search's latency and each page press's (ms), through the running bot, after
    a warm-up pass."""
    timings: dict[str, list[float]] = {}
    slowest: list[tuple[float, str]] = []
    profiler = cProfile.Profile()
    async with (
        FakeBotAPI(any_chat=True, record_requests=False) as fake,
        running_bot(url, fake) as bot,
    ):
        bot.services.clock = lambda: NOW  # the archive ends at NOW
        for warm in (False, True):
            if warm and profile:
                profiler.enable()
            for number, search in enumerate(chosen):
                chat = READERS[number % len(READERS)]
                for kind, elapsed in await _one(bot, chat, search, press=number % 2 == 0):
                    if warm:
                        timings.setdefault(kind, []).append(elapsed)
                        timings.setdefault("all", []).append(elapsed)
                        slowest.append((elapsed, f"{kind}: {search.text}"))
            profiler.disable()
    for elapsed, label in sorted(slowest, reverse=True)[:3]:
        print(f"  slow: {elapsed:7.2f} ms  {label}")
    if profile:
        _print_profile(profiler)
    return timings


async def forget_earlier_runs(url: str) -> None:
    """A kept archive: drop what an earlier run's bot recorded (the fake Bot API numbers its
    updates from 1 again, and the bot drops an update it has handled)."""
    database = Database(url)
    try:
        async with database.transaction() as session:
            for table in ("handled_updates", "ui_states"):
                await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constants
    finally:
        await database.dispose()


async def _one(bot: RunningBot, chat: int, search: Search, press: bool) -> list[tuple[str, float]]:
    """Send one /search (and press «التالي» under its answer if asked and offered)."""
    fake = bot.fake
    before = len(fake.messages_to(chat))
    started = time.monotonic()
    fake.send_text(chat, f"/search {search.text}")
    reply = (await fake.wait_for_messages(chat, before + 1, timeout=60))[-1]
    timings = [(search.kind, (reply.at - started) * 1000)]
    following = [data for data in reply.callback_data if data.endswith(":2")]
    if press and following:
        edits = len(fake.edits)
        started = time.monotonic()
        fake.press_button(chat, reply.message_id, following[0])
        await fake.wait_for(lambda: len(fake.edits) > edits, 60, "the next page")
        timings.append(("page 2", (fake.edits[-1].at - started) * 1000))
    return timings


def _print_profile(profiler: cProfile.Profile) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/(bot|handlers|storage)/", 25)
    stats.sort_stats("tottime").print_stats(30)
    print(out.getvalue())


async def main() -> None:
    """Seed, run the bot, measure, print."""
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print where the time went")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the seeded archives (SQLite in DIR, a PostgreSQL database named after the"
        " size and seed) and reuse them when run again: seeding 2,000,000 takes half an hour",
    )
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))

    frequency: Counter[str] = Counter()
    chosen: list[Search] = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as scratch:
            folder = args.keep or Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"search-{args.articles}-{args.seed}.db"
            rows = counted(iter_rows(args.articles, args.seed), frequency)
            started = time.perf_counter()
            if path.exists():
                for _ in rows:  # the same archive: only the words' frequencies are needed
                    pass
                print(f"SQLite: {args.articles:,} articles kept in {path}")
                await forget_earlier_runs(f"sqlite+aiosqlite:///{path}")
            else:
                await load_sqlite(path, rows)
                print(
                    f"SQLite: {args.articles:,} articles in {time.perf_counter() - started:.0f} s"
                )
            chosen = searches(frequency, args.articles, args.seed)
            _print_mix(chosen)
            url = f"sqlite+aiosqlite:///{path}"
            report("SQLite", await measure(url, chosen, args.profile), THROUGH_CHAT)

    if not args.skip_postgres:
        kept = args.keep is not None
        name = (
            f"newsbot_bench_{args.articles}_{args.seed}"
            if kept
            else f"newsbot_bench_{os.getpid()}"
        )
        admin = await _connect(args.postgres_url)
        try:
            exists = kept and await admin.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", name
            )
            url = (
                make_url(args.postgres_url)
                .set(drivername="postgresql+asyncpg", database=name)
                .render_as_string(False)
            )
            rows = iter_rows(args.articles, args.seed)
            if not chosen:
                rows = counted(rows, frequency)
            started = time.perf_counter()
            if exists:
                if not chosen:
                    for _ in rows:
                        pass
                print(f"PostgreSQL: {args.articles:,} articles kept in database {name}")
                await forget_earlier_runs(url)
            else:
                await admin.execute(f'CREATE DATABASE "{name}"')
                await load_postgres(url, rows)
                print(
                    f"PostgreSQL: {args.articles:,} articles in"
                    f" {time.perf_counter() - started:.0f} s"
                )
            chosen = chosen or searches(frequency, args.articles, args.seed)
            _print_mix(chosen)
            report("PostgreSQL", await measure(url, chosen, args.profile), THROUGH_CHAT)
        finally:
            if not kept:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def _print_mix(chosen: Sequence[Search]) -> None:
    kinds = Counter(search.kind for search in chosen)
    print("searches:", ", ".join(f"{kind} {n}" for kind, n in kinds.items()))


if __name__ == "__main__":
    asyncio.run(main())
