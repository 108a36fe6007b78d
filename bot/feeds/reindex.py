"""Recomputing the stored articles' search terms after the text engine changed (and after a
migration that asks for it: revisions import nothing of the engine)."""

from __future__ import annotations

from bot.text.normalise import index_text
from storage.articles import list_article_texts, set_article_terms
from storage.db import Database

BATCH = 2_000


async def reindex_articles(db: Database) -> int:
    """Give every article the terms ingestion would store today; how many were done."""
    done = after = 0
    while True:
        async with db.sessions() as session:
            batch = await list_article_texts(session, after, BATCH)
        if not batch:
            return done
        # The terms ingestion stores (bot.feeds.indexing): the display title's and summary's.
        terms = [(id_, index_text(title), index_text(summary)) for id_, title, summary in batch]
        async with db.transaction() as session:
            await set_article_terms(session, terms)
        done += len(batch)
        after = batch[-1][0]
