"""From stored article to outbox: which followed topics a breaking story matches, and
one delivery per following chat, written in the transaction that stored the article.

:class:`Topics` keeps the matcher to the topics that have followers: rebuilt from storage
at start, updated on every follow and unfollow, and brought in step with storage before
every fan-out (other processes and the CLI follow and unfollow too). It also keeps storage
from growing without end: a chat creates only so many free phrases a day, and topics
nobody follows are deleted once that day is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.text.matcher import Matcher
from bot.text.topics import PHRASE_PREFIX, Catalog, ResolvedTopic, from_key, load_catalog
from storage.alerts import create_alert, list_alertable
from storage.models import Topic, utcnow
from storage.subscriptions import (
    add_subscription,
    count_created_topics,
    get_topic_id,
    has_followers,
    list_followed_topic_ids,
    list_followers,
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
    """Turns newly stored breaking articles into alerts for the chats that follow them."""

    def __init__(self, topics: Topics, *, on_alert: Callable[[], None] | None = None) -> None:
        self._topics = topics
        self._on_alert = on_alert

    async def alert_articles(
        self, session: AsyncSession, article_ids: Sequence[int], now: datetime
    ) -> int:
        """Alert the followers of every new breaking, alertable article; deliveries made.

        Runs inside the transaction that stored the articles: the article, its alert and
        every delivery row commit together or not at all.
        """
        made = 0
        articles = await list_alertable(session, article_ids)
        if articles:
            # Topics followed elsewhere (another process, `newsbot channels add`) count too.
            await self._topics.load(session)
        for article in articles:
            ids = self._topics.match_ids(article.title, article.summary)
            # Recorded even without followers: /latest lists every breaking story.
            chats = await list_followers(session, ids, now)
            keys = [key for key in map(self._topics.key_of, sorted(ids)) if key]
            _alert_id, count = await create_alert(
                session, chats, now, article_id=article.id, topics=keys
            )
            made += count
        return made

    def committed(self) -> None:
        """The alerts written are committed: the sender may look now."""
        if self._on_alert is not None:
            self._on_alert()


__all__ = ["NEW_PHRASES_PER_DAY", "Fanout", "TooManyNewTopics", "Topics"]
