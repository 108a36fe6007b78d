"""Archive search: ranked matches for the text engine's normalised terms.

Search runs on the terms callers pass in (storage never normalises text itself): FTS5 with
bm25 on SQLite, a GIN-indexed tsvector on PostgreSQL (both indexes are built by migration
0002), ranked by relevance and recency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Text,
    any_,
    bindparam,
    case,
    column,
    extract,
    func,
    literal_column,
    select,
    table,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.models import Article

# Ranking, the same on both backends:
#
#     score = relevance / (1 + age_days / RECENCY_DAYS)
#     relevance = sum over the query's terms t found in the article of
#                 (k1 + 1) * f(t) / (f(t) + k1 * norm) * idf(t),   k1 = 1.2
#     f(t) = TITLE_WEIGHT * occurrences in the title + SUMMARY_WEIGHT * in the summary
#
# On SQLite relevance is FTS5's own bm25(articles_fts, 10, 1): norm grows with the article's
# length and idf with the term's rarity. PostgreSQL has no bm25; it computes the same sum
# per query position with norm 1, idf 1 and f = TITLE_WEIGHT when the title has the
# position, else SUMMARY_WEIGHT (see _pg_relevance). FTS5 weighs the counts before
# saturating them, so a title hit is worth about twice a summary-only mention (at most
# k1 + 1 = 2.2 times), not ten times.
#
# age_days is how long before `now` the article was published (never negative). The blend
# is a product, so only ratios matter and both backends' scales agree: at equal relevance
# the newer article wins; a title hit outranks a summary-only mention published up to about
# RECENCY_DAYS later, and no longer one published a month later.
TITLE_WEIGHT = 10.0


SUMMARY_WEIGHT = 1.0


RECENCY_DAYS = 3.0


_BM25_K1 = 1.2  # FTS5's, fixed in its bm25()


_SCORE: Float[float] = Float()


# Only the newest SEARCH_WINDOW matches (by id, i.e. by arrival) are ranked. Ranking every
# article that contains a common word costs ~1 s at 1M articles on SQLite (NOTES.md), and on
# PostgreSQL each ranked row is a heap read (about 30 us at 200,000 articles on a default
# server, benchmarks/search.py). It costs little in quality: a match about a day old needs
# more relevance than any one word can bring to outrank today's title hits, and 150 matches
# of a word common enough to fill the window span the last several hours of news (15 pages
# of 10). 300 put PostgreSQL's p95 at 46-56 ms at 200,000 articles; 150 at 43 ms. Rarer
# queries match fewer rows than this and are ranked in full.
SEARCH_WINDOW = 150


# A reader's query longer than this is cut: enough for any sentence, bounded work per search.
MAX_POSITIONS = 8


MAX_ALTERNATIVES = 64


# PostgreSQL indexes no word longer than 2047 bytes: such a term can never match there, so it
# matches nowhere (the backends must agree).
MAX_TERM_BYTES = 2047


# A plain term: letters and digits only. Anything else (quotes, '*', ':', '(', spaces) is not
# something the text engine produces, so it is refused rather than escaped into a guess.
_PLAIN_TERM = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the article (its feed loaded) and the score it was ranked by."""

    article: Article
    score: float


async def search_articles(
    session: AsyncSession,
    positions: Sequence[Sequence[str]],
    *,
    limit: int = 10,
    offset: int = 0,
    now: datetime,
) -> Sequence[SearchHit]:
    """Articles matching every position (any term of each), best first, a page at a time.

    ``positions`` come from the text engine's ``query_terms``; the page is stable for a
    given ``now`` (ties go to the higher id).
    """
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    ranked = (await _rank(session, positions, now=now, window=SEARCH_WINDOW))[offset:][:limit]
    articles = {
        article.id: article
        for article in await list_found_articles(session, [id_ for id_, _ in ranked])
    }
    return [SearchHit(articles[id_], score) for id_, score in ranked if id_ in articles]


@dataclass(frozen=True, slots=True)
class Ranking:
    """A search's ranked matches: the ids of the newest SEARCH_WINDOW, best first, and
    whether older matches exist beyond them."""

    ids: tuple[int, ...]
    more: bool


async def rank_matches(
    session: AsyncSession, positions: Sequence[Sequence[str]], *, now: datetime
) -> Ranking:
    """Every page of a search at once, as article ids (best first), and whether more matched
    than are ranked: one ranking query (PostgreSQL also gathers the window first), where
    counting the matches apart would search a second time."""
    # One match past the window says there are more; dropping that oldest one leaves the
    # window's own order (an article's score does not depend on the others).
    ranked = await _rank(session, positions, now=now, window=SEARCH_WINDOW + 1)
    more = len(ranked) > SEARCH_WINDOW
    oldest = min((id_ for id_, _ in ranked), default=0) if more else 0
    return Ranking(tuple(id_ for id_, _ in ranked if id_ != oldest), more)


async def list_found_articles(session: AsyncSession, ids: Sequence[int]) -> list[Article]:
    """These articles with their feeds, in the order given (those deleted since are left
    out)."""
    if not ids:
        return []
    found = await session.scalars(
        select(Article).options(joinedload(Article.feed)).where(Article.id.in_(ids))
    )
    by_id = {article.id: article for article in found}
    return [by_id[id_] for id_ in ids if id_ in by_id]


async def count_matches(
    session: AsyncSession, positions: Sequence[Sequence[str]], *, cap: int | None = None
) -> int:
    """How many articles match, counted up to ``cap`` (by default the most search ranks)."""
    cap = SEARCH_WINDOW if cap is None else cap
    query = _Query.of(positions)
    if query is None or cap <= 0:
        return 0
    if not _is_postgresql(session):
        matching = select(_FTS.c.rowid).where(_fts_matches(query)).limit(cap).subquery()
        return int(await session.scalar(select(func.count()).select_from(matching)) or 0)
    # Bitmap plans for these terms (see _pg_window): the scan stops reading rows at the cap.
    await session.execute(select(_pg_set(_PG_CUSTOM | _PG_BITMAPS_ONLY)))
    matching = select(_PG_ARTICLES.c.id).where(_pg_matches(query)).limit(cap).subquery()
    count = await session.scalar(select(func.count()).select_from(matching))
    await _pg_reset_planner(session)
    return int(count or 0)


async def _rank(
    session: AsyncSession,
    positions: Sequence[Sequence[str]] | Iterable[str],
    *,
    now: datetime,
    window: int,
) -> list[tuple[int, float]]:
    """The ids and scores of the newest ``window`` matches, best first."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given as now; use aware UTC")
    query = _Query.of(positions)
    if query is None:
        return []
    if _is_postgresql(session):
        query = await _pg_known(session, query)
        if query is None:
            return []
        ids = await _pg_window(session, query, window)
        if not ids:
            return []
        statement = _pg_ranked(query, ids, now)
    else:
        statement = _sqlite_ranked(query, now, window)
    return [(id_, float(score)) for id_, score in await session.execute(statement)]


@dataclass(frozen=True, slots=True)
class _Query:
    """A search as positions of plain terms, ready to be written in either backend's syntax."""

    positions: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, positions: Sequence[Sequence[str]] | Iterable[str]) -> _Query | None:
        """The query to run, or None when nothing can match (no position, or one with no
        usable term: all positions must match)."""
        kept: list[tuple[str, ...]] = []
        for position in list(positions)[:MAX_POSITIONS]:
            # A bare string is one term, not a sequence of one-letter alternatives.
            alternatives = (position,) if isinstance(position, str) else position
            terms = tuple(dict.fromkeys(term for term in alternatives if _is_plain(term)))
            if not terms:
                return None
            terms = terms[:MAX_ALTERNATIVES]
            if terms not in kept:
                kept.append(terms)
        return cls(tuple(kept)) if kept else None

    def fts5(self) -> str:
        """The FTS5 MATCH expression: each term a quoted string, so nothing is syntax."""
        return " AND ".join(
            "(" + " OR ".join('"' + term.replace('"', '""') + '"' for term in terms) + ")"
            for terms in self.positions
        )

    def tsquery(self) -> str:
        """The to_tsquery() text: each lexeme quoted, | within a position, & between."""
        return " & ".join(self.tsquery_positions())

    def tsquery_positions(self, weight: str = "") -> list[str]:
        """Each position as to_tsquery() text: its lexemes quoted (and restricted to a
        weight, A for the title), joined by |."""
        suffix = f":{weight}" if weight else ""
        return [
            "(" + " | ".join(_tsquery_lexeme(term) + suffix for term in terms) + ")"
            for terms in self.positions
        ]


def _is_plain(term: object) -> bool:
    return (
        isinstance(term, str)
        and _PLAIN_TERM.fullmatch(term) is not None
        and len(term.encode()) <= MAX_TERM_BYTES
    )


def _tsquery_lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# SQLite: the FTS5 table of migration 0002 (its rowid is the article's id).
_FTS = table("articles_fts", column("rowid", Integer))


_FTS_TABLE: ColumnElement[Any] = literal_column("articles_fts")


def _fts_matches(query: _Query) -> ColumnElement[bool]:
    return _FTS_TABLE.bool_op("MATCH")(bindparam("fts_query", query.fts5(), type_=Text))


def _sqlite_ranked(query: _Query, now: datetime, window: int) -> Select[int, float]:
    # bm25() is only callable in the MATCH query itself; FTS5 walks the doclist newest rowid
    # first and stops at the window, computing bm25 only for those rows.
    bm25 = func.bm25(_FTS_TABLE, TITLE_WEIGHT, SUMMARY_WEIGHT, type_=Float)
    hits = (
        select(_FTS.c.rowid.label("id"), (-bm25).label("relevance"))
        .where(_fts_matches(query))
        .order_by(_FTS.c.rowid.desc())
        .limit(window)
        .subquery("hits")
    )
    # SQLite stores the naive UTC datetime as text; julianday() reads it in days.
    now_days = now.timestamp() / 86_400 + 2_440_587.5
    age_days = func.max(
        0.0, bindparam("now_days", now_days, type_=Float) - func.julianday(Article.published_at)
    )
    score = type_coerce(hits.c.relevance / (1.0 + age_days / RECENCY_DAYS), _SCORE).label("score")
    return (
        select(Article.id, score)
        .join(hits, hits.c.id == Article.id)
        .order_by(score.desc(), Article.id.desc())
    )


# PostgreSQL: the generated tsvector of migration 0002 (not in the model: SQLite has none).
_PG_ARTICLES = table("articles", column("id", Integer), column("search_vector"))


_PG_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")


def _pg_matches(query: _Query) -> ColumnElement[bool]:
    # 'simple': the terms are already normalised, so no stemming and no stop words.
    tsquery = func.to_tsquery(_PG_SIMPLE, bindparam("ts_query", query.tsquery(), Text))
    return _PG_ARTICLES.c.search_vector.bool_op("@@")(tsquery)


def _pg_relevance(query: _Query) -> ColumnElement[float]:
    # FTS5's bm25 sum without idf or length normalisation, with f() per position reduced to
    # where the article has it: TITLE_WEIGHT in the title, else SUMMARY_WEIGHT (every row
    # here matched, so a position missing from the title is in the summary). Counting
    # occurrences with ts_rank_cd instead costs 28 us a row for a position of twelve
    # alternatives (as the text engine makes them); one @@ against the title's weight, 5 us.
    total: ColumnElement[float] | None = None
    for number, position in enumerate(query.tsquery_positions(weight="A")):
        in_title = literal_column("articles.search_vector").bool_op("@@")(
            func.to_tsquery(_PG_SIMPLE, bindparam(f"title_{number}", position, Text))
        )
        saturated = case((in_title, _saturated(TITLE_WEIGHT)), else_=_saturated(SUMMARY_WEIGHT))
        total = saturated if total is None else total + saturated
    assert total is not None  # noqa: S101 - a _Query has at least one position
    return total


def _saturated(frequency: float) -> float:
    # bm25's term-frequency saturation, as FTS5 applies it to the weighted frequency.
    return (_BM25_K1 + 1) * frequency / (frequency + _BM25_K1)


_PG_COMMON = text(
    "SELECT t FROM unnest(CAST(:terms AS text[])) AS t WHERE t IN ("
    "SELECT unnest(most_common_elems::text::text[]) FROM pg_stats"
    " WHERE schemaname = current_schema() AND tablename = 'articles'"
    " AND attname = 'search_vector')"
)
_PG_PROBE = text(
    "SELECT t FROM unnest(CAST(:terms AS text[])) AS t WHERE EXISTS ("
    "SELECT 1 FROM articles WHERE search_vector @@ to_tsquery('simple', quote_literal(t)))"
)


async def _pg_known(session: AsyncSession, query: _Query) -> _Query | None:
    """The query without the spellings no article has (None if a position is left empty).

    The engine offers every spelling a word may take; most occur nowhere. Each is one
    probe of the GIN index here, where carrying them into the window's scans costs a GIN
    lookup per slice.
    """
    terms = sorted({term for position in query.positions for term in position})
    if len(terms) == len(query.positions):
        return query  # one spelling a position: nothing to prune
    # A common word is known from the statistics ANALYZE keeps (its most common lexemes):
    # probing the index for it builds a bitmap of every article that has it (50 ms for a
    # word in a quarter of 2,000,000 articles), where a rare word's probe costs nothing.
    known = set(await session.scalars(_PG_COMMON, {"terms": terms}))
    rare = [term for term in terms if term not in known]
    if rare:
        known.update(await session.scalars(_PG_PROBE, {"terms": rare}))
    kept = tuple(tuple(term for term in position if term in known) for position in query.positions)
    return None if not all(kept) else _Query(kept)


async def _pg_window(session: AsyncSession, query: _Query, size: int) -> list[int]:
    """The ids of the newest ``size`` matches, newest first, at a bounded cost.

    Left to itself the planner does badly here (measured at 200,000 articles): it walks the
    primary key backwards until enough rows match whenever it thinks matches are frequent,
    which reads the whole table for a word frequent last year and absent this month; and a
    GIN bitmap reads every matching row, however many. So the window is gathered in slices
    of ids, newest first. The first is small, so any plan for it is cheap, and it is all a
    common word needs. The next ones are read with bitmap plans only: the GIN bitmap ANDed
    with a primary-key range reads only the slice's matching rows. Each is sized from the
    density seen so far.
    """
    newest = await session.scalar(
        select(select(func.max(_PG_ARTICLES.c.id)).scalar_subquery(), _pg_set(_PG_CUSTOM))
    )
    window: list[int] = []
    high, span = newest or 0, 2 * size
    while high > 0 and len(window) < size:
        low = max(0, high - span)
        # The last slice reaches the oldest article: there a primary-key bitmap (0.13 us an
        # id) would only exclude the few newer matches, so the range is left unindexable.
        ids = _PG_ARTICLES.c.id if low else _PG_ARTICLES.c.id + 0
        found = await session.scalars(
            select(_PG_ARTICLES.c.id)
            .where(_pg_matches(query), ids > low, ids <= high)
            .order_by(_PG_ARTICLES.c.id.desc())
            .limit(size - len(window))
        )
        before = len(window)
        window.extend(found)
        if high == newest and len(window) < size and low > 0:
            await session.execute(select(_pg_set(_PG_BITMAPS_ONLY)))
        # Half as much again as the density so far says is missing (each matching row read
        # costs about as much as scanning the GIN entries again for one more slice); eight
        # times the span after a slice without a match (words come in bursts: a weekday, an
        # event), so a gap costs a few slices, not one per span.
        missing, seen = size - len(window), (newest or 0) - low
        span = 3 * missing * seen // (2 * len(window)) + 1 if len(window) > before else 8 * span
        high = low
    await _pg_reset_planner(session)
    return window


# Plans for the actual terms: asyncpg prepares every statement, and a prepared statement's
# generic plan cannot see how common the terms are. Then, past the first slice, bitmap
# scans only. LOCAL: they end with the caller's transaction at the latest, and are reset as
# soon as the window is read.
_PG_CUSTOM = {"plan_cache_mode": "force_custom_plan"}


_PG_BITMAPS_ONLY = {"enable_indexscan": "off", "enable_seqscan": "off"}


def _pg_set(settings: dict[str, str]) -> ColumnElement[Any]:
    changes = [func.set_config(name, value, True) for name, value in settings.items()]
    return func.concat(*changes)


_PG_SETTING = table("pg_settings", column("name", Text), column("reset_val", Text))


async def _pg_reset_planner(session: AsyncSession) -> None:
    await session.execute(
        select(func.set_config(_PG_SETTING.c.name, _PG_SETTING.c.reset_val, True)).where(
            _PG_SETTING.c.name.in_([*_PG_CUSTOM, *_PG_BITMAPS_ONLY])
        )
    )


def _pg_ranked(query: _Query, window: list[int], now: datetime) -> Select[int, float]:
    age_seconds = extract(
        "epoch", bindparam("now", now, type_=Article.published_at.type) - Article.published_at
    )
    age_days = func.greatest(0.0, age_seconds / 86_400.0)
    score = type_coerce(_pg_relevance(query) / (1.0 + age_days / RECENCY_DAYS), _SCORE)
    return (
        select(Article.id, score.label("score"))
        .where(Article.id == any_(bindparam("window", window, postgresql.ARRAY(Integer))))
        .order_by(score.desc(), Article.id.desc())
    )
