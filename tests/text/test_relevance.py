"""Relevance of the Arabic text engine on tests/data/relevance.json: topics and search.

Topic matching is measured over (typed variant × article) decisions with the real matcher;
search with a pure-Python ranking over ``terms()`` that mirrors storage's search (every
query position must match, any alternative within one; title terms weigh more than summary
terms; ties by id). A baseline (normalisation + naive clitic stripping, no catalog, no
plausibility) is measured beside them. Run ``pytest -s tests/text/test_relevance.py`` to see
the figures and every miss.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from bot.text.matcher import Matcher
from bot.text.normalise import query_terms, terms, tokens
from bot.text.topics import ResolvedTopic, resolve
from tests.corpus import RELEVANCE

TITLE_WEIGHT = 3  # a query term in the title counts this many times one in the summary

# Thresholds, a little under what was measured when they were set (matching precision
# 1.0000 and recall 0.9964; search recall@5 1.0000 with no forbidden hit; the baseline
# 0.9733 / 0.5319 and 0.7738), so a regression fails while the data set may still grow.
MIN_MATCH_PRECISION = 0.99
MIN_MATCH_RECALL = 0.98
MIN_SEARCH_RECALL_AT_5 = 0.98
MAX_FORBIDDEN_HITS = 0


@cache
def _data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RELEVANCE.read_text("utf-8"))
    return data


# --- Topic matching -----------------------------------------------------------------------


@dataclass
class MatchFigures:
    """Counts over (typed variant × article) decisions, and the misses by topic."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def line(self, name: str) -> str:
        return (
            f"{name}: precision {self.precision:.4f} recall {self.recall:.4f} "
            f"(tp {self.tp}, fp {self.fp}, fn {self.fn}, tn {self.tn})"
        )


def _measure_matching(match_sets: Callable[[dict[str, Any]], list[set[str]]]) -> MatchFigures:
    """Figures for a function from a topic to the article ids each typed variant matches."""
    data = _data()
    all_ids = [article["id"] for article in data["articles"]]
    figures = MatchFigures()
    for topic in data["topics"]:
        expected = set(topic["must_match"])
        for typed, got in zip(topic["typed"], match_sets(topic), strict=True):
            figures.tp += len(got & expected)
            figures.fp += len(got - expected)
            figures.fn += len(expected - got)
            figures.tn += len(all_ids) - len(got | expected)
            for article_id in sorted(got - expected):
                figures.misses.append(f"{topic['id']} {typed!r}: false match {article_id}")
            for article_id in sorted(expected - got):
                figures.misses.append(f"{topic['id']} {typed!r}: missed {article_id}")
    return figures


@cache
def _engine_matches() -> tuple[list[tuple[str, str]], dict[str, set[int]]]:
    """Each (topic, typed variant) followed by one reader, and every article's matches."""
    data = _data()
    typed = [(topic["id"], text) for topic in data["topics"] for text in topic["typed"]]
    matcher = Matcher()
    for topic_id, (_, text) in enumerate(typed):
        resolved = resolve(text)
        if isinstance(resolved, ResolvedTopic):
            matcher.add(topic_id, resolved.phrases, exclude=resolved.exclude)
    matches = {
        article["id"]: matcher.match(article["title"], article["summary"])
        for article in data["articles"]
    }
    return typed, matches


def _engine_sets(topic: dict[str, Any]) -> list[set[str]]:
    typed, matches = _engine_matches()
    return [
        {article for article, found in matches.items() if topic_id in found}
        for topic_id, (owner, _) in enumerate(typed)
        if owner == topic["id"]
    ]


# --- Baseline: normalisation + naive clitic stripping -------------------------------------

_NAIVE_ARTICLE = re.compile(r"^(?:[وف]?[بك]?ال|[وف]?لل)(?=..)")
_NAIVE_CLITIC = re.compile(r"^[وفبكل](?=...)")


def naive_terms(text: str) -> list[str]:
    """The baseline's terms: normalised tokens with any article or clitic letter cut off."""
    found = []
    for token in tokens(text):
        stripped = _NAIVE_ARTICLE.sub("", token)
        found.append(_NAIVE_CLITIC.sub("", stripped) if stripped == token else stripped)
    return found


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    width = len(needle)
    return bool(width) and any(
        list(haystack[start : start + width]) == list(needle)
        for start in range(len(haystack) - width + 1)
    )


def _baseline_sets(topic: dict[str, Any]) -> list[set[str]]:
    articles = _data()["articles"]
    return [
        {
            article["id"]
            for article in articles
            if _contains(naive_terms(article["title"]), naive_terms(text))
            or _contains(naive_terms(article["summary"]), naive_terms(text))
        }
        for text in topic["typed"]
    ]


# --- Search --------------------------------------------------------------------------------


@dataclass
class SearchFigures:
    """recall@5 over every must_top5 article, and must_not articles returned at all."""

    required: int = 0
    found: int = 0
    forbidden: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def recall_at_5(self) -> float:
        return self.found / self.required if self.required else 1.0

    def line(self, name: str) -> str:
        return (
            f"{name}: recall@5 {self.recall_at_5:.4f} ({self.found}/{self.required}), "
            f"forbidden hits {self.forbidden}"
        )


def rank(
    positions: Sequence[tuple[str, ...]],
    documents: Sequence[tuple[str, list[str], list[str]]],
) -> list[str]:
    """Ids of the documents with every position, best first (title weighs more; ties by id).

    Mirrors storage's search: a position matches when any of its alternatives is a term of
    the title or the summary; the score counts each matching term occurrence, a title
    occurrence TITLE_WEIGHT times.
    """
    if not positions:
        return []
    scored = []
    for doc_id, title, summary in documents:
        score = 0
        for alternatives in positions:
            hits = sum(
                TITLE_WEIGHT * title.count(term) + summary.count(term) for term in alternatives
            )
            if not hits:
                break
            score += hits
        else:
            scored.append((-score, doc_id))
    return [doc_id for _, doc_id in sorted(scored)]


def _measure_search(
    positions_of: Callable[[str], list[tuple[str, ...]]], terms_of: Callable[[str], list[str]]
) -> SearchFigures:
    data = _data()
    documents = [
        (article["id"], terms_of(article["title"]), terms_of(article["summary"]))
        for article in data["articles"]
    ]
    figures = SearchFigures()
    for query in data["queries"]:
        ranked = rank(positions_of(query["query"]), documents)
        top = set(ranked[:5])
        figures.required += len(query["must_top5"])
        figures.found += len(top & set(query["must_top5"]))
        forbidden = set(ranked) & set(query["must_not"])
        figures.forbidden += len(forbidden)
        for article_id in sorted(set(query["must_top5"]) - top):
            figures.misses.append(f"{query['id']} {query['query']!r}: not in top 5 {article_id}")
        for article_id in sorted(forbidden):
            figures.misses.append(f"{query['id']} {query['query']!r}: forbidden {article_id}")
    return figures


def _report(*lines: str, misses: Sequence[str] = ()) -> str:
    text = "\n".join(lines)
    print("\n" + text + "".join("\n  " + miss for miss in misses))
    return text


# --- Tests ---------------------------------------------------------------------------------


def test_topic_matching_precision_and_recall() -> None:
    """Every typed variant of a topic matches its must_match articles and no other."""
    engine = _measure_matching(_engine_sets)
    baseline = _measure_matching(_baseline_sets)
    text = _report(
        engine.line("matching (engine)"),
        baseline.line("matching (baseline: normalise + naive clitics)"),
        misses=engine.misses,
    )
    assert engine.precision >= MIN_MATCH_PRECISION, text
    assert engine.recall >= MIN_MATCH_RECALL, text


def test_search_recall_at_5_and_no_forbidden_hit() -> None:
    """Each query finds its must_top5 articles in the first five and never a must_not one."""
    engine = _measure_search(query_terms, terms)
    baseline = _measure_search(lambda query: [(term,) for term in naive_terms(query)], naive_terms)
    text = _report(
        engine.line("search (engine)"),
        baseline.line("search (baseline: normalise + naive clitics)"),
        misses=engine.misses,
    )
    assert engine.recall_at_5 >= MIN_SEARCH_RECALL_AT_5, text
    assert engine.forbidden <= MAX_FORBIDDEN_HITS, text


def test_typed_variants_of_a_topic_are_one_topic() -> None:
    """Every typed variant of a topic resolves to one key: readers who spell it apart share it."""
    split = []
    for topic in _data()["topics"]:
        keys = {
            resolved.key if isinstance(resolved, ResolvedTopic) else f"refused: {resolved.reason}"
            for resolved in map(resolve, topic["typed"])
        }
        if len(keys) != 1:
            split.append(f"{topic['id']} {topic['typed']}: {sorted(keys)}")
    assert not split, "\n".join(split)
