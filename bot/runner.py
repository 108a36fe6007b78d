"""``newsbot run``: one process with python-telegram-bot's Application and the feed watcher.

The services open in the Application's ``post_init`` (see ``bot.app``), stop taking work in
``post_stop`` and close in ``post_shutdown``. SIGINT and SIGTERM stop it cleanly at any
moment, even while it is still starting. Long polling by default, by one process of a bot
at a time (``bot.updates``); a webhook with ``NEWSBOT_WEBHOOK_URL``, served by every process.
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

from bot.app import build_application, runtime_of
from bot.config import DEFAULT_API_URL, ConfigError, Settings
from bot.i18n import CatalogError, require_catalogs, translator
from bot.logs import quiet_noisy_loggers

log = logging.getLogger(__name__)
_ = translator("en").gettext

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
    asyncio.run(serve(settings, announce))
    return 0


async def serve(settings: Settings, announce: Callable[[str], None]) -> None:
    """Run the bot until SIGINT or SIGTERM, as python-telegram-bot's run_polling
    and run_webhook do (post_init, start, stop, post_stop, shutdown, post_shutdown), except
    that long polling is one of the services (``bot.updates``: one process of a bot polls).

    A stop signal is honoured at any moment: while starting, the start finishes and the
    bot then stops at once, handling the updates it took.
    """
    application = build_application(settings, announce=announce, poll=not settings.webhook_url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stopping.set)
    updater = application.updater
    assert updater is not None  # noqa: S101 - ApplicationBuilder makes one
    try:
        await application.initialize()
        if application.post_init is not None:
            await application.post_init(application)  # opens the services, polls if leading
        if settings.webhook_url:
            host, port = settings.listen_address
            # Every process of a bot serves the webhook (behind a load balancer) and sets
            # it, to the same URL and secret; none deletes it when it stops (Updater.stop
            # does not), so the others go on being posted updates.
            await updater.start_webhook(
                listen=host,
                port=port,
                url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                # Never None: without a secret, anyone who can reach the port could post
                # updates (an editor's /addfeed, say) and be obeyed.
                secret_token=settings.webhook_secret_token,
                allowed_updates=Update.ALL_TYPES,
            )
        await application.start()
        await stopping.wait()
    finally:
        # Updates stop coming before the Application stops taking them.
        await runtime_of(application).stop_updates()
        if updater.running:
            await updater.stop()
        if application.running:
            await application.stop()
            if application.post_stop is not None:
                await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


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
