"""From stored article to outbox: which followed topics a breaking story matches, and
one delivery per following chat, written by the database (``INSERT … SELECT``): the first
ones with the article, the rest in chunks of their own right after (:class:`Fanout`).

Stories: a chat gets one push per story. A later article of a story already pushed is a
development when it adds to it (``bot.text.developments``: a reply to the readers' first
message), else its alert reaches only chats the story had not reached; and an article of
an outlet new to the story has the messages already sent edited to name it.

:class:`Topics` keeps the matcher to the topics that have followers: rebuilt from storage
at start, updated on every follow and unfollow, and brought in step with storage before
every fan-out (other processes and the CLI follow and unfollow too). It also keeps storage
from growing without end: a chat creates only so many free phrases a day, and topics
nobody follows are deleted once that day is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.text.developments import develops
from bot.text.matcher import Matcher
from bot.text.topics import PHRASE_PREFIX, Catalog, ResolvedTopic, from_key, load_catalog
from storage.alerts import (
    ALERT,
    DEVELOPMENT,
    Audience,
    add_alert,
    fan_out,
    has_story_alert,
    list_alertable,
    list_fanning_out,
    list_story_feeds,
    list_story_members,
    list_story_texts,
    mark_story_edits,
)
from storage.db import Database
from storage.deliveries import refresh_statistics
from storage.models import Topic, utcnow
from storage.subscriptions import (
    add_subscription,
    count_created_topics,
    get_topic_id,
    has_followers,
    list_followed_topic_ids,
    list_topics,
    remove_subscription,
    remove_unused_topics,
    upsert_topic,
)

log = logging.getLogger(__name__)

# Free phrases a chat may bring into storage in a day (phrases nobody followed before):
# far more than a reader or a newsroom's group setting up ever types, far fewer than a
# script would. Catalog topics are as many as the catalog and never count.
NEW_PHRASES_PER_DAY = 30
QUOTA_PERIOD = timedelta(days=1)
# How often a process deletes the topics nobody follows (when it follows or unfollows).
SWEEP_EVERY = timedelta(hours=1)
# Deliveries written with the alert, in the transaction that stored its article: enough for
# most stories' whole audience, and for the first messages of any to leave at once, yet
# few enough to keep that transaction (other feeds' articles share it) short.
INLINE_DELIVERIES = 1_000
# Deliveries written per transaction after that (benchmarks/fanout_million.py): PostgreSQL
# writes 50,000 in one to two seconds while every other writer goes on; SQLite has one
# writer at a time, so its chunks are smaller, each a short pause for the others.
CHUNK = 50_000
# The outbox's statistics are refreshed after this many deliveries written, then less and
# less often (storage.deliveries.refresh_statistics).
STATISTICS_AFTER = 10_000
SQLITE_CHUNK = 5_000
# A fan-out pass that failed (the database down) is tried again after this, doubling.
RETRY_FIRST = 0.5
RETRY_MOST = 10.0
# A story's messages are edited for confirmations this long after its first push, and only
# if it reached at most this many chats: at 30 messages a second (25 of them for edits),
# every one is edited within a minute (NEWSBOT_STORY_EDIT_HOURS, NEWSBOT_STORY_EDIT_CHATS).
EDIT_FOR = timedelta(hours=6)
EDIT_MOST = 1_200

# Hears how a fan-out pass went: None when it worked, else what failed.
Report = Callable[[BaseException | None], None]


class TooManyNewTopics(Exception):
    """The chat already created as many new free phrases as a chat may in a day."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a chat creates at most {limit} new topics a day")
        self.limit = limit


class Topics:
    """The followed topics, indexed for matching articles against all of them at once."""

    def __init__(
        self, catalog: Catalog | None = None, *, new_phrases_per_day: int = NEW_PHRASES_PER_DAY
    ) -> None:
        self.catalog = catalog or load_catalog()
        self.new_phrases_per_day = new_phrases_per_day
        self._matcher = Matcher()
        self._keys: dict[int, str] = {}
        self._unknown: set[int] = set()  # stored topics the engine no longer understands
        self._swept_at: datetime | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, topic_id: object) -> bool:
        return topic_id in self._keys

    async def load(self, session: AsyncSession) -> int:
        """Match exactly the stored topics that have followers (the engine's current rules
        apply): index those not indexed yet, all of them at start, and forget those nobody
        follows any more; how many in all."""
        followed = await list_followed_topic_ids(session)
        for topic_id in self._keys.keys() - followed:
            self._forget(topic_id)
        self._unknown &= followed
        for topic in await list_topics(session, followed - self._keys.keys() - self._unknown):
            self._index(topic)
        return len(self._keys)

    async def follow(
        self,
        session: AsyncSession,
        chat_id: int,
        topic: ResolvedTopic,
        *,
        now: datetime | None = None,
    ) -> tuple[int, bool]:
        """The chat follows the topic; (the stored topic's id, False if it already did).

        Raises :class:`TooManyNewTopics`, having written nothing, for a free phrase new to
        storage when the chat already created its day's worth of them.
        """
        now = now or utcnow()
        topic_id = await get_topic_id(session, topic.key, to_follow=True)
        if topic_id is None:  # a topic nobody follows yet: store it, if the chat still may
            if topic.catalog is None:
                since = now - QUOTA_PERIOD
                made = await count_created_topics(
                    session, chat_id, since, key_prefix=PHRASE_PREFIX
                )
                if made >= self.new_phrases_per_day:
                    raise TooManyNewTopics(self.new_phrases_per_day)
            stored = await upsert_topic(
                session, topic.key, topic.label, created_by=chat_id, now=now
            )
            topic_id = stored.id
            await self._sweep_now_and_then(session, now)
        added = await add_subscription(session, chat_id, topic_id)
        if topic_id not in self._keys:
            self._add(topic_id, topic)
        return topic_id, added

    async def unfollow(
        self,
        session: AsyncSession,
        chat_id: int,
        topic_id: int,
        *,
        now: datetime | None = None,
    ) -> bool:
        """The chat stops following the topic; False if it did not follow it. A topic left
        without followers leaves the matcher at once, and storage when swept."""
        removed = await remove_subscription(session, chat_id, topic_id)
        if removed:
            if not await has_followers(session, topic_id):
                self._forget(topic_id)
            await self._sweep_now_and_then(session, now or utcnow())
        return removed

    async def sweep(self, session: AsyncSession, now: datetime) -> int:
        """Delete the stored topics nobody follows, once the day they were created in is
        over (deleting sooner would hand their creator's quota back); how many."""
        self._swept_at = now
        removed = await remove_unused_topics(session, created_before=now - QUOTA_PERIOD)
        if removed:
            log.info("deleted %d topics nobody follows", removed)
        return removed

    def match_ids(self, title: str, summary: str) -> set[int]:
        """The ids of the followed topics a story matches."""
        return self._matcher.match(title, summary)

    def key_of(self, topic_id: int) -> str | None:
        """The key of an indexed topic."""
        return self._keys.get(topic_id)

    async def _sweep_now_and_then(self, session: AsyncSession, now: datetime) -> None:
        if self._swept_at is None or now - self._swept_at >= SWEEP_EVERY:
            await self.sweep(session, now)

    def _index(self, topic: Topic) -> None:
        resolved = from_key(topic.key, topic.label, self.catalog)
        if resolved is None:
            log.warning("topic %s (%s) is no longer understood; skipped", topic.id, topic.key)
            self._unknown.add(topic.id)
            return
        self._add(topic.id, resolved)

    def _add(self, topic_id: int, topic: ResolvedTopic) -> None:
        self._matcher.add(topic_id, topic.phrases, exclude=topic.exclude)
        self._keys[topic_id] = topic.key

    def _forget(self, topic_id: int) -> None:
        self._matcher.remove(topic_id)
        self._keys.pop(topic_id, None)


class Fanout:
    """Turns newly stored breaking articles into alerts for the chats that follow them.

    The alert, with who it goes to, is stored in the transaction that stored its article
    (nothing is lost), with the deliveries of its first ``inline`` chats: a small audience is
    done there, and the first messages of any leave as soon as it commits. The rest is
    written by :meth:`run` (every process runs it; they take turns), in chunks of ``chunk``
    chats each committed on its own, so no transaction grows with the audience and the
    ingestion of other feeds never waits for it. The sender is woken after each chunk.
    """

    def __init__(
        self,
        topics: Topics,
        *,
        on_alert: Callable[[], None] | None = None,
        inline: int = INLINE_DELIVERIES,
        chunk: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        edit_for: timedelta = EDIT_FOR,
        edit_most: int = EDIT_MOST,
    ) -> None:
        self._topics = topics
        self._edit_for = edit_for
        self._edit_most = edit_most
        self._on_alert = on_alert
        self._inline = inline
        self._chunk = chunk
        self._clock = clock
        self._wake = asyncio.Event()
        self._written = 0  # deliveries written since the outbox's statistics were refreshed
        self._written_at_refresh = 0  # deliveries written before that refresh

    async def alert_articles(
        self, session: AsyncSession, article_ids: Sequence[int], now: datetime
    ) -> int:
        """Alert the followers of every new breaking, alertable article; deliveries made
        here (the rest are left to :meth:`run`).

        Runs inside the transaction that stored the articles: the article and its alert
        commit together or not at all.
        """
        made = 0
        await self._confirm(session, article_ids, now)
        articles = await list_alertable(session, article_ids)
        if articles:
            # Topics followed elsewhere (another process, `newsbot channels add`) count too.
            await self._topics.load(session)
        for article in articles:
            ids = self._topics.match_ids(article.title, article.summary)
            keys = [key for key in map(self._topics.key_of, sorted(ids)) if key]
            kind = ALERT
            if article.story_id is not None and await has_story_alert(session, article.story_id):
                earlier = await list_story_texts(session, article.story_id, article.id)
                told = [f"{title}\n{summary}" for title, summary in earlier]
                if develops(article.title, told, self._topics.catalog) is not None:
                    kind = DEVELOPMENT
            # Recorded even without followers: /latest lists every breaking story.
            alert_id = await add_alert(
                session,
                Audience(tuple(ids), all_breaking=True),
                now,
                article_id=article.id,
                topics=keys,
                story_id=article.story_id,
                kind=kind,
            )
            step = await fan_out(session, alert_id, now, self._inline)
            made += step.made if step else 0
        return made

    async def _confirm(
        self, session: AsyncSession, article_ids: Sequence[int], now: datetime
    ) -> int:
        """Stories already pushed that these articles bring a new outlet to: their sent
        messages are to be edited to name it; how many messages."""
        stories: dict[int, tuple[set[int], set[int | None]]] = {}
        for article_id, story_id, feed_id in await list_story_members(session, article_ids):
            articles, feeds = stories.setdefault(story_id, (set(), set()))
            articles.add(article_id)
            feeds.add(feed_id)
        marked = 0
        for story_id, (articles, feeds) in stories.items():
            if not await has_story_alert(session, story_id):
                continue
            if feeds - {None} - await list_story_feeds(session, story_id, articles):
                marked += await mark_story_edits(
                    session,
                    story_id,
                    now,
                    pushed_since=now - self._edit_for,
                    most=self._edit_most,
                )
        return marked

    def committed(self) -> None:
        """The alerts written are committed: the sender may look now, and the fan-out go
        on with what was left."""
        self.wake()

    def wake(self) -> None:
        """Alerts were stored: send what is written, and write the rest."""
        self._wake.set()
        if self._on_alert is not None:
            self._on_alert()

    async def run(self, db: Database, *, idle: float = 1.0, report: Report | None = None) -> None:
        """Write the deliveries of every alert left unfinished, here or by another process
        (or one that died), until cancelled: when woken, and every ``idle`` seconds.

        ``report`` hears how each pass went (None when it worked, else the error); a pass
        that failed is tried again after a growing pause.
        """
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self.expand(db)
            except Exception as exc:
                failures += 1
                if report is None:
                    raise
                report(exc)
                await asyncio.sleep(min(RETRY_FIRST * 2.0 ** min(failures - 1, 10), RETRY_MOST))
                continue
            if report is not None:
                report(None)
            failures = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def expand(self, db: Database) -> int:
        """Write the deliveries left to write, alert by alert, oldest first, one chunk per
        transaction; how many. An alert another process is writing now is left to it."""
        async with db.sessions() as session:
            pending = await list_fanning_out(session)
        chunk = self._chunk or (SQLITE_CHUNK if db.is_sqlite else CHUNK)
        made = 0
        for alert_id in pending:
            while True:
                async with db.transaction() as session:
                    step = await fan_out(session, alert_id, self._clock(), chunk)
                if step is None:
                    break
                made += step.made
                if step.made and self._on_alert is not None:
                    self._on_alert()
                await self._count_written(db, step.made)
                if step.done:
                    break
        return made

    async def _count_written(self, db: Database, rows: int) -> None:
        """Refresh the outbox's statistics (PostgreSQL) once STATISTICS_AFTER rows are
        written, then each time this fan-out has written three times as many as before the
        last refresh (3 times for a million rows), so the sender's claims keep reading the
        index."""
        self._written += rows
        if db.is_sqlite or self._written < max(STATISTICS_AFTER, 3 * self._written_at_refresh):
            return
        async with db.transaction() as session:
            await refresh_statistics(session)
        self._written_at_refresh += self._written
        self._written = 0


__all__ = ["NEW_PHRASES_PER_DAY", "Fanout", "Report", "TooManyNewTopics", "Topics"]
