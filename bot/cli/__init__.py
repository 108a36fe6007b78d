"""The ``newsbot`` command: run the bot, manage feeds and channels, poll, search, upgrade the
database.

This module only parses the arguments: each command's module (``bot.cli.feeds``, …) is
imported when that command runs, so ``newsbot --help`` answers without loading Telegram,
SQLAlchemy or the text engine. Every mistake an operator can make ends in one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.cli.common import EXIT_USAGE, CommandError, _, fail, first_line

# Each command and the function that runs it: "module:function" in this package.
COMMANDS = {
    "run": "run:run",
    "feeds add": "feeds:add",
    "feeds list": "feeds:list_",
    "feeds remove": "feeds:remove",
    "feeds import": "feeds:import_",
    "feeds export": "feeds:export",
    "channels add": "channels:add",
    "channels list": "channels:list_",
    "channels remove": "channels:remove",
    "deliveries doubt": "deliveries:doubt",
    "deliveries resend": "deliveries:resend",
    "poll": "poll:poll",
    "search": "search:search",
    "stories": "stories:stories",
    "db upgrade": "db:upgrade",
    "db reindex": "db:reindex",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="newsbot",
        description=_("Newsbot: breaking-news alerts from RSS/Atom feeds to Telegram."),
    )
    parser.add_argument("--version", action="version", version=f"newsbot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log more detail"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", help=_("run the bot: Telegram, the feed watcher and the sender"))

    feeds = commands.add_parser("feeds", help=_("add, list, remove, import and export feeds"))
    feed_commands = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    add = feed_commands.add_parser("add", help=_("fetch a feed once and start watching it"))
    add.add_argument("url", metavar="URL")
    add.add_argument("--name", help=_("a name for the feed (default: its own title)"))
    add.add_argument(
        "--breaking", action="store_true", help=_("treat every future item as breaking news")
    )
    feed_commands.add_parser("list", help=_("list the feeds with their status"))
    remove = feed_commands.add_parser("remove", help=_("stop watching a feed"))
    remove.add_argument("feed", metavar="URL_OR_ID")
    import_ = feed_commands.add_parser("import", help=_("add the feeds of an OPML file"))
    import_.add_argument("file", metavar="FILE.opml", type=Path)
    export = feed_commands.add_parser("export", help=_("write the feeds as OPML"))
    export.add_argument(
        "-o", "--output", type=Path, help=_("file to write (default: standard output)")
    )

    poll = commands.add_parser("poll", help=_("fetch the feeds without running the bot"))
    poll.add_argument(
        "--once", action="store_true", help=_("fetch every feed once, then print a summary")
    )

    search = commands.add_parser(
        "search", help=_("search the archive: best matches first, recent ones favoured")
    )
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=_positive, default=10, help=_("results (default 10)"))
    search.add_argument("--page", type=_positive, default=1, help=_("page of results (default 1)"))
    search.add_argument("--json", action="store_true", help=_("one JSON object per line"))

    stories = commands.add_parser(
        "stories", help=_("the stories: the articles of several feeds that report one event")
    )
    stories.add_argument(
        "--since",
        metavar="HOURS",
        help=_("stories first seen in the last HOURS hours (default 24)"),
    )
    stories.add_argument("--json", action="store_true", help=_("a JSON list of the stories"))
    stories.add_argument(
        "--regroup",
        action="store_true",
        help=_("first put the articles stored before stories were kept into stories"),
    )

    channels = commands.add_parser(
        "channels", help=_("send alerts to Telegram channels the bot administers")
    )
    channel_commands = channels.add_subparsers(
        dest="channels_command", required=True, metavar="ACTION"
    )
    add_channel = channel_commands.add_parser(
        "add", help=_("send alerts to a channel: every breaking story, or only its topics")
    )
    add_channel.add_argument("channel", metavar="@NAME_OR_ID")
    add_channel.add_argument(
        "--topic",
        action="extend",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help=_("a topic the channel follows (repeatable; default: every breaking story)"),
    )
    channel_commands.add_parser("list", help=_("list the channels alerts go to"))
    remove_channel = channel_commands.add_parser(
        "remove", help=_("stop sending alerts to a channel")
    )
    remove_channel.add_argument("channel", metavar="@NAME_OR_ID")

    deliveries = commands.add_parser(
        "deliveries", help=_("deliveries in doubt: list them, send them again deliberately")
    )
    delivery_commands = deliveries.add_subparsers(
        dest="deliveries_command", required=True, metavar="ACTION"
    )
    doubt = delivery_commands.add_parser(
        "doubt", help=_("list the deliveries whose request may or may not have reached Telegram")
    )
    doubt.add_argument("--alert", type=_positive, metavar="ID", help=_("only this alert's"))
    resend = delivery_commands.add_parser(
        "resend",
        help=_("put deliveries in doubt back in the queue (their readers may get them twice)"),
    )
    resent = resend.add_mutually_exclusive_group(required=True)
    resent.add_argument("--alert", type=_positive, metavar="ID", help=_("this alert's"))
    resent.add_argument("--all", action="store_true", help=_("every alert's"))

    db = commands.add_parser("db", help=_("database maintenance"))
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help=_("apply the database migrations"))
    db_commands.add_parser(
        "reindex",
        help=_("recompute every article's search terms (after the text engine changed)"),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``newsbot`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.logs import quiet_noisy_loggers, redact_secrets

    # Before any request: the HTTP clients log each URL at INFO, and Bot API URLs carry the
    # token.
    quiet_noisy_loggers()
    # Imported once the arguments are known to be right: these cost a third of a second.
    from sqlalchemy.exc import DBAPIError, OperationalError

    from bot.cli.common import DatabaseUnusable
    from bot.config import ConfigError, load_settings, unknown_variables

    try:
        settings = load_settings()
        # Whatever logs them, from here on (a library's DEBUG line, a traceback).
        redact_secrets(settings.secret_values)
        for warning in unknown_variables():
            print(f"newsbot: warning: {warning}", file=sys.stderr)
        module, function = COMMANDS[_command_name(args)].split(":")
        command = getattr(importlib.import_module(f"bot.cli.{module}"), function)
        code: int = command(settings, args)
        return code
    except (ConfigError, CommandError) as exc:
        fail(str(exc))
    except (OperationalError, DBAPIError, DatabaseUnusable) as exc:
        fail(_("cannot use the database: {reason}").format(reason=first_line(exc)))
    except KeyboardInterrupt:
        fail(_("interrupted"))
    return EXIT_USAGE


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(_("expected a whole number of at least 1"))
    return value


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else args.command
