"""Several ``newsbot run`` processes serving one bot on one PostgreSQL database.

Long polling: exactly one process calls getUpdates (no 409 Conflict storm), each command
is answered once, and when that process is killed another takes over within seconds. A
webhook: every process serves it, and a button pressed on the process that did not draw
it works.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from storage.db import Database
from storage.models import Base
from tests.e2e.test_webhook import free_port, post_update
from tests.fakebotapi import FakeBotAPI, SentMessage
from tests.feedserver import FeedServer
from tests.processes import (
    EDITOR,
    START_TIMEOUT,
    BotProcess,
    add_feed,
    alerts_to,
    bot_env,
    feed,
    kursk_stories,
    outbox_empty,
    say,
    seed_followers,
    wait_until,
)

POLLING = re.compile(r"running as @\w+: .*, long polling$", re.MULTILINE)
STANDBY = re.compile(r"running as @\w+: .*, long polling \(standby\)$", re.MULTILINE)
TOOK_OVER = "took over long polling"
# A poller killed mid-request is ended by its successor's first getUpdates: one 409 for
# each takeover, answered to a process that is gone. A storm is one per poll.
MOST_CONFLICTS = 2
HOOK_URL = "https://bot.news.example/telegram/hook"
SECRET = "s3cret-token_2"  # noqa: S105 - a test secret for the fake


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    """This run's PostgreSQL database (several processes on one database need it: on
    SQLite one process serves a database), emptied after the test."""
    database = Database(postgres_url)
    yield database
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await database.dispose()


async def start_standby(bot: BotProcess) -> None:
    """Start ``newsbot run`` and return once it says it stands by for long polling."""
    process = await bot.spawn()

    async def standing_by() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"newsbot run exited with {process.returncode}: {bot.stderr}")
        return STANDBY.search(bot.stderr) is not None

    await wait_until(standing_by, timeout=START_TIMEOUT, what="the standby's start line")


@asynccontextmanager
async def polling_processes(
    fake: FakeBotAPI, env: dict[str, str], directory: Path, count: int
) -> AsyncIterator[list[BotProcess]]:
    """``count`` processes of one bot, the first started polling and the others standing
    by; those still running at the end are stopped by SIGTERM, which must end them cleanly."""
    bots = [BotProcess(fake, env, _own(directory, f"bot{n}")) for n in range(count)]
    try:
        await bots[0].start()
        for bot in bots[1:]:
            await start_standby(bot)
        yield bots
        for bot in bots:
            if bot.running:
                await bot.stop_cleanly()
    finally:
        for bot in bots:
            if bot.running:
                await bot.kill()


def _own(directory: Path, name: str) -> Path:
    path = directory / name
    path.mkdir()
    return path


async def converse(fake: FakeBotAPI, readers: Iterable[int]) -> None:
    """Each reader starts, follows a topic and searches; each command gets one reply."""
    for reader in readers:
        for command in ("/start", "/follow روسيا", "/search كورسك"):
            (reply,) = await say(fake, reader, command)
            assert reply.plain, command


async def all_confirmed(fake: FakeBotAPI) -> None:
    """Wait until the poller has confirmed every update it was given (its next getUpdates
    carries the offset): Telegram would not give them to anyone again."""
    await fake.wait_for(lambda: fake.pending_updates == 0, 10.0, "the updates' confirmation")


def replies_per_reader(fake: FakeBotAPI, readers: Iterable[int]) -> dict[int, int]:
    """How many messages each reader got."""
    return {reader: len(fake.messages_to(reader)) for reader in readers}


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 3])
async def test_one_process_polls_the_others_stand_by_and_take_over_after_kill_9(
    count: int, fake_api: FakeBotAPI, pg: Database, postgres_url: str, tmp_path: Path
) -> None:
    """With 2 or 3 processes on one database exactly one long-polls (the others say they
    stand by): every reader's command is answered once, Telegram answers no 409 storm;
    after kill -9 of the poller one standby takes over and commands sent after the kill
    are answered within 10 s, once each."""
    readers = [2100 + n for n in range(4)]
    env = bot_env(fake_api, postgres_url)
    async with polling_processes(fake_api, env, tmp_path, count) as bots:
        poller, standbys = bots[0], bots[1:]
        assert POLLING.search(poller.stderr), poller.stderr
        for standby in standbys:
            assert STANDBY.search(standby.stderr), standby.stderr
        await converse(fake_api, readers)
        await all_confirmed(fake_api)
        assert replies_per_reader(fake_api, readers) == dict.fromkeys(readers, 3)
        assert fake_api.poll_conflicts == 0

        await poller.kill()
        for reader in readers:
            (answer,) = await say(fake_api, reader, "/topics", timeout=10.0)
            assert "روسيا" in answer.plain
        (successor,) = [bot for bot in standbys if TOOK_OVER in bot.stderr]
        assert POLLING.search(successor.stderr) is None  # it had said it stood by
        await converse(fake_api, readers[:1])
        await all_confirmed(fake_api)
        # Every command once: nothing before the kill answered again, nothing lost.
        expected = dict.fromkeys(readers, 4) | {readers[0]: 7}
        assert replies_per_reader(fake_api, readers) == expected
        assert fake_api.poll_conflicts <= MOST_CONFLICTS


@pytest.mark.postgres
async def test_a_second_process_started_alone_after_the_first_stops_polls(
    fake_api: FakeBotAPI, pg: Database, postgres_url: str, tmp_path: Path
) -> None:
    """When the polling process stops cleanly (SIGTERM) its standby takes over, and the
    lock it released lets a process started later stand by again, not poll beside it."""
    reader = 2201
    env = bot_env(fake_api, postgres_url)
    async with polling_processes(fake_api, env, tmp_path, 2) as (first, second):
        await first.stop_cleanly()
        await wait_until(
            lambda: _holds(second, TOOK_OVER), timeout=10.0, what="the standby to take over"
        )
        (welcome,) = await say(fake_api, reader, "/start")
        assert welcome.plain
        third = BotProcess(fake_api, env, _own(tmp_path, "bot3"))
        try:
            await start_standby(third)
            (answer,) = await say(fake_api, reader, "/topics")
            assert answer.plain
        finally:
            if third.running:
                await third.stop_cleanly()
    assert fake_api.poll_conflicts <= MOST_CONFLICTS


async def _holds(bot: BotProcess, line: str) -> bool:
    return line in bot.stderr


# --- webhook: every process serves it --------------------------------------------------


class WebhookBot:
    """One ``newsbot run`` process of a bot in webhook mode, listening on its own port."""

    def __init__(self, fake: FakeBotAPI, env: dict[str, str], directory: Path) -> None:
        self.port = free_port()
        self.hook = f"http://127.0.0.1:{self.port}/telegram/hook"
        self.bot = BotProcess(fake, env | {"NEWSBOT_LISTEN": f"127.0.0.1:{self.port}"}, directory)
        self.fake = fake

    async def start(self) -> None:
        """Start it; return once it has set its webhook (it listens right after)."""
        before = len(self.fake.webhooks)
        process = await self.bot.spawn()
        await self.fake.wait_for(
            lambda: len(self.fake.webhooks) > before or process.returncode is not None,
            START_TIMEOUT,
            "setWebhook",
        )
        assert process.returncode is None, self.bot.stderr


async def deliver(client: httpx.AsyncClient, fake: FakeBotAPI, bot: WebhookBot) -> None:
    """Post what Telegram has for the bot to this process's webhook, as Telegram would."""
    for update in fake.take_updates():
        response = await post_update(client, bot.hook, update, SECRET)
        assert response.status_code == 200, response.text


async def ask(
    client: httpx.AsyncClient, fake: FakeBotAPI, bot: WebhookBot, chat_id: int, command: str
) -> SentMessage:
    """A reader's command, posted to this process; its one reply."""
    before = len(fake.messages_to(chat_id))
    fake.send_text(chat_id, command)
    await deliver(client, fake, bot)
    messages = await fake.wait_for_messages(chat_id, before + 1, 10.0)
    (reply,) = messages[before:]
    return reply


async def start_pair(
    fake: FakeBotAPI, env: dict[str, str], directory: Path
) -> tuple[WebhookBot, WebhookBot]:
    """Two processes of one bot serving one webhook URL, each on its own port."""
    first, second = (WebhookBot(fake, env, _own(directory, f"bot{n}")) for n in (1, 2))
    await first.start()
    await second.start()
    return first, second


async def kill_if_running(*bots: WebhookBot) -> None:
    """kill -9 what a failed test left running."""
    for each in bots:
        if each.bot.running:
            await each.bot.kill()


@pytest.mark.postgres
async def test_every_process_serves_the_webhook_and_takes_the_others_presses(
    fake_api: FakeBotAPI, pg: Database, postgres_url: str, tmp_path: Path
) -> None:
    """Two processes behind one webhook URL, each on its own port: updates posted to either
    are answered; an editor's «Send» pressed on the process that did not draw the preview
    sends the alert, once to each follower; and a process that stops leaves the webhook set
    for the one still serving it."""
    reader, followers = 2301, [2311, 2312]
    env = bot_env(fake_api, postgres_url, webhook_url=HOOK_URL, webhook_secret=SECRET)
    await seed_followers(pg, followers, "روسيا")
    first, second = await start_pair(fake_api, env, tmp_path)
    try:
        assert [hook["url"] for hook in fake_api.webhooks] == [HOOK_URL, HOOK_URL]
        async with httpx.AsyncClient() as client:
            assert "عاجل" in (await ask(client, fake_api, first, reader, "/start")).plain
            assert (await ask(client, fake_api, second, reader, "/help")).plain

            draft = "/alert انفجار قرب محطة الكهرباء"
            preview = await ask(client, fake_api, second, EDITOR, draft)
            (send,) = [data for data in preview.callback_data if data.startswith("alert:send:")]
            fake_api.press_button(EDITOR, preview.message_id, send, user_id=EDITOR)
            await deliver(client, fake_api, first)
            await fake_api.wait_for(
                lambda: all(alerts_to(fake_api, chat) for chat in followers),
                10.0,
                "the editor's alert",
            )
            await wait_until(lambda: outbox_empty(pg), what="the outbox to empty")

            await first.bot.stop_cleanly()
            assert fake_api.webhook is not None and fake_api.webhook["url"] == HOOK_URL
            assert fake_api.calls["deleteWebhook"] == 0
            assert (await ask(client, fake_api, second, reader, "/topics")).plain
        await second.bot.stop_cleanly()
    finally:
        await kill_if_running(first, second)
    for chat in followers:
        assert len(alerts_to(fake_api, chat)) == 1
    assert fake_api.calls["getUpdates"] == 0


@pytest.mark.postgres
async def test_a_search_drawn_by_one_process_turns_its_page_on_the_other(
    fake_api: FakeBotAPI,
    feed_server: FeedServer,
    pg: Database,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """«التالي» under a search one process drew, posted to the other, turns the page."""
    reader = 2321
    items = kursk_stories()  # seven stories: search shows each once
    url = feed_server.add("news.xml", feed(*items))
    env = bot_env(fake_api, postgres_url, webhook_url=HOOK_URL, webhook_secret=SECRET)
    await add_feed(url, env=env, cwd=tmp_path)
    first, second = await start_pair(fake_api, env, tmp_path)
    try:
        async with httpx.AsyncClient() as client:
            page = await ask(client, fake_api, first, reader, "/search كورسك")
            (next_page,) = page.callback_data
            fake_api.press_button(reader, page.message_id, next_page)
            await deliver(client, fake_api, second)
            await fake_api.wait_for(lambda: fake_api.edits, 10.0, "the page to turn")
        (turned,) = fake_api.edits
        assert turned.message_id == page.message_id
        assert turned.plain is not None and "رقم 7 " in turned.plain
        for each in (first, second):
            await each.bot.stop_cleanly()
    finally:
        await kill_if_running(first, second)


async def test_on_sqlite_one_process_polls_as_before(
    fake_api: FakeBotAPI, sqlite_url: str, tmp_path: Path
) -> None:
    """On SQLite (one process per database) the bot polls at once and says plain «long
    polling»."""
    bot = BotProcess(fake_api, bot_env(fake_api, sqlite_url), tmp_path)
    await bot.start()
    try:
        (welcome,) = await say(fake_api, 2401, "/start")
        assert welcome.plain
        assert POLLING.search(bot.stderr), bot.stderr
    finally:
        await bot.stop_cleanly()
