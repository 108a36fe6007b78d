"""Group articles into stories: the same event reported by several outlets, online.

Pure and in memory. Each article added in time order joins the best story of the window
whose articles report the same event, or starts a new one. Places decide (two different
towns are two stories), names and rare words agree, newsroom synonyms meet as one concept
(``data/synonyms.json``: «مفاوضات» / «محادثات» → ``~talks``), leaders named by office meet
their name (``data/affiliations.json``), numbers help; every decision comes with an
``Explanation`` saying why.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from itertools import islice

from bot.text.matcher import Matcher
from bot.text.normalise import lexicon, normalize, terms
from bot.text.topics import Catalog, load_catalog

WINDOW = timedelta(hours=36)
THRESHOLD = 0.27  # weighted cosine at which two articles report one event
IDF_PRIOR = 200  # articles assumed in an empty window, so early words are not all rare

SUMMARY_WEIGHT = 0.3  # a word of the summary counts 0.3 of a word of the title
PROBES = 8  # the rarest terms of an article that look for candidates
RECENT = 200  # the most recent articles looked at per probed term
CANDIDATES = 24  # articles scored in full per added article
SHOWN = 6  # shared terms an explanation lists, heaviest first
DATELINE_WORDS = 3  # «سيول:», «غزة - رويترز:»: a title's opening place, before a colon
CONCEPT_WEIGHT = 1.2  # a concept shared under two wordings is the event itself
CONCEPT = "~"  # the prefix of a concept feature of synonyms.json, as «@» is of an entity
_NEGATIONS = frozenset({"غير", "لا", "لن", "لم", "عدم"})
_DECIMAL = re.compile(r"\d+\.\d+")
_NISBA = re.compile("ي(?:|ه|ين|ون|ات)$")
_PREFIXES = ("وال", "بال", "فال", "كال", "لل", "ال", "و", "ب", "ل", "ف")
_SUFFIXES = ("ات", "ون", "ين", "ه")


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an article joined a story or started one."""

    rule: str  # "joined", "different places", "different magnitudes", "different actors",
    # "below threshold" …
    score: float
    compared_with: str | None  # the article of the story it was compared with
    shared_entities: tuple[str, ...]  # catalog and place keys both articles name
    shared_terms: tuple[tuple[str, float], ...]  # the heaviest shared terms and their weights


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an added article went: its story (the first article's id) and why."""

    story_id: str
    joined: bool
    explanation: Explanation


@dataclass(slots=True)
class _Article:
    id: str
    story: str
    published: datetime
    weights: dict[str, float]  # term → field weight (1 title, SUMMARY_WEIGHT summary)
    places: frozenset[str]  # the most specific places named
    entities: frozenset[str]
    figures: frozenset[tuple[str, str]]  # (what is counted, the number): «2.4» «مليار»
    rivals: frozenset[str]  # the rival organisations named («غوغل», «آبل»)
    actors: frozenset[str]  # countries named only by a nisba («الأمريكي», «التركي»)
    named: frozenset[str]  # every entity named and the places they lie in
    acting: frozenset[str]  # every entity named and the countries its leaders act for
    seats: frozenset[str]  # the places named, and the country of a capital («واشنطن ترفع»)
    dateline: frozenset[str]  # the places a title opens with, «سيول: …»: reported from there
    norm: float = 0.0


@dataclass(frozen=True, slots=True)
class _Gazetteer:
    matcher: Matcher
    keys: tuple[str, ...]  # matcher id → entity key
    places: frozenset[int]  # matcher ids that name a place
    parents: Mapping[str, str]
    names: frozenset[str]  # the words of names: shared, they say who, not what happened
    nisba: frozenset[int]  # matcher ids of countries named by a nisba
    capitals: frozenset[str]  # capitals, which also name their government
    who: frozenset[str]  # names, and the words of stories.json's «who»: who, not what


@dataclass(frozen=True, slots=True)
class _Words:
    """The word lists of bot/text/data/stories.json."""

    places: tuple[tuple[str, tuple[str, ...], str | None], ...]  # key, names, inside
    parents: Mapping[str, str]  # a catalog capital or region → the catalog key it lies in
    broad: frozenset[str]  # catalog regions too wide to tell two events apart
    stopwords: tuple[str, ...]
    numbers: Mapping[str, str]  # a number word → its digits
    rivals: frozenset[str]  # organisations that act on their own: two of them, two events
    units: frozenset[str]  # what a number after which they stand counts, as stems
    who: frozenset[str]  # names outside the catalog (players, clubs), as stems


@lru_cache(maxsize=1)
def _words() -> _Words:
    text = resources.files("bot.text").joinpath("data", "stories.json").read_text("utf-8")
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("bot/text/data/stories.json is not an object")
    places = tuple(
        (str(place["key"]), tuple(map(str, place["names"])), place["in"])
        for place in raw["places"]
    )
    return _Words(
        places=places,
        parents={str(key): str(value) for key, value in raw["parents"].items()},
        broad=frozenset(map(str, raw["broad"])),
        stopwords=tuple(map(str, raw["stopwords"])),
        numbers={str(key): str(value) for key, value in raw["numbers"].items()},
        rivals=frozenset(map(str, raw["rivals"])),
        units=frozenset(stem(term) for unit in raw["units"] for term in terms(str(unit))),
        who=frozenset(stem(term) for name in raw["who"] for term in terms(str(name))),
    )


@lru_cache(maxsize=1)
def _default_gazetteer() -> _Gazetteer:
    return _gazetteer(load_catalog())


def _gazetteer(catalog: Catalog) -> _Gazetteer:
    """Catalog topics (but sectors and broad regions) and the towns of stories.json."""
    words = _words()
    parents = dict(words.parents)
    keys: list[str] = []
    places: set[int] = set()
    nisba_ids: set[int] = set()
    names: set[str] = {stem(word) for word in lexicon().names}
    matcher = Matcher()
    for topic in catalog.topics:
        if topic.kind == "sector" or topic.key in words.broad:
            continue
        # A nisba («الإسرائيلي», «الروسية») names an actor more often than a place.
        nisba = {
            p
            for p in topic.phrases
            if topic.kind == "country" and len(p) == 1 and _NISBA.search(p[0])
        }
        # A one-word name counts once, as its entity, not also as a word.
        names.update(stem(p[0]) for p in topic.phrases if len(p) == 1)
        for found, place in ((set(topic.phrases) - nisba, True), (nisba, False)):
            if found:
                keys.append(topic.key)
                matcher.add(len(keys) - 1, found, exclude=topic.excluded)
                if place and topic.kind in ("country", "capital", "region"):
                    places.add(len(keys) - 1)
                elif not place:
                    nisba_ids.add(len(keys) - 1)
    for key, spellings, inside in words.places:
        keys.append(key)
        phrases = [tuple(terms(name)) for name in spellings]
        matcher.add(len(keys) - 1, phrases)
        names.update(stem(word) for phrase in phrases for word in phrase)
        places.add(len(keys) - 1)
        if inside:
            parents[key] = inside
    return _Gazetteer(
        matcher, tuple(keys), frozenset(places), parents, frozenset(names), frozenset(nisba_ids),
        frozenset(t.key for t in catalog.topics if t.kind == "capital" and t.key in parents),
        frozenset(names) | words.who,
    )  # fmt: skip


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    words = [*_words().stopwords, *lexicon().function_words, *_concepts().stopwords]
    return frozenset(stem(term) for word in words for term in terms(word))


@dataclass(frozen=True, slots=True)
class _Concepts:
    """bot/text/data/synonyms.json as stems: a word or phrase → its concept feature."""

    words: Mapping[str, str]
    phrases: Mapping[tuple[str, ...], str]
    longest: int
    stopwords: tuple[str, ...]


@lru_cache(maxsize=1)
def _concepts() -> _Concepts:
    text = resources.files("bot.text").joinpath("data", "synonyms.json").read_text("utf-8")
    raw = json.loads(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("concepts"), dict):
        raise ValueError("bot/text/data/synonyms.json has no concepts")
    words: dict[str, str] = {}
    phrases: dict[tuple[str, ...], str] = {}
    for key, entries in raw["concepts"].items():
        for entry in entries:
            stems = tuple(stem(term) for term in terms(str(entry)))
            if len(stems) == 1:
                words[stems[0]] = CONCEPT + str(key)
            elif stems:
                phrases[stems] = CONCEPT + str(key)
    stopwords = tuple(map(str, raw.get("stopwords", ())))
    return _Concepts(words, phrases, max(map(len, phrases), default=1), stopwords)


@dataclass(frozen=True, slots=True)
class _Affiliations:
    """bot/text/data/affiliations.json: whom a leader acts for, and offices as phrases."""

    countries: Mapping[str, str]  # a leader or body → its country
    titles: Mapping[tuple[str, ...], str]  # an office («الرئيس الأوكراني») as stems → leader
    longest: int
    homographs: Mapping[str, frozenset[str]]  # «سيول» is Seoul only beside Korea


@lru_cache(maxsize=1)
def _affiliations() -> _Affiliations:
    text = resources.files("bot.text").joinpath("data", "affiliations.json").read_text("utf-8")
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("bot/text/data/affiliations.json is not an object")
    titles = {
        tuple(stem(term) for term in terms(str(title))): str(key)
        for key, spellings in raw["titles"].items()
        for title in spellings
    }
    countries = {str(key): str(value) for key, value in raw["countries"].items()}
    homographs = {str(k): frozenset(map(str, v)) for k, v in raw["homographs"].items()}
    return _Affiliations(countries, titles, max(map(len, titles), default=1), homographs)


def _titled(text: str) -> set[str]:
    """The leaders a text names by their office."""
    affiliations = _affiliations()
    stems = [stem(term) for term in terms(text)]
    found = set()
    for index in range(len(stems)):
        for length in range(min(affiliations.longest, len(stems) - index), 1, -1):
            key = affiliations.titles.get(tuple(stems[index : index + length]))
            if key:
                found.add(key)
                break
    return found


@lru_cache(maxsize=1)
def _numbers() -> Mapping[str, str]:
    numbers = _words().numbers
    return {stem(term): digits for word, digits in numbers.items() for term in terms(word)}


@lru_cache(maxsize=100_000)
def stem(term: str) -> str:
    """A light stem: clitics and the article the analyser kept, plural and ه endings."""
    if term in lexicon().protected:
        return term
    for prefix in _PREFIXES:
        if term.startswith(prefix) and len(term) - len(prefix) >= 3:
            term = term[len(prefix) :]
            break
    for suffix in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            return term[: -len(suffix)]
    return term


class StoryGrouper:
    """Stories of the articles added within the window, with an inverted index of terms."""

    def __init__(self, window: timedelta = WINDOW, catalog: Catalog | None = None) -> None:
        self.window = window
        self._gazetteer = _gazetteer(catalog) if catalog else _default_gazetteer()
        self._articles: dict[str, _Article] = {}
        self._order: deque[_Article] = deque()
        self._postings: dict[str, deque[_Article]] = {}
        self._df: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._articles)

    def add(self, article_id: str, title: str, summary: str, published: datetime) -> Placement:
        """Place an article (added in time order) in a story; forget what left the window."""
        self.forget_before(published - self.window)
        article = self._analyse(article_id, title, summary, published)
        article.norm = _norm(article, self._idf)  # once, not once per candidate
        best: tuple[float, _Article, Explanation] | None = None
        for other in self._candidates(article):
            explanation = self._compare(article, other)
            if explanation.rule == "joined" and (best is None or explanation.score > best[0]):
                best = (explanation.score, other, explanation)
        self._index(article)
        if best is None:
            return Placement(article_id, False, Explanation("new story", 0.0, None, (), ()))
        article.story = best[1].story
        return Placement(article.story, True, best[2])

    def remember(self, article_id: str, title: str, summary: str, published: datetime) -> None:
        """Take in an article (in time order) as a story of its own without comparing it: a
        fifth of ``add``'s cost, for warming up from articles already placed elsewhere."""
        self.forget_before(published - self.window)
        self._index(self._analyse(article_id, title, summary, published))

    def story_of(self, article_id: str) -> str | None:
        """The story of an article still in the window, or None."""
        found = self._articles.get(article_id)
        return found.story if found else None

    def forget_before(self, moment: datetime) -> None:
        """Drop the articles published before the moment (they no longer attract others)."""
        while self._order and self._order[0].published < moment:
            old = self._order.popleft()
            del self._articles[old.id]
            for term in old.weights:
                self._df[term] -= 1
                postings = self._postings[term]
                while postings and postings[0].id not in self._articles:
                    postings.popleft()
                if not postings:
                    del self._postings[term], self._df[term]

    def explain(
        self, first: tuple[str, str], second: tuple[str, str], published: datetime
    ) -> Explanation:
        """Why two articles (title, summary) would or would not be one story, in this window."""
        a = self._analyse("a", *first, published)
        b = self._analyse("b", *second, published)
        return self._compare(a, b)

    # --- internals ----------------------------------------------------------------------

    def _analyse(self, article_id: str, title: str, summary: str, published: datetime) -> _Article:
        weights: dict[str, float] = {}
        gazetteer = self._gazetteer
        for text, weight in ((summary, SUMMARY_WEIGHT), (title, 1.0)):
            for term in _features(text):
                if term not in gazetteer.names:  # names count once, as their entity below
                    weights[term] = weight * (CONCEPT_WEIGHT if term[0] == CONCEPT else 1.0)
        ids = gazetteer.matcher.match(title, summary)
        found = {gazetteer.keys[i] for i in ids} | _titled(title) | _titled(summary)
        homographs = _affiliations().homographs
        for key in found & homographs.keys():
            if found.isdisjoint(homographs[key]):
                found.discard(key)
                ids = {i for i in ids if gazetteer.keys[i] != key}
        for key in found:  # «بوتن» and «بوتين», «الروسي» and «روسيا» meet as one feature
            weights["@" + key] = 1.0
        places = {gazetteer.keys[i] for i in ids & gazetteer.places}
        ancestors = {a for key in places for a in _ancestors(key, gazetteer.parents)}
        figures = _figures(title) | _figures(summary)
        actors = frozenset(gazetteer.keys[i] for i in ids & gazetteer.nisba)
        countries = _affiliations().countries
        acting = found | {countries[key] for key in found if key in countries}
        named = acting | {a for key in acting for a in _ancestors(key, gazetteer.parents)}
        specific = places - ancestors
        seats = specific | {gazetteer.parents[key] for key in specific & gazetteer.capitals}
        head, colon, _ = title.partition(":")
        dateline = set()
        if colon and len(terms(head)) <= DATELINE_WORDS:
            dateline = {gazetteer.keys[i] for i in gazetteer.matcher.match(head, "")}
        return _Article(
            article_id, article_id, published, weights, frozenset(specific),
            frozenset(found), figures, frozenset(found & _words().rivals), actors,
            frozenset(named), frozenset(acting), frozenset(seats), frozenset(dateline),
        )  # fmt: skip

    def _idf(self, term: str) -> float:
        return math.log((len(self._articles) + IDF_PRIOR) / (self._df.get(term, 0) + 1))

    def _index(self, article: _Article) -> None:
        article.norm = _norm(article, self._idf)
        self._articles[article.id] = article
        self._order.append(article)
        for term in article.weights:
            self._df[term] = self._df.get(term, 0) + 1
            self._postings.setdefault(term, deque()).append(article)

    def _candidates(self, article: _Article) -> Iterable[_Article]:
        """Recent articles sharing the article's rarest terms, most overlapping first."""
        # The rarest terms another article has: a term nobody has yet finds nothing.
        seen = [term for term in article.weights if term in self._df]
        probes = sorted(seen, key=self._df.__getitem__)[:PROBES]
        overlap: dict[str, float] = {}
        found = overlap.get
        for term in probes:
            postings = self._postings.get(term)
            if not postings:
                continue
            weight = self._idf(term)
            for other in islice(reversed(postings), RECENT):  # the most recent first
                overlap[other.id] = found(other.id, 0.0) + weight
        best = heapq.nlargest(CANDIDATES, overlap, key=overlap.__getitem__)
        return [self._articles[other] for other in best]

    def _compare(self, a: _Article, b: _Article) -> Explanation:
        parents = self._gazetteer.parents
        shared_entities = tuple(sorted(a.entities & b.entities))
        shared = [
            (term, self._idf(term) ** 2 * a.weights[term] * b.weights[term])
            for term in a.weights.keys() & b.weights.keys()
        ]
        # Heaviest first; among equals names first, then by term: the same explanation on
        # every run, whatever the order of the sets.
        shared.sort(key=lambda item: (-item[1], item[0][0] != "@", item[0]))
        norm_a = a.norm or _norm(a, self._idf)
        norm_b = b.norm or _norm(b, self._idf)
        who = self._gazetteer.who
        elapsed = abs((a.published - b.published).total_seconds())
        scale = (1.0 - 0.2 * min(1.0, elapsed / self.window.total_seconds())) / (norm_a * norm_b)
        score = sum(weight for _, weight in shared) * scale
        event = sum(w for t, w in shared if t[0] != "@" and t not in who) * scale

        def explained(rule: str) -> Explanation:
            top = tuple((term, round(weight, 2)) for term, weight in shared[:SHOWN])
            return Explanation(rule, round(score, 3), b.id, shared_entities, top)

        # «إسرائيل تقرر» and «… في غزة», «واشنطن ترفع» and «ترامب … بكين»: a country or
        # capital acting is not where it happened, so a place the other names is no veto.
        # A country both name is often a party, not the place («السعودية والولايات المتحدة
        # تستضيفان محادثات جدة» / «عمان تستضيف محادثات بين إيران والولايات المتحدة»): the
        # places only one of them names decide, but for a dateline («سيول: …»).
        both = a.places & b.places
        only_a, only_b = a.places - both - a.dateline, b.places - both - b.dateline
        if (
            only_a
            and only_b
            and not _compatible(only_a, only_b, parents)
            and (a.seats - both).isdisjoint(b.acting)
            and (b.seats - both).isdisjoint(a.acting)
        ):
            return explained("different places")
        if _different_figures(a.figures, b.figures):  # 5.2 and 6.1 degrees; not 1.3 and 2.3%
            return explained("different magnitudes")
        if a.rivals and b.rivals and a.rivals.isdisjoint(b.rivals):  # Google's fine, Apple's
            return explained("different organisations")
        if not (a.places or b.places) and a.actors and b.actors and a.actors.isdisjoint(b.actors):
            return explained("different countries")
        if a.named and b.named and a.named.isdisjoint(b.named):  # «الشرع» / «أمير الكويت»
            return explained("different actors")
        if score < THRESHOLD:
            return explained("below threshold")
        if event <= 0 and len(shared_entities) < 2:  # one shared name is not one event
            return explained("only a name shared")
        return explained("joined")


def _figures(text: str) -> frozenset[tuple[str, str]]:
    """The decimal numbers of a text with what each counts: the unit word after it, or ""
    when none of stories.json's units follows."""
    units, plain = _words().units, normalize(text)
    found = set()
    for match in _DECIMAL.finditer(plain):
        rest = plain[match.end() :].lstrip()
        following = terms(rest[:40])[:1]
        unit = stem(following[0]) if following else ""
        if rest.startswith("%"):  # «٪» is «%» once normalised
            unit = "%"
        found.add((unit if unit in units or unit == "%" else "", match.group()))
    return frozenset(found)


def _different_figures(
    first: frozenset[tuple[str, str]], second: frozenset[tuple[str, str]]
) -> bool:
    """Whether two articles give different numbers for one thing counted: a unit both use
    with no number in common (a bare number counts for any unit)."""
    units = {unit for unit, _ in first} | {unit for unit, _ in second}
    for unit in units:
        mine = {number for kind, number in first if kind in (unit, "")}
        theirs = {number for kind, number in second if kind in (unit, "")}
        if mine and theirs and mine.isdisjoint(theirs):
            return True
    return False


def _accusative(term: str) -> str:
    """Drop the alef of tanween: «نموذجا», «صاروخا», «مرسوما» are «نموذج», «صاروخ», «مرسوم»."""
    if len(term) >= 5 and term[-1] == "ا" and term[-2] not in "اوي":
        return term[:-1]
    return term


def _features(text: str) -> list[str]:
    """The terms of a text for comparing events: stemmed, number words as digits, and the
    words and phrases of synonyms.json as their concept («محادثات», «مفاوضات» → ~talks)."""
    stop, numbers, concepts = _stopwords(), _numbers(), _concepts()
    stems = [_accusative(stem(term)) for term in terms(text)]
    found = []
    index = 0
    while index < len(stems):
        for length in range(min(concepts.longest, len(stems) - index), 1, -1):
            concept = concepts.phrases.get(tuple(stems[index : index + length]))
            if concept:
                found.append(concept)
                index += length
                break
        else:
            stemmed = numbers.get(stems[index], stems[index])
            stemmed = concepts.words.get(stemmed, stemmed)
            if index and stems[index - 1] in _NEGATIONS:  # «غير مباشرة» is not «مباشرة»
                stemmed = stems[index - 1] + " " + stemmed
            if stemmed not in stop and len(stemmed) > 1:
                found.append(stemmed)
            index += 1
    return found


def _norm(article: _Article, idf: Callable[[str], float]) -> float:
    return math.sqrt(sum((idf(t) * w) ** 2 for t, w in article.weights.items())) or 1.0


def _ancestors(key: str, parents: Mapping[str, str]) -> set[str]:
    found: set[str] = set()
    while key in parents and parents[key] not in found:
        key = parents[key]
        found.add(key)
    return found


def _compatible(first: frozenset[str], second: frozenset[str], parents: Mapping[str, str]) -> bool:
    """Whether some place of one is, contains or lies in some place of the other."""
    for a in first:
        lineage_a = _ancestors(a, parents) | {a}
        for b in second:
            if b in lineage_a or a in _ancestors(b, parents):
                return True
    return False
