"""Per-entry text work done where the feed is parsed (a worker process): search terms and
breaking markers. Kept light to import: a worker process loads only this and what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.feeds.parse import ParsedEntry, parse_feed
from bot.text.breaking import DEFAULT_MARKERS, read_headline
from bot.text.normalise import index_text

TITLE_FROM_SUMMARY = 120


@dataclass(frozen=True, slots=True)
class IndexedFeed:
    """A parsed feed with, per entry, its search terms and whether it is marked breaking."""

    title: str
    link: str | None
    entries: tuple[ParsedEntry, ...]
    terms: tuple[tuple[str, str], ...]  # (title terms, summary terms) per entry
    breaking: tuple[bool, ...]
    dropped: int = 0  # entries past the parser's cap, not read


def parse_and_index(
    data: bytes,
    headers: dict[str, str],
    url: str | None,
    markers: tuple[str, ...] = DEFAULT_MARKERS,
) -> IndexedFeed:
    """Parse a feed and do the per-entry text work too (run in a worker process)."""
    feed = parse_feed(data, headers, url)
    return IndexedFeed(
        title=feed.title,
        link=feed.link,
        entries=feed.entries,
        terms=tuple(
            (index_text(display_title(entry)), index_text(entry.summary)) for entry in feed.entries
        ),
        breaking=tuple(
            read_headline(entry.title, entry.categories, markers).breaking
            for entry in feed.entries
        ),
        dropped=feed.dropped,
    )


def ready() -> bool:
    """Nothing to do: run in a new worker process, it loads this module (and the parser)
    before the first feed needs it."""
    return True


def display_title(entry: ParsedEntry) -> str:
    """The title to show: the entry's own, else the start of its summary, else its link."""
    if entry.title:
        return entry.title
    if entry.summary:
        if len(entry.summary) <= TITLE_FROM_SUMMARY:
            return entry.summary
        cut = entry.summary[:TITLE_FROM_SUMMARY].rsplit(" ", 1)[0]
        return cut + "…"
    return entry.link or entry.guid or ""
