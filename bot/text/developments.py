"""Does a later article of a story add to it (a development) or only confirm it?

Pure. A later headline develops the story when it brings what the story's earlier articles
did not say: new figures (a toll rising), a reaction (a condemnation, a statement, a
warning), or a new actor (a leader or an organisation not named before). Anything else
only confirms it. Every decision says why (:class:`Development`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bot.text.matcher import Matcher
from bot.text.normalise import normalize, terms
from bot.text.stories import stem
from bot.text.topics import Catalog, load_catalog

# A figure rises: said in words beside a number («ارتفاع الحصيلة إلى 12»).
_RISE_WORDS = (
    "ارتفاع",
    "ارتفع",
    "يرتفع",
    "ترتفع",
    "ارتفعت",
    "حصيلة جديدة",
    "تجاوز",
    "يتجاوز",
    "تتجاوز",
    "بلغ",
    "بلغت",
    "يبلغ",
    "تبلغ",
)
# Someone reacts: condemns, welcomes, warns, mourns, speaks or answers.
_REACTION_WORDS = (
    "يدين",
    "تدين",
    "أدان",
    "أدانت",
    "إدانة",
    "يندد",
    "تندد",
    "ندد",
    "نددت",
    "يستنكر",
    "تستنكر",
    "استنكر",
    "استنكرت",
    "يرحب",
    "ترحب",
    "رحب",
    "رحبت",
    "يحذر",
    "تحذر",
    "حذر",
    "حذرت",
    "يتوعد",
    "تتوعد",
    "توعد",
    "توعدت",
    "يعزي",
    "تعزي",
    "تعزية",
    "حداد",
    "بيان",
    "المتحدث",
    "تعليقا",
    "يعلق",
    "تعلق",
    "ردا",
    "يرد",
    "ترد",
    "تصريح",
    "يطالب",
    "تطالب",
    "يدعو",
    "تدعو",
)
# Catalog kinds that act in a story (places and sectors are its setting, not its actors).
_ACTOR_KINDS = frozenset({"leader", "organisation"})
_TIME = re.compile(r"\d{1,2}\s*:\s*\d{2}")
_YEARS = range(1900, 2101)


@dataclass(frozen=True, slots=True)
class Development:
    """Why a later article develops its story: the kind of news it adds, and the words."""

    reason: str  # "figures", "reaction" or "actor"
    evidence: tuple[str, ...]


def develops(
    later: str, earlier: Sequence[str], catalog: Catalog | None = None
) -> Development | None:
    """Whether the headline ``later`` adds to a story whose earlier articles said
    ``earlier`` (their titles and summaries): why, or None if it only confirms it."""
    said = " ".join(earlier)
    before = _stems(said)
    now = _stems(later)
    figures = _figures(later) - _figures(said)
    if figures:
        risen = not _figures(said) or max(figures) > max(_figures(said))
        if risen or now & _rise() - before:
            return Development("figures", tuple(str(n) for n in sorted(figures)))
    reactions = (now & _reaction()) - before
    if reactions:
        return Development("reaction", tuple(sorted(reactions)))
    actors = _actors(later, catalog) - _actors(said, catalog)
    if actors:
        return Development("actor", tuple(sorted(actors)))
    return None


def _stems(text: str) -> set[str]:
    return {stem(term) for term in terms(text)}


def _figures(text: str) -> set[int]:
    """The numbers a text states, but times of day and years."""
    plain = _TIME.sub(" ", normalize(text))
    return {
        int(term)
        for term in terms(plain)
        if term.isascii() and term.isdigit() and len(term) < 10 and int(term) not in _YEARS
    }


@lru_cache(maxsize=1)
def _rise() -> frozenset[str]:
    return frozenset(_word_stems(_RISE_WORDS))


@lru_cache(maxsize=1)
def _reaction() -> frozenset[str]:
    return frozenset(_word_stems(_REACTION_WORDS))


def _word_stems(words: Iterable[str]) -> Iterable[str]:
    for word in words:
        yield from (stem(term) for term in terms(word))


def _actors(text: str, catalog: Catalog | None) -> set[str]:
    """The leaders and organisations a text names, by catalog key."""
    matcher, keys = _actor_matcher(catalog or load_catalog())
    return {keys[found] for found in matcher.match(text, "")}


_MATCHERS: dict[int, tuple[Catalog, Matcher, tuple[str, ...]]] = {}


def _actor_matcher(catalog: Catalog) -> tuple[Matcher, tuple[str, ...]]:
    """The actors' matcher of a catalog, built once (a catalog is a plain, unhashable
    record: it is known by its identity, and kept alive with its matcher)."""
    built = _MATCHERS.get(id(catalog))
    if built is not None and built[0] is catalog:
        return built[1], built[2]
    matcher = Matcher()
    keys: list[str] = []
    for topic in catalog.topics:
        if topic.kind in _ACTOR_KINDS:
            matcher.add(len(keys), topic.phrases, exclude=topic.excluded)
            keys.append(topic.key)
    _MATCHERS[id(catalog)] = (catalog, matcher, tuple(keys))
    return matcher, tuple(keys)


__all__ = ["Development", "develops"]
