"""``newsbot search``: the archive's best matches, as lines or JSON."""

from __future__ import annotations

import argparse
import json
import math

from bot.app import Core
from bot.cli.common import EXIT_OK, CommandError, _, ngettext, with_core
from bot.text.normalise import query_terms
from storage.models import utcnow
from storage.search import count_matches, search_articles


@with_core
async def search(core: Core, args: argparse.Namespace) -> int:
    """Print one page of results; an empty page says why it is empty."""
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
        total = 0 if hits or args.page == 1 else await count_matches(session, positions)
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
    if hits or args.json:
        return EXIT_OK
    if total:
        pages = math.ceil(total / args.limit)
        print(
            ngettext(
                "page {page} is past the last: {query!r} has {count} page of results",
                "page {page} is past the last: {query!r} has {count} pages of results",
                pages,
            ).format(page=args.page, query=args.query, count=pages)
        )
    else:
        print(_("no articles match {query!r}").format(query=args.query))
    return EXIT_OK
