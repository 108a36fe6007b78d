"""The ``newsbot`` command: run the bot, manage feeds and channels, poll, search, upgrade the
database.

Every mistake an operator can make ends in one line on stderr and a non-zero exit status,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from xml.etree import ElementTree as ET

import listparser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from telegram import Bot, ChatFullInfo, ChatMemberAdministrator
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError

from bot import __version__
from bot.app import Core, open_core
from bot.config import ConfigError, Settings, load_settings
from bot.feedadmin import FeedAddError, FeedAddReason, add_feed_and_fetch, find_feed
from bot.i18n import translator
from bot.ingest import FeedOutcome, PollSummary
from bot.links import canonical_link
from bot.text import analyser_version, index_text, query_terms
from bot.topics import ResolvedTopic, TopicRefusal, load_catalog, resolve
from storage.articles import list_article_texts, search_articles, set_article_terms
from storage.chats import get_chat, set_all_breaking, stop_chat, upsert_chat
from storage.feeds import add_feed, list_feeds, list_feeds_with_counts, remove_feed
from storage.models import Chat, Feed, utcnow
from storage.subscriptions import (
    add_subscription,
    get_topic_by_key,
    list_chat_topics,
    upsert_topic,
)

# Operators read the command line in English; the catalogs carry the strings all the same.
_ = translator("en").gettext
ngettext = translator("en").ngettext

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REINDEX_BATCH = 2_000


class CommandError(Exception):
    """A command that cannot do what was asked; ``str()`` is the one line to show."""


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
    try:
        settings = load_settings()
        name = _command_name(args)
        if name == "run":
            return _run(settings)
        return asyncio.run(_with_core(settings, _COMMANDS[name], args))
    except (ConfigError, CommandError) as exc:
        _fail(str(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(_("cannot use the database: {reason}").format(reason=_first_line(exc)))
    except KeyboardInterrupt:
        _fail(_("interrupted"))
    return EXIT_USAGE


def _fail(message: str) -> None:
    print(f"newsbot: {message}", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


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


async def _with_core(
    settings: Settings,
    command: Callable[[Core, argparse.Namespace], Awaitable[int]],
    args: argparse.Namespace,
) -> int:
    async with open_core(settings) as core:
        return await command(core, args)


def _token(settings: Settings) -> str:
    if settings.token is None:
        raise CommandError(
            _(
                "no bot token: create a bot with @BotFather in Telegram (/newbot), then set "
                "NEWSBOT_TOKEN=<token> in the environment or in a .env file"
            )
        )
    return settings.token.get_secret_value()


def _run(settings: Settings) -> int:
    _token(settings)
    from bot.runner import run_bot

    return run_bot(settings)


async def _feeds_add(core: Core, args: argparse.Namespace) -> int:
    try:
        added = await add_feed_and_fetch(
            core.db, core.ingestor, args.url, name=args.name, breaking=args.breaking
        )
    except FeedAddError as exc:
        raise CommandError(_feed_add_problem(exc)) from None
    print(
        _("added feed {id}: {title} ({count} items, archived without alerts)").format(
            id=added.id, title=added.title, count=added.items
        )
    )
    return EXIT_OK


def _feed_add_problem(exc: FeedAddError) -> str:
    if exc.reason is FeedAddReason.NOT_A_URL:
        return _("not a feed URL: {url!r} (expected http:// or https://…)").format(url=exc.url)
    if exc.reason is FeedAddReason.ALREADY_WATCHED and exc.feed_id is not None:
        return _("already watching {url} as feed {id}").format(url=exc.url, id=exc.feed_id)
    if exc.reason is FeedAddReason.ALREADY_WATCHED:
        return _("already watching {url}").format(url=exc.url)
    return _("cannot add {url}: {reason}").format(url=exc.url, reason=exc.detail)


async def _feeds_list(core: Core, _args: argparse.Namespace) -> int:
    async with core.db.sessions() as session:
        rows = await list_feeds_with_counts(session)
    if not rows:
        print(_("no feeds yet: add one with `newsbot feeds add URL`"))
        return EXIT_OK
    headers = (
        _("id"),
        _("name"),
        _("URL"),
        _("breaking"),
        _("last fetch"),
        _("status"),
        _("articles"),
    )
    zone = core.settings.zone
    lines = [
        (
            str(feed.id),
            feed.name or feed.title or "",
            feed.url,
            _("yes") if feed.breaking else _("no"),
            feed.last_fetch_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if feed.last_fetch_at
            else _("never"),
            _status(feed),
            str(count),
        )
        for feed, count in rows
    ]
    if not sys.stdout.isatty():  # for scripts: one feed a line, tab-separated
        for line in (headers, *lines):
            print("\t".join(line))
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for line in lines:
        table.add_row(*line)
    Console().print(table)
    return EXIT_OK


def _status(feed: Feed) -> str:
    if feed.last_error:
        return _("error ({failures}×): {error}").format(
            failures=feed.failures, error=feed.last_error
        )
    return feed.last_status or _("not fetched yet")


async def _feeds_remove(core: Core, args: argparse.Namespace) -> int:
    async with core.db.transaction() as session:
        feed = await find_feed(session, args.feed)
        if feed is None:
            raise CommandError(
                _("no feed {feed!r}: see `newsbot feeds list`").format(feed=args.feed)
            )
        await remove_feed(session, feed.id)
    print(
        _("removed feed {id}: {url} (its articles stay in the archive)").format(
            id=feed.id, url=feed.url
        )
    )
    return EXIT_OK


async def _feeds_import(core: Core, args: argparse.Namespace) -> int:
    try:
        document = args.file.read_bytes()
    except OSError as exc:
        raise CommandError(
            _("cannot read {file}: {reason}").format(file=args.file, reason=exc.strerror)
        ) from None
    # Bytes, never a path or URL: listparser would fetch a URL itself.
    parsed = listparser.parse(document)
    titles: dict[str, str | None] = {}  # canonical URL -> the list's title, first one wins
    for entry in parsed.feeds:
        if url := canonical_link(entry.get("url")):
            titles.setdefault(url, entry.get("title"))
    if not titles:
        raise CommandError(_("no feeds found in {file}").format(file=args.file))
    added = 0
    async with core.db.transaction() as session:
        known = {feed.url for feed in await list_feeds(session)}
        for url, title in titles.items():
            if url not in known:
                add_feed(session, url, name=title or None)
                added += 1
    print(
        _(
            "imported {added} feeds ({known} already watched); `newsbot poll --once` fetches them"
        ).format(added=added, known=len(titles) - added)
    )
    return EXIT_OK


async def _feeds_export(core: Core, args: argparse.Namespace) -> int:
    async with core.db.sessions() as session:
        feeds = await list_feeds(session)
    opml = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(opml, "head"), "title").text = "Newsbot feeds"
    body = ET.SubElement(opml, "body")
    for feed in feeds:
        outline = ET.SubElement(
            body,
            "outline",
            type="rss",
            text=feed.display_name,
            title=feed.display_name,
            xmlUrl=feed.url,
        )
        if feed.site_link:
            outline.set("htmlUrl", feed.site_link)
    ET.indent(opml)
    document = ET.tostring(opml, encoding="unicode", xml_declaration=True) + "\n"
    if args.output:
        args.output.write_text(document, encoding="utf-8")
    else:
        sys.stdout.write(document)
    return EXIT_OK


async def _poll(core: Core, args: argparse.Namespace) -> int:
    if args.once:
        summary = await _poll_once_with_progress(core)
        _print_summary(summary)
        return EXIT_OK
    await core.ingestor.watch()
    return EXIT_OK


async def _poll_once_with_progress(core: Core) -> PollSummary:
    if not sys.stderr.isatty():
        return await core.ingestor.poll()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    async with core.db.sessions() as session:
        total = len(await list_feeds(session))
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(_("polling feeds"), total=total)

        def advance(_outcome: FeedOutcome) -> None:
            progress.advance(task)

        return await core.ingestor.poll(on_progress=advance)


def _print_summary(summary: PollSummary) -> None:
    print(
        _("fetched {fetched}, unchanged {unchanged}, failed {failed}, new articles {new}").format(
            fetched=summary.count("fetched"),
            unchanged=summary.count("unchanged"),
            failed=summary.count("failed"),
            new=summary.new_articles,
        )
    )
    for outcome in sorted(summary.outcomes, key=lambda outcome: outcome.feed_id):
        if outcome.status == "failed":
            print(_("  feed {id} failed: {error}").format(id=outcome.feed_id, error=outcome.error))


async def _search(core: Core, args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise CommandError(_("empty query: give one or more words to search for"))
    # The engine turns anything the operator typed into plain terms: no query syntax.
    positions = query_terms(args.query)
    async with core.db.sessions() as session:
        hits = await search_articles(
            session,
            positions,
            limit=args.limit,
            offset=(args.page - 1) * args.limit,
            now=utcnow(),
        )
    zone = core.settings.zone
    for hit in hits:
        article = hit.article
        source = article.feed.display_name if article.feed else ""
        if args.json:
            record = {
                "id": article.id,
                "title": article.title,
                "link": article.link,
                "source": source,
                "published": article.published_at.isoformat(),
                "summary": article.summary,
                "categories": article.categories,
                "score": round(hit.score, 4),
            }
            print(json.dumps(record, ensure_ascii=False))
        else:
            when = article.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            print(f"{when}  {source}\n  {article.title}\n  {article.link or ''}")
    if not hits and not args.json:
        print(_("no articles match {query!r}").format(query=args.query))
    return EXIT_OK


@asynccontextmanager
async def _bot_api(settings: Settings) -> AsyncIterator[Bot]:
    """The Bot API as the bot itself; any failure it answers becomes one line."""
    token = _token(settings)
    # The failure is reported here, in one line: keep the library's own logging out of it.
    telegram_log = logging.getLogger("telegram")
    level = telegram_log.level
    telegram_log.setLevel(logging.CRITICAL)
    try:
        async with Bot(token, base_url=settings.api_url) as bot:
            yield bot
    except InvalidToken:
        raise CommandError(
            _(
                "NEWSBOT_TOKEN: the Bot API at {url} rejected the token; check it with @BotFather"
            ).format(url=settings.api_url)
        ) from None
    except TelegramError as exc:
        reason = exc.message.split(". Parsing the server response")[0].splitlines()[0][:200]
        raise CommandError(
            _("cannot use the Bot API at {url}: {reason}").format(
                url=settings.api_url, reason=reason
            )
        ) from None
    finally:
        telegram_log.setLevel(level)


def _chat_key(text: str) -> int | str:
    """A channel as the Bot API names it: its numeric id, or "@username"."""
    key = text.strip()
    for prefix in ("https://t.me/", "http://t.me/", "t.me/"):
        key = key.removeprefix(prefix)
    if key.lstrip("-").isdigit():
        return int(key)
    return key if key.startswith("@") else f"@{key}"


async def _find_channel(bot: Bot, text: str) -> ChatFullInfo:
    try:
        chat = await bot.get_chat(_chat_key(text))
    except (BadRequest, Forbidden):
        raise CommandError(
            _("unknown channel {channel}: check its @name or id").format(channel=text)
        ) from None
    if chat.type != ChatType.CHANNEL:
        raise CommandError(
            _("{channel} is not a channel (a group chooses its topics with /follow)").format(
                channel=text
            )
        )
    return chat


async def _channels_add(core: Core, args: argparse.Namespace) -> int:
    topics: list[ResolvedTopic] = []
    for phrase in args.topic:
        resolved = resolve(phrase, load_catalog())
        if isinstance(resolved, TopicRefusal):
            raise CommandError(
                _("cannot follow {topic!r}: {reason}").format(
                    topic=phrase, reason=resolved.message
                )
            )
        topics.append(resolved)
    async with _bot_api(core.settings) as bot:
        chat = await _find_channel(bot, args.channel)
        member = await bot.get_chat_member(chat.id, bot.id)
        # Telegram names can_post_messages for every administrator of a channel: absent, it
        # is not known to be refused.
        if not isinstance(member, ChatMemberAdministrator) or member.can_post_messages is False:
            raise CommandError(
                _(
                    "the bot is not an administrator of {channel} allowed to post: make it one "
                    "in the channel's settings, then try again"
                ).format(channel=args.channel)
            )
    title = chat.title or chat.username or str(chat.id)
    new_topics: list[str] = []
    async with core.db.transaction() as session:
        await upsert_chat(session, chat.id, kind="channel", title=title)
        for topic in topics:
            if await get_topic_by_key(session, topic.key) is None:
                new_topics.append(topic.label)
            stored = await upsert_topic(session, topic.key, topic.label)
            await add_subscription(session, chat.id, stored.id)
        await set_all_breaking(session, chat.id, not topics)
    if topics:
        labels = ", ".join(dict.fromkeys(topic.label for topic in topics))
        print(
            _("channel {title} ({id}) now follows: {topics}").format(
                title=title, id=chat.id, topics=labels
            )
        )
    else:
        print(
            _("channel {title} ({id}) now receives every breaking story").format(
                title=title, id=chat.id
            )
        )
    if new_topics:
        # A running bot builds its matcher from the stored topics when it starts.
        print(
            _("note: a running bot matches {topics} after it restarts").format(
                topics=", ".join(new_topics)
            )
        )
    return EXIT_OK


async def _channels_list(core: Core, _args: argparse.Namespace) -> int:
    lines = []
    async with core.db.sessions() as session:
        channels = await session.scalars(
            select(Chat)
            .where(Chat.kind == "channel", Chat.active.is_(True))
            .order_by(Chat.created_at, Chat.id)
        )
        for chat in channels.all():
            if chat.all_breaking:
                what = _("every breaking story")
            else:
                labels = [topic.label for topic in await list_chat_topics(session, chat.id)]
                what = ", ".join(labels) or _("nothing (no topics)")
            lines.append(f"{chat.id}\t{chat.title or ''}\t{what}")
    if not lines:
        print(_("no channels yet: add one with `newsbot channels add @name`"))
    for line in lines:
        print(line)
    return EXIT_OK


async def _channels_remove(core: Core, args: argparse.Namespace) -> int:
    key = _chat_key(args.channel)
    if isinstance(key, str):  # a @name: only Telegram knows its id
        async with _bot_api(core.settings) as bot:
            key = (await _find_channel(bot, args.channel)).id
    async with core.db.transaction() as session:
        chat = await get_chat(session, key)
        if chat is None or chat.kind != "channel" or not chat.active:
            raise CommandError(
                _("no channel {channel}: see `newsbot channels list`").format(channel=args.channel)
            )
        title = chat.title or str(chat.id)
        await stop_chat(session, chat.id)
    print(_("removed channel {title} ({id}): no more alerts go there").format(title=title, id=key))
    return EXIT_OK


async def _db_upgrade(core: Core, _args: argparse.Namespace) -> int:
    # open_core has already upgraded the schema.
    print(_("the database is up to date"))
    return EXIT_OK


async def _db_reindex(core: Core, _args: argparse.Namespace) -> int:
    done = after = 0
    while True:
        async with core.db.sessions() as session:
            batch = await list_article_texts(session, after, REINDEX_BATCH)
        if not batch:
            break
        # The terms ingestion stores (bot.indexing): the display title's and the summary's.
        terms = [(id_, index_text(title), index_text(summary)) for id_, title, summary in batch]
        async with core.db.transaction() as session:
            await set_article_terms(session, terms)
        done += len(batch)
        after = batch[-1][0]
    print(
        ngettext(
            "re-indexed {count} article (text engine {version})",
            "re-indexed {count} articles (text engine {version})",
            done,
        ).format(count=done, version=analyser_version())
    )
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Core, argparse.Namespace], Awaitable[int]]] = {
    "feeds add": _feeds_add,
    "feeds list": _feeds_list,
    "feeds remove": _feeds_remove,
    "feeds import": _feeds_import,
    "feeds export": _feeds_export,
    "channels add": _channels_add,
    "channels list": _channels_list,
    "channels remove": _channels_remove,
    "poll": _poll,
    "search": _search,
    "db upgrade": _db_upgrade,
    "db reindex": _db_reindex,
}
