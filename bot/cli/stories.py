"""``newsbot stories``: the stories of the last hours, newest first, as lines or JSON; with
``--regroup``, put the archive stored before stories were kept into stories."""

from __future__ import annotations

import argparse
import json
import math
from datetime import timedelta

from bot.app import Core
from bot.cli.common import EXIT_OK, CommandError, _, ngettext, say, with_core
from bot.feeds.stories import RegroupProgress, regroup
from storage.models import utcnow
from storage.stories import StoryListing, list_stories

DEFAULT_HOURS = 24.0


@with_core
async def stories(core: Core, args: argparse.Namespace) -> int:
    """Print the stories first seen in the last ``--since`` hours (after ``--regroup``)."""
    hours = _hours(args.since)
    if args.regroup:
        done = await regroup(core.db, core.settings.story_window, on_progress=_progress)
        print(
            _("regrouped: articles placed {articles}, new stories {stories}").format(
                articles=done.placed, stories=done.stories
            )
        )
        if args.since is None:
            return EXIT_OK
    async with core.db.sessions() as session:
        found = await list_stories(session, utcnow() - timedelta(hours=hours))
    if args.json:
        print(json.dumps([_record(story) for story in found], ensure_ascii=False, indent=1))
        return EXIT_OK
    zone = core.settings.zone
    if not found:
        since = (utcnow() - timedelta(hours=hours)).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        print(_("no stories first seen since {since}").format(since=since))
        return EXIT_OK
    for story in found:
        when = story.first_seen_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        count = ngettext("{count} article", "{count} articles", len(story.articles)).format(
            count=len(story.articles)
        )
        outlets = ngettext("{count} outlet", "{count} outlets", story.outlets).format(
            count=story.outlets
        )
        print(f"{when}  #{story.id}  {count}, {outlets}")
        for article in story.articles:
            print(f"  {article.feed} · {article.title}")
    return EXIT_OK


def _hours(given: str | None) -> float:
    """``--since`` as hours: a number, zero or more."""
    if given is None:
        return DEFAULT_HOURS
    try:
        hours = float(given)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or hours < 0:
        raise CommandError(
            _("--since expects a number of hours, zero or more (not {given!r})").format(
                given=given
            )
        )
    return hours


def _record(story: StoryListing) -> dict[str, object]:
    return {
        "id": story.id,
        "first_seen": story.first_seen_at.isoformat(),
        "articles": [
            {
                "id": article.id,
                "feed": article.feed,
                "title": article.title,
                "link": article.link,
                "published": article.published_at.isoformat(),
            }
            for article in story.articles
        ],
    }


def _progress(progress: RegroupProgress) -> None:
    say(
        _("regrouping: {read} of {total} articles read, {placed} placed").format(
            read=progress.read, total=progress.total, placed=progress.placed
        )
    )
