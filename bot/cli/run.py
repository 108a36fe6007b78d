"""``newsbot run``: the bot in one process (Telegram, the feed watcher and the sender)."""

from __future__ import annotations

import argparse

from bot.cli.common import CommandError, _, say
from bot.config import Settings


def run(settings: Settings, _args: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM, saying when the bot is up and when it stopped."""
    require_token(settings)
    from bot.runner import run_bot

    return run_bot(settings, announce=say)


def require_token(settings: Settings) -> str:
    """The bot token, or a line telling the operator how to get one."""
    if settings.token is None:
        raise CommandError(
            _(
                "no bot token: create a bot with @BotFather in Telegram (/newbot), then set "
                "NEWSBOT_TOKEN=<token> in the environment or in a .env file"
            )
        )
    return settings.token.get_secret_value()
