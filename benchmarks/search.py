"""Benchmark archive search over a large synthetic Arabic archive, on SQLite and PostgreSQL.

Builds N articles (default 200,000) from the real headlines in tests/data/feeds/real/headlines,
recombined with words of the same corpus, a long tail of rare names, numbers and dates,
indexed with the text engine (``bot.text.index_text``) and stored through the migrations'
schema; then runs 100 varied queries (rare, mid-frequency and very common words, two words,
names, alternatives) through ``storage.search.search_articles`` and prints p50 and p95.
The SQLite file lives in a temporary directory; PostgreSQL gets a scratch database that is
dropped at the end.

    .venv/bin/python benchmarks/search.py
    .venv/bin/python benchmarks/search.py --articles 50000 --skip-postgres
    .venv/bin/python benchmarks/search.py --postgres-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.text.normalise import index_text, query_terms  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.search import SEARCH_WINDOW, count_matches, search_articles  # noqa: E402
from tests.corpus import HEADLINES  # noqa: E402

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=730)
FEEDS = 40
# The feeds are made up: never due, so a bot running on the archive never fetches them.
NEVER = NOW + timedelta(days=3650)
WEEKDAYS = ["السبت", "الأحد", "الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة"]
MONTHS = ["يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر"]
LETTERS = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"


@dataclass(frozen=True, slots=True)
class Row:
    """One synthetic article, ready to insert."""

    id: int
    feed_id: int
    title: str
    summary: str
    title_terms: str
    summary_terms: str
    published_at: datetime


def headlines() -> list[str]:
    """The real Arabic headlines the archive is made from."""
    found = [
        record["headline"].strip()
        for path in sorted(HEADLINES.glob("*.json"))
        for record in json.loads(path.read_text(encoding="utf-8"))["headlines"]
    ]
    if not found:
        raise SystemExit(f"no headlines under {HEADLINES}")
    return found


def rare_names(rng: random.Random, count: int) -> list[str]:
    """Made-up proper names: the long tail of people and places a real archive has."""
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(4, 8))))
    return sorted(names)


def iter_rows(count: int, seed: int) -> Iterator[Row]:
    """The archive, row by row: headlines recombined with words, names, numbers and dates
    (streamed: 2,000,000 rows do not fit in memory at once)."""
    rng = random.Random(seed)
    titles = headlines()
    words = [word for title in titles for word in title.split()]  # keeps real frequencies
    names = rare_names(rng, 60_000)
    # Zipf-like: a few names recur in thousands of stories, most in a handful.
    name_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names))]
    name_draws = iter(rng.choices(names, weights=name_weights, k=count * 3))
    started = NOW - SPAN
    for number in range(count):
        base = rng.choice(titles).split()
        for _ in range(rng.randint(1, 3)):
            base[rng.randrange(len(base))] = rng.choice(words)
        if rng.random() < 0.5:
            base.insert(rng.randrange(len(base) + 1), next(name_draws))
        title = " ".join(base)
        published = started + SPAN * (number / count) + timedelta(hours=rng.uniform(-6, 6))
        summary = " ".join(
            [
                *rng.sample(titles, 2),
                " ".join(rng.choices(words, k=rng.randint(8, 20))),
                next(name_draws),
                next(name_draws),
                f"{WEEKDAYS[published.weekday()]} {published.day}",
                f"{MONTHS[rng.randrange(len(MONTHS))]} {published.year}",
            ]
        )
        yield Row(
            id=number + 1,
            feed_id=rng.randint(1, FEEDS),
            title=title,
            summary=summary,
            title_terms=index_text(title),
            summary_terms=index_text(summary),
            published_at=min(published, NOW),
        )


@dataclass(frozen=True, slots=True)
class Query:
    """One benchmark query: its kind, a label to print, and the positions searched."""

    kind: str
    label: str
    positions: list[tuple[str, ...]]


def counted(rows: Iterable[Row], frequency: Counter[str]) -> Iterator[Row]:
    """The rows, counting on the way in how many articles have each term."""
    for row in rows:
        frequency.update(set(f"{row.title_terms} {row.summary_terms}".split()))
        yield row


def build_queries(frequency: Counter[str], total: int, seed: int) -> list[Query]:
    """100 queries of six kinds, drawn from the archive's own document frequencies (how many
    of the ``total`` articles have each term)."""
    rng = random.Random(seed + 1)

    def band(low: float, high: float) -> list[str]:
        return sorted(
            term
            for term, df in frequency.items()
            if low * total <= df < high * total and len(term) > 2
        )

    rare, mid, common = band(0, 0.0005), band(0.005, 0.05), band(0.1, 1.01)
    queries = [Query("rare", term, query_terms(term)) for term in rng.sample(rare, 20)]
    queries += [Query("mid", term, query_terms(term)) for term in rng.sample(mid, 20)]
    queries += [
        Query("common", term, query_terms(term))
        for term in rng.sample(common, min(15, len(common)))
    ]
    titles = headlines()
    while len([query for query in queries if query.kind == "two words"]) < 15:
        words = rng.choice(titles).split()
        start = rng.randrange(max(1, len(words) - 1))
        pair = " ".join(words[start : start + 2])
        if len(query_terms(pair)) == 2:
            queries.append(Query("two words", pair, query_terms(pair)))
    for name in [
        "بوتين",
        "ترامب",
        "هرمز",
        "مصر",
        "إيران",
        "ألمانيا",
        "الخرطوم",
        "السودان",
        "غزة",
        "سوريا",
        "دير الزور",
        "ماسك",
        "الصين",
        "أوكرانيا",
        "نتنياهو",
    ]:
        queries.append(Query("name", name, query_terms(name)))
    while len(queries) < 100:
        # A reader's "A or B" (e.g. a topic with spelling variants), plus one more word.
        first, second = rng.sample(mid + common[:5], 2)
        positions = [query_terms(first)[0] + query_terms(second)[0]]
        if rng.random() < 0.5:
            positions.append(query_terms(rng.choice(mid))[0])
        label = f"{first}|{second}" + (" +1" if len(positions) > 1 else "")
        queries.append(Query("alternatives", label, positions))
    return queries[:100]


def indexable(queries: Sequence[Query], vocabulary: Iterable[str]) -> list[Query]:
    """The same queries keeping only the alternatives some article was indexed under.

    The text engine offers a dozen or more spellings per word (clitic forms) of which few
    can ever be in the index; this shows what search costs when it offers only those.
    """
    known = set(vocabulary)
    return [
        Query(
            query.kind,
            query.label,
            [
                tuple(term for term in position if term in known) or position[:1]
                for position in query.positions
            ],
        )
        for query in queries
    ]


async def load_sqlite(path: Path, rows: Iterable[Row]) -> None:
    """Migrate a fresh file, then insert every row in one transaction (the triggers index)."""
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.upgrade()
    await database.dispose()
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executemany(
                "INSERT INTO feeds (id, url, title, breaking, created_at, failures,"
                " next_fetch_at) VALUES (?, ?, '', 0, ?, 0, ?)",
                [
                    (n, f"https://feed{n}.example/rss", _sqlite_time(NOW), _sqlite_time(NEVER))
                    for n in range(1, FEEDS + 1)
                ],
            )
            connection.executemany(
                "INSERT INTO articles (id, uid, feed_id, link, link_key, title, summary,"
                " title_terms, summary_terms, categories, published_at, first_seen_at,"
                " alertable, breaking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?, 0, 0)",
                (
                    (
                        row.id,
                        f"bench-{row.id}",
                        row.feed_id,
                        _link(row),
                        _link(row),
                        row.title,
                        row.summary,
                        row.title_terms,
                        row.summary_terms,
                        _sqlite_time(row.published_at),
                        _sqlite_time(row.published_at),
                    )
                    for row in rows
                ),
            )
        connection.execute("ANALYZE")
    finally:
        connection.close()


def megabytes(folder: Path) -> float:
    """The size of a folder's files (the database, its WAL and shared memory), in MiB."""
    return sum(item.stat().st_size for item in folder.iterdir()) / 2**20


def _link(row: Row) -> str:
    return f"https://feed{row.feed_id}.example/{row.id}"


def _sqlite_time(moment: datetime) -> str:
    # The storage format of SQLAlchemy's SQLite DateTime (naive UTC).
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def load_postgres(url: str, rows: Iterable[Row]) -> None:
    """Migrate the scratch database, COPY every row in, then VACUUM ANALYZE."""
    database = Database(url)
    await database.upgrade()
    await database.dispose()
    connection = await _connect(url)
    try:
        await connection.copy_records_to_table(
            "feeds",
            columns=["id", "url", "title", "breaking", "created_at", "failures", "next_fetch_at"],
            records=[
                (n, f"https://feed{n}.example/rss", "", False, NOW, 0, NEVER)
                for n in range(1, FEEDS + 1)
            ],
        )
        await connection.copy_records_to_table(
            "articles",
            columns=[
                "id",
                "uid",
                "feed_id",
                "link",
                "link_key",
                "title",
                "summary",
                "title_terms",
                "summary_terms",
                "categories",
                "published_at",
                "first_seen_at",
                "alertable",
                "breaking",
            ],
            records=(
                (
                    row.id,
                    f"bench-{row.id}",
                    row.feed_id,
                    _link(row),
                    _link(row),
                    row.title,
                    row.summary,
                    row.title_terms,
                    row.summary_terms,
                    "[]",
                    row.published_at,
                    row.published_at,
                    False,
                    False,
                )
                for row in rows
            ),
        )
        await connection.execute(
            "SELECT setval('articles_id_seq', (SELECT max(id) FROM articles))"
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def _connect(url: str, database: str | None = None) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=database or parsed.database or "postgres",
    )


async def measure(url: str, queries: Sequence[Query]) -> dict[str, list[float]]:
    """Each query's latency (ms) through search_articles, after one warm-up pass."""
    database = Database(url)
    timings: dict[str, list[float]] = {}
    slowest: list[tuple[float, str, int]] = []
    try:
        for warm in (False, True):
            for query in queries:
                started = time.perf_counter()
                async with database.sessions() as session:
                    hits = await search_articles(session, query.positions, limit=10, now=NOW)
                elapsed = (time.perf_counter() - started) * 1000
                if warm:
                    timings.setdefault(query.kind, []).append(elapsed)
                    timings.setdefault("all", []).append(elapsed)
                    slowest.append((elapsed, f"{query.kind}: {query.label}", len(hits)))
        for elapsed, label, found in sorted(slowest, reverse=True)[:3]:
            print(f"  slow: {elapsed:7.2f} ms  {label} ({found} hits)")
        counted = []
        for query in queries:
            started = time.perf_counter()
            async with database.sessions() as session:
                await count_matches(session, query.positions)
            counted.append((time.perf_counter() - started) * 1000)
        timings["count_matches"] = counted
    finally:
        await database.dispose()
    return timings


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of the values fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def report(
    backend: str,
    timings: dict[str, list[float]],
    what: str = "search_articles latency, ms (limit 10, second pass)",
) -> None:
    """Print p50/p95 (and max) per kind of query and overall."""
    print(f"\n{backend}: {what}")
    print(f"  {'kind':<14}{'n':>4}{'p50':>9}{'p95':>9}{'max':>9}")
    for kind, values in sorted(timings.items(), key=lambda item: item[0] == "all"):
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"  {kind:<14}{len(values):>4}{p50:>9.2f}{p95:>9.2f}{max(values):>9.2f}")


def arguments(description: str) -> argparse.ArgumentParser:
    """The options of the search benchmarks: archive size, seed, which backends."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--articles", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEWSBOT_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server on which a scratch database may be created (and is dropped after)",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    return parser


async def main() -> None:
    """Build, load, measure, print."""
    args = arguments(__doc__.splitlines()[0]).parse_args()

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    started = time.perf_counter()
    frequency: Counter[str] = Counter()
    rows = list(counted(iter_rows(args.articles, args.seed), frequency))
    queries = build_queries(frequency, len(rows), args.seed)
    pruned = indexable(queries, frequency)
    print(f"built {len(rows):,} articles in {time.perf_counter() - started:.1f} s")
    kinds = Counter(query.kind for query in queries)
    print("queries:", ", ".join(f"{kind} {n}" for kind, n in kinds.items()))
    offered = [len(position) for query in queries for position in query.positions]
    kept = [len(position) for query in pruned for position in query.positions]
    print(
        f"alternatives per position: {statistics.mean(offered):.1f} from the text engine,"
        f" {statistics.mean(kept):.1f} of them in the index"
    )
    print(f"search window {SEARCH_WINDOW:,} newest matches")

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "bench.db"
            started = time.perf_counter()
            await load_sqlite(path, rows)
            size = megabytes(Path(scratch))
            print(f"\nSQLite: loaded in {time.perf_counter() - started:.1f} s, {size:.0f} MiB")
            report("SQLite", await measure(f"sqlite+aiosqlite:///{path}", queries))
            report(
                "SQLite, indexed alternatives only",
                await measure(f"sqlite+aiosqlite:///{path}", pruned),
            )

    if not args.skip_postgres:
        name = f"newsbot_bench_{os.getpid()}"
        admin = await _connect(args.postgres_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = (
                make_url(args.postgres_url)
                .set(drivername="postgresql+asyncpg", database=name)
                .render_as_string(False)
            )
            started = time.perf_counter()
            await load_postgres(url, rows)
            print(f"\nPostgreSQL: loaded in {time.perf_counter() - started:.1f} s")
            report("PostgreSQL", await measure(url, queries))
            report("PostgreSQL, indexed alternatives only", await measure(url, pruned))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
