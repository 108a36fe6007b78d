"""The Arabic text engine: one normaliser and one analyser for topic matching and for search.

Pure functions, no I/O after import: ``normalize`` folds spelling, ``terms`` turns text into
the terms both the topic matcher and the search index use, ``index_text`` is what storage
indexes, ``query_terms`` what a reader's query becomes.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# --- Normalisation ------------------------------------------------------------------------

# Deleted: harakat, shadda, sukun, tanween, superscript alef, Quranic marks, tatweel, and
# format controls (zero-width joiners, bidi marks and isolates, BOM, soft hyphen).
_DELETED = [
    *range(0x0610, 0x061B),
    *range(0x064B, 0x0660),
    0x0670,
    *range(0x06D6, 0x06EE),
    0x0640,
    0x00AD,
    0x061C,
    *range(0x200B, 0x2010),
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
    0xFEFF,
]

# The everyday folds, done with str.replace (hundreds of megabytes a second): one alef,
# ي for ى, ه for ة, and ء for the hamza seats (so مسؤول and مسئول meet).
_COMMON = (("أ", "ا"), ("إ", "ا"), ("آ", "ا"), ("ى", "ي"), ("ة", "ه"), ("ؤ", "ء"), ("ئ", "ء"))

# Everything else, folded by one str.translate when a text contains any of it.
_RARE_MAP: dict[str, str] = {
    # Alef forms beyond the everyday ones (wasla, wavy hamza, high hamza).
    "ٱ": "ا",
    "ٲ": "ا",
    "ٳ": "ا",
    "ٵ": "ا",
    # Persian, Urdu, Kurdish and Maghrebi letters, to the Arabic letter they stand for.
    "ی": "ي",
    "ې": "ي",
    "ۍ": "ي",
    "ێ": "ي",
    "ے": "ي",
    "ۓ": "ي",
    "ؽ": "ي",
    "ؾ": "ي",
    "ؿ": "ي",
    "ٸ": "ء",
    "ک": "ك",
    "ڪ": "ك",
    "ػ": "ك",
    "ؼ": "ك",
    "ڭ": "ك",
    "گ": "غ",
    "ڨ": "ق",
    "ە": "ه",
    "ہ": "ه",
    "ۀ": "ه",
    "ۂ": "ه",
    "ۃ": "ه",
    "ھ": "ه",
    "ٶ": "ء",
    "ٷ": "ء",
    "ۆ": "و",
    "ۇ": "و",
    "ۈ": "و",
    "ۋ": "و",
    "پ": "ب",
    "چ": "ج",
    "ژ": "ز",
    "ڤ": "ف",
    "ڥ": "ف",
    "ٹ": "ت",
    "ڈ": "د",
    "ڑ": "ر",
    "ں": "ن",
    # Decimal separator, thousands separator and percent sign.
    "٫": ".",
    "٬": ",",
    "٪": "%",
    # Latin letters without a decomposition.
    "ø": "o",
    "Ø": "o",
    "æ": "ae",
    "Æ": "ae",
    "œ": "oe",
    "Œ": "oe",
    "đ": "d",
    "Đ": "d",
    "ł": "l",
    "Ł": "l",
    "ı": "i",
    "ß": "ss",
    **{chr(code): chr(code + 32) for code in range(ord("A"), ord("Z") + 1)},
    **{chr(0x0660 + digit): str(digit) for digit in range(10)},
    **{chr(0x06F0 + digit): str(digit) for digit in range(10)},
}


def _latin_folds() -> dict[str, str]:
    """Accented Latin letters to their lower-case base letters (é → e, Ş → s)."""
    folds = {}
    for code in range(0x00C0, 0x0250):
        char = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if c.isascii())
        if base.isalpha():
            folds[char] = base.lower()
    return folds


def _table() -> dict[int, str | None]:
    table: dict[int, str | None] = dict.fromkeys(_DELETED)
    for source, target in [*_latin_folds().items(), *_RARE_MAP.items(), *_COMMON]:
        table[ord(source)] = target
    return table


def _as_list(table: Mapping[int, str | None]) -> list[str | None]:
    """A translate table as a list over the BMP: str.translate indexes it twice as fast."""
    listed: list[str | None] = [chr(code) for code in range(0x10000)]
    for code, value in table.items():
        listed[code] = value
    return listed


# The whole normalisation as one table (the reference the fast path is tested against).
TABLE: Mapping[int, str | None] = _table()
_RARE_TABLE = _as_list(
    {code: value for code, value in TABLE.items() if chr(code) not in dict(_COMMON)}
)
_RARE = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in sorted(TABLE) if chr(c) not in dict(_COMMON)) + "]"
)
# Self-censorship on social media splits a word with tatweel and dots or spaces
# (جريـ.ـمة, غـ.ـ.ـزة, يقـ ـتل): rejoin a letter, tatweels around dots/spaces, a letter.
_CENSORED = re.compile(
    r"(?<=[\u0621-\u064a\u064b-\u065f])ـ+(?:[.\s\u2026]+ـ+)+(?=[\u0621-\u064a\u064b-\u065f])"
)


def normalize(text: str) -> str:
    """Fold spelling: NFKC, no diacritics or tatweel, one alef, ي, ه, ء seats, ASCII digits.

    Also Persian and Urdu letters to Arabic ones, Latin to lower case without accents, and
    runs of white space to one space; punctuation and emoji stay (``tokens`` drops them).
    """
    text = unicodedata.normalize("NFKC", text)  # presentation forms (ﻟ → ل); fast when NFKC
    if "ـ" in text:
        text = _CENSORED.sub("", text)
    if _RARE.search(text):
        text = text.translate(_RARE_TABLE)
    for source, target in _COMMON:
        text = text.replace(source, target)
    if "  " in text or not text.isprintable():  # other white space than single spaces
        return " ".join(text.split())
    return text.strip(" ")


def normalize_reference(text: str) -> str:
    """The same as ``normalize``, written plainly (tests hold the fast path to it)."""
    text = unicodedata.normalize("NFKC", text)
    text = _CENSORED.sub("", text)
    return " ".join(text.translate(TABLE).split())


# --- Tokens --------------------------------------------------------------------------------

# A word is a run of Arabic letters or a run of Latin letters and digits; anything else
# (punctuation, «» quotes, emoji, '#', '_', other scripts) separates, and so does a change
# of script: بـ28 is ب and 28, كوفيد-19 is كوفيد and 19.
_WORD = re.compile(r"[\u0621-\u063a\u0641-\u064a]+|[0-9a-z]+")


def tokens(text: str) -> list[str]:
    """The normalised words of a text, punctuation, quotes and emoji treated as separators."""
    return _WORD.findall(normalize(text))


# --- Lexicon -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lexicon:
    """What the analyser knows: names and words to keep whole, and spellings to fold."""

    names: frozenset[str]  # words of catalog names: a clitic before one of them strips
    protected: frozenset[str]  # never stripped: names, function words, words like كامل
    article_names: frozenset[str]  # one-word catalog names that keep ال (الهند is not هند)
    definite: frozenset[str]  # words whose ال tells them apart even typed alone (الذهب, ذهب)
    proper_names: frozenset[str]  # one-word names that never take ال (الحماس is not حماس)
    function_words: frozenset[str]  # في من على …: never after ك (كسوف is not ك + سوف)
    variants: Mapping[str, str]  # a spelling → the spelling terms use (ترمب → ترامب)


def _data(name: str) -> object:
    return json.loads(resources.files("bot.text").joinpath("data", name).read_text("utf-8"))


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return value


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The lexicon shipped in bot/data: catalog names, protected words, spelling variants."""
    words = _data("lexicon.json")
    catalog = _data("topics.json")
    if not isinstance(words, dict) or not isinstance(catalog, list):
        raise ValueError("bot/data/lexicon.json or bot/data/topics.json has the wrong shape")
    function_words = {normalize(word) for word in _strings(words["function_words"])}
    protected = {normalize(word) for word in _strings(words["protected"])} | function_words
    names: set[str] = set()
    article_names: set[str] = set()
    proper_names: set[str] = set()
    whole: set[str] = set()  # one-word names and aliases
    definite = {normalize(word) for word in _strings(words.get("definite", []))}
    article_names.update(definite)
    groups = [_strings(group) for group in words.get("variants", [])]
    for topic in catalog:
        if not isinstance(topic, dict):
            raise ValueError("a topic in bot/data/topics.json is not an object")
        groups.extend(_strings(group) for group in topic.get("variants", []))
        phrases = [topic["ar"], *_strings(topic.get("aliases", []))]
        for phrase in [*phrases, *_strings(topic.get("vocabulary", []))]:
            found = _WORD.findall(normalize(phrase))
            if len(found) == 1 and found[0].startswith("ال") and len(found[0]) > 4:
                article_names.add(found[0])
                continue
            if topic.get("kind") == "sector":  # sector vocabulary never licenses stripping
                continue
            if len(found) == 1:
                whole.add(found[0])
                if not _NISBA.match(found[0]):
                    proper_names.add(found[0])
            # Inside a longer name «لل» is ل + ال (الوكالة الدولية للطاقة الذرية): the word
            # is طاقة, which must not become a name that keeps للطاقة whole everywhere.
            inner = [w[2:] if len(found) > 1 and w.startswith("لل") else w for w in found]
            names.update(
                word
                for word in map(_strip_article, inner)
                if len(word) >= _MIN_NAME and word not in function_words
            )
    variants: dict[str, str] = {}
    for group in groups:
        spellings = [_strip_article(normalize(word)) for word in group]
        variants.update(dict.fromkeys(spellings[1:], spellings[0]))
        names.update(spellings)
    names -= {_strip_article(name) for name in article_names}
    known = names | protected
    # A word of a longer catalog name that is a clitic + a known word (لكرة in الاتحاد الدولي
    # لكرة القدم) is not a name of its own; a one-word name is (كابل is not ك + آبل).
    names = {
        name
        for name in names
        if name in whole
        or not any(name.startswith(p) and name[len(p) :] in known for p in _CLITICS)
    }
    proper_names = {name for name in proper_names if "ال" + name not in article_names}
    return Lexicon(
        names=frozenset(names),
        protected=frozenset(protected | names),
        article_names=frozenset(article_names),
        definite=frozenset(definite),
        proper_names=frozenset(_fold(name, variants) for name in proper_names - protected),
        function_words=frozenset(function_words),
        variants=variants,
    )


@lru_cache(maxsize=1)
def analyser_version() -> str:
    """A fingerprint of the analyser's rules and data: re-index stored terms when it changes."""
    digest = hashlib.sha256(_RULES_VERSION.encode())
    for name in ("lexicon.json", "topics.json"):
        digest.update(resources.files("bot.text").joinpath("data", name).read_bytes())
    return digest.hexdigest()[:16]


_RULES_VERSION = "2"  # bump when a change to this module changes what terms() gives


# --- Analysis: clitics, article, variants ----------------------------------------------------

_MIN_STEM = 2  # letters left after the article: الدم → دم, but الي (إلى) stays whole
_MIN_CLITIC = 3  # letters left after a one-letter clitic: وطن never becomes طن
_MIN_NAME = 3  # a catalog word shorter than this never licenses stripping a clitic
_CONJUNCTIONS = ("", "و", "ف")
_PREPOSITIONS = ("", "ب", "ك", "ل")
# Article compounds, longest first; "لل" is ل + ال (للحرب), or ل before a ل-word (لليبيا).
_ARTICLE_PREFIXES = tuple(
    sorted(
        {c + p + "ال" for c in _CONJUNCTIONS for p in ("", "ب", "ك")}
        | {c + "لل" for c in _CONJUNCTIONS},
        key=len,
        reverse=True,
    )
)
# Every prefix a word can carry, for expanding a query term.
PREFIXES = (
    "",
    *sorted(
        {c + p for c in _CONJUNCTIONS for p in _PREPOSITIONS} - {""} | set(_ARTICLE_PREFIXES),
        key=lambda prefix: (len(prefix), prefix),
    ),
)
# One-letter clitic sequences, shortest first: a conjunction, then a preposition.
_CLITICS = tuple(
    sorted({c + p for c in _CONJUNCTIONS for p in _PREPOSITIONS} - {""}, key=lambda p: (len(p), p))
)
_DROPPED = frozenset({"و", "ف", "ب", "ك", "ل"})  # a clitic standing alone: بـ28, لـ«حماس»
_JOINED = frozenset({"عبد", "ابو"})  # عبد الله and عبدالله, أبو ظبي and أبوظبي meet


def _strip_article(word: str) -> str:
    """Drop the article, repeatedly: الإلكتروني and إلكتروني both become كتروني."""
    while word.startswith("ال") and len(word) - 2 >= _MIN_STEM:
        word = word[2:]
    return word


@lru_cache(maxsize=200_000)
def analyse(token: str) -> tuple[str, ...]:
    """A normalised token's readings: the term ``terms`` gives first, then other readings.

    The other readings are words the token may be a prefixed form of (لكورسك may be
    ل + كورسك): the matcher and queries use them, the index holds only the first.
    """
    known = lexicon()
    readings = _readings(token, known)
    return tuple(dict.fromkeys(_fold(reading, known.variants) for reading in readings))


def _readings(token: str, known: Lexicon) -> list[str]:
    if token in known.protected:
        return [token]
    # A one-letter clitic (و ف, then ب ك ل) before a known word: strip it (وبروسيا → روسيا,
    # لوزير → وزير, and never past a protected word: وكامل → كامل, not امل).
    for prefix in _CLITICS:
        if token.startswith(prefix):
            rest = token[len(prefix) :]
            if rest in known.protected:
                if prefix.endswith("ك") and rest in known.function_words:
                    continue
                return [rest]
            if rest in known.article_names:  # لألمانيا: ل + ألمانيا (not لل + مانيا)
                return [rest, rest[2:]]
    # The article (ال وال بال فبال لل …) is a reliable prefix: always stripped, except from
    # a one-word name that keeps it (الهند, الرياض are not هند, رياض).
    for prefix in _ARTICLE_PREFIXES:
        if not token.startswith(prefix) or len(token) - len(prefix) < _MIN_STEM:
            continue
        stem = token[len(prefix) :]
        if stem in known.article_names:  # a name whose own letters begin with ال (ألمانيا)
            return [stem, stem[2:]]
        if "ال" + stem in known.article_names:
            return ["ال" + stem, stem]
        if stem in known.proper_names:
            return ["ال" + stem]  # a name without the article: الحماس, المصر (insisting)
        if prefix.endswith("لل"):  # ل + ال (للحرب), or ل before a word in ل (للندن)
            return [_strip_article(stem), "ل" + stem]
        return [_strip_article(stem)]
    # Otherwise the token is its own term. Other readings, for the matcher and for queries:
    # a one-letter clitic before a word no lexicon knows (بكورسك), and the alef that
    # carries an accusative tanween (رسوماً, written رسوما, is رسوم).
    readings = [token, *(token[len(p) :] for p in _CLITICS if _clitic_reading(token, p))]
    if token.endswith("ا") and len(token) > _MIN_CLITIC:
        readings.append(token[:-1])
    return readings


def _clitic_reading(token: str, prefix: str) -> bool:
    return token.startswith(prefix) and len(token) - len(prefix) >= _MIN_CLITIC


def _fold(word: str, variants: Mapping[str, str]) -> str:
    """Final-نغ meets نج (هونغ كونغ, هونج كونج); catalog spelling variants meet."""
    if word.endswith("نغ"):
        word = word[:-1] + "ج"
    return variants.get(word, word)


# --- Terms, index and queries --------------------------------------------------------------


def term_candidates(text: str) -> list[tuple[str, ...]]:
    """Each term position of a text with its readings (its term first)."""
    found = [analyse(token) for token in tokens(text) if token not in _DROPPED]
    joined: list[tuple[str, ...]] = []
    position = 0
    while position < len(found):
        readings = found[position]
        if readings[0] in _JOINED and position + 1 < len(found):
            following = found[position + 1]
            joined.append(tuple(dict.fromkeys(readings[0] + r for r in following)))
            position += 2
        else:
            joined.append(readings)
            position += 1
    senses = _senses()
    for position, readings in enumerate(joined):
        for phrase, offset, term in senses.get(readings[0], ()):
            end = position + len(phrase)
            if end <= len(joined) and all(
                joined[position + i][0] == word for i, word in enumerate(phrase)
            ):
                joined[position + offset] = (term,)
    return joined


@lru_cache(maxsize=1)
def _senses() -> Mapping[str, list[tuple[tuple[str, ...], int, str]]]:
    """Collocations in which a name's homograph is the other word: by their first term.

    «بحماس كبير» is enthusiasm, not Hamas; «قدمه اليمنى» is the right foot, not Yemen's.
    Each is (the phrase's terms, the offset of the homograph, the term it gets instead).
    """
    words = _data("lexicon.json")
    if not isinstance(words, dict):
        raise ValueError("bot/data/lexicon.json has the wrong shape")
    senses: dict[str, list[tuple[tuple[str, ...], int, str]]] = {}
    for rule in words.get("senses", []):
        phrase_text, homograph, instead = _strings(rule)
        phrase = tuple(readings[0] for readings in _positions(phrase_text))
        target = _positions(homograph)[0][0]
        senses.setdefault(phrase[0], []).append((phrase, phrase.index(target), normalize(instead)))
    return senses


def _positions(text: str) -> list[tuple[str, ...]]:
    return [analyse(token) for token in tokens(text) if token not in _DROPPED]


def terms(text: str) -> list[str]:
    """The terms a text is indexed and matched by, in order."""
    return [readings[0] for readings in term_candidates(text)]


def index_text(text: str) -> str:
    """The text storage indexes for search: its terms, space-separated."""
    return " ".join(terms(text))


MAX_QUERY_POSITIONS = 12
MAX_QUERY_CHARS = 500


@lru_cache(maxsize=20_000)
def alternatives(term: str) -> tuple[str, ...]:
    """The index terms of the words that can be read as this term (the term first).

    The inverse of ``analyse``: every prefixed form of the term that has it as a reading.
    """
    found = [term]
    for prefix in PREFIXES:
        if term.startswith("ال") and prefix.endswith("ل"):
            continue  # ل + ال is written لل, never لال
        for suffix in ("", "ا") if not term.endswith("ا") else ("",):
            readings = analyse(prefix + term + suffix)
            if term in readings and readings[0] not in found:
                found.append(readings[0])
    return tuple(found)


_NISBA = re.compile(r"^(?P<stem>.{3,}?)ي(?:|ه|ين|ون|ات)$")
_NISBA_ENDINGS = ("ي", "يه", "يين", "يون", "يات")


def nisba_siblings(term: str) -> tuple[str, ...]:
    """The other gender and number forms of a nisba adjective (حوثيين: حوثي, حوثيون …)."""
    match = _NISBA.match(term)
    if match is None:
        return ()
    stem = match["stem"]
    return tuple(stem + ending for ending in _NISBA_ENDINGS if stem + ending != term)


def nisba_forms(term: str) -> tuple[str, ...]:
    """The nisba adjective of a noun in its forms (مصر: مصري, مصريه, مصريين, مصريون, مصريات).

    Nothing for a word that is itself an adjective in ي or يه (الأهلي, not الأهلية).
    """
    if term in lexicon().article_names:
        term = term[2:]
    if term.endswith(("ي", "يه")) or len(term) < _MIN_CLITIC:
        return ()
    stem = term[:-1] if term.endswith(("ا", "ه")) else term
    return tuple(stem + ending for ending in _NISBA_ENDINGS)


def query_terms(query: str) -> list[tuple[str, ...]]:
    """A reader's query as positions, each a tuple of alternative terms (all must match)."""
    positions: list[tuple[str, ...]] = []
    candidates = term_candidates(query[:MAX_QUERY_CHARS])
    # في، من، على … narrow nothing (they are in most articles) and cost the most to look up:
    # a query keeps them only when it has nothing else.
    function_words = lexicon().function_words
    content = [readings for readings in candidates if readings[0] not in function_words]
    for readings in content or candidates:
        # Index terms of every word read as the query's term; the query word's own other
        # readings (a reader who typed لكورسك) count as themselves, not expanded.
        extra = readings[1:] if readings[0] not in lexicon().article_names else ()
        siblings = [
            term for sibling in nisba_siblings(readings[0]) for term in alternatives(sibling)
        ]
        found = [*alternatives(readings[0]), *extra, *siblings]
        position = tuple(dict.fromkeys(found))
        if position not in positions:
            positions.append(position)
        if len(positions) == MAX_QUERY_POSITIONS:
            break
    return positions


def phrase_terms(phrases: Iterable[str]) -> list[tuple[str, ...]]:
    """Each phrase as its tuple of terms (phrases without terms dropped, duplicates once)."""
    return list(dict.fromkeys(found for found in map(tuple, map(terms, phrases)) if found))
