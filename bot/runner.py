"""``newsbot run``: one process with python-telegram-bot's Application and the feed watcher.

The Application owns the event loop and the signals (SIGINT, SIGTERM): the core services
open in ``post_init`` and close in ``post_shutdown``, and the watcher is a repeating job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from contextlib import AsyncExitStack

# Durations from the Bot API (retry_after) as timedelta: PTB 22's announced behaviour.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder

from bot.app import Core, open_core
from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

# How often the watcher looks for due feeds; each feed keeps its own POLL_INTERVAL.
WATCH_TICK = 0.5


def run_bot(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; a rejected token or unreachable API is a ConfigError."""
    assert settings.token is not None  # noqa: S101 - the CLI checked it
    asyncio.run(check_bot_api(settings.token.get_secret_value(), settings.api_url))
    stack = AsyncExitStack()
    tasks: list[asyncio.Task[None]] = []

    async def post_init(_application: Application) -> None:  # type: ignore[type-arg]
        core: Core = await stack.enter_async_context(open_core(settings))
        tasks.append(asyncio.create_task(core.ingestor.watch(tick=WATCH_TICK)))

    async def post_shutdown(_application: Application) -> None:  # type: ignore[type-arg]
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stack.aclose()

    application = (
        ApplicationBuilder()
        .token(settings.token.get_secret_value())
        .base_url(settings.api_url)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.run_polling(close_loop=False)
    return 0


async def check_bot_api(token: str, api_url: str) -> None:
    """Ask the Bot API who we are, turning a refusal into one line for the operator."""
    # We report the failure ourselves, in one line: keep the library's tracebacks out.
    telegram_log = logging.getLogger("telegram")
    level = telegram_log.level
    telegram_log.setLevel(logging.CRITICAL)
    try:
        async with Bot(token, base_url=api_url) as bot:
            await bot.get_me()
    except InvalidToken:
        raise ConfigError(
            f"NEWSBOT_TOKEN: the Bot API at {api_url} rejected the token; check it with @BotFather"
        ) from None
    except TelegramError as exc:
        reason = exc.message.split(". Parsing the server response")[0].splitlines()[0][:200]
        raise ConfigError(
            f"NEWSBOT_API_URL: cannot use the Bot API at {api_url} ({reason})"
        ) from None
    finally:
        telegram_log.setLevel(level)
