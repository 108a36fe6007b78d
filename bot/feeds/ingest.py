"""The poll cycle: fetch each feed, parse it off the event loop, store its articles.

Feeds are fetched concurrently and independently: one feed's failure or slowness never
delays another's. A failing feed backs off exponentially and keeps its last error.

Several processes may poll one database: a process leases the feeds it is about to fetch
(``storage.feeds.lease_feeds``), so each due feed is fetched by one of them. A lease is
short (``LEASE``) and renewed while its poll runs, however long the poll waits for a
fetch slot; storing the poll's outcome releases it. A process that dies stops renewing:
its feeds are free again within ``LEASE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.feeds.fetch import Fetcher, FetchError, FetchResult
from bot.feeds.indexing import IndexedFeed, display_title, parse_and_index
from bot.feeds.links import canonical_link, host_of
from bot.feeds.parse import FeedError, ParsedEntry, storable_link
from bot.feeds.stories import StoryAssigner
from bot.text.breaking import DEFAULT_MARKERS
from storage.articles import ArticleData, UpsertResult, upsert_articles
from storage.db import Database, process_holder
from storage.feeds import (
    feed_column_room,
    get_feed_by_url,
    lease_feeds,
    release_leases,
    renew_leases,
    update_feed,
)
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


# How long a process holds a feed it leased without renewing the lease: a dead process's
# feeds are fetched by the others this long after it died, at the latest. A live one renews
# its leases every LEASE_RENEWAL, so a fetch may take longer (up to the fetch timeout, after
# waiting for a slot) and a database slow to answer a renewal or two loses nothing.
LEASE = timedelta(seconds=8)
LEASE_RENEWAL = 2.0
# The most feeds the watcher holds at once: enough to keep the fetch slots busy, few enough
# that the other processes polling the same database get their share of a large backlog.
LEASE_BATCH = 200
# What an outcome stored sets: the feed is nobody's any more.
_RELEASED: dict[str, object] = {"leased_by": None, "leased_until": None}
# A feed's clock may run a little ahead of ours; beyond this a date is not trusted.
CLOCK_SKEW = timedelta(minutes=5)
UID_MAX = 400
# A validator longer than its column is not stored (a cut one would never match): the
# next fetch is then a full one, as for a server that sends none.
ETAG_ROOM = feed_column_room("etag")
LAST_MODIFIED_ROOM = feed_column_room("last_modified")
ERROR_ROOM = feed_column_room("last_error")
# What no database text holds (PostgreSQL refuses NUL; UTF-8 has no lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


# Upper bounds, in seconds, of the fetch-duration buckets /metrics shows.
FETCH_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class FetchStats:
    """What this process's polls did since it started, for /metrics: polls by outcome
    (``FeedOutcome.status``) and how long they took."""

    outcomes: Counter[str] = field(default_factory=Counter)
    seconds_sum: float = 0.0
    # Polls that took at most FETCH_SECONDS_BUCKETS[i] seconds (cumulative), then all.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(FETCH_SECONDS_BUCKETS) + 1))

    def observe(self, status: str, seconds: float) -> None:
        """Count one poll that ended with ``status`` after ``seconds``."""
        self.outcomes[status] += 1
        self.seconds_sum += seconds
        for index, bound in enumerate(FETCH_SECONDS_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
        self.buckets[-1] += 1


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
        stories: StoryAssigner | None = None,
        markers: tuple[str, ...] = DEFAULT_MARKERS,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
        lease_batch: int = LEASE_BATCH,
    ) -> None:
        """``holder``: who this process is in the leases it takes (default
        :func:`~storage.db.process_holder`); ``stories`` puts each new article in a story
        before ``on_new`` hears of it."""
        self._db = db
        self._on_new = on_new
        self._stories = stories
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
        self.stats = FetchStats()
        self._holder = holder or process_holder()
        self._lease_batch = lease_batch
        # The feeds this process leased and is polling now: their leases are renewed.
        self._held: set[int] = set()

    async def aclose(self) -> None:
        """Finish the writes already queued; the database may then be closed."""
        await self._writer.aclose()

    async def poll(
        self,
        *,
        due_only: bool = False,
        on_progress: Callable[[FeedOutcome], None] | None = None,
    ) -> PollSummary:
        """Poll every feed (or only those due) concurrently and report what happened.

        Every feed this process can lease, that is: a feed another process is polling at
        this moment is left to it.
        """
        states = await self._lease(due_only=due_only)
        summary = PollSummary()

        async def one(state: _FeedState) -> None:
            outcome = await self._poll_leased(state)
            summary.outcomes.append(outcome)
            if on_progress is not None:
                on_progress(outcome)

        keeper = asyncio.create_task(self._keep_leases())
        try:
            async with asyncio.TaskGroup() as group:
                for state in states:
                    group.create_task(one(state))
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self._release({state.id for state in states} & self._held)
        return summary

    async def watch(
        self,
        *,
        tick: float = 1.0,
        on_progress: Callable[[FeedOutcome], None] | None = None,
        report: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Poll each feed whenever it is due, forever; a slow feed holds up no other.

        Nothing that fails ends it: a failed look for due feeds (the database unreachable)
        is tried again after a growing pause, and a feed whose poll failed rests a growing
        while (at most a poll interval) before the next try, even when the database could
        not record its failure. ``report`` hears how the watcher is doing (None: well, else
        what failed) and then owns the logging; without it failures are logged here, at
        ERROR once per streak.
        """
        loop = asyncio.get_running_loop()
        longest_rest = self._poll_interval.total_seconds()
        longest_pause = max(tick, min(longest_rest, 5.0))  # a look for due feeds costs little
        in_flight: dict[int, asyncio.Task[FeedOutcome]] = {}
        failures: dict[int, int] = {}  # feed → polls in a row that failed
        resting: dict[int, float] = {}  # feed → when it may be polled again (loop time)
        broken: set[int] = set()  # feeds whose last poll raised: the watcher's own failure
        # Set when half the leased feeds are done: lease more at once, not at the next tick.
        refill = asyncio.Event()
        streak = lookups_failed = 0

        def heard(error: BaseException | None) -> None:
            nonlocal streak
            if report is not None:
                report(error)
            elif error is None and streak:
                log.warning("the feed watcher works again after %d failures", streak)
            elif error is not None and not streak:
                log.error(
                    "the feed watcher failed, retrying until it works: %s", error, exc_info=error
                )
            streak = 0 if error is None else streak + 1

        def polled(feed_id: int, task: asyncio.Task[FeedOutcome]) -> None:
            in_flight.pop(feed_id, None)
            if len(in_flight) == self._lease_batch // 2:
                refill.set()
            if task.cancelled():
                return
            error = task.exception()
            if error is None and task.result().status != "failed":
                failures.pop(feed_id, None)
                resting.pop(feed_id, None)
                broken.discard(feed_id)
                return
            failed = failures[feed_id] = failures.get(feed_id, 0) + 1
            resting[feed_id] = loop.time() + min(tick * 2.0 ** min(failed, 20), longest_rest)
            if error is not None:
                broken.add(feed_id)
                heard(error)

        keeper = asyncio.create_task(self._keep_leases())
        try:
            while True:
                refill.clear()
                now = loop.time()
                # A failing feed not leased again long after its rest had its failure
                # recorded (it waits its backoff) or was removed: it rests no more in memory.
                for feed_id in [f for f, until in resting.items() if until + longest_rest < now]:
                    if feed_id not in in_flight:
                        del resting[feed_id]
                        failures.pop(feed_id, None)
                        broken.discard(feed_id)
                try:
                    due = await self._lease(
                        limit=self._lease_batch - len(in_flight),
                        exclude=[f for f, until in resting.items() if until > now],
                    )
                except Exception as exc:
                    lookups_failed += 1
                    heard(exc)
                    await asyncio.sleep(min(tick * 2.0 ** min(lookups_failed, 20), longest_pause))
                    continue
                lookups_failed = 0
                if not broken:
                    heard(None)
                for state in due:
                    if state.id not in in_flight:
                        task = asyncio.create_task(self._poll_leased(state))
                        in_flight[state.id] = task
                        task.add_done_callback(partial(polled, state.id))
                        if on_progress is not None:
                            task.add_done_callback(partial(_progress, on_progress))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(refill.wait(), tick)
        finally:
            unpolled = set(in_flight)  # the tasks' callbacks forget them as they end
            running = [*in_flight.values(), keeper]
            for each in running:
                each.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self._release(unpolled)

    async def poll_feed(self, feed_id: int, *, fetcher: Fetcher | None = None) -> FeedOutcome:
        """Poll one feed now, whatever its schedule (through ``fetcher`` if given, e.g. one
        that refuses private addresses for a feed an editor adds from a chat)."""
        async with self._db.sessions() as session:
            feed = await session.get(Feed, feed_id)
            if feed is None:
                raise LookupError(f"no feed with id {feed_id}")
            state = _state(feed)
        return await self._poll_state(state, fetcher)

    async def _lease(
        self, *, due_only: bool = True, limit: int | None = None, exclude: Collection[int] = ()
    ) -> list[_FeedState]:
        """Lease the feeds to poll now (see :func:`~storage.feeds.lease_feeds`)."""
        if limit is not None and limit <= 0:
            return []

        async def take(session: AsyncSession) -> list[_FeedState]:
            feeds = await lease_feeds(
                session,
                self._holder,
                self._clock(),
                LEASE,
                due_only=due_only,
                limit=limit,
                exclude=exclude,
            )
            return [_state(feed) for feed in feeds]

        states = await self._writer.run(take)
        self._held.update(state.id for state in states)
        return states

    async def _poll_leased(self, state: _FeedState) -> FeedOutcome:
        """Poll a feed this process leased; its lease is renewed meanwhile. (A poll that is
        cancelled leaves the feed held: whoever cancelled it gives the lease back.)"""
        cancelled = False
        try:
            return await self._poll_state(state)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if not cancelled:  # else still held: whoever cancelled it releases the lease
                self._held.discard(state.id)

    async def _keep_leases(self) -> None:
        """Renew the leases of the feeds being polled, every LEASE_RENEWAL, until cancelled.

        A renewal that fails (the database unreachable) is tried again at the next turn; if
        the leases run out meanwhile, another process may fetch those feeds too: storing is
        race-free, so a story is still stored and alerted once.
        """
        while True:
            await asyncio.sleep(LEASE_RENEWAL)
            if not self._held:
                continue
            held = set(self._held)
            renew = partial(
                renew_leases, holder=self._holder, feed_ids=held, until=self._clock() + LEASE
            )
            try:
                await self._writer.run(renew)
            except Exception as exc:
                log.info("renewing %d feed leases failed: %s", len(held), _describe(exc))

    async def _release(self, feed_ids: Collection[int]) -> None:
        """Give back the leases of feeds left unpolled (stopped): the other processes take
        them at once instead of after LEASE. Best effort: unreleased, they run out."""
        ids = set(feed_ids)
        self._held -= ids
        if not ids:
            return

        release = partial(release_leases, holder=self._holder, feed_ids=ids)
        try:
            await asyncio.wait_for(self._writer.run(release), LEASE.total_seconds())
        except Exception as exc:
            log.info("releasing %d feed leases failed: %s", len(ids), _describe(exc))

    async def _poll_state(self, state: _FeedState, fetcher: Fetcher | None = None) -> FeedOutcome:
        started = time.perf_counter()
        outcome = await self._poll_once(state, fetcher)
        self.stats.observe(outcome.status, time.perf_counter() - started)
        return outcome

    async def _poll_once(self, state: _FeedState, fetcher: Fetcher | None) -> FeedOutcome:
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
        try:
            return await self._store(state, result, parsed)
        except DBAPIError as exc:
            # The database refused this feed's write (nothing of it was kept): the feed's
            # failure, recorded, shown and backed off like an HTTP error, never a crash of
            # the cycle nor a feed left due, to be fetched again at once.
            log.info("feed %s was not stored: %s", state.id, _describe(exc))
            return await self._record_failure(state, exc)
        except Exception as exc:  # a bug must not stop the other feeds either
            log.exception("storing feed %s failed unexpectedly", state.id)
            return await self._record_failure(state, exc)

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
        if parsed is not None and parsed.dropped:
            log.warning(
                "feed %s: %d entries past the first %d dropped",
                state.id,
                parsed.dropped,
                len(parsed.entries),
            )
        values: dict[str, object] = {
            "last_fetch_at": now,
            "last_success_at": now,
            "last_status": "unchanged" if parsed is None else "ok",
            "last_error": None,
            "failures": 0,
            # Jitter only ever shortens the wait: feeds drift apart, none waits too long.
            "next_fetch_at": now + self._poll_interval * random.uniform(0.9, 1.0),  # noqa: S311
            "etag": _fitting(result.etag, ETAG_ROOM),
            "last_modified": _fitting(result.last_modified, LAST_MODIFIED_ROOM),
        } | _RELEASED
        if parsed is not None:
            values.update({"title": parsed.title} if parsed.title else {})
            values.update({"site_link": parsed.link} if parsed.link else {})

        async def write(session: AsyncSession) -> tuple[UpsertResult, int] | None:
            if not await update_feed(session, state.id, **values):
                return None  # removed while we were fetching
            moved = storable_link(result.permanent_url)  # else it keeps the URL it has
            if moved and moved != state.url and await get_feed_by_url(session, moved) is None:
                await update_feed(session, state.id, url=moved)
            if self._stories is not None and items:
                # Before the insert: ids then follow the processes' turns (see bot.feeds.stories).
                await self._stories.lock(session)
            upserted = await upsert_articles(session, state.id, items, now)
            if self._stories is not None and upserted.new_ids:
                await self._stories.assign(session, upserted.new_ids, now)
            alerted = 0
            if self._on_new is not None and upserted.new_ids:
                # Same transaction: a crash stores the article with its alert, or neither.
                alerted = await self._on_new.alert_articles(session, upserted.new_ids, now)
            return upserted, alerted

        if self._stories is not None and items:
            await self._stories.prepare(self._db, now)  # outside the write transaction
        written = await self._writer.run(write)
        if written is None:
            return FeedOutcome(state.id, "failed", error="feed removed")
        upserted, alerted = written
        if self._stories is not None and upserted.new_ids:
            self._stories.committed(upserted.new_ids)
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
        message = _describe(exc)
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
        } | _RELEASED

        async def write(session: AsyncSession) -> bool:
            return await update_feed(session, state.id, **values)

        try:
            await self._writer.run(write)
        except Exception:  # the database is down: still only this feed's outcome
            log.exception("recording the failure of feed %s failed", state.id)
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


def _progress(on_progress: Callable[[FeedOutcome], None], task: asyncio.Task[FeedOutcome]) -> None:
    if not task.cancelled() and task.exception() is None:
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


def _fitting(value: str | None, room: int) -> str | None:
    return value if value is not None and len(value) <= room else None


def _describe(exc: Exception) -> str:
    """One line for the operator, short enough to store: for a database error its own
    message, without the statement and parameters SQLAlchemy adds."""
    if isinstance(exc, DBAPIError):
        text = "storage error: " + (str(exc.orig) or type(exc.orig).__name__)
    else:
        text = str(exc) or type(exc).__name__
    line = (text.splitlines() or [type(exc).__name__])[0]
    return _UNSTORABLE.sub("", line)[:ERROR_ROOM]


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
