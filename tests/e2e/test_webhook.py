"""`newsbot run` in webhook mode: it registers its URL with Telegram and answers the
updates posted to it, refusing posts without the secret."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx

from bot.config import Settings
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer
from tests.processes import EDITOR, BotProcess, bot_env, feed, story

READER = 4242
SECRET = "s3cret-token_1"  # noqa: S105 - a test secret for the fake


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_update(update_id: int, user_id: int, text: str) -> dict[str, object]:
    """The update Telegram posts when a user sends a command in a private chat."""
    command = text.split()[0]
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "ليلى"},
            "from": {"id": user_id, "is_bot": False, "first_name": "ليلى", "language_code": "ar"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
        },
    }


def start_update(update_id: int) -> dict[str, object]:
    """The update Telegram posts when a reader sends /start."""
    return command_update(update_id, READER, "/start")


async def start_webhook_bot(fake: FakeBotAPI, env: dict[str, str], directory: Path) -> BotProcess:
    """Start ``newsbot run`` in webhook mode; return once it has set its webhook."""
    bot = BotProcess(fake, env, directory)
    # BotProcess.start waits for long polling; a webhook bot is ready once it set the hook.
    starting = asyncio.create_task(bot.start())
    await fake.wait_for(lambda: fake.webhook is not None, 20.0, "setWebhook")
    starting.cancel()
    return bot


async def post_update(
    client: httpx.AsyncClient, hook: str, update: dict[str, object], secret: str | None = None
) -> httpx.Response:
    """POST an update to the bot's webhook, waiting for its server to listen."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    for _ in range(100):  # the server starts listening right after setWebhook
        try:
            return await client.post(hook, json=update, headers=headers)
        except httpx.ConnectError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens on {hook}")


async def test_webhook_mode_sets_the_webhook_and_answers_posted_updates(
    sqlite_url: str, tmp_path: Path
) -> None:
    """With NEWSBOT_WEBHOOK_URL the bot sets its webhook, answers a posted /start in
    Arabic, refuses a post without the secret, and stops cleanly on SIGTERM."""
    port = free_port()
    async with FakeBotAPI(any_chat=True) as fake:
        env = bot_env(
            fake,
            sqlite_url,
            webhook_url="https://bot.news.example/telegram/hook",
            listen=f"127.0.0.1:{port}",
            webhook_secret=SECRET,
        )
        bot = await start_webhook_bot(fake, env, tmp_path)
        try:
            assert fake.webhook is not None
            assert fake.webhook["url"] == "https://bot.news.example/telegram/hook"
            assert fake.webhook["secret_token"] == SECRET
            async with httpx.AsyncClient() as client:
                hook = f"http://127.0.0.1:{port}/telegram/hook"
                refused = await post_update(client, hook, start_update(1))
                assert refused.status_code == 403
                assert fake.messages_to(READER) == []
                accepted = await post_update(client, hook, start_update(2), SECRET)
                assert accepted.status_code == 200
            (welcome,) = await fake.wait_for_messages(READER, 1, 10.0)
            assert "عاجل" in welcome.plain
        finally:
            if bot.running:
                code, _seconds = await bot.terminate()
                assert code == 0, bot.stderr
        assert "Traceback" not in bot.stderr, bot.stderr


async def test_without_a_secret_setting_forged_updates_are_refused(
    sqlite_url: str, feed_server: FeedServer, tmp_path: Path
) -> None:
    """Without NEWSBOT_WEBHOOK_SECRET the bot still gives setWebhook a strong secret: a
    forged editor /addfeed posted without it gets 403 and is not acted on, while the posts
    that carry it, as Telegram's do, are answered."""
    port = free_port()
    url = feed_server.add("agency.xml", feed(story("مصر تستضيف قمة اقتصادية", "egypt")))
    async with FakeBotAPI(any_chat=True) as fake:
        env = bot_env(
            fake,
            sqlite_url,
            webhook_url="https://bot.news.example/telegram/hook",
            listen=f"127.0.0.1:{port}",
            allow_private_feeds="true",  # so that, were it obeyed, the forgery would succeed
        )
        bot = await start_webhook_bot(fake, env, tmp_path)
        try:
            assert fake.webhook is not None
            secret = fake.webhook["secret_token"]
            assert isinstance(secret, str) and len(secret) >= 32, secret
            async with httpx.AsyncClient() as client:
                hook = f"http://127.0.0.1:{port}/telegram/hook"
                forged = command_update(1, EDITOR, f"/addfeed {url}")
                assert (await post_update(client, hook, forged)).status_code == 403
                wrong = await post_update(client, hook, forged, secret[::-1])
                assert wrong.status_code == 403
                genuine = await post_update(client, hook, start_update(2), secret)
                assert genuine.status_code == 200
            await fake.wait_for_messages(READER, 1, 10.0)
            assert fake.messages_to(EDITOR) == []
            assert feed_server.hits["agency.xml"] == 0
        finally:
            if bot.running:
                code, _seconds = await bot.terminate()
                assert code == 0, bot.stderr
        assert "Traceback" not in bot.stderr, bot.stderr


def test_every_process_of_one_bot_derives_the_same_secret() -> None:
    """Without NEWSBOT_WEBHOOK_SECRET each process of one bot derives the same secret (so
    several can share a webhook), one Telegram accepts; another bot's differs, and a
    configured secret is used as it is."""
    token, other = "123456:ABC-def", "654321:ABC-def"  # made-up tokens
    first, second, another = (
        Settings(token=each, webhook_secret=None) for each in (token, token, other)
    )
    secret = first.webhook_secret_token
    assert secret is not None and secret == second.webhook_secret_token
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", secret), secret
    assert another.webhook_secret_token != secret
    assert Settings(token=token, webhook_secret=SECRET).webhook_secret_token == SECRET
