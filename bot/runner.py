"""``newsbot run``: one process with python-telegram-bot's Application and the feed watcher.

The services open in the Application's ``post_init`` (see ``bot.app``), stop taking work in
``post_stop`` and close in ``post_shutdown``. SIGINT and SIGTERM stop it cleanly at any
moment, even while it is still starting. Long polling by default; a webhook with
``NEWSBOT_WEBHOOK_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

# Durations from the Bot API (retry_after) as timedelta: PTB 22's announced behaviour.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from urllib.parse import urlsplit

from telegram import Bot, Update
from telegram.error import InvalidToken, TelegramError

from bot.app import build_application
from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

RESTOP_DELAY = 0.1


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_bot(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; a rejected token or unreachable API is a ConfigError."""
    assert settings.token is not None  # noqa: S101 - the CLI checked it
    # Until the Application runs, a stop signal just ends the process (nothing is open).
    for number in STOP_SIGNALS:
        signal.signal(number, _exit)
    asyncio.run(check_bot_api(settings.token.get_secret_value(), settings.api_url))
    application = build_application(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def stop() -> None:
        # python-telegram-bot's own handlers raise SystemExit wherever the loop happens to
        # be, which orphans its start-up tasks; asking it to stop is clean at any moment.
        application.stop_running()
        if not application.running:
            # Still starting: the request is honoured after post_init; if it came later
            # than that check, ask again once the Application runs.
            loop.call_later(RESTOP_DELAY, stop)

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop)
    if settings.webhook_url:
        host, port = settings.listen_address
        secret = settings.webhook_secret
        application.run_webhook(
            listen=host,
            port=port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=secret.get_secret_value() if secret else None,
            allowed_updates=Update.ALL_TYPES,
            close_loop=False,
            stop_signals=None,
        )
    else:
        application.run_polling(
            allowed_updates=Update.ALL_TYPES, close_loop=False, stop_signals=None
        )
    loop.close()
    return 0


def _exit(_number: int, _frame: object) -> None:
    raise SystemExit(0)


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
