"""Benchmark ``newsbot run`` end to end: commands handled per second, then one breaking story
fanned out to every follower, against the fake Bot API unlimited and at Telegram's 30/s.

The bot runs as an operator runs it (``newsbot run``, a process); the fake Bot API runs in a
process of its own, so neither shares a CPU-bound event loop with the other or with this
script, which serves the feed and reads the fake's figures over a small control endpoint.

    .venv/bin/python benchmarks/fanout.py            # 10,000 chats, then 600 at 30/s; SQLite
    .venv/bin/python benchmarks/fanout.py --database-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.db import Database  # noqa: E402
from storage.models import Chat, Subscription  # noqa: E402
from tests.fakebotapi import most_within  # noqa: E402
from tests.feedserver import FeedServer, Item, make_rss  # noqa: E402
from tests.postgres import execute_as_admin  # noqa: E402

NEWSBOT = str(Path(sys.executable).with_name("newsbot"))
POLL_INTERVAL = 1
UNLIMITED_RATE = 1000  # the most Telegram allows (paid broadcasts)
FIRST_CHAT = 1_000_000
INJECT_BATCH = 2_000


# --- the fake Bot API, in its own process ------------------------------------------------


def serve_fake(conn: Connection) -> None:
    """Process entry: run FakeBotAPI plus a control endpoint; send back both ports."""
    asyncio.run(_serve_fake(conn))


def rate_settings(rate: int) -> dict[str, str]:
    """The settings that let the bot send ``rate`` messages a second (above 30: paid)."""
    return {"NEWSBOT_SEND_RATE": str(rate), "NEWSBOT_PAID_BROADCASTS": str(rate > 30).lower()}


async def _serve_fake(conn: Connection) -> None:
    from tests.fakebotapi import FakeBotAPI

    async with FakeBotAPI(any_chat=True, record_requests=False) as fake:
        control = web.Application()
        routes = web.RouteTableDef()

        @routes.post("/inject")
        async def inject(request: web.Request) -> web.Response:
            for chat_id, message in (await request.json())["texts"]:
                fake.send_text(chat_id, message, language_code="ar")
            return web.json_response({"pending": fake.pending_updates})

        @routes.get("/state")
        async def state(_request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "sent": len(fake.sent),
                    "too_many": len(fake.too_many),
                    "delete_webhook": fake.calls["deleteWebhook"],
                    "polls_waiting": fake.polls_waiting,
                    "pending_updates": fake.pending_updates,
                }
            )

        @routes.get("/wait")
        async def wait(request: web.Request) -> web.Response:
            since, count = int(request.query["since"]), int(request.query["count"])
            timeout = float(request.query.get("timeout", "600"))
            with contextlib.suppress(TimeoutError):  # the figures say how many arrived
                await fake.wait_for(lambda: len(fake.sent) - since >= count, timeout)
            return web.json_response(_window(fake.sent[since:]))

        @routes.post("/rate_limit")
        async def rate_limit(request: web.Request) -> web.Response:
            limits = await request.json()
            if limits is None:
                fake.no_rate_limit()
            else:
                fake.rate_limit(**limits)
            return web.json_response({})

        @routes.get("/too_many")
        async def too_many(request: web.Request) -> web.Response:
            since = int(request.query["since"])
            return web.json_response([entry.scope for entry in fake.too_many[since:]])

        control.add_routes(routes)
        runner = web.AppRunner(control, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send((fake.port, runner.addresses[0][1], fake.token))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()


def _window(sent: list[Any]) -> dict[str, Any]:
    """Figures over a run of sends: count, first and last time, per chat, per second."""
    if not sent:
        return {"count": 0}
    per_chat: dict[int, int] = {}
    for message in sent:
        per_chat[message.chat_id] = per_chat.get(message.chat_id, 0) + 1
    return {
        "count": len(sent),
        "first_at": sent[0].at,
        "last_at": sent[-1].at,
        "chats": len(per_chat),
        "most_to_one_chat": max(per_chat.values()),
        "steady_per_second": _steady_rate(sent),
        "max_per_second": most_within([message.at for message in sent], 1.0),
        "max_per_tenth": most_within([message.at for message in sent], 0.1),
        "silent": sum(1 for message in sent if message.disable_notification),
    }


def _steady_rate(sent: list[Any]) -> float:
    """Sends per second over the whole seconds from the first send: a pacer that fills
    every one-second window to its limit scores the limit, smooth or in bursts."""
    whole = math.floor(sent[-1].at - sent[0].at)
    if whole < 1:
        return float("nan")
    within = sum(1 for message in sent if message.at < sent[0].at + whole)
    return float(within / whole)


class Fake:
    """This process's handle on the fake Bot API process."""

    def __init__(self, process: multiprocessing.process.BaseProcess, ports: tuple[int, int]):
        self.process = process
        self.api_port, self.control_port = ports
        self.token = ""
        self._http: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """NEWSBOT_API_URL for the bot."""
        return f"http://127.0.0.1:{self.api_port}/bot"

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One control request."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        url = f"http://127.0.0.1:{self.control_port}{path}"
        async with self._http.request(method, url, **kwargs) as response:
            response.raise_for_status()
            return await response.json()

    async def state(self) -> dict[str, int]:
        """Counters: sent, too_many, deleteWebhook calls, polls waiting, pending updates."""
        result: dict[str, int] = await self.call("GET", "/state")
        return result

    async def inject(self, texts: list[tuple[int, str]]) -> None:
        """Readers send these texts, in order."""
        for start in range(0, len(texts), INJECT_BATCH):
            await self.call("POST", "/inject", json={"texts": texts[start : start + INJECT_BATCH]})

    async def wait(self, since: int, count: int, timeout: float = 600.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until ``count`` messages were sent after the ``since``-th; figures over them."""
        params = {"since": since, "count": count, "timeout": timeout}
        result: dict[str, Any] = await self.call("GET", "/wait", params=params)
        return result

    async def rate_limit(self, limits: dict[str, Any] | None) -> None:
        """Enforce Telegram's limits (None: none)."""
        await self.call("POST", "/rate_limit", json=limits)

    async def too_many_scopes(self, since: int) -> list[str]:
        """The scope of each 429 answered after the ``since``-th."""
        result: list[str] = await self.call("GET", "/too_many", params={"since": since})
        return result

    async def close(self) -> None:
        """Stop the process."""
        if self._http is not None:
            await self._http.close()
        if self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)
        await asyncio.to_thread(self.process.join, 10)


def start_fake() -> Fake:
    """Start the fake Bot API process and wait for its ports."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_fake, args=(child,), daemon=True)
    process.start()
    api_port, control_port, token = parent.recv()
    fake = Fake(process, (api_port, control_port))
    fake.token = token
    return fake


# --- the bot process -------------------------------------------------------------------------


@dataclass
class BotRun:
    """One ``newsbot run`` process."""

    process: asyncio.subprocess.Process
    stderr: Path


async def start_bot(
    fake: Fake, env: dict[str, str], directory: Path, profile: str | None = None
) -> BotRun:
    """``newsbot run`` (under cProfile, writing ``profile``); returns once it long-polls."""
    before = (await fake.state())["delete_webhook"]
    stderr = directory / "newsbot.err"
    profiling = [sys.executable, "-m", "cProfile", "-o", profile] if profile else []
    with stderr.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            *profiling,
            NEWSBOT,
            "run",
            env=env,
            cwd=directory,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    while True:
        state = await fake.state()
        if state["delete_webhook"] > before and state["polls_waiting"] > 0:
            return BotRun(process, stderr)
        if process.returncode is not None:
            raise SystemExit(f"newsbot run exited: {stderr.read_text()[-2000:]}")
        await asyncio.sleep(0.05)


async def stop_bot(run: BotRun) -> float:
    """SIGTERM and wait; the seconds it took."""
    began = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(run.process.wait(), 60)
    return time.monotonic() - began


async def newsbot_command(*args: str, env: dict[str, str], directory: Path) -> str:
    """A ``newsbot`` command to its end; what it printed."""
    process = await asyncio.create_subprocess_exec(
        NEWSBOT,
        *args,
        env=env,
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"newsbot {' '.join(args)} failed: {err.decode()}")
    return out.decode().strip()


# --- the database ------------------------------------------------------------------------------


@asynccontextmanager
async def scratch_database(url: str | None, directory: Path) -> AsyncIterator[str]:
    """A new, empty database: a SQLite file, or a database of its own on a PostgreSQL server."""
    if url is None or url.startswith("sqlite"):
        yield url or f"sqlite+aiosqlite:///{directory / 'newsbot.db'}"
        return
    parsed = make_url(url)
    name = f"newsbot_fanout_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    await execute_as_admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield parsed.set(drivername="postgresql+asyncpg", database=name).render_as_string(False)
    finally:
        await execute_as_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def count_subscriptions(database_url: str) -> int:
    """Subscriptions stored (each /follow that worked)."""
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Subscription)) or 0)
    finally:
        await db.dispose()


async def seed_followers(database_url: str, chat_ids: range, phrase: str) -> None:
    """Chats following ``phrase``, written directly (when the commands are not measured)."""
    from bot.text.topics import ResolvedTopic, load_catalog, resolve
    from storage.subscriptions import upsert_topic

    followed = resolve(phrase, load_catalog())
    assert isinstance(followed, ResolvedTopic)
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            stored = await upsert_topic(session, followed.key, followed.label)
            session.add_all(
                Chat(id=chat_id, kind="private", language="ar") for chat_id in chat_ids
            )
            await session.flush()
            session.add_all(
                Subscription(chat_id=chat_id, topic_id=stored.id) for chat_id in chat_ids
            )
    finally:
        await db.dispose()


async def delivery_states(database_url: str) -> dict[str, int]:
    """How many deliveries are in each state."""
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            rows = await session.execute(text("SELECT state, count(*) FROM deliveries GROUP BY 1"))
            return {state: int(count) for state, count in rows.all()}
    finally:
        await db.dispose()


# --- the phases ----------------------------------------------------------------------------


def rss(*items: Item) -> str:
    """The benchmark's feed."""
    return make_rss("وكالة الأنباء", list(items))


def item(title: str, slug: str, age: timedelta = timedelta()) -> Item:
    """An item published ``age`` ago."""
    published = format_datetime(datetime.now(UTC) - age, usegmt=True)
    return Item(title, f"https://news.example/{slug}", published=published)


async def run_commands(fake: Fake, chats: range, phrase: str, bot: BotRun) -> dict[str, float]:
    """Each chat sends /start, then /follow ``phrase``; timed until every reply was sent."""
    figures: dict[str, float] = {}
    cpu_before = cpu_seconds(bot.process.pid), cpu_seconds(fake.process.pid or 0)
    began = time.monotonic()
    for command in ("/start", f"/follow {phrase}"):
        since = (await fake.state())["sent"]
        start = time.monotonic()
        await fake.inject([(chat_id, command) for chat_id in chats])
        window = await fake.wait(since, len(chats))
        figures[command.split()[0]] = len(chats) / (window["last_at"] - start)
    figures["seconds"] = time.monotonic() - began
    figures["all"] = 2 * len(chats) / figures["seconds"]
    figures["bot_cpu"] = cpu_seconds(bot.process.pid) - cpu_before[0]
    figures["fake_cpu"] = cpu_seconds(fake.process.pid or 0) - cpu_before[1]
    return figures


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def breaking_story(
    fake: Fake,
    feed: FeedServer,
    story: Item,
    older: list[Item],
    *,
    followers: int,
    rate: int,
    bot: BotRun,
) -> dict[str, Any]:
    """Put a breaking story in the feed; figures until every follower has it."""
    state = await fake.state()
    fake_pid = fake.process.pid or 0
    bot_pid = bot.process.pid
    cpu_before = cpu_seconds(bot_pid), cpu_seconds(fake_pid)
    appeared = time.monotonic()
    feed.add("news.xml", rss(story, *older))
    window = await fake.wait(state["sent"], followers)
    window["bot_cpu"] = cpu_seconds(bot_pid) - cpu_before[0]
    window["fake_cpu"] = cpu_seconds(fake_pid) - cpu_before[1]
    window["first_alert_after"] = window["first_at"] - appeared
    window["all_after"] = window["last_at"] - appeared
    spread = window["last_at"] - window["first_at"]
    # Counted to one send interval past the last: N sends paced at exactly R/s give R.
    window["per_second"] = window["count"] / (spread + 1 / rate)
    window["too_many"] = len(await fake.too_many_scopes(state["too_many"]))
    return window


async def benchmark(args: argparse.Namespace) -> None:
    """All three phases; prints as it goes."""
    directory = Path(tempfile.mkdtemp(prefix="newsbot-fanout-"))
    fake = start_fake()
    try:
        async with FeedServer() as feed, scratch_database(args.database_url, directory) as url:
            await _phases(args, fake, feed, url, directory)
    finally:
        await fake.close()
        shutil.rmtree(directory, ignore_errors=True)


async def _phases(
    args: argparse.Namespace, fake: Fake, feed: FeedServer, database_url: str, directory: Path
) -> None:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
    env = clean | {
        "NEWSBOT_TOKEN": fake.token,
        "NEWSBOT_API_URL": fake.base_url,
        "NEWSBOT_DATABASE_URL": database_url,
        "NEWSBOT_POLL_INTERVAL": str(POLL_INTERVAL),
        "NEWSBOT_TIMEZONE": "UTC",
    }
    if args.parse_workers is not None:
        env["NEWSBOT_PARSE_WORKERS"] = str(args.parse_workers)
    backend = "PostgreSQL" if "postgresql" in database_url else "SQLite"
    workers = "default" if args.parse_workers is None else args.parse_workers
    print(
        f"newsbot run as a process; fake Bot API in its own process; {backend}; "
        f"{os.cpu_count()} CPUs; POLL_INTERVAL={POLL_INTERVAL}s; PARSE_WORKERS={workers}"
    )
    await newsbot_command("db", "upgrade", env=env, directory=directory)
    old = [item("مصر تستضيف قمة اقتصادية", "egypt", timedelta(hours=1))]
    feed.add("news.xml", rss(*old))
    print(
        await newsbot_command("feeds", "add", feed.url("news.xml"), env=env, directory=directory)
    )

    followers = range(FIRST_CHAT, FIRST_CHAT + args.chats)
    limited = range(FIRST_CHAT + args.chats, FIRST_CHAT + args.chats + args.limited_chats)
    if args.seed:
        await seed_followers(database_url, followers, "روسيا")
        await seed_followers(database_url, limited, "لبنان")

    # Phase 1 and 2: no limits at Telegram, none in the bot.
    unlimited = env | rate_settings(UNLIMITED_RATE)
    run = await start_bot(fake, unlimited, directory, args.profile)
    if not args.seed:
        print(f"\nphase 1: {args.chats} chats each send /start, then /follow روسيا")
        figures = await run_commands(fake, followers, "روسيا", run)
        stored = await count_subscriptions(database_url)
        print(
            f"  /start {figures['/start']:.0f}/s, /follow {figures['/follow']:.0f}/s, "
            f"both {figures['all']:.0f} commands/s (goal ≥ 300); {stored} subscriptions stored"
        )
        print(
            f"  CPU: newsbot {figures['bot_cpu']:.1f} s, fake Bot API "
            f"{figures['fake_cpu']:.1f} s, over {figures['seconds']:.1f} s"
        )
        await run_commands(fake, limited, "لبنان", run)  # phase 3's readers, not timed
    print(f"\nphase 2: one breaking story to {args.chats} followers, no limits")
    story = item("عاجل: روسيا تعلن هدنة في كورسك", "truce")
    phase2 = await breaking_story(
        fake, feed, story, old, followers=args.chats, rate=UNLIMITED_RATE, bot=run
    )
    report_fanout(phase2, args.chats)
    print(
        f"  {phase2['per_second']:.0f} messages/s (goal ≥ 1000); every chat had it "
        f"{phase2['all_after']:.1f} s after it appeared"
    )
    print(f"  stopped by SIGTERM in {await stop_bot(run):.1f} s")

    # Phase 3: Telegram's limits enforced, the bot at its default pace.
    rate = args.rate_limit
    print(
        f"\nphase 3: one breaking story to {args.limited_chats} followers, Telegram's limits "
        f"enforced at {rate}/s (1/s per chat), NEWSBOT_SEND_RATE={rate}"
    )
    limits = {"per_second": rate, "per_chat_per_second": 1, "per_group_per_minute": 20}
    await fake.rate_limit(limits)
    run = await start_bot(fake, env | rate_settings(rate), directory)
    story = item("عاجل: انفجار في مرفأ بيروت في لبنان", "beirut")
    phase3 = await breaking_story(
        fake, feed, story, old, followers=args.limited_chats, rate=rate, bot=run
    )
    report_fanout(phase3, args.limited_chats)
    print(
        f"  {phase3['steady_per_second']:.2f} messages/s over its whole seconds = "
        f"{phase3['steady_per_second'] / rate:.3f} of {rate}/s (goal ≥ 0.97); "
        f"at most {phase3['max_per_second']} in any second (goal ≤ {rate}), "
        f"{phase3['max_per_tenth']} in any 0.1 s; {phase3['too_many']} × 429 (goal 0)"
    )
    print(f"  stopped by SIGTERM in {await stop_bot(run):.1f} s")
    print(f"\ndeliveries by state: {await delivery_states(database_url)}")
    errors = run.stderr.read_text(errors="replace").strip()
    if errors:
        print(f"\nnewsbot's stderr (last lines):\n{errors[-2000:]}")


def report_fanout(window: dict[str, Any], followers: int) -> None:
    """The lines every fan-out phase prints."""
    print(
        f"  {window['count']} alerts to {window['chats']} of {followers} chats (most to one "
        f"chat: {window['most_to_one_chat']}); first alert {window['first_alert_after']:.2f} s "
        f"after the story appeared (goal ≤ {POLL_INTERVAL + 1} s)"
    )
    print(
        f"  CPU while fanning out: newsbot {window['bot_cpu']:.1f} s, fake Bot API "
        f"{window['fake_cpu']:.1f} s, over {window['all_after']:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=10_000, help="followers in phases 1-2")
    parser.add_argument(
        "--limited-chats", type=int, default=600, help="followers in phase 3 (rate-limited)"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=30,
        help="messages a second Telegram allows in phase 3 (and the bot's NEWSBOT_SEND_RATE)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL (a scratch database is created on it and dropped), or "
        "sqlite+aiosqlite:///FILE (a new file); default: a temporary SQLite file",
    )
    parser.add_argument(
        "--parse-workers",
        type=int,
        help="NEWSBOT_PARSE_WORKERS (default: unset, as operators run it: one per core)",
    )
    parser.add_argument("--profile", help="run phase 1-2's newsbot under cProfile into FILE")
    parser.add_argument(
        "--seed",
        action="store_true",
        help="write the followers to the database instead of sending /start and /follow "
        "(phase 1 is then skipped)",
    )
    asyncio.run(benchmark(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
