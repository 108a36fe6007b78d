"""Benchmark the Arabic text engine: normaliser throughput, and the topic matcher at scale.

    .venv/bin/python benchmarks/text.py --topics 100000 --subscriptions 1000000

Prints characters per second of ``normalize`` and ``terms``; the matcher's build time,
memory, and per-article match time (median, p99) with 100,000 distinct topics, plus the
time to collect the subscribers of the matched topics out of 1,000,000 subscriptions.
Search latency over 200,000 articles on both backends is ``benchmarks/search.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.text.matcher import Matcher  # noqa: E402
from bot.text.normalise import normalize, terms  # noqa: E402
from bot.text.topics import ResolvedTopic, resolve  # noqa: E402
from tests.corpus import HEADLINES, SEED_STORY  # noqa: E402


def headlines() -> list[str]:
    """Real Arabic headlines from the corpus in tests/data (265, from eight outlets)."""
    path = HEADLINES / "midiakit_rss-headlines_2026-09-01.json"
    return [record["headline"] for record in json.loads(path.read_text("utf-8"))["headlines"]]


def articles(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Realistic articles: a real headline as title, three recombined ones as summary."""
    lines = headlines()
    seed = SEED_STORY.read_text("utf-8")
    texts = [*lines, *seed.split("\n\n")]
    return [
        (rng.choice(lines), " ".join(rng.choice(texts) for _ in range(3))) for _ in range(count)
    ]


def topic_phrases(count: int, rng: random.Random) -> list[ResolvedTopic]:
    """Distinct topics as readers might type them: words, pairs and triples of real words."""
    words = sorted({word for line in headlines() for word in line.split() if len(word) > 2})
    seen: set[str] = set()
    topics: list[ResolvedTopic] = []
    attempts = 0
    while len(topics) < count and attempts < count * 20:
        attempts += 1
        size = rng.choice((1, 2, 2, 3))
        start = rng.randrange(len(words))
        phrase = " ".join(rng.choice(words) if size > 1 else words[start] for _ in range(size))
        if size > 1:
            phrase += f" {rng.randrange(10**6)}"  # synthetic but distinct, like a rare name
        resolved = resolve(phrase)
        if isinstance(resolved, ResolvedTopic) and resolved.key not in seen:
            seen.add(resolved.key)
            topics.append(resolved)
    # Every catalog topic is followed too: real articles hit those.
    for line in headlines():
        for word in line.split():
            resolved = resolve(word)
            if isinstance(resolved, ResolvedTopic) and resolved.key not in seen:
                seen.add(resolved.key)
                topics.append(resolved)
    return topics


def normaliser(rng: random.Random) -> None:
    corpus = [f"{title} {summary}" for title, summary in articles(2000, rng)]
    characters = sum(map(len, corpus))
    for label, function in (("normalize", normalize), ("terms", terms)):
        started = time.perf_counter()
        for text in corpus:
            function(text)
        elapsed = time.perf_counter() - started
        print(
            f"  {label:<10} {characters / elapsed / 1e6:6.2f} M characters/s "
            f"({len(corpus)} articles, {characters / len(corpus):.0f} characters each)"
        )


def matcher(topic_count: int, subscription_count: int, rng: random.Random) -> None:
    topics = topic_phrases(topic_count, rng)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    index = Matcher()
    for topic_id, topic in enumerate(topics):
        index.add(topic_id, topic.phrases, exclude=topic.exclude)
    built = time.perf_counter() - started
    matcher_bytes = tracemalloc.get_traced_memory()[0]
    # Subscriptions: chats spread over the topics, popular topics more followed (Zipf-like).
    followers: dict[int, list[int]] = {}
    weights = [1 / (rank + 1) for rank in range(len(topics))]
    for chat_id, topic_id in enumerate(
        rng.choices(range(len(topics)), weights, k=subscription_count)
    ):
        followers.setdefault(topic_id, []).append(chat_id)
    total_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"  {len(topics):,} topics indexed in {built:.1f} s, matcher memory "
        f"{matcher_bytes / 2**20:.0f} MiB; with {subscription_count:,} subscriptions "
        f"{total_bytes / 2**20:.0f} MiB"
    )

    sample = articles(2000, rng)
    match_times, fan_times, hits = [], [], []
    for title, summary in sample:
        started = time.perf_counter()
        matched = index.match(title, summary)
        middle = time.perf_counter()
        chats: set[int] = set()
        for topic_id in matched:
            chats.update(followers.get(topic_id, ()))
        done = time.perf_counter()
        match_times.append(middle - started)
        fan_times.append(done - middle)
        hits.append(len(matched))
    match_times.sort()
    fan_times.sort()
    p99 = int(len(match_times) * 0.99)
    print(
        f"  match one article: median {statistics.median(match_times) * 1e3:.3f} ms, "
        f"p99 {match_times[p99] * 1e3:.3f} ms (goal: median <= 1 ms); "
        f"{statistics.mean(hits):.1f} topics matched on average"
    )
    print(
        f"  collect the followers of the matched topics: median "
        f"{statistics.median(fan_times) * 1e3:.3f} ms, p99 {fan_times[p99] * 1e3:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"text engine, Python {sys.version.split()[0]}")
    normaliser(rng)
    matcher(args.topics, args.subscriptions, rng)


if __name__ == "__main__":
    main()
