"""Rendering a breaking-news alert as a Telegram HTML message, in the reader's language.

The label comes first and in Arabic for Arabic readers (Telegram takes a message's
direction from its first strong character), every piece of feed text is escaped after
translation, and the message never passes Telegram's 4,096 characters: the summary is
shortened, never the markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from bot.i18n import translator
from bot.text.breaking import DEFAULT_MARKERS, read_headline
from bot.text.topics import PHRASE_PREFIX, Catalog, load_catalog
from storage.alerts import AlertRecord

TELEGRAM_LIMIT = 4096  # characters after entity parsing, counted in UTF-16 units
SUMMARY_SENTENCES = 2
SUMMARY_MAX = 600
_SENTENCE_END = re.compile(r"(?<=[.!؟?…])\s+")
_HASHTAG_JUNK = re.compile(r"[^\w]+")


@dataclass(frozen=True, slots=True)
class AlertView:
    """What an alert shows, however it came about (a feed item or an editor's words)."""

    headline: str
    summary: str
    source: str
    published: datetime
    link: str | None
    topics: Sequence[str] = ()


def render_alert(alert: AlertView, *, language: str, zone: ZoneInfo) -> str:
    """The alert as Telegram HTML, within Telegram's length limit."""
    _ = translator(language).gettext
    # TRANSLATORS: a Babel date pattern (d day, MMMM month name, HH:mm time); keep letters.
    pattern = _("d MMMM, HH:mm")
    when = format_datetime(alert.published, format=pattern, tzinfo=zone, locale=language)
    # TRANSLATORS: the label that opens every breaking-news alert; keep it short.
    label = _("BREAKING")
    lines = [f"{html.escape(label)} | <b>{html.escape(alert.headline)}</b>", ""]
    summary_at = len(lines)
    footer = [html.escape(_("Source: {source} · {time}").format(source=alert.source, time=when))]
    if alert.link:
        more = html.escape(_("Read more"))
        footer.append(f'<a href="{html.escape(alert.link, quote=True)}">{more}</a>')
    tags = " ".join(tag for tag in map(hashtag, alert.topics) if tag)
    if tags:
        footer.append(html.escape(tags))
    summary = first_sentences(alert.summary)
    while True:
        body = lines[:summary_at] + ([html.escape(summary), ""] if summary else []) + footer
        text = "\n".join(body)
        if _visible_length(text) <= TELEGRAM_LIMIT or not summary:
            break
        summary = _shorten(summary, _visible_length(text) - TELEGRAM_LIMIT)
    return text


def alert_view(
    record: AlertRecord,
    *,
    language: str,
    markers: Sequence[str] = DEFAULT_MARKERS,
    catalog: Catalog | None = None,
) -> AlertView:
    """What a stored alert shows a reader of this language."""
    _ = translator(language).gettext
    headline = read_headline(record.title, record.categories, markers).text
    return AlertView(
        headline=headline,
        summary=record.summary,
        # TRANSLATORS: the source named on an alert an editor wrote by hand.
        source=record.source or _("the newsroom"),
        published=record.published,
        link=record.link,
        topics=[topic_label(key, language, catalog) for key in record.topics],
    )


def topic_label(key: str, language: str, catalog: Catalog | None = None) -> str:
    """A topic's name for readers of this language (a free phrase is its own name)."""
    if key.startswith(PHRASE_PREFIX):
        return key.removeprefix(PHRASE_PREFIX)
    topic = (catalog or load_catalog()).get(key)
    if topic is None:
        return key
    return topic.en if language == "en" else topic.ar


def is_quiet(quiet_from: int | None, quiet_to: int | None, minute: int) -> bool:
    """Whether ``minute`` (after local midnight) falls in the quiet hours (may span midnight)."""
    if quiet_from is None or quiet_to is None or quiet_from == quiet_to:
        return False
    if quiet_from < quiet_to:
        return quiet_from <= minute < quiet_to
    return minute >= quiet_from or minute < quiet_to


def first_sentences(text: str, count: int = SUMMARY_SENTENCES, limit: int = SUMMARY_MAX) -> str:
    """The first sentences of a summary, at most ``limit`` characters, cut at a word."""
    sentences = _SENTENCE_END.split(text.strip())
    short = " ".join(sentences[:count])
    return short if len(short) <= limit else _shorten(short, len(short) - limit)


def hashtag(topic: str) -> str:
    """A topic label as a hashtag: #كوريا_الشمالية."""
    words = [word for word in _HASHTAG_JUNK.split(topic) if word]
    return "#" + "_".join(words) if words else ""


def _shorten(text: str, by: int) -> str:
    """``text`` at least ``by`` characters shorter (plus room for "…"), cut between words."""
    keep = max(0, len(text) - by - 1)
    cut = text[:keep].rsplit(" ", 1)[0] if " " in text[:keep] else text[:keep]
    return cut.rstrip() + "…" if cut else ""


def _visible_length(markup: str) -> int:
    """Telegram's count: the text without tags, entities decoded, in UTF-16 units."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", markup))
    return len(plain.encode("utf-16-le")) // 2
