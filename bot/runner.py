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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Durations from the Bot API (retry_after) as timedelta: PTB 22's announced behaviour.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from urllib.parse import urlsplit

from telegram import Bot, Update
from telegram.error import InvalidToken, NetworkError, TelegramError

from bot.app import build_application
from bot.config import DEFAULT_API_URL, ConfigError, Settings
from bot.i18n import CatalogError, require_catalogs, translator
from bot.logs import quiet_noisy_loggers

log = logging.getLogger(__name__)
_ = translator("en").gettext

RESTOP_DELAY = 0.1


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_bot(settings: Settings, *, announce: Callable[[str], None] = log.warning) -> int:
    """Run until SIGINT or SIGTERM; a rejected token, an unreachable API or a missing
    Arabic catalog is a ConfigError. ``announce`` gets the lines an operator should see."""
    assert settings.token is not None  # noqa: S101 - the CLI checked it
    try:
        require_catalogs()
    except CatalogError as exc:
        raise ConfigError(
            _("{problem}: reinstall Newsbot (its catalogs ship in the locales package)").format(
                problem=exc
            )
        ) from None
    # Until the Application runs, a stop signal just ends the process (nothing is open).
    for number in STOP_SIGNALS:
        signal.signal(number, _exit)
    quiet_noisy_loggers()  # before the first Bot API request: its URL carries the token
    asyncio.run(check_bot_api(settings.token.get_secret_value(), settings.api_url))
    application = build_application(settings, announce=announce)
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
        application.run_webhook(
            listen=host,
            port=port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            # Never None: without a secret, anyone who can reach the port could post updates
            # (an editor's /addfeed, say) and be obeyed.
            secret_token=settings.webhook_secret_token,
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
    with quiet_telegram():
        try:
            async with Bot(token, base_url=api_url) as bot:
                await bot.get_me()
        except TelegramError as exc:
            raise ConfigError(bot_api_problem(exc, api_url)) from None


def bot_api_problem(exc: TelegramError, api_url: str) -> str:
    """One line saying what went wrong with the Bot API, and what to check."""
    if isinstance(exc, InvalidToken):
        return _(
            "NEWSBOT_TOKEN: the Bot API at {url} rejected the token; check it with @BotFather"
        ).format(url=api_url)
    reason = exc.message.split(". Parsing the server response")[0].splitlines()[0][:200]
    if not isinstance(exc, NetworkError):  # it answered, but not as a Bot API does
        return _("NEWSBOT_API_URL: {url} does not answer as a Bot API ({reason})").format(
            url=api_url, reason=reason
        )
    if api_url == DEFAULT_API_URL:
        return _(
            "cannot reach Telegram's Bot API at {url} ({reason}): check this machine's "
            "network connection"
        ).format(url=api_url, reason=reason)
    return _(
        "cannot reach the Bot API at {url} ({reason}): check that server, or NEWSBOT_API_URL"
    ).format(url=api_url, reason=reason)


@contextmanager
def quiet_telegram() -> Iterator[None]:
    """Keep python-telegram-bot's own logging out while its failure is told in one line."""
    telegram_log = logging.getLogger("telegram")
    level = telegram_log.level
    telegram_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        telegram_log.setLevel(level)
