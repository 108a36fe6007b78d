"""Breaking-news detection: the «عاجل» / Breaking markers outlets put on a headline.

A marker counts at the start of the title (after any punctuation or quotes, optionally as
«خبر عاجل»), as a hashtag anywhere (#عاجل), or as a category. «قرار عاجل» (an urgent
decision) and «مساعدات عاجلة» are not markers. The marker is removed from the headline
shown to readers, so an alert never says عاجل twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from bot.text.normalise import normalize

DEFAULT_MARKERS = ("عاجل", "خبر عاجل", "عاجل جدا", "breaking", "breaking news", "urgent")

# Marks that may sit between a marker's letters: harakat and tatweel («عـاجـل»).
_INSIDE = "[\u0640\u064b-\u065f\u0670]*"
# What may follow a leading marker: punctuation of any script, or plain space.
_AFTER = r"(?:\s*[:|\-–—:؛،.!»\"')\]\u200f]+\s*|\s+|$)"
_BEFORE = r"^[\s\W_]*"


@dataclass(frozen=True, slots=True)
class Headline:
    """A title read for breaking news: whether it is, and the headline without the marker."""

    breaking: bool
    text: str


def read_headline(
    title: str, categories: Iterable[str] = (), markers: Sequence[str] = DEFAULT_MARKERS
) -> Headline:
    """Whether a title (or its categories) marks breaking news, and the clean headline."""
    leading, hashtag, names = _patterns(tuple(markers))
    text = title
    found = False
    match = leading.match(text)
    if match and match.end() < len(text):  # a title that is only «عاجل» keeps its word
        text, found = text[match.end() :], True
    stripped = hashtag.sub(" ", text)
    if stripped != text:
        text, found = stripped, True
    if not found:
        found = any(normalize(category).strip(" #") in names for category in categories)
    return Headline(found, " ".join(text.split()) if found else title)


@cache
def _patterns(markers: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], frozenset[str]]:
    def spelled(marker: str) -> str:
        words = [_INSIDE.join(re.escape(letter) for letter in word) for word in marker.split()]
        return r"\s+".join(words)

    ordered = sorted(markers, key=len, reverse=True)
    alternatives = "|".join(spelled(marker) for marker in ordered)
    # In a hashtag the words of a marker are joined by underscores (#خبر_عاجل).
    tags = "|".join(spelled(marker).replace(r"\s+", "_") for marker in ordered)
    leading = re.compile(rf"{_BEFORE}(?:{alternatives})(?![\w\u0640]){_AFTER}", re.IGNORECASE)
    hashtag = re.compile(rf"#(?:{tags})(?![\w\u0640])", re.IGNORECASE)
    names = frozenset(normalize(marker) for marker in markers)
    return leading, hashtag, names
