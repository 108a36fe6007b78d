"""Newsbot's configuration: environment variables prefixed ``NEWSBOT_`` (and a ``.env`` file).

Only the composition root and the CLI read :class:`Settings`; everything else receives the
values it needs. A wrong value becomes :class:`ConfigError`, one line naming the variable.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.i18n import translator
from bot.text.breaking import DEFAULT_MARKERS
from storage.db import default_database_url

ENV_PREFIX = "NEWSBOT_"
ENV_FILE = Path(".env")
# Variables with the prefix that are no settings: read by scripts/ and the test suite.
TOOL_VARIABLES = frozenset(
    {"NEWSBOT_VENV", "NEWSBOT_TEST_POSTGRES_URL", "NEWSBOT_REQUIRE_POSTGRES"}
)
_ = translator("en").gettext
DEFAULT_API_URL = "https://api.telegram.org/bot"
# Messages a second Telegram lets a bot send without paid broadcasts.
FREE_SEND_RATE = 30


class ConfigError(Exception):
    """A configuration mistake; ``str()`` is one line an operator can act on."""


class Settings(BaseSettings):
    """Every setting Newsbot reads, with its default and its bounds."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    token: SecretStr | None = Field(
        default=None, description="Bot token from @BotFather (a secret: never logged)."
    )
    api_url: str = Field(
        default=DEFAULT_API_URL,
        description="Bot API base URL; the token is appended (python-telegram-bot's base_url).",
    )
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://…",
    )
    poll_interval: int = Field(default=60, ge=1, description="Seconds between polls of a feed.")
    admins: Annotated[frozenset[int], NoDecode] = Field(
        default=frozenset(), description="Comma-separated Telegram user ids of the editors."
    )
    timezone: str = Field(default="UTC", description="IANA time zone for times shown to readers.")
    backlog_hours: float = Field(
        default=12.0,
        gt=0,
        description="Items older than this many hours are stored but never alert.",
    )
    story_window_hours: float = Field(
        default=36.0,
        gt=0,
        le=24 * 30,
        description="Hours within which articles of several feeds may join one story.",
    )
    fetch_timeout: float = Field(
        default=30.0, gt=0, description="Seconds one feed request may take in all."
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect.")
    max_feed_bytes: int = Field(
        default=15 * 1024 * 1024,
        ge=1024,
        description="Largest feed body accepted, counted after decompression.",
    )
    fetch_concurrency: int = Field(
        default=20, ge=1, description="Feed requests in flight at once, in all."
    )
    fetch_per_host: int = Field(
        default=2, ge=1, description="Feed requests in flight at once to one host."
    )
    parse_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        description="Processes that parse feeds (default: one per core; 0: a thread instead).",
    )
    max_backoff: int = Field(
        default=3600,
        ge=1,
        description="Longest wait, in seconds, before retrying a failing feed.",
    )

    send_rate: int = Field(
        default=30,
        ge=1,
        le=1000,
        description="Messages sent in any one second, in all (above 30 needs paid broadcasts).",
    )
    paid_broadcasts: bool = Field(
        default=False,
        description="Send with allow_paid_broadcast, so NEWSBOT_SEND_RATE may go up to 1000 "
        "(Telegram charges Stars for each message above the free rate).",
    )
    stale_hours: float = Field(
        default=2.0, gt=0, description="Alerts still unsent after this many hours are dropped."
    )
    story_edit_hours: float = Field(
        default=6.0,
        ge=0,
        description="A story's alerts are edited to name the outlets confirming it for this "
        "many hours after it was first pushed (0: never).",
    )
    story_edit_chats: int = Field(
        default=1200,
        ge=0,
        description="A story's alerts are edited only if it reached at most this many chats.",
    )
    breaking_markers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_MARKERS,
        description="Comma-separated words that mark a headline or category as breaking.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="Public HTTPS URL Telegram posts updates to (unset: long polling).",
    )
    listen: str = Field(
        default="127.0.0.1:8443", description="HOST:PORT the webhook server listens on."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret token Telegram sends with each webhook request (default: one "
        "derived from the bot token).",
    )
    metrics_listen: str | None = Field(
        default=None,
        description="HOST:PORT serving /healthz and /metrics (Prometheus); unset: off.",
    )
    feed_alarm_minutes: float = Field(
        default=60.0,
        gt=0,
        description="Editors are told of a feed failing for this many minutes (once, and "
        "again when it recovers).",
    )
    allow_private_feeds: bool = Field(
        default=False,
        description="Let editors add feeds on private or loopback addresses from the chat.",
    )

    @field_validator("paid_broadcasts")
    @classmethod
    def _paid_above_free_rate(cls, value: bool, info: ValidationInfo) -> bool:
        # Declared after send_rate, so its value is known here (if it was valid).
        rate = info.data.get("send_rate", FREE_SEND_RATE)
        if not value and rate > FREE_SEND_RATE:
            raise ValueError(
                f"true for a NEWSBOT_SEND_RATE of {rate} (above {FREE_SEND_RATE}, Telegram's "
                "free rate: more goes only as paid broadcasts, charged in Stars)"
            )
        return value

    @field_validator("breaking_markers", mode="before")
    @classmethod
    def _split_markers(cls, value: Any) -> Any:
        if isinstance(value, str):
            markers = tuple(part.strip() for part in value.split(",") if part.strip())
            if not markers:
                raise ValueError("comma-separated marker words")
            return markers
        return value

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("HOST:PORT such as 0.0.0.0:8443")
        return value

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            return frozenset(int(part) for part in parts if part)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("an IANA time zone such as Asia/Riyadh or UTC") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("sqlite:", "sqlite+pysqlite:")):
            return "sqlite+aiosqlite:" + value.split(":", 1)[1]
        if value.startswith(("postgresql:", "postgres:", "postgresql+psycopg2:")):
            return "postgresql+asyncpg:" + value.split(":", 1)[1]
        if not value.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
            raise ValueError("a sqlite+aiosqlite:///PATH or postgresql+asyncpg://HOST/DB URL")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def listen_address(self) -> tuple[str, int]:
        """The webhook server's host and port."""
        return _host_and_port(self.listen)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """The health and metrics server's host and port, or None when it is off."""
        return None if self.metrics_listen is None else _host_and_port(self.metrics_listen)

    @property
    def feed_alarm_after(self) -> timedelta:
        """How long a feed fails before its editors are told."""
        return timedelta(minutes=self.feed_alarm_minutes)

    @property
    def webhook_secret_token(self) -> str | None:
        """The secret every webhook request must carry: NEWSBOT_WEBHOOK_SECRET, or else one
        derived from the bot token (None without either)."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        if self.token is None:
            return None
        # Derived rather than random: every process of one bot (several may share a webhook
        # on PostgreSQL) and every restart agree on it without set-up, and only a holder of
        # the token, who controls the bot anyway, can compute it.
        digest = hmac.digest(
            self.token.get_secret_value().encode(), b"newsbot webhook secret", hashlib.sha256
        )
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    @property
    def secret_values(self) -> list[str]:
        """What no log line may show: the token and the webhook secret."""
        token = self.token.get_secret_value() if self.token is not None else None
        return [value for value in (token, self.webhook_secret_token) if value]

    @property
    def story_edit_for(self) -> timedelta:
        """How long after a story's push its alerts are edited for confirmations."""
        return timedelta(hours=self.story_edit_hours)

    @property
    def stale_age(self) -> timedelta:
        """Age beyond which an unsent alert is no longer news."""
        return timedelta(hours=self.stale_hours)

    @property
    def story_window(self) -> timedelta:
        """How far back an article may find the story it reports."""
        return timedelta(hours=self.story_window_hours)

    @property
    def backlog_age(self) -> timedelta:
        """Age beyond which a new item is archived without alerting."""
        return timedelta(hours=self.backlog_hours)


def _host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def unknown_variables(env_file: Path = ENV_FILE) -> list[str]:
    """A warning for each ``NEWSBOT_`` variable, in the environment or in ``.env``, that is
    no setting (a typo such as ``NEWSBOT_TOKN`` would otherwise be ignored in silence)."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    found = {
        name.upper(): _("the environment")
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
    }
    if env_file.is_file():
        found.update(
            (name.upper(), str(env_file))
            for name in dotenv_values(env_file)
            if name.upper().startswith(ENV_PREFIX)
        )
    warnings = []
    for name, where in sorted(found.items()):
        if name in known or name in TOOL_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        warnings.append(
            _("{name} (in {where}) is not a setting and is ignored; did you mean {close}?").format(
                name=name, where=where, close=close[0]
            )
            if close
            else _("{name} (in {where}) is not a setting and is ignored").format(
                name=name, where=where
            )
        )
    return warnings


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, or raise :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None


def describe_error(exc: ValidationError) -> str:
    """One line naming the first bad variable and what it expects."""
    error = exc.errors(include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    variable = ENV_PREFIX + field.upper()
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    return f"{variable}: expected {_expected(message)}{shown}"


def _expected(message: str) -> str:
    replacements = {
        "Input should be a valid integer, unable to parse string as an integer": "an integer",
        "Input should be a valid number, unable to parse string as a number": "a number",
        "invalid literal for int() with base 10": "comma-separated Telegram user ids",
    }
    for needle, text in replacements.items():
        if message.startswith(needle):
            return text
    for bound, words in (
        ("greater than or equal to ", "of at least "),
        ("greater than ", "above "),
        ("less than or equal to ", "of at most "),
    ):
        if message.startswith("Input should be " + bound):
            return "a number " + words + message.removeprefix("Input should be " + bound)
    if message.startswith("Input should be "):
        return message.removeprefix("Input should be ")
    return message
