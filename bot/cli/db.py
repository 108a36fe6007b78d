"""``newsbot db``: upgrade the schema, recompute the search terms."""

from __future__ import annotations

import argparse
import asyncio

from bot.app import Core
from bot.cli.common import EXIT_OK, _, ngettext, open_core_for_command, with_core
from bot.config import Settings
from bot.feeds.reindex import reindex_articles
from bot.text.normalise import analyser_version


def upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    """Apply the migrations and say what they did."""

    async def inside() -> int:
        async with open_core_for_command(settings, upgrade=False) as core:
            change = await core.db.upgrade()
            where = core.db.url.render_as_string(hide_password=True)
            reindexed = await reindex_articles(core.db) if change.reindex else None
        if change.before is None:
            print(
                _("created the database {url} (schema revision {revision})").format(
                    url=where, revision=change.after
                )
            )
        elif change.before == change.after:
            print(
                _("the database is up to date (schema revision {revision})").format(
                    revision=change.after
                )
            )
        else:
            print(
                _("upgraded the database from schema revision {before} to {after}").format(
                    before=change.before, after=change.after
                )
            )
        if reindexed is not None:
            print(_reindexed(reindexed))
        return EXIT_OK

    return asyncio.run(inside())


@with_core
async def reindex(core: Core, _args: argparse.Namespace) -> int:
    """Recompute every article's search terms with the current text engine."""
    done = await reindex_articles(core.db)
    print(_reindexed(done))
    return EXIT_OK


def _reindexed(count: int) -> str:
    return ngettext(
        "re-indexed {count} article (text engine {version})",
        "re-indexed {count} articles (text engine {version})",
        count,
    ).format(count=count, version=analyser_version())
