"""Searching the archive (/search, paged with «السابق» / «التالي» buttons) and the latest
breaking stories (/latest), in the reader's language.

Both show stories, not articles: /latest one line per story with how many other outlets
reported it; /search the best-ranked article of each story once, with «و3 مصادر أخرى» and a
button that lists the story's articles. A search is grouped once, when it is made, over
every match it ranked: each story keeps the place of its best article, so the pages are
the grouped list cut in fives and a story never shows on two pages.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from babel.dates import format_timedelta
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.delivery.render import alert_view
from bot.text.breaking import read_headline
from bot.text.normalise import query_terms
from handlers.context import Context, Reader, reader
from storage.alerts import AlertRecord, list_latest_alerts
from storage.models import Article
from storage.search import Ranking, list_found_articles, rank_matches
from storage.stories import (
    StoryArticle,
    count_outlets,
    get_alert_stories,
    get_story_ids,
    list_story_articles,
)
from storage.ui_state import add_ui_state, get_ui_state

PAGE_SIZE = 5
LATEST_STORIES = 5
# Alerts read to find the latest stories (a story may have had several: developments).
LATEST_ALERTS_READ = 40
# The articles a story's button lists at most.
STORY_SHOWN = 10
# How much of a headline a story's button repeats.
BUTTON_HEADLINE = 28
# How long a search's page buttons work; an older search's buttons say it expired.
KEPT_FOR = timedelta(hours=24)
# How much of the reader's query and of feed text a result list repeats.
QUERY_SHOWN = 60
TITLE_SHOWN = 300
SOURCE_SHOWN = 80
JUST_NOW = timedelta(minutes=1)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_KIND = "search"


@dataclass(frozen=True, slots=True)
class _Search:
    """A search a chat made, kept in the database so that any process can turn its pages:
    every page is ranked once, with the first, so results never shift between pages."""

    query: str  # as shown in the header
    ids: tuple[int, ...]  # the best ranked article of each story, best first
    more: bool  # older matches exist beyond those ranked
    stories: tuple[int, ...] = ()  # each one's story (0: in none), beside ``ids``

    def data(self) -> dict[str, Any]:
        """As stored (JSON)."""
        return {
            "query": self.query,
            "ids": list(self.ids),
            "more": self.more,
            "stories": list(self.stories),
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Search:
        """From what :meth:`data` stored."""
        ids = tuple(int(id_) for id_ in data["ids"])
        stories = tuple(int(story) for story in data.get("stories", ())) or (0,) * len(ids)
        return cls(str(data["query"]), ids, bool(data["more"]), stories)

    def story_of(self, article_id: int) -> int:
        """The story of one of the articles found (0: none)."""
        return dict(zip(self.ids, self.stories, strict=True)).get(article_id, 0)


def _grouped(ranked: Sequence[int], story_of: dict[int, int]) -> tuple[list[int], list[int]]:
    """The ranked articles with only the best of each story, and each one's story."""
    ids, stories, seen = [], [], set()
    for article_id in ranked:
        story = story_of.get(article_id, 0)
        if story and story in seen:
            continue
        seen.add(story)
        ids.append(article_id)
        stories.append(story)
    return ids, stories


async def search(update: Update, context: Context) -> None:
    """/search QUERY: the best matching articles, a page at a time."""
    message = update.effective_message
    assert message is not None  # noqa: S101 - registered for messages
    r = await reader(update, context)
    _ = r.gettext
    query = " ".join(context.args or [])
    if not query:
        await message.reply_text(
            _("Write what to look for after the command, for example: {example}").format(
                example="/search كورسك"
            )
        )
        return
    # The engine reads any text as plain words (no query syntax) and caps its length.
    positions = query_terms(query)
    services = context.services
    ranking = Ranking((), more=False)
    if positions:
        async with services.db.sessions() as session:
            ranking = await rank_matches(session, positions, now=services.clock())
            ids, stories = _grouped(ranking.ids, await get_story_ids(session, ranking.ids))
            found = _Search(_shown(query, QUERY_SHOWN), tuple(ids), ranking.more, tuple(stories))
            articles = await list_found_articles(session, found.ids[:PAGE_SIZE])
            others = await _others(session, found, articles)
    if not ranking.ids:
        text = _("Nothing found for “{query}”. Try another spelling, or fewer words.").format(
            query=_shown(query, QUERY_SHOWN)
        )
        await message.reply_text(html.escape(text), parse_mode=ParseMode.HTML)
        return
    # A single page of stories reported by one outlet each needs no buttons: nothing to keep.
    needed = _pages(found) > 1 or any(others.values())
    state_id = await _remember(context, r.chat_id, found) if needed else ""
    text, markup = _page(context, r, state_id, found, 1, articles, others)
    await message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=markup, link_preview_options=_NO_PREVIEW
    )


async def turn_page(update: Update, context: Context) -> None:
    """A «السابق» / «التالي» button: show another page of the same search, in place."""
    query = update.callback_query
    assert query is not None  # noqa: S101 - registered for callback queries
    r = await reader(update, context)
    _ = r.gettext
    state_id, page, story = _parse(query.data or "")
    services = context.services
    found = None
    async with services.db.sessions() as session:
        if state_id:
            data = await get_ui_state(
                session, state_id, chat_id=r.chat_id, kind=_KIND, now=services.clock()
            )
            found = _Search.of(data) if data else None
        if found is not None and story and story in found.stories:
            listed = await list_story_articles(session, story, limit=STORY_SHOWN)
            outlets = (await count_outlets(session, [story]))[story]
        elif found is not None:
            story = 0
            page = min(max(page, 1), _pages(found))
            shown = found.ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            articles = await list_found_articles(session, shown)
            others = await _others(session, found, articles)
    if found is None:
        await query.answer(_("This search has expired: send /search again."))
        return
    markup: InlineKeyboardMarkup | None
    if story:
        text, markup = _story(context, r, state_id, found, story, listed, outlets)
    else:
        text, markup = _page(context, r, state_id, found, page, articles, others)
    try:
        await query.edit_message_text(
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            link_preview_options=_NO_PREVIEW,
        )
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():  # the same page pressed twice
            raise
    finally:
        await query.answer()


async def latest(update: Update, context: Context) -> None:
    """/latest: the most recent breaking stories, newest first, each once, with how many
    other outlets reported it."""
    message = update.effective_message
    assert message is not None  # noqa: S101 - registered for messages
    r = await reader(update, context)
    _ = r.gettext
    services = context.services
    async with services.db.sessions() as session:
        records = await list_latest_alerts(session, LATEST_ALERTS_READ)
        story_of = await get_alert_stories(session, [record.id for record in records])
        # Each story once, where its newest alert puts it, shown by its first alert read.
        chosen: dict[int, AlertRecord] = {}
        for record in records:
            key = story_of.get(record.id, -record.id)  # an alert of no story stands alone
            if key in chosen or len(chosen) < LATEST_STORIES:
                chosen[key] = record
        outlets = await count_outlets(session, [key for key in chosen if key > 0])
    if not chosen:
        await message.reply_text(_("No breaking news yet: alerts appear here once they are sent."))
        return
    now = services.clock()
    heading = _("Latest breaking news")
    lines = [f"<b>{html.escape(heading)}</b>"]
    for key, record in chosen.items():
        view = alert_view(
            record, language=r.language, markers=services.markers, catalog=services.topics.catalog
        )
        lines += ["", *_item(r, view.headline, view.source, view.published, view.link, now)]
        others = max(0, outlets.get(key, 0) - 1)
        if others:
            lines.append(html.escape(_reported_by(r, others)))
    await message.reply_text(
        "\n".join(lines), parse_mode=ParseMode.HTML, link_preview_options=_NO_PREVIEW
    )


def _reported_by(r: Reader, others: int) -> str:
    """«ونقلته 3 مصادر أخرى»."""
    return r.ngettext(
        "and {count} other outlet reported it", "and {count} other outlets reported it", others
    ).format(count=others)


async def _others(
    session: AsyncSession, found: _Search, articles: Sequence[Article]
) -> dict[int, int]:
    """For each article shown, how many outlets other than its own reported its story."""
    stories = {article.id: found.story_of(article.id) for article in articles}
    besides = {story: article.feed_id for article in articles if (story := stories[article.id])}
    counts = await count_outlets(session, besides, besides=besides)
    return {article.id: counts.get(stories[article.id], 0) for article in articles}


def _pages(found: _Search) -> int:
    return max(1, math.ceil(len(found.ids) / PAGE_SIZE))


def _page(
    context: Context,
    r: Reader,
    state_id: str,
    found: _Search,
    page: int,
    articles: Sequence[Article],
    others: dict[int, int],
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of results as Telegram HTML, with a button for each story several outlets
    reported and the buttons to the pages around it."""
    _, ngettext = r.gettext, r.ngettext
    ranked, pages = len(found.ids), _pages(found)
    if found.more:
        header = ngettext(
            "The {count} newest result for “{query}”",
            "The {count} newest results for “{query}”",
            ranked,
        )
    else:
        header = ngettext("{count} result for “{query}”", "{count} results for “{query}”", ranked)
    lines = [f"<b>{html.escape(header.format(count=ranked, query=found.query))}</b>"]
    services = context.services
    now = services.clock()
    rows = []
    for article in articles:
        headline = read_headline(article.title, article.categories, services.markers).text
        source = article.feed.display_name if article.feed else ""
        lines += ["", *_item(r, headline, source, article.published_at, article.link, now)]
        if count := others.get(article.id, 0):
            # TRANSLATORS: after a search result: «و3 مصادر أخرى».
            more = ngettext("and {count} other outlet", "and {count} other outlets", count)
            lines.append(html.escape(more.format(count=count)))
            # TRANSLATORS: a button listing every outlet's article of one story.
            label = _("All sources: {headline}").format(headline=_shown(headline, BUTTON_HEADLINE))
            story = found.story_of(article.id)
            rows.append([InlineKeyboardButton(label, callback_data=_data(state_id, page, story))])
    if pages > 1:
        lines += ["", html.escape(_("Page {page} of {pages}").format(page=page, pages=pages))]
    buttons = []
    if page > 1:
        # TRANSLATORS: a button that shows the previous page of search results.
        buttons.append(
            InlineKeyboardButton(_("Previous"), callback_data=_data(state_id, page - 1))
        )
    if page < pages:
        # TRANSLATORS: a button that shows the next page of search results.
        buttons.append(InlineKeyboardButton(_("Next"), callback_data=_data(state_id, page + 1)))
    if buttons:
        rows.append(buttons)
    return "\n".join(lines), InlineKeyboardMarkup(rows) if rows else None


def _story(
    context: Context,
    r: Reader,
    state_id: str,
    found: _Search,
    story: int,
    articles: Sequence[StoryArticle],
    outlets: int,
) -> tuple[str, InlineKeyboardMarkup]:
    """A story's articles, oldest first, with a button back to the page it was on."""
    _, ngettext = r.gettext, r.ngettext
    header = ngettext("Reported by {count} outlet", "Reported by {count} outlets", outlets).format(
        count=outlets
    )
    lines = [f"<b>{html.escape(header)}</b>"]
    services = context.services
    now = services.clock()
    for article in articles:
        headline = read_headline(article.title, article.categories, services.markers).text
        lines += ["", *_item(r, headline, article.feed, article.published_at, article.link, now)]
    page = found.stories.index(story) // PAGE_SIZE + 1
    # TRANSLATORS: a button back from a story's sources to the search results.
    back = InlineKeyboardButton(_("Back to the results"), callback_data=_data(state_id, page))
    return "\n".join(lines), InlineKeyboardMarkup([[back]])


def _item(
    r: Reader, headline: str, source: str, published: datetime, link: str | None, now: datetime
) -> list[str]:
    """One story in a list: the headline in bold, then source · how long ago · link."""
    _ = r.gettext
    details = [
        html.escape(part) for part in (_shown(source, SOURCE_SHOWN), _ago(r, published, now))
    ]
    if link:
        details.append(
            f'<a href="{html.escape(link, quote=True)}">{html.escape(_("Read more"))}</a>'
        )
    return [
        f"<b>{html.escape(_shown(headline, TITLE_SHOWN))}</b>",
        " · ".join(part for part in details if part),
    ]


def _ago(r: Reader, when: datetime, now: datetime) -> str:
    """How long before ``now`` this was, in the reader's language («قبل 3 ساعات»)."""
    delta = when - now
    if delta > -JUST_NOW:  # a feed's clock a little ahead of ours is not "in 2 minutes"
        return r.gettext("just now")
    return format_timedelta(delta, add_direction=True, locale=r.language)


def _shown(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _data(state_id: str, page: int, story: int = 0) -> str:
    return f"search:{state_id}:{page}:{story}" if story else f"search:{state_id}:{page}"


def _parse(data: str) -> tuple[str, int, int]:
    """The state id, page and story (0: the page itself) of a button's data
    ("search:<id>:<page>" or "search:<id>:<page>:<story>"); "" for none."""
    parts = data.split(":")
    if len(parts) not in (3, 4) or not parts[1] or not all(p.isdecimal() for p in parts[2:]):
        return "", 1, 0
    return parts[1], int(parts[2]), int(parts[3]) if len(parts) == 4 else 0


async def _remember(context: Context, chat_id: int, found: _Search) -> str:
    """Keep the search for its buttons, in the database (any process may get the press);
    its id."""
    now = context.services.clock()

    async def keep(session: AsyncSession) -> str:
        return await add_ui_state(
            session,
            chat_id=chat_id,
            kind=_KIND,
            data=found.data(),
            now=now,
            expires_at=now + KEPT_FOR,
        )

    return await context.services.writer.run(keep)


__all__ = ["latest", "search", "turn_page"]
