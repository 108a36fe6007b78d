"""``newsbot db``: upgrade the schema, recompute the search terms."""

from __future__ import annotations

import argparse
import asyncio

from bot.app import Core
from bot.cli.common import EXIT_OK, _, ngettext, open_core_for_command, with_core
from bot.config import Settings
from bot.text import analyser_version, index_text
from storage.articles import list_article_texts, set_article_terms

REINDEX_BATCH = 2_000


def upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    """Apply the migrations and say what they did."""

    async def inside() -> int:
        async with open_core_for_command(settings, upgrade=False) as core:
            change = await core.db.upgrade()
            where = core.db.url.render_as_string(hide_password=True)
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
        return EXIT_OK

    return asyncio.run(inside())


@with_core
async def reindex(core: Core, _args: argparse.Namespace) -> int:
    """Recompute every article's search terms with the current text engine."""
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
