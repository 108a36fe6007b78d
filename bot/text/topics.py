"""Topics a reader can follow: the curated catalog, and free phrases resolved against it.

A phrase that equals a catalog name or alias (after normalisation) is that catalog topic,
so two readers who type «بوتين» and «بوتن» follow one topic; any other phrase is a free
topic keyed by its terms. Each topic matches articles through its phrases (term tuples).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from bot.text.normalise import lexicon, nisba_forms, phrase_terms, terms

Kind = Literal["country", "capital", "leader", "organisation", "sector", "region"]
KINDS: tuple[Kind, ...] = ("country", "capital", "leader", "organisation", "sector", "region")
PHRASE_PREFIX = "phrase:"
MAX_PHRASE_CHARS = 100
MAX_PHRASE_TERMS = 6


@dataclass(frozen=True, slots=True)
class CatalogTopic:
    """A topic of the catalog shipped in bot/data/topics.json."""

    key: str
    ar: str
    en: str
    kind: Kind
    aliases: tuple[str, ...]  # other names and spellings: typing one resolves to this topic
    vocabulary: tuple[str, ...]  # a sector's words: they match articles, never resolve
    exclude: tuple[str, ...]  # longer names of other things (جنوب السودان for السودان)
    phrases: tuple[tuple[str, ...], ...]  # what the topic matches, as term tuples
    excluded: tuple[tuple[str, ...], ...]  # a match inside one of these does not count


@dataclass(frozen=True, slots=True)
class Catalog:
    """The catalog, with its topics by key and by the terms of each name and alias."""

    topics: tuple[CatalogTopic, ...]
    by_key: Mapping[str, CatalogTopic]
    by_name: Mapping[tuple[str, ...], CatalogTopic]
    positions: Mapping[str, int]  # a topic's place in ``topics``, by key (a short id)

    def get(self, key: str) -> CatalogTopic | None:
        """The topic with this key, or None."""
        return self.by_key.get(key)


@dataclass(frozen=True, slots=True)
class ResolvedTopic:
    """What a reader follows: a stable key, a label to show, and the phrases it matches."""

    key: str  # a catalog key, or "phrase:" + the phrase's terms
    label: str
    phrases: tuple[tuple[str, ...], ...]
    catalog: CatalogTopic | None
    exclude: tuple[tuple[str, ...], ...] = ()  # a match inside one of these does not count


class RefusalReason(enum.Enum):
    """Why a phrase cannot be followed (handlers turn each into a translated message)."""

    EMPTY = "empty"  # no letters or digits in it
    FUNCTION_WORD = "function_word"  # only words like في من على (علي is also the name Ali)
    TOO_LONG = "too_long"  # more than MAX_PHRASE_CHARS characters or MAX_PHRASE_TERMS words


@dataclass(frozen=True, slots=True)
class TopicRefusal:
    """A phrase refused as a topic, with the reason."""

    phrase: str
    reason: RefusalReason

    @property
    def message(self) -> str:
        """The reason in English, for logs and the command line."""
        return {
            RefusalReason.EMPTY: "the phrase has no words",
            RefusalReason.FUNCTION_WORD: (
                "a function word such as في, من or على (also spelled علي, like the name Ali) "
                "matches almost every article; add another word, e.g. علي خامنئي"
            ),
            RefusalReason.TOO_LONG: (
                f"a topic has at most {MAX_PHRASE_TERMS} words and {MAX_PHRASE_CHARS} characters"
            ),
        }[self.reason]


def _topic(raw: object) -> CatalogTopic:
    if not isinstance(raw, dict):
        raise ValueError("a topic in bot/data/topics.json is not an object")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"topic {raw.get('key')!r} has an unknown kind {kind!r}")
    aliases = tuple(str(alias) for alias in raw.get("aliases", []))
    vocabulary = tuple(str(word) for word in raw.get("vocabulary", []))
    exclude = tuple(str(phrase) for phrase in raw.get("exclude", []))
    return CatalogTopic(
        key=str(raw["key"]),
        ar=str(raw["ar"]),
        en=str(raw["en"]),
        kind=kind,
        aliases=aliases,
        vocabulary=vocabulary,
        exclude=exclude,
        phrases=tuple(phrase_terms([str(raw["ar"]), *aliases, *vocabulary])),
        excluded=tuple(phrase_terms(exclude)),
    )


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped in bot/data/topics.json."""
    text = resources.files("bot.text").joinpath("data", "topics.json").read_text("utf-8")
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError("bot/data/topics.json is not a list of topics")
    topics = tuple(_topic(item) for item in raw)
    by_key = {topic.key: topic for topic in topics}
    if len(by_key) != len(topics):
        raise ValueError("bot/data/topics.json has two topics with one key")
    by_name: dict[tuple[str, ...], CatalogTopic] = {}
    for topic in topics:
        for name in (topic.ar, topic.en, *topic.aliases):
            found = tuple(terms(name))
            if found:
                by_name.setdefault(found, topic)  # the first topic to claim a name keeps it
    positions = {topic.key: index for index, topic in enumerate(topics)}
    return Catalog(topics, by_key, by_name, positions)


@lru_cache(maxsize=1)
def function_words() -> frozenset[str]:
    """Terms refused as a topic on their own (في, من, على; علي is both على and the name)."""
    return frozenset(term for word in lexicon().function_words for term in terms(word))


def resolve(phrase: str, catalog: Catalog | None = None) -> ResolvedTopic | TopicRefusal:
    """A reader's phrase as a topic: the catalog topic it names, or a free phrase."""
    catalog = catalog or load_catalog()
    cleaned = " ".join(phrase.split())
    if len(cleaned) > MAX_PHRASE_CHARS:
        return TopicRefusal(cleaned[:MAX_PHRASE_CHARS], RefusalReason.TOO_LONG)
    found = tuple(terms(cleaned))
    if not found:
        return TopicRefusal(cleaned, RefusalReason.EMPTY)
    if len(found) > MAX_PHRASE_TERMS:
        return TopicRefusal(cleaned, RefusalReason.TOO_LONG)
    topic = catalog.by_name.get(found)
    if topic is not None:
        return ResolvedTopic(topic.key, topic.ar, topic.phrases, topic, topic.excluded)
    if all(term in function_words() or len(term) < 2 for term in found):
        return TopicRefusal(cleaned, RefusalReason.FUNCTION_WORD)
    return _free(found, cleaned)


def _free(found: tuple[str, ...], label: str) -> ResolvedTopic:
    """A free phrase: its terms without the article a catalog name may keep (النفط = نفط)
    unless the article tells two words apart (الذهب, ذهب), and for one word its nisba
    adjective too (نفط: النفطي, النفطية …)."""
    known = lexicon()
    stripped = known.article_names - known.definite
    found = tuple(term[2:] if term in stripped else term for term in found)
    phrases = [found]
    if len(found) == 1 and found[0] not in function_words():
        phrases.extend((form,) for form in nisba_forms(found[0]))
    return ResolvedTopic(PHRASE_PREFIX + " ".join(found), label, tuple(phrases), None)


def from_key(key: str, label: str = "", catalog: Catalog | None = None) -> ResolvedTopic | None:
    """The topic a stored key names (catalog or "phrase:"), re-analysed; None if unknown.

    Storage keeps keys and labels; the matcher is rebuilt from them at start, so a catalog
    or lexicon update reaches topics that readers already follow.
    """
    if key.startswith(PHRASE_PREFIX):
        found = tuple(terms(key[len(PHRASE_PREFIX) :]))
        return _free(found, label or " ".join(found)) if found else None
    topic = (catalog or load_catalog()).get(key)
    if topic is None:
        return None
    return ResolvedTopic(topic.key, label or topic.ar, topic.phrases, topic, topic.excluded)


def phrases_for(key: str, catalog: Catalog | None = None) -> tuple[tuple[str, ...], ...]:
    """The phrases a stored topic key matches (a catalog key or a "phrase:" key)."""
    topic = from_key(key, catalog=catalog)
    return topic.phrases if topic is not None else ()
