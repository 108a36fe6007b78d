"""bot.logs: secrets never reach a log line, whichever library logs them and at what level."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logs import REDACTED, RedactSecrets, redact_secrets
from bot.runner import check_bot_api
from tests.fakebotapi import FakeBotAPI

LIBRARIES = ("httpx", "httpcore", "telegram", "aiohttp")


@pytest.fixture
def debug_log() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    """Everything logged at DEBUG, by every library, into a string, through a handler on the
    root logger as ``newsbot -v`` has."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    loggers = [root, *map(logging.getLogger, LIBRARIES)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler, output
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def test_bot_api_calls_logged_at_debug_never_show_the_token(
    debug_log: tuple[logging.Handler, io.StringIO],
) -> None:
    """With every library at DEBUG, the start-up check's requests are logged (httpx names
    each URL) with the token cut out of them."""
    handler, output = debug_log
    async with FakeBotAPI() as fake:
        handler.addFilter(RedactSecrets([fake.token]))
        await check_bot_api(fake.token, fake.base_url)
    logged = output.getvalue()
    assert f"/bot{REDACTED}/getMe" in logged, logged
    assert fake.token.split(":", 1)[1] not in logged, logged


def test_messages_arguments_and_tracebacks_are_redacted(
    debug_log: tuple[logging.Handler, io.StringIO],
) -> None:
    """A secret in a message, in its arguments, URL-quoted, in a traceback or in a record
    whose arguments do not fit its message never reaches the handler's output."""
    _handler, output = debug_log
    token = "123456:SECRET-token"  # noqa: S105 - a made-up token to find in the output
    redact_secrets([token, None])
    log = logging.getLogger("tests.logs")
    log.info("calling %s/bot%s/getMe", "https://api.example", token)
    log.info("quoted: %s", "123456%3ASECRET-token")
    try:
        raise RuntimeError(f"Client error for url 'https://api.example/bot{token}/getMe'")
    except RuntimeError:
        log.exception("request failed")
    log.warning("malformed %s %s", token)
    logged = output.getvalue()
    assert "SECRET" not in logged, logged
    assert logged.count(REDACTED) == 4, logged
    assert "RuntimeError" in logged and "malformed" in logged


def test_redaction_is_installed_once_per_handler() -> None:
    """Installing the redaction again (each command of one process does) replaces the
    handler's filter instead of stacking another."""
    logger = logging.getLogger("tests.logs.once")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        redact_secrets(["first"], logger)
        redact_secrets(["second"], logger)
        (only,) = handler.filters
        assert isinstance(only, RedactSecrets)
        assert only.redact("first second") == f"first {REDACTED}"
    finally:
        logger.removeHandler(handler)
