"""`newsbot run` in webhook mode: it registers its URL with Telegram and answers the
updates posted to it, refusing posts without the secret."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx

from tests.fakebotapi import FakeBotAPI
from tests.processes import BotProcess, bot_env

READER = 4242
SECRET = "s3cret-token_1"  # noqa: S105 - a test secret for the fake


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_update(update_id: int) -> dict[str, object]:
    """The update Telegram posts when a reader sends /start."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": READER, "type": "private", "first_name": "ليلى"},
            "from": {"id": READER, "is_bot": False, "first_name": "ليلى", "language_code": "ar"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


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
        bot = BotProcess(fake, env, tmp_path)
        # BotProcess.start waits for long polling; a webhook bot is ready once it set the hook.
        starting = asyncio.create_task(bot.start())
        await fake.wait_for(lambda: fake.webhook is not None, 20.0, "setWebhook")
        starting.cancel()
        assert fake.webhook is not None
        assert fake.webhook["url"] == "https://bot.news.example/telegram/hook"
        assert fake.webhook["secret_token"] == SECRET
        try:
            async with httpx.AsyncClient() as client:
                hook = f"http://127.0.0.1:{port}/telegram/hook"
                for _ in range(100):  # the server starts listening right after setWebhook
                    try:
                        refused = await client.post(hook, json=start_update(1))
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.1)
                assert refused.status_code == 403
                assert fake.messages_to(READER) == []
                accepted = await client.post(
                    hook,
                    json=start_update(2),
                    headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                )
                assert accepted.status_code == 200
            (welcome,) = await fake.wait_for_messages(READER, 1, 10.0)
            assert "عاجل" in welcome.plain
        finally:
            if bot.running:
                code, _seconds = await bot.terminate()
                assert code == 0, bot.stderr
        assert "Traceback" not in bot.stderr, bot.stderr
