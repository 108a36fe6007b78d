"""Rendering a breaking-news alert as a Telegram HTML message, in the reader's language.

The label comes first and in Arabic for Arabic readers (Telegram takes a message's
direction from its first strong character), every piece of feed text is escaped after
translation, and the message never passes Telegram's 4,096 characters: every part is
bounded (headline, source, a few of the reader's own topics, a link Telegram accepts or
none) and the summary is shortened, never the markup.
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Collection, Iterable, Sequence
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
# The other parts' bounds, in UTF-16 units like Telegram's limit. Together they stay far
# within it, so only the summary ever needs shortening. An editor's alert is its headline
# (up to 1,000 characters, handlers/editor.py): the headline's bound leaves it whole unless
# it is thick with emoji (two units each).
HEADLINE_MAX = 1000
SOURCE_MAX = 100
MAX_TAGS = 3  # hashtags per reader
# Outlets named as confirming a story: a few, each a bounded name (its link is markup, not
# counted by Telegram), so the line stays far within the limit too.
MAX_CONFIRMATIONS = 8
TAG_MAX = 40
# Telegram refuses the whole message for a link it cannot parse; it names no length limit,
# so links are held to the longest the archive stores (storage.models.Article.link).
LINK_MAX = 2048
_SENTENCE_END = re.compile(r"(?<=[.!؟?…])\s+")
_HASHTAG_JUNK = re.compile(r"[^\w]+")
_LINK = re.compile(r"(?i)(https?)://([^/?#]*)(.*)", re.DOTALL)
_LINK_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")
# What TDLib's parse_url allows in a host besides non-ASCII letters and %XX escapes.
_HOST_CHAR = re.compile(r"[a-z0-9.\-_!$,~*'();&+=]|%[0-9a-f]{2}|[^\x00-\x7f]")


@dataclass(frozen=True, slots=True)
class AlertView:
    """What an alert shows, however it came about (a feed item or an editor's words)."""

    headline: str
    summary: str
    source: str
    published: datetime
    link: str | None
    topics: Sequence[str] = ()  # the labels of the matched topics this reader follows
    # The other outlets that reported the story, in order: (name, link of their article).
    confirmed_by: Sequence[tuple[str, str | None]] = ()
    development: bool = False  # a later article that adds to a story the reader was told of


def render_alert(alert: AlertView, *, language: str, zone: ZoneInfo) -> str:
    """The alert as Telegram HTML, within Telegram's length limit."""
    _ = translator(language).gettext
    # TRANSLATORS: a Babel date pattern (d day, MMMM month name, HH:mm time); keep letters.
    pattern = _("d MMMM, HH:mm")
    when = format_datetime(alert.published, format=pattern, tzinfo=zone, locale=language)
    # TRANSLATORS: the label that opens every breaking-news alert; keep it short.
    label = _("BREAKING")
    if alert.development:
        # TRANSLATORS: the label of news that develops a story already alerted (a new
        # toll, a reaction), sent as a reply to the first alert; keep it short.
        label = _("UPDATE")
    headline = clip(alert.headline, HEADLINE_MAX)
    lines = [f"{html.escape(label)} | <b>{html.escape(headline)}</b>", ""]
    summary_at = len(lines)
    source = clip(alert.source, SOURCE_MAX)
    footer = [html.escape(_("Source: {source} · {time}").format(source=source, time=when))]
    link = usable_link(alert.link)
    if link:
        more = html.escape(_("Read more"))
        footer.append(f'<a href="{html.escape(link, quote=True)}">{more}</a>')
    tags = " ".join(hashtags(alert.topics))
    if tags:
        footer.append(html.escape(tags))
    confirmed = confirmations(alert.confirmed_by, language)
    if confirmed:
        footer.insert(1, confirmed)
    summary = first_sentences(alert.summary)
    while True:
        body = lines[:summary_at] + ([html.escape(summary), ""] if summary else []) + footer
        text = "\n".join(body)
        if _visible_length(text) <= TELEGRAM_LIMIT or not summary:
            break
        summary = _shorten(summary, _visible_length(text) - TELEGRAM_LIMIT)
    return text


def confirmations(outlets: Sequence[tuple[str, str | None]], language: str) -> str:
    """The line naming the other outlets that reported the story, each linked to its
    article when Telegram accepts the link (HTML; empty without outlets)."""
    if not outlets:
        return ""
    _ = translator(language).gettext
    named: list[str] = []
    for name, link in outlets[:MAX_CONFIRMATIONS]:
        shown = html.escape(clip(" ".join(name.split()), SOURCE_MAX)) or html.escape("?")
        usable = usable_link(link)
        named.append(
            f'<a href="{html.escape(usable, quote=True)}">{shown}</a>' if usable else shown
        )
    # TRANSLATORS: separates the names of news outlets in a list.
    separator = html.escape(_(", "))
    # TRANSLATORS: {outlets} is a list of news outlets that reported the same story.
    line = html.escape(_("Also confirmed by: {outlets}"))
    return line.format(outlets=separator.join(named))


def alert_view(
    record: AlertRecord,
    *,
    language: str,
    markers: Sequence[str] = DEFAULT_MARKERS,
    catalog: Catalog | None = None,
    followed: Collection[str] = (),
    confirmed_by: Sequence[tuple[str, str | None]] = (),
    development: bool = False,
) -> AlertView:
    """What a stored alert shows a reader of this language who follows the topic keys
    ``followed``: of the topics it matched, only theirs; with the other outlets that
    confirmed its story, and as a development of it if it is one."""
    _ = translator(language).gettext
    headline = read_headline(record.title, record.categories, markers).text
    return AlertView(
        headline=headline,
        summary=record.summary,
        # TRANSLATORS: the source named on an alert an editor wrote by hand.
        source=record.source or _("the newsroom"),
        published=record.published,
        link=record.link,
        topics=[topic_label(key, language, catalog) for key in record.topics if key in followed],
        confirmed_by=confirmed_by,
        development=development,
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


def hashtags(topics: Iterable[str], limit: int = MAX_TAGS) -> list[str]:
    """The first ``limit`` distinct hashtags of these topic labels, each at most TAG_MAX."""
    tags: list[str] = []
    for topic in topics:
        tag = _cut_tag(hashtag(topic))
        if tag and tag not in tags:
            tags.append(tag)
            if len(tags) == limit:
                break
    return tags


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-16 units: cut with "…", between words when one ends
    in the last third."""
    if _units(text) <= limit:
        return text
    end = _fit(text, limit - 1)  # room for the "…"
    cut = text[:end]
    space = cut.rfind(" ")
    if space > end * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + "…"


def usable_link(link: str | None) -> str | None:
    """The link if Telegram accepts it for a text link (TDLib's parse_url and check_link:
    http or https, a dotted or IPv6 host, a valid port) and it is at most LINK_MAX; else
    None, since a link Telegram refuses takes the whole message with it."""
    if not link or len(link) > LINK_MAX or _LINK_SPACE.search(link):
        return None
    found = _LINK.fullmatch(link)
    if found is None:
        return None
    host_port = found.group(2).rpartition("@")[2]
    host, port = host_port, ""
    if not host_port.endswith("]") and ":" in host_port:
        host, _, port = host_port.rpartition(":")
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            return None
    return link if _usable_host(host.lower()) else None


def _usable_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        address = host[1:-1]
        if set(address) - set("0123456789abcdef:."):
            return False  # a zone ("%eth0") is valid to Python, not to Telegram
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        return True
    if "." not in host or host == ".":
        return False  # Telegram: "Wrong HTTP URL"
    return all(_HOST_CHAR.fullmatch(piece) for piece in _host_pieces(host))


def _host_pieces(host: str) -> list[str]:
    """The host's characters, a %XX escape taken as one."""
    return re.findall(r"%[0-9a-f]{2}|.", host, re.DOTALL)


def _cut_tag(tag: str) -> str:
    """A hashtag within TAG_MAX units, cut after a whole word when it can be."""
    if _units(tag) <= TAG_MAX:
        return tag
    cut = tag[: _fit(tag, TAG_MAX)]
    joint = cut.rfind("_")
    return cut[:joint] if joint > 1 else cut


def _shorten(text: str, by: int) -> str:
    """``text`` at least ``by`` characters shorter (plus room for "…"), cut between words."""
    keep = max(0, len(text) - by - 1)
    cut = text[:keep].rsplit(" ", 1)[0] if " " in text[:keep] else text[:keep]
    return cut.rstrip() + "…" if cut else ""


def _visible_length(markup: str) -> int:
    """Telegram's count: the text without tags, entities decoded, in UTF-16 units."""
    return _units(html.unescape(re.sub(r"<[^>]+>", "", markup)))


def _units(text: str) -> int:
    """The length Telegram counts: UTF-16 code units (a character beyond the BMP is 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fit(text: str, limit: int) -> int:
    """How many of ``text``'s characters fit in ``limit`` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)
