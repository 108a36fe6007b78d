"""``newsbot feeds``: add, list, remove, import and export the watched feeds."""

from __future__ import annotations

import argparse
import sys
from xml.etree import ElementTree as ET

import listparser

from bot.app import Core
from bot.cli.common import EXIT_OK, CommandError, _, ngettext, with_core
from bot.feeds.admin import (
    FeedAddError,
    FeedAddReason,
    add_feed_and_fetch,
    find_feed,
    storable_name,
)
from bot.feeds.links import canonical_link
from bot.feeds.parse import storable_link
from storage.feeds import add_feed, list_feeds, list_feeds_with_counts, remove_feed
from storage.models import Feed


@with_core
async def add(core: Core, args: argparse.Namespace) -> int:
    """Fetch a feed once, archive its items without alerting, and watch it."""
    try:
        added = await add_feed_and_fetch(
            core.db, core.ingestor, args.url, name=args.name, breaking=args.breaking
        )
    except FeedAddError as exc:
        raise CommandError(_feed_add_problem(exc)) from None
    print(
        ngettext(
            "added feed {id}: {title} ({count} item, archived without alerts)",
            "added feed {id}: {title} ({count} items, archived without alerts)",
            added.items,
        ).format(id=added.id, title=added.title, count=added.items)
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


@with_core
async def list_(core: Core, _args: argparse.Namespace) -> int:
    """The feeds with their status: a table on a terminal, tab-separated lines otherwise."""
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
    from rich.console import Console
    from rich.table import Table

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


@with_core
async def remove(core: Core, args: argparse.Namespace) -> int:
    """Stop watching a feed; its articles stay in the archive."""
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


@with_core
async def import_(core: Core, args: argparse.Namespace) -> int:
    """Watch every feed of an OPML subscription list not watched yet."""
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
        # Bounded as storage holds them: one over-long entry must not refuse the whole list.
        if url := storable_link(canonical_link(entry.get("url"))):
            titles.setdefault(url, entry.get("title"))
    if not titles:
        raise CommandError(_("no feeds found in {file}").format(file=args.file))
    added = 0
    async with core.db.transaction() as session:
        known = {feed.url for feed in await list_feeds(session)}
        for url, title in titles.items():
            if url not in known:
                add_feed(session, url, name=storable_name(title))
                added += 1
    print(
        ngettext(
            "imported {count} feed ({known} already watched); `newsbot poll --once` fetches it",
            "imported {count} feeds ({known} already watched); `newsbot poll --once` fetches them",
            added,
        ).format(count=added, known=len(titles) - added)
    )
    return EXIT_OK


@with_core
async def export(core: Core, args: argparse.Namespace) -> int:
    """The feeds as OPML, to a file or standard output."""
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
    if not args.output:
        sys.stdout.write(document)
        return EXIT_OK
    try:
        args.output.write_text(document, encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            _("cannot write {file}: {reason}").format(
                file=args.output, reason=exc.strerror or type(exc).__name__
            )
        ) from None
    print(
        ngettext(
            "wrote {count} feed to {file}", "wrote {count} feeds to {file}", len(feeds)
        ).format(count=len(feeds), file=args.output),
        file=sys.stderr,
    )
    return EXIT_OK
