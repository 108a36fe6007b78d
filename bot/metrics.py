"""What ``/metrics`` shows, in Prometheus's format: this process's own counters (sends,
feed fetches, its long-running tasks, the roles it holds) and figures read from the
database (the outbox, feeds, readers, topics), on a registry of its own.

The database figures are read at most once every :data:`CACHE_SECONDS` (longer when a
read is slow), each read cut off after :data:`FIGURES_TIMEOUT`: several Prometheus servers
scraping every few seconds cost one query batch, and a database that fails or hangs leaves
the in-process figures and ``newsbot_database_up 0``, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import __version__
from bot.feeds.ingest import FETCH_SECONDS_BUCKETS, FetchStats
from bot.feeds.links import host_of
from storage.db import Database
from storage.deliveries import (
    CLAIMED,
    DROPPED,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    UNKNOWN,
    count_by_state,
)
from storage.models import Article, Chat, Feed, Subscription, utcnow
from storage.stats import count_feeds_and_readers
from storage.subscriptions import TopicCount, top_topics

if TYPE_CHECKING:
    from bot.delivery.sender import SendStats

log = logging.getLogger(__name__)

# Database figures are reused for this long: a scrape every 5 s by several servers is one
# read. A read that took long is reused longer (READ_SHARE): at millions of rows the
# figures cost the database at most a tenth of one connection's time.
CACHE_SECONDS = 5.0
READ_SHARE = 0.1
# The database's answer to SELECT 1 (/healthz) may take this long, and the figures' read
# this long (under Prometheus's default scrape timeout), before they count as failed.
DATABASE_TIMEOUT = 2.0
FIGURES_TIMEOUT = 8.0
# A task failing (or restarting) for longer than this is unhealthy: a database restart or
# a short outage is not worth waking an operator, an hour of it is.
FAILING_FOR = timedelta(seconds=60)
# The most followed topics shown one by one (the totals count them all).
TOP_TOPICS = 10
# The roles one process of a bot holds at a time (bot.app.Runtime.roles).
ROLES = ("sender", "updates")
DELIVERY_STATES = (PENDING, CLAIMED, SENDING, SENT, FAILED, DROPPED, UNKNOWN)


class TaskView(Protocol):
    """How a long-running task is doing (bot.app.TaskState), as far as health goes."""

    name: str
    running: bool
    failing_since: datetime | None
    restarts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Observed:
    """What the metrics and the health check read: live views of the runtime (its tasks
    and roles change while it runs) and the rooms' counters."""

    db: Database
    tasks: Mapping[str, TaskView]
    roles: Set[str]
    sends: SendStats
    fetches: FetchStats
    holder: str


def task_problem(task: TaskView, now: datetime) -> str | None:
    """What is wrong with a task, or None while it is alive: it is failing (or dying and
    restarting) for longer than :data:`FAILING_FOR`, or it has stopped for good."""
    if task.failing_since is not None:
        if now - task.failing_since <= FAILING_FOR:
            return None
        since = task.failing_since.isoformat(timespec="seconds")
        return f"failing since {since}: {task.last_error}"
    return None if task.running else "not running"


@dataclass(frozen=True, slots=True)
class FeedNewest:
    """When the newest article of a feed appeared (None: it has none yet)."""

    id: int
    name: str
    newest: datetime | None


@dataclass(frozen=True, slots=True)
class Figures:
    """What the database says, read in one go at one moment."""

    read_at: datetime
    deliveries: Mapping[str, int]
    feeds: int
    feeds_failing: int
    newest: list[FeedNewest]
    readers: int
    subscriptions: int
    topics_followed: int
    top_topics: list[TopicCount]


async def read_figures(session: AsyncSession) -> Figures:
    """The outbox, the feeds, the readers and the topics as they are now."""
    feeds, readers = await count_feeds_and_readers(session)
    failing = await session.scalar(select(func.count()).where(Feed.last_status == "error"))
    followed = (
        select(func.count(Subscription.id), func.count(distinct(Subscription.topic_id)))
        .join(Chat, Chat.id == Subscription.chat_id)
        .where(Chat.active.is_(True))
    )
    subscriptions, topics = (await session.execute(followed)).one()
    return Figures(
        read_at=utcnow(),
        deliveries=await count_by_state(session),
        feeds=feeds,
        feeds_failing=int(failing or 0),
        newest=await _newest_articles(session),
        readers=readers,
        subscriptions=int(subscriptions),
        topics_followed=int(topics),
        top_topics=await top_topics(session, TOP_TOPICS),
    )


async def _newest_articles(session: AsyncSession) -> list[FeedNewest]:
    # An article dated in the future (a feed's clock or time zone is wrong) counts as
    # appearing when it was first seen, so a broken clock cannot hide a silent feed.
    appeared = case(
        (Article.published_at < Article.first_seen_at, Article.published_at),
        else_=Article.first_seen_at,
    )
    query = (
        select(Feed.id, Feed.name, Feed.title, Feed.url, func.max(appeared))
        .outerjoin(Article, Article.feed_id == Feed.id)
        .group_by(Feed.id, Feed.name, Feed.title, Feed.url)
        .order_by(Feed.id)
    )
    # The label never carries the URL: its path or query may hold a key.
    return [
        FeedNewest(feed_id, name or title or host_of(url), newest)
        for feed_id, name, title, url, newest in await session.execute(query)
    ]


class Metrics:
    """The /metrics page of one runtime: a registry of its own (several runtimes in one
    process, as in tests, never collide) holding one collector over :class:`Observed`."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self._figures: Figures | None = None
        self._fresh_until = 0.0  # monotonic time until which the last read is reused
        self._reading = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    @property
    def figures(self) -> Figures | None:
        """The database figures of the last read, or None if it failed."""
        return self._figures

    async def render(self) -> bytes:
        """The page in Prometheus's text format, with database figures at most a few
        seconds old."""
        await self.refresh()
        return generate_latest(self.registry)

    async def refresh(self) -> None:
        """Read the database figures again unless the last read is recent."""
        async with self._reading:  # scrapes arriving together share one read
            began = time.monotonic()
            if began < self._fresh_until:
                return
            try:
                async with asyncio.timeout(FIGURES_TIMEOUT), self.observed.db.sessions() as s:
                    self._figures = await read_figures(s)
            except Exception as exc:  # any failure: the page still shows the rest
                log.debug("metrics: the database did not answer: %s", exc)
                self._figures = None
            ended = time.monotonic()
            self._fresh_until = ended + max(CACHE_SECONDS, (ended - began) / READ_SHARE)


class _Collector:
    """Builds the metric families at each scrape from what it observes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """Every family: this process's figures, then the database's when it answered."""
        observed = self._metrics.observed
        yield from _process_families(observed)
        yield from _send_families(observed.sends)
        yield from _fetch_families(observed.fetches)
        yield from _task_families(observed.tasks)
        figures = self._metrics.figures
        up = GaugeMetricFamily(
            "newsbot_database_up", "Whether the database answered the last read (1) or not (0)."
        )
        up.add_metric([], 0 if figures is None else 1)
        yield up
        if figures is not None:
            yield from _database_families(figures)


def _process_families(observed: Observed) -> Iterator[Metric]:
    info = InfoMetricFamily("newsbot_process", "This process: Newsbot's version and its id.")
    info.add_metric([], {"version": __version__, "holder": observed.holder})
    yield info
    roles = GaugeMetricFamily(
        "newsbot_role",
        "Whether this process holds the role (1) or not (0): the sender, the updates poller.",
        labels=["role"],
    )
    for role in ROLES:
        roles.add_metric([role], 1 if role in observed.roles else 0)
    yield roles


def _send_families(sends: SendStats) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "newsbot_sends",
        "Messages this process sent to Telegram, by outcome: sent, rate_limited (a 429 "
        "answer, retried later), failed (refused for good), in_doubt (cut mid-flight).",
        labels=["outcome"],
    )
    family.add_metric(["sent"], sends.sent)
    family.add_metric(["rate_limited"], sends.rate_limited)
    family.add_metric(["failed"], sends.failed)
    family.add_metric(["in_doubt"], sends.in_doubt)
    yield family
    edits = CounterMetricFamily(
        "newsbot_edits",
        "Sent alerts this process edited to name the outlets that confirmed their story, "
        "by outcome: edited (or already current), failed (the message gone or too old).",
        labels=["outcome"],
    )
    edits.add_metric(["edited"], sends.edited)
    edits.add_metric(["failed"], sends.edit_failed)
    yield edits


def _fetch_families(fetches: FetchStats) -> Iterator[Metric]:
    outcomes = CounterMetricFamily(
        "newsbot_feed_fetches",
        "Feed polls this process made, by outcome: fetched, unchanged, failed.",
        labels=["outcome"],
    )
    for outcome in sorted({"fetched", "unchanged", "failed", *fetches.outcomes}):
        outcomes.add_metric([outcome], fetches.outcomes[outcome])
    yield outcomes
    bounds = [str(bound) for bound in FETCH_SECONDS_BUCKETS] + ["+Inf"]
    latency = HistogramMetricFamily(
        "newsbot_feed_fetch_seconds",
        "How long this process's feed polls took (request, parse and store), in seconds.",
        buckets=list(zip(bounds, fetches.buckets, strict=True)),
        sum_value=fetches.seconds_sum,
    )
    yield latency


def _task_families(tasks: Mapping[str, TaskView]) -> Iterator[Metric]:
    now = utcnow()
    up = GaugeMetricFamily(
        "newsbot_task_up",
        f"Whether a long-running task is healthy (1): running, and not failing for more "
        f"than {FAILING_FOR.total_seconds():.0f} s.",
        labels=["task"],
    )
    restarts = CounterMetricFamily(
        "newsbot_task_restarts",
        "Times a long-running task died and was started again.",
        labels=["task"],
    )
    for name, task in sorted(tasks.items()):
        up.add_metric([name], 0 if task_problem(task, now) else 1)
        restarts.add_metric([name], task.restarts)
    yield up
    yield restarts


def _database_families(figures: Figures) -> Iterator[Metric]:
    deliveries = GaugeMetricFamily(
        "newsbot_deliveries",
        "Deliveries in the outbox by state (pending, claimed, sending: the queue).",
        labels=["state"],
    )
    for state in DELIVERY_STATES:
        deliveries.add_metric([state], figures.deliveries.get(state, 0))
    yield deliveries
    yield _gauge(
        "newsbot_sends_in_doubt",
        "Deliveries in doubt now (may or may not have reached the reader): "
        "`newsbot deliveries doubt` lists them.",
        figures.deliveries.get(UNKNOWN, 0),
    )
    yield _gauge("newsbot_feeds", "Feeds watched.", figures.feeds)
    yield _gauge("newsbot_feeds_failing", "Feeds whose last poll failed.", figures.feeds_failing)
    age = GaugeMetricFamily(
        "newsbot_feed_newest_article_age_seconds",
        "Seconds since each feed's newest article appeared (its publication time, or when "
        "it was first seen if later dated); feeds without articles are left out.",
        labels=["feed_id", "feed"],
    )
    for feed in figures.newest:
        if feed.newest is not None:
            seconds = max((figures.read_at - feed.newest) / timedelta(seconds=1), 0.0)
            age.add_metric([str(feed.id), feed.name], seconds)
    yield age
    yield _gauge("newsbot_readers", "Chats that receive alerts.", figures.readers)
    yield _gauge(
        "newsbot_subscriptions",
        "Topics followed, counted per receiving chat.",
        figures.subscriptions,
    )
    yield _gauge(
        "newsbot_topics_followed",
        "Topics followed by at least one receiving chat.",
        figures.topics_followed,
    )
    followers = GaugeMetricFamily(
        "newsbot_topic_followers",
        f"Receiving chats following each of the {TOP_TOPICS} most followed topics.",
        labels=["topic", "key"],
    )
    for topic in figures.top_topics:
        followers.add_metric([topic.label, topic.key], topic.followers)
    yield followers


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


__all__ = [
    "FAILING_FOR",
    "Figures",
    "Metrics",
    "Observed",
    "TaskView",
    "read_figures",
    "task_problem",
]
