"""Where the test corpus lives: tests/data, inside the repository.

The real and edge-case feeds, the real headlines and the founding story are described, with
their sources and licences, in tests/data/README.md and the manifests beside the files. Tests
and benchmarks take every path from here, so a lone clone has all it needs.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
FEEDS = DATA / "feeds"
HEADLINES = FEEDS / "real" / "headlines"
SEED_STORY = DATA / "seed" / "breaking-story-ar.txt"
# The hand-labelled relevance set for topic matching and search (tests/data/README.md).
RELEVANCE = DATA / "relevance.json"


def feed_documents() -> list[Path]:
    """Every feed document in tests/data/feeds: the real ones, then the edge cases."""
    return sorted(FEEDS.glob("real/*.xml")) + sorted(FEEDS.glob("edge/*.xml"))
