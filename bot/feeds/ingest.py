"""The poll cycle: fetch each feed, parse it off the event loop, store its articles.

Feeds are fetched concurrently and independently: one feed's failure or slowness never
delays another's. A failing feed backs off exponentially and keeps its last error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.feeds.fetch import Fetcher, FetchError, FetchResult
from bot.feeds.indexing import IndexedFeed, display_title, parse_and_index
from bot.feeds.links import canonical_link, host_of
from bot.feeds.parse import FeedError, ParsedEntry
from bot.text.breaking import DEFAULT_MARKERS
from storage.articles import ArticleData, UpsertResult, upsert_articles
from storage.db import Database
from storage.feeds import get_feed_by_url, list_due_feeds, list_feeds, update_feed
from storage.models import Feed, utcnow

log = logging.getLogger(__name__)


class NewArticles(Protocol):
    """Who hears of the articles stored for the first time (the composition root wires the
    fan-out here: feeds in and alerts out meet nowhere else)."""

    async def alert_articles(
        self, session: AsyncSession, article_ids: Sequence[int], now: datetime
    ) -> int:
        """Called inside the transaction that stored them; how many deliveries it made."""

    def committed(self) -> None:
        """That transaction has committed (called only when it made deliveries)."""


# A feed's clock may run a little ahead of ours; beyond this a date is not trusted.
CLOCK_SKEW = timedelta(minutes=5)
UID_MAX = 400


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    """What one poll of one feed did."""

    feed_id: int
    status: str  # "fetched", "unchanged" or "failed"
    new_ids: tuple[int, ...] = ()
    corrected: int = 0
    error: str | None = None
    title: str = ""
    items: int = 0


@dataclass(slots=True)
class PollSummary:
    """What one poll cycle over many feeds did."""

    outcomes: list[FeedOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many feeds ended with this status."""
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def new_articles(self) -> int:
        """Articles stored for the first time in this cycle."""
        return sum(len(outcome.new_ids) for outcome in self.outcomes)


@dataclass(frozen=True, slots=True)
class _FeedState:
    """The parts of a feed a poll needs, read before any network I/O."""

    id: int
    url: str
    etag: str | None
    last_modified: str | None
    first_fetch: bool
    breaking: bool
    failures: int
    added_in_chat: bool


class Ingestor:
    """Polls feeds into the archive."""

    def __init__(
        self,
        db: Database,
        fetcher: Fetcher,
        *,
        poll_interval: timedelta,
        backlog_age: timedelta,
        max_backoff: timedelta,
        parse_pool: Executor | None = None,
        chat_fetcher: Fetcher | None = None,
        on_new: NewArticles | None = None,
        markers: tuple[str, ...] = DEFAULT_MARKERS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._on_new = on_new
        self._markers = markers
        # Parsing is CPU-bound pure Python: in a process pool it uses every core and never
        # holds this process's GIL; without one it runs in a thread.
        self._parse_pool = parse_pool
        self._fetcher = fetcher
        # Feeds editors added from a chat are fetched by this one (private addresses refused).
        self._chat_fetcher = chat_fetcher or fetcher
        self._poll_interval = poll_interval
        self._backlog_age = backlog_age
        self._max_backoff = max_backoff
        self._clock = clock
        # Writes go one after another (the dedup lookup and the insert must not interleave),
        # and those queued meanwhile share a commit.
        self._writer = db.group_writer()

    async def aclose(self) -> None:
        """Finish the writes already queued; the database may then be closed."""
        await self._writer.aclose()

    async def poll(
        self,
        *,
        due_only: bool = False,
        on_progress: Callable[[FeedOutcome], None] | None = None,
    ) -> PollSummary:
        """Poll every feed (or only those due) concurrently and report what happened."""
        async with self._db.sessions() as session:
            feeds = await (
                list_due_feeds(session, self._clock()) if due_only else list_feeds(session)
            )
            states = [_state(feed) for feed in feeds]
        summary = PollSummary()

        async def one(state: _FeedState) -> None:
            outcome = await self._poll_state(state)
            summary.outcomes.append(outcome)
            if on_progress is not None:
                on_progress(outcome)

        async with asyncio.TaskGroup() as group:
            for state in states:
                group.create_task(one(state))
        return summary

    async def watch(
        self,
        *,
        tick: float = 1.0,
        on_progress: Callable[[FeedOutcome], None] | None = None,
    ) -> None:
        """Poll each feed whenever it is due, forever; a slow feed holds up no other."""
        in_flight: dict[int, asyncio.Task[FeedOutcome]] = {}
        while True:
            async with self._db.sessions() as session:
                due = [_state(feed) for feed in await list_due_feeds(session, self._clock())]
            for state in due:
                if state.id not in in_flight:
                    task = asyncio.create_task(self._poll_state(state))
                    in_flight[state.id] = task
                    task.add_done_callback(partial(_forget, in_flight, state.id, on_progress))
            try:
                await asyncio.sleep(tick)
            except asyncio.CancelledError:
                for task in in_flight.values():
                    task.cancel()
                await asyncio.gather(*in_flight.values(), return_exceptions=True)
                raise

    async def poll_feed(self, feed_id: int, *, fetcher: Fetcher | None = None) -> FeedOutcome:
        """Poll one feed now, whatever its schedule (through ``fetcher`` if given, e.g. one
        that refuses private addresses for a feed an editor adds from a chat)."""
        async with self._db.sessions() as session:
            feed = await session.get(Feed, feed_id)
            if feed is None:
                raise LookupError(f"no feed with id {feed_id}")
            state = _state(feed)
        return await self._poll_state(state, fetcher)

    async def _poll_state(self, state: _FeedState, fetcher: Fetcher | None = None) -> FeedOutcome:
        if fetcher is None:
            fetcher = self._chat_fetcher if state.added_in_chat else self._fetcher
        try:
            result = await fetcher.fetch(
                state.url, etag=state.etag, last_modified=state.last_modified
            )
            parsed = None if result.not_modified else await self._parse(result)
        except (FetchError, FeedError) as exc:
            return await self._record_failure(state, exc)
        except Exception as exc:  # a bug must not stop the other feeds
            log.exception("polling feed %s failed unexpectedly", state.id)
            return await self._record_failure(state, exc)
        return await self._store(state, result, parsed)

    async def _parse(self, result: FetchResult) -> IndexedFeed:
        loop = asyncio.get_running_loop()
        headers = {  # all the parser reads, and cheap to send to a worker process
            name: result.headers[name]
            for name in ("content-type", "content-language")
            if name in result.headers
        }
        return await loop.run_in_executor(
            self._parse_pool, parse_and_index, result.body, headers, result.url, self._markers
        )

    async def _store(
        self, state: _FeedState, result: FetchResult, parsed: IndexedFeed | None
    ) -> FeedOutcome:
        now = self._clock()
        items = [] if parsed is None else self._articles(state, parsed, now)
        values: dict[str, object] = {
            "last_fetch_at": now,
            "last_success_at": now,
            "last_status": "unchanged" if parsed is None else "ok",
            "last_error": None,
            "failures": 0,
            # Jitter only ever shortens the wait: feeds drift apart, none waits too long.
            "next_fetch_at": now + self._poll_interval * random.uniform(0.9, 1.0),  # noqa: S311
            "etag": result.etag,
            "last_modified": result.last_modified,
        }
        if parsed is not None:
            values.update({"title": parsed.title} if parsed.title else {})
            values.update({"site_link": parsed.link} if parsed.link else {})

        async def write(session: AsyncSession) -> tuple[UpsertResult, int] | None:
            if not await update_feed(session, state.id, **values):
                return None  # removed while we were fetching
            moved = result.permanent_url
            if moved and moved != state.url and await get_feed_by_url(session, moved) is None:
                await update_feed(session, state.id, url=moved)
            upserted = await upsert_articles(session, state.id, items, now)
            alerted = 0
            if self._on_new is not None and upserted.new_ids:
                # Same transaction: a crash stores the article with its alert, or neither.
                alerted = await self._on_new.alert_articles(session, upserted.new_ids, now)
            return upserted, alerted

        written = await self._writer.run(write)
        if written is None:
            return FeedOutcome(state.id, "failed", error="feed removed")
        upserted, alerted = written
        if alerted and self._on_new is not None:
            self._on_new.committed()
        return FeedOutcome(
            state.id,
            "unchanged" if parsed is None else "fetched",
            new_ids=tuple(upserted.new_ids),
            corrected=upserted.corrected,
            title=parsed.title if parsed else "",
            items=len(items),
        )

    async def _record_failure(self, state: _FeedState, exc: Exception) -> FeedOutcome:
        now = self._clock()
        message = (str(exc) or type(exc).__name__).splitlines()[0][:1000]
        failures = state.failures + 1
        delay = min(self._poll_interval * 2 ** min(failures, 30), self._max_backoff)
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            delay = max(delay, min(timedelta(seconds=retry_after), self._max_backoff))
        values = {
            "last_fetch_at": now,
            "last_status": "error",
            "last_error": message,
            "failures": failures,
            "next_fetch_at": now + delay,
        }

        async def write(session: AsyncSession) -> bool:
            return await update_feed(session, state.id, **values)

        await self._writer.run(write)
        return FeedOutcome(state.id, "failed", error=message)

    def _articles(
        self, state: _FeedState, parsed: IndexedFeed, now: datetime
    ) -> list[ArticleData]:
        links = Counter(entry.link for entry in parsed.entries if entry.link)
        homepages = {parsed.link, canonical_link(state.url)}
        scope = host_of(state.url)
        oldest_alertable = now - self._backlog_age
        articles = []
        for entry, entry_terms, headline_breaking in zip(
            parsed.entries, parsed.terms, parsed.breaking, strict=True
        ):
            published = entry.published
            if published is None or published > now + CLOCK_SKEW:
                published = now
            # A link several items share (or the site's home page) names no one story.
            trusted_link = (
                entry.link
                if entry.link and links[entry.link] == 1 and entry.link not in homepages
                else None
            )
            articles.append(
                ArticleData(
                    uid=_uid(entry, state.id, scope),
                    link=entry.link,
                    title=display_title(entry),
                    summary=entry.summary,
                    title_terms=entry_terms[0],
                    summary_terms=entry_terms[1],
                    categories=entry.categories,
                    published_at=published,
                    alertable=not state.first_fetch and published >= oldest_alertable,
                    breaking=state.breaking or headline_breaking,
                    link_key=trusted_link,
                )
            )
        return articles


def _forget(
    in_flight: dict[int, asyncio.Task[FeedOutcome]],
    feed_id: int,
    on_progress: Callable[[FeedOutcome], None] | None,
    task: asyncio.Task[FeedOutcome],
) -> None:
    in_flight.pop(feed_id, None)
    if on_progress is not None and not task.cancelled() and task.exception() is None:
        on_progress(task.result())


def _state(feed: Feed) -> _FeedState:
    return _FeedState(
        id=feed.id,
        url=feed.url,
        etag=feed.etag,
        last_modified=feed.last_modified,
        first_fetch=feed.last_success_at is None,
        breaking=feed.breaking,
        failures=feed.failures,
        added_in_chat=feed.added_in_chat,
    )


def _uid(entry: ParsedEntry, feed_id: int, scope: str) -> str:
    """The article's identity: its guid, else its canonical link, else source and title."""
    if entry.guid:
        as_link = (
            canonical_link(entry.guid) if entry.guid.startswith(("http:", "https:")) else None
        )
        # A guid that is not a URL ("abc", "12345") is unique only within its publisher.
        uid = f"u:{as_link}" if as_link else f"g:{scope}:{entry.guid}"
    elif entry.link:
        uid = f"u:{entry.link}"
    else:
        uid = "h:" + _digest(f"{feed_id}\n{entry.title}\n{entry.summary}")
    return uid if len(uid) <= UID_MAX else uid[:2] + _digest(uid)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


__all__ = ["FeedOutcome", "Ingestor", "PollSummary"]
