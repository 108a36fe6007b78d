"""Searching the archive (/search, paged with «السابق» / «التالي» buttons) and the latest
breaking alerts (/latest), in the reader's language.
"""

from __future__ import annotations

import html
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from babel.dates import format_timedelta
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.delivery.render import alert_view
from bot.text.breaking import read_headline
from bot.text.normalise import query_terms
from handlers.context import Context, Reader, reader
from storage.alerts import list_latest_alerts
from storage.search import SEARCH_WINDOW, count_matches, search_articles

PAGE_SIZE = 5
LATEST_ALERTS = 5
# Searches each chat keeps for its page buttons; an older search's buttons say it expired.
KEPT_SEARCHES = 20
# How much of the reader's query and of feed text a result list repeats.
QUERY_SHOWN = 60
TITLE_SHOWN = 300
SOURCE_SHOWN = 80
JUST_NOW = timedelta(minutes=1)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(frozen=True, slots=True)
class _Search:
    """A search a chat made, kept so its buttons can turn the pages."""

    query: str
    positions: list[tuple[str, ...]]
    now: datetime  # every page is ranked as of the first, so results never shift between pages
    matches: int  # counted up to one past what search ranks


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
    now = services.clock()
    matches = 0
    if positions:
        async with services.db.sessions() as session:
            matches = await count_matches(session, positions, cap=SEARCH_WINDOW + 1)
    if not matches:
        text = _("Nothing found for “{query}”. Try another spelling, or fewer words.").format(
            query=_shown(query, QUERY_SHOWN)
        )
        await message.reply_text(html.escape(text), parse_mode=ParseMode.HTML)
        return
    found = _Search(query, positions, now, matches)
    search_id = _remember(context, found)
    text, markup = await _page(context, r, search_id, found, 1)
    await message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=markup, link_preview_options=_NO_PREVIEW
    )


async def turn_page(update: Update, context: Context) -> None:
    """A «السابق» / «التالي» button: show another page of the same search, in place."""
    query = update.callback_query
    assert query is not None  # noqa: S101 - registered for callback queries
    r = await reader(update, context)
    _ = r.gettext
    search_id, page = _parse(query.data or "")
    found = _searches(context).get(search_id)
    if found is None:
        await query.answer(_("This search has expired: send /search again."))
        return
    text, markup = await _page(context, r, search_id, found, page)
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
    """/latest: the most recent breaking alerts, newest first."""
    message = update.effective_message
    assert message is not None  # noqa: S101 - registered for messages
    r = await reader(update, context)
    _ = r.gettext
    services = context.services
    async with services.db.sessions() as session:
        records = await list_latest_alerts(session, LATEST_ALERTS)
    if not records:
        await message.reply_text(_("No breaking news yet: alerts appear here once they are sent."))
        return
    now = services.clock()
    heading = _("Latest breaking news")
    lines = [f"<b>{html.escape(heading)}</b>"]
    for record in records:
        view = alert_view(
            record, language=r.language, markers=services.markers, catalog=services.topics.catalog
        )
        lines += ["", *_item(r, view.headline, view.source, view.published, view.link, now)]
    await message.reply_text(
        "\n".join(lines), parse_mode=ParseMode.HTML, link_preview_options=_NO_PREVIEW
    )


async def _page(
    context: Context, r: Reader, search_id: int, found: _Search, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of results as Telegram HTML, with the buttons to the pages around it."""
    _, ngettext = r.gettext, r.ngettext
    ranked = min(found.matches, SEARCH_WINDOW)
    pages = max(1, math.ceil(ranked / PAGE_SIZE))
    page = min(max(page, 1), pages)
    services = context.services
    async with services.db.sessions() as session:
        hits = await search_articles(
            session,
            found.positions,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            now=found.now,
        )
    query = _shown(found.query, QUERY_SHOWN)
    if found.matches > SEARCH_WINDOW:
        header = ngettext(
            "The {count} newest result for “{query}”",
            "The {count} newest results for “{query}”",
            ranked,
        )
    else:
        header = ngettext("{count} result for “{query}”", "{count} results for “{query}”", ranked)
    lines = [f"<b>{html.escape(header.format(count=ranked, query=query))}</b>"]
    now = services.clock()
    for hit in hits:
        article = hit.article
        headline = read_headline(article.title, article.categories, services.markers).text
        source = article.feed.display_name if article.feed else ""
        lines += ["", *_item(r, headline, source, article.published_at, article.link, now)]
    if pages > 1:
        lines += ["", html.escape(_("Page {page} of {pages}").format(page=page, pages=pages))]
    buttons = []
    if page > 1:
        # TRANSLATORS: a button that shows the previous page of search results.
        buttons.append(
            InlineKeyboardButton(_("Previous"), callback_data=_data(search_id, page - 1))
        )
    if page < pages:
        # TRANSLATORS: a button that shows the next page of search results.
        buttons.append(InlineKeyboardButton(_("Next"), callback_data=_data(search_id, page + 1)))
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


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


def _data(search_id: int, page: int) -> str:
    return f"search:{search_id}:{page}"


def _parse(data: str) -> tuple[int, int]:
    """The search id and page of a button's data ("search:<id>:<page>"); id 0 is none."""
    parts = data.split(":")
    if len(parts) != 3 or not parts[1].isdecimal() or not parts[2].isdecimal():
        return 0, 1
    return int(parts[1]), int(parts[2])


def _searches(context: Context) -> OrderedDict[int, _Search]:
    chat_data: dict[Any, Any] | None = context.chat_data
    if chat_data is None:
        return OrderedDict()
    searches: OrderedDict[int, _Search] = chat_data.setdefault("searches", OrderedDict())
    return searches


def _remember(context: Context, found: _Search) -> int:
    """Keep the search for its buttons; its id, counting up within the chat."""
    chat_data = context.chat_data
    searches = _searches(context)
    if chat_data is None:
        return 0
    search_id: int = chat_data.get("next_search", 1)
    chat_data["next_search"] = search_id + 1
    searches[search_id] = found
    while len(searches) > KEPT_SEARCHES:
        searches.popitem(last=False)
    return search_id


__all__ = ["latest", "search", "turn_page"]
