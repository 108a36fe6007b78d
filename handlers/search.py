"""Searching the archive (/search, paged with «السابق» / «التالي» buttons) and the latest
breaking alerts (/latest), in the reader's language.
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
from storage.alerts import list_latest_alerts
from storage.models import Article
from storage.search import Ranking, list_found_articles, rank_matches
from storage.ui_state import add_ui_state, get_ui_state

PAGE_SIZE = 5
LATEST_ALERTS = 5
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
    ids: tuple[int, ...]  # the ranked articles, best first
    more: bool  # older matches exist beyond those ranked

    def data(self) -> dict[str, Any]:
        """As stored (JSON)."""
        return {"query": self.query, "ids": list(self.ids), "more": self.more}

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Search:
        """From what :meth:`data` stored."""
        return cls(str(data["query"]), tuple(int(id_) for id_ in data["ids"]), bool(data["more"]))


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
            articles = await list_found_articles(session, ranking.ids[:PAGE_SIZE])
    if not ranking.ids:
        text = _("Nothing found for “{query}”. Try another spelling, or fewer words.").format(
            query=_shown(query, QUERY_SHOWN)
        )
        await message.reply_text(html.escape(text), parse_mode=ParseMode.HTML)
        return
    found = _Search(_shown(query, QUERY_SHOWN), ranking.ids, ranking.more)
    # A single page needs no buttons, so nothing to keep.
    state_id = await _remember(context, r.chat_id, found) if _pages(found) > 1 else ""
    text, markup = _page(context, r, state_id, found, 1, articles)
    await message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=markup, link_preview_options=_NO_PREVIEW
    )


async def turn_page(update: Update, context: Context) -> None:
    """A «السابق» / «التالي» button: show another page of the same search, in place."""
    query = update.callback_query
    assert query is not None  # noqa: S101 - registered for callback queries
    r = await reader(update, context)
    _ = r.gettext
    state_id, page = _parse(query.data or "")
    services = context.services
    found = None
    async with services.db.sessions() as session:
        if state_id:
            data = await get_ui_state(
                session, state_id, chat_id=r.chat_id, kind=_KIND, now=services.clock()
            )
            found = _Search.of(data) if data else None
        if found is not None:
            page = min(max(page, 1), _pages(found))
            shown = found.ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            articles = await list_found_articles(session, shown)
    if found is None:
        await query.answer(_("This search has expired: send /search again."))
        return
    text, markup = _page(context, r, state_id, found, page, articles)
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


def _pages(found: _Search) -> int:
    return max(1, math.ceil(len(found.ids) / PAGE_SIZE))


def _page(
    context: Context,
    r: Reader,
    state_id: str,
    found: _Search,
    page: int,
    articles: Sequence[Article],
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of results as Telegram HTML, with the buttons to the pages around it."""
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
    for article in articles:
        headline = read_headline(article.title, article.categories, services.markers).text
        source = article.feed.display_name if article.feed else ""
        lines += ["", *_item(r, headline, source, article.published_at, article.link, now)]
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


def _data(state_id: str, page: int) -> str:
    return f"search:{state_id}:{page}"


def _parse(data: str) -> tuple[str, int]:
    """The state id and page of a button's data ("search:<id>:<page>"); "" for none."""
    parts = data.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2].isdecimal():
        return "", 1
    return parts[1], int(parts[2])


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
