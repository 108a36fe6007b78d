"""End to end: nothing lost, nothing silent. The database fails for a while (SQLite's write
lock held by another program, PostgreSQL cut off as in a restart) and alerts flow again once
it is back; Telegram stops answering and few sends are left in doubt, which the operator
lists and resends on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import make_url

from bot.app import runtime_of
from bot.delivery.pacing import MIN_IN_FLIGHT
from storage.alerts import create_alert
from storage.db import Database
from storage.deliveries import SENT, UNKNOWN
from storage.models import Delivery
from tests.botharness import running_bot
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer
from tests.outages import cut_connections, database_down, write_locked
from tests.processes import (
    BotProcess,
    add_feed,
    alerts_to,
    bot_env,
    deliveries_in,
    feed,
    newsbot,
    outbox_empty,
    seed_followers,
    story,
    wait_until,
)

OLD = timedelta(hours=1)
# How long the database stays down: several of the bot's passes, and longer than the busy
# timeout the SQLite tests give it.
OUTAGE = 3.0
BUSY_TIMEOUT = 0.5
# Telegram stops answering for longer than any test waits.
PARTITION = 60.0


def process_url(db: Database) -> str:
    """The database's URL for a bot process: on SQLite with a short busy timeout."""
    url = make_url(db.url.render_as_string(hide_password=False))
    if db.is_sqlite:
        url = url.update_query_dict({"timeout": str(BUSY_TIMEOUT)})
    return url.render_as_string(hide_password=False)


def error_lines(stderr: str, task: str) -> list[str]:
    """The lines a task's failures logged at ERROR."""
    return [line for line in stderr.splitlines() if f" ERROR bot.app: {task} " in line]


async def alert_due_soon(db: Database, chats: list[int], seconds: float) -> int:
    """An editor's alert to these chats, due in ``seconds``: pending, not yet claimable."""
    async with db.transaction() as session:
        alert_id, _ = await create_alert(
            session, chats, datetime.now(UTC), text="روسيا تعلن هدنة شاملة", created_by=7001
        )
        due = datetime.now(UTC) + timedelta(seconds=seconds)
        await session.execute(
            update(Delivery).where(Delivery.alert_id == alert_id).values(due_at=due)
        )
    return alert_id


async def test_alerts_flow_again_once_the_database_is_back(
    fake_api: FakeBotAPI, feed_server: FeedServer, db: Database, tmp_path: Path
) -> None:
    """While the database takes no write (SQLite locked past its busy timeout; PostgreSQL
    down, every connection cut) an alert falls due and a story appears: the bot logs one
    ERROR per task for the outage and, once the database is back, both alerts arrive."""
    followers = [9101, 9102]
    await seed_followers(db, followers, "روسيا")
    news = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, process_url(db))
    bot = BotProcess(fake_api, env, tmp_path)
    try:
        await asyncio.gather(bot.start(), add_feed(news, env=env, cwd=tmp_path, breaking=True))
        await alert_due_soon(db, followers, seconds=1.0)
        async with database_down(db):
            feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
            await asyncio.sleep(OUTAGE)
            assert fake_api.sent == [], "an alert went out while the database was down"
        await fake_api.wait_for(
            lambda: all(len(alerts_to(fake_api, chat)) == 2 for chat in followers),
            timeout=20,
            what="both alerts to every follower",
        )
        await wait_until(lambda: outbox_empty(db), what="the outbox to empty")
        code, _ = await bot.terminate()
        assert code == 0, bot.stderr
    finally:
        if bot.running:
            await bot.kill()
    assert len(error_lines(bot.stderr, "the sender")) == 1, bot.stderr
    assert "the sender works again" in bot.stderr
    watcher_errors = len(error_lines(bot.stderr, "the feed watcher"))
    # Leasing due feeds is a write: the outage stops the watcher too, once, on both.
    assert watcher_errors == 1, bot.stderr
    assert "the feed watcher works again" in bot.stderr
    assert set((await deliveries_in(db)).values()) == {SENT}


async def test_the_runtime_records_a_failing_sender_and_its_recovery(
    fake_api: FakeBotAPI, sqlite_url: str
) -> None:
    """While SQLite is locked the Runtime's record of the sender says since when it fails
    and why; once released it is running again, with no failure and no restart."""
    url = make_url(sqlite_url).update_query_dict({"timeout": "0.3"}).render_as_string(False)
    database = Database(url)
    try:
        async with running_bot(url, fake_api) as running:
            sender = runtime_of(running.application).tasks["sender"]
            assert sender.running and sender.failing_since is None
            async with write_locked(Path(database.url.database or "")):
                await wait_until(
                    _holds(lambda: sender.failing_since is not None), what="the sender to fail"
                )
                assert sender.last_error is not None and "locked" in sender.last_error
            await wait_until(_holds(lambda: sender.failing_since is None), what="its recovery")
            assert sender.running and sender.restarts == 0 and sender.failures == 0
            watcher = runtime_of(running.application).tasks["watcher"]
            await wait_until(
                _holds(lambda: watcher.failing_since is None), what="the watcher's recovery"
            )
            assert watcher.running and watcher.restarts == 0
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_a_sender_that_lost_its_lock_is_restarted_and_sends_again(
    fake_api: FakeBotAPI, pg_db: Database
) -> None:
    """When the connection holding the one-sender-per-bot lock is cut, the sender stops (it
    might no longer be the only one), is restarted, takes the lock again and sends."""
    url = pg_db.url.render_as_string(hide_password=False)
    async with running_bot(url, fake_api) as running:
        runtime = runtime_of(running.application)
        sender = runtime.tasks["sender"]
        # The bot answers before its sender has taken the lock: wait for the role.
        await wait_until(_holds(lambda: "sender" in runtime.roles), what="the sender's lock")
        async with pg_db.sessions() as session:
            holder = await session.scalar(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
        assert holder is not None
        assert await cut_connections(pg_db, pid=holder) == 1
        await wait_until(_holds(lambda: sender.restarts == 1), what="the sender's restart")
        assert sender.last_error is not None and "lost the lock" in sender.last_error
        followers = [9201, 9202]
        await seed_followers(pg_db, followers, "روسيا")
        await alert_due_soon(pg_db, followers, seconds=0)
        await fake_api.wait_for(
            lambda: all(alerts_to(fake_api, chat) for chat in followers),
            timeout=15,
            what="the alert after the restart",
        )
        await wait_until(
            _holds(lambda: sender.running and sender.failing_since is None),
            what="the sender to count as working again",
        )


async def test_a_partition_leaves_a_handful_in_doubt_which_the_operator_resends(
    fake_api: FakeBotAPI, feed_server: FeedServer, db: Database, tmp_path: Path
) -> None:
    """Telegram stops answering mid-fan-out at 30 a second: the bot keeps a handful of
    requests in flight, not a second's worth; killed then, only those are in doubt, listed
    by `newsbot deliveries doubt`; `newsbot deliveries resend --all` sends them again."""
    followers = list(range(9301, 9361))
    await seed_followers(db, followers, "روسيا")
    news = feed_server.add("news.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt", age=OLD)))
    env = bot_env(fake_api, process_url(db), send_rate=30)
    bot = BotProcess(fake_api, env, tmp_path)
    try:
        await asyncio.gather(bot.start(), add_feed(news, env=env, cwd=tmp_path, breaking=True))
        fake_api.delay("sendMessage", PARTITION)
        fake_api.delay("getMe", PARTITION)
        feed_server.add("news.xml", feed(story("روسيا تعلن هدنة في كورسك", "truce")))
        await fake_api.wait_for(lambda: fake_api.sent, timeout=15, what="the first alert")
        await asyncio.sleep(2.0)  # two seconds' budget at 30 a second: 60 requests
        unanswered = len(fake_api.sent)
        assert unanswered <= MIN_IN_FLIGHT, f"{unanswered} requests left in flight"
        await bot.kill()
        fake_api.delay("sendMessage", 0)
        fake_api.delay("getMe", 0)
        await bot.start()

        async def accounted() -> bool:
            ended = await deliveries_in(db, SENT, UNKNOWN)
            return len(ended) == len(followers) and await outbox_empty(db)

        await wait_until(accounted, timeout=30, what="every delivery sent or in doubt")
        in_doubt = set(await deliveries_in(db, UNKNOWN))
        assert len(in_doubt) == unanswered

        env_cli = {"NEWSBOT_DATABASE_URL": process_url(db), "NEWSBOT_TIMEZONE": "UTC"}
        listed = await newsbot("deliveries", "doubt", env=env_cli, cwd=tmp_path)
        assert listed.code == 0, listed.err
        header, *rows = listed.out.strip().splitlines()
        assert header.split("\t") == ["alert", "chat", "when", "headline", "error"]
        assert {int(row.split("\t")[1]) for row in rows} == in_doubt
        assert all("هدنة في كورسك" in row for row in rows)
        resent = await newsbot("deliveries", "resend", "--all", env=env_cli, cwd=tmp_path)
        assert resent.code == 0, resent.err
        assert f"put {unanswered} deliver" in resent.out

        await wait_until(lambda: outbox_empty(db), what="the resent deliveries")
        await bot.stop_cleanly()
    finally:
        if bot.running:
            await bot.kill()
    assert set((await deliveries_in(db)).values()) == {SENT}
    received = fake_api.sends_per_chat()
    # The ones in doubt had in fact arrived: resending is the operator's deliberate choice.
    assert received == {chat: 2 if chat in in_doubt else 1 for chat in followers}


def _holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """An async condition for wait_until from a plain one."""

    async def check() -> bool:
        return condition()

    return check
