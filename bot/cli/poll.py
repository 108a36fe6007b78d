"""``newsbot poll``: fetch the feeds without running the bot, once or until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from bot.app import Core
from bot.cli.common import EXIT_OK, _, ngettext, open_core_for_command, say, with_core
from bot.config import Settings
from bot.feeds.ingest import FeedOutcome, PollSummary
from storage.feeds import list_feeds

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def poll(settings: Settings, args: argparse.Namespace) -> int:
    """``--once``: every feed once, then a summary; otherwise each feed when it is due,
    a line for each feed with news or a failure, until SIGINT or SIGTERM."""
    if args.once:
        return _poll_once(settings, args)
    return asyncio.run(_watch(settings))


@with_core
async def _poll_once(core: Core, _args: argparse.Namespace) -> int:
    summary = await _poll_once_with_progress(core)
    _print_summary(summary)
    return EXIT_OK


async def _poll_once_with_progress(core: Core) -> PollSummary:
    if not sys.stderr.isatty():
        return await core.ingestor.poll()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

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


async def _watch(settings: Settings) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stopping.set)
    try:
        async with open_core_for_command(settings) as core:
            async with core.db.sessions() as session:
                feeds = len(await list_feeds(session))
            say(
                ngettext(
                    "polling {count} feed, each every {seconds} s; Ctrl-C stops",
                    "polling {count} feeds, each every {seconds} s; Ctrl-C stops",
                    feeds,
                ).format(count=feeds, seconds=settings.poll_interval)
            )
            watching = asyncio.create_task(core.ingestor.watch(on_progress=_report))
            stopped = asyncio.create_task(stopping.wait())
            await asyncio.wait({watching, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if watching.done():
                watching.result()  # the watcher ended by itself: say why
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)
    say(_("stopped"))
    return EXIT_OK


def _report(outcome: FeedOutcome) -> None:
    """A line for each poll that brought news or failed; unchanged feeds stay quiet."""
    if outcome.status == "failed":
        say(_("feed {id} failed: {error}").format(id=outcome.feed_id, error=outcome.error))
    elif outcome.new_ids:
        say(
            ngettext(
                "feed {id} ({title}): {count} new article",
                "feed {id} ({title}): {count} new articles",
                len(outcome.new_ids),
            ).format(id=outcome.feed_id, title=outcome.title, count=len(outcome.new_ids))
        )
