"""Benchmark story grouping: quality on the labelled set, speed with 50,000 in the window.

    .venv/bin/python benchmarks/stories.py [--window-size 50000] [--split train|heldout]

Prints pairwise precision, recall and recall over pairs from different outlets of the
engine (bot/text/stories.py) on tests/data/stories/stories.jsonl, for each split, beside
three baselines computed on the same set; then the median and p95 time to add one article
to a window holding a synthetic 50,000 articles recombined from the set's vocabulary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.text.normalise import normalize, terms  # noqa: E402
from bot.text.stories import StoryGrouper  # noqa: E402

SET = ROOT / "tests" / "data" / "stories" / "stories.jsonl"
Record = dict[str, str]


def load(path: Path = SET) -> list[Record]:
    """The labelled articles, in time order."""
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return sorted(records, key=lambda record: record["published"])


def when(record: Record) -> datetime:
    """The article's publication time."""
    return datetime.fromisoformat(record["published"].replace("Z", "+00:00"))


def engine(records: Sequence[Record]) -> dict[str, str]:
    """Each article's story as the engine groups them, added in time order."""
    grouper = StoryGrouper()
    return {
        r["id"]: grouper.add(r["id"], r["title"], r["summary"], when(r)).story_id for r in records
    }


def by_pairs(records: Sequence[Record], same: Callable[[Record, Record], bool]) -> dict[str, str]:
    """Clusters from a pairwise rule: an article joins the first earlier one it matches."""
    found: dict[str, str] = {}
    for index, record in enumerate(records):
        found[record["id"]] = next(
            (found[o["id"]] for o in records[:index] if same(o, record)), record["id"]
        )
    return found


def identical(a: Record, b: Record) -> bool:
    """Baseline: the same normalised title."""
    return terms(a["title"]) == terms(b["title"])


def jaccard(a: Record, b: Record) -> bool:
    """Baseline: word overlap of the normalised titles ≥ .3."""
    x, y = set(terms(a["title"])), set(terms(b["title"]))
    return len(x & y) / max(1, len(x | y)) >= 0.3


def char_grams(records: Sequence[Record]) -> Callable[[Record, Record], bool]:
    """Baseline: character 4-gram TF-IDF cosine of the titles ≥ .2."""
    grams = {r["id"]: Counter(_grams(normalize(r["title"]))) for r in records}
    df = Counter(g for counts in grams.values() for g in counts)
    vectors = {}
    for key, counts in grams.items():
        vector = {g: c * math.log(len(records) / df[g]) for g, c in counts.items()}
        length = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        vectors[key] = {g: v / length for g, v in vector.items()}

    def same(a: Record, b: Record) -> bool:
        x, y = vectors[a["id"]], vectors[b["id"]]
        return sum(v * y.get(g, 0.0) for g, v in x.items()) >= 0.2

    return same


def _grams(text: str) -> list[str]:
    padded = f" {text} "
    return [padded[i : i + 4] for i in range(len(padded) - 3)]


def scores(records: Sequence[Record], found: dict[str, str], split: str) -> tuple[float, ...]:
    """Pairwise precision, recall, and recall over pairs from different outlets."""
    chosen = [r for r in records if split == "all" or r["split"] == split]
    tp = fp = fn = cross_tp = cross_fn = 0
    for a, b in itertools.combinations(chosen, 2):
        truth, guess = a["story"] == b["story"], found[a["id"]] == found[b["id"]]
        cross = a["outlet"] != b["outlet"]
        tp += truth and guess
        fp += guess and not truth
        fn += truth and not guess
        cross_tp += truth and guess and cross
        cross_fn += truth and not guess and cross
    return (
        tp / (tp + fp) if tp + fp else math.nan,  # nan: the method grouped no pair
        tp / max(1, tp + fn),
        cross_tp / max(1, cross_tp + cross_fn),
    )


def synthetic(records: Sequence[Record], count: int, rng: random.Random) -> list[Record]:
    """Articles recombined from the set's words, places and numbers (not from real feeds)."""
    titles = [r["title"].split() for r in records]
    summaries = [r["summary"].split() for r in records if r["summary"]]
    start = when(records[0]) - timedelta(hours=30)
    made = []
    for index in range(count):
        title = rng.choice(titles)
        mixed = [rng.choice(rng.choice(titles)) if rng.random() < 0.4 else w for w in title]
        mixed.append(str(rng.randrange(1000)))
        summary = " ".join(rng.choice(summaries)) if rng.random() < 0.5 else ""
        at = start + timedelta(seconds=index * 30 * 3600 / count)
        made.append(
            {
                "id": f"s{index}",
                "title": " ".join(mixed),
                "summary": summary,
                "published": at.isoformat(),
                "outlet": "",
            }
        )
    return made


def speed(records: Sequence[Record], size: int) -> tuple[float, float]:
    """Median and p95 ms to add one article with ``size`` articles in the window."""
    rng = random.Random(13)
    grouper = StoryGrouper(window=timedelta(days=30))
    for record in synthetic(records, size, rng):
        grouper.add(record["id"], record["title"], record["summary"], when(record))
    timings = []
    for record in synthetic(records, 2000, random.Random(14)):
        at = when(records[-1]) + timedelta(hours=1)
        started = time.perf_counter()
        grouper.add("t" + record["id"], record["title"], record["summary"], at)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95)]


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-size", type=int, default=50_000)
    args = parser.parse_args()
    records = load()
    stories = len({r["story"] for r in records})
    print(f"labelled set: {len(records)} articles, {stories} stories")
    methods = {
        "engine (bot/text/stories.py)": engine(records),
        "identical normalised title": by_pairs(records, identical),
        "Jaccard >= .3": by_pairs(records, jaccard),
        "char 4-gram TF-IDF cosine >= .2": by_pairs(records, char_grams(records)),
    }
    for split in ("train", "heldout", "all"):
        print(f"\n{split}: precision  recall  cross-outlet recall")
        for name, found in methods.items():
            p, r, c = scores(records, found, split)
            print(f"  {name:34} {p:.3f}  {r:.3f}  {c:.3f}")
    median, p95 = speed(records, args.window_size)
    print(
        f"\nspeed, {args.window_size} articles in the window: median {median:.2f} ms, "
        f"p95 {p95:.2f} ms per article added"
    )


if __name__ == "__main__":
    main()
