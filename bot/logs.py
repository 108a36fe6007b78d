"""What Newsbot's logs may say: the chatty HTTP libraries kept at WARNING, and secrets (the
bot token, the webhook secret) cut out of every line, whichever library logs them.

Standard library only: the command line sets this up before it imports anything heavy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote

# They log every request's URL at INFO (httpx) or DEBUG (httpcore), and a Bot API URL
# carries the token.
NOISY_LOGGERS = ("httpx", "httpcore")
REDACTED = "<redacted>"


def quiet_noisy_loggers() -> None:
    """Keep the HTTP clients at WARNING: Bot API URLs carry the token."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class RedactSecrets(logging.Filter):
    """Replaces every secret in a record's message, traceback and stack with a placeholder."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
        # Longest first, so that a secret containing another is cut whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg} {record.args!r}"
        # The formatted message replaces msg and args, so no handler formats the secret back in.
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: the traceback is formatted once, here.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def redact_secrets(secrets: Iterable[str | None], logger: logging.Logger | None = None) -> None:
    """Make every handler of ``logger`` (the root logger by default) redact these secrets."""
    redaction = RedactSecrets(secret for secret in secrets if secret)
    for handler in (logger or logging.getLogger()).handlers:
        # A handler filters each record that reaches it, whichever logger it came from;
        # a filter on a logger would see only that logger's own records.
        for old in [each for each in handler.filters if isinstance(each, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redaction)
