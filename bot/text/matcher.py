"""Which followed topics an article matches, through an inverted index of topic terms.

A topic is a set of phrases (tuples of terms from the normaliser); a phrase matches when its
terms stand in the title or in the summary in order and adjacent, each as any reading of a
word there. A topic may also exclude longer phrases: a match inside one of them does not
count (السودان inside جنوب السودان). The index is keyed by a phrase's first term (and its
second, for longer phrases), so matching an article costs a few dictionary look-ups per
word, however many topics are followed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from bot.text.normalise import term_candidates

Phrase = tuple[str, ...]
Positions = list[tuple[str, ...]]


class _Index:
    """Phrases to topic ids: one-term phrases by term, longer ones by their first two."""

    def __init__(self) -> None:
        self.single: dict[str, set[int]] = {}
        self.pairs: dict[tuple[str, str], dict[Phrase, set[int]]] = {}

    def add(self, topic_id: int, phrase: Phrase) -> None:
        if len(phrase) == 1:
            self.single.setdefault(phrase[0], set()).add(topic_id)
        else:
            by_rest = self.pairs.setdefault((phrase[0], phrase[1]), {})
            by_rest.setdefault(phrase[2:], set()).add(topic_id)

    def discard(self, topic_id: int, phrase: Phrase) -> None:
        if len(phrase) == 1:
            ids = self.single[phrase[0]]
            ids.discard(topic_id)
            if not ids:
                del self.single[phrase[0]]
            return
        pair = (phrase[0], phrase[1])
        by_rest = self.pairs[pair]
        by_rest[phrase[2:]].discard(topic_id)
        if not by_rest[phrase[2:]]:
            del by_rest[phrase[2:]]
        if not by_rest:
            del self.pairs[pair]

    def scan(self, positions: Positions) -> Iterator[tuple[set[int], int, int]]:
        """Each occurrence as (topic ids, start, width)."""
        single, pairs = self.single, self.pairs
        last = len(positions) - 1
        for index, readings in enumerate(positions):
            for reading in readings:
                ids = single.get(reading)
                if ids:
                    yield ids, index, 1
            if index == last or not pairs:
                continue
            for reading in readings:
                for following in positions[index + 1]:
                    by_rest = pairs.get((reading, following))
                    if by_rest:
                        for rest, ids in by_rest.items():
                            if _follows(positions, index + 2, rest):
                                yield ids, index, 2 + len(rest)


def _follows(positions: Positions, start: int, rest: Phrase) -> bool:
    if start + len(rest) > len(positions):
        return False
    return all(term in positions[start + offset] for offset, term in enumerate(rest))


class Matcher:
    """An inverted index from topic phrases to topic ids, kept current with add/remove."""

    def __init__(self, topics: Iterable[tuple[int, Iterable[Sequence[str]]]] = ()) -> None:
        self._index = _Index()
        self._excluded = _Index()
        self._phrases: dict[int, tuple[frozenset[Phrase], frozenset[Phrase]]] = {}
        self._excluding: set[int] = set()  # topics with exclusions
        for topic_id, phrases in topics:
            self.add(topic_id, phrases)

    def __len__(self) -> int:
        return len(self._phrases)

    def __contains__(self, topic_id: object) -> bool:
        return topic_id in self._phrases

    def add(
        self,
        topic_id: int,
        phrases: Iterable[Sequence[str]],
        *,
        exclude: Iterable[Sequence[str]] = (),
    ) -> None:
        """Index a topic's phrases (and the longer phrases it excludes) under its id."""
        self.remove(topic_id)
        found = frozenset(tuple(phrase) for phrase in phrases if phrase)
        excluded = frozenset(tuple(phrase) for phrase in exclude if phrase)
        self._phrases[topic_id] = (found, excluded)
        for phrase in found:
            self._index.add(topic_id, phrase)
        for phrase in excluded:
            self._excluded.add(topic_id, phrase)
        if excluded:
            self._excluding.add(topic_id)

    def remove(self, topic_id: int) -> None:
        """Forget a topic (nothing happens if it is not indexed)."""
        found, excluded = self._phrases.pop(topic_id, (frozenset(), frozenset()))
        for phrase in found:
            self._index.discard(topic_id, phrase)
        for phrase in excluded:
            self._excluded.discard(topic_id, phrase)
        self._excluding.discard(topic_id)

    def match(self, title: str, summary: str) -> set[int]:
        """The ids of the topics whose phrases occur in the title or in the summary."""
        found: set[int] = set()
        for text in (title, summary):  # a phrase never runs from the title into the summary
            self._match(term_candidates(text), found)
        return found

    def _match(self, positions: Positions, found: set[int]) -> None:
        excluding = self._excluding
        spans: dict[int, list[tuple[int, int]]] = {}
        for ids, start, width in self._index.scan(positions):
            if excluding and not excluding.isdisjoint(ids):
                for topic_id in ids:
                    if topic_id in excluding:
                        spans.setdefault(topic_id, []).append((start, start + width))
                    else:
                        found.add(topic_id)
            else:
                found |= ids
        if not spans:
            return
        blocked: dict[int, list[tuple[int, int]]] = {}
        for ids, start, width in self._excluded.scan(positions):
            for topic_id in ids.intersection(spans):
                blocked.setdefault(topic_id, []).append((start, start + width))
        for topic_id, occurrences in spans.items():
            covers = blocked.get(topic_id, [])
            if any(
                not any(low <= start and end <= high for low, high in covers)
                for start, end in occurrences
            ):
                found.add(topic_id)
