"""From stored article to outbox: which followed topics a breaking story matches, and
one delivery per following chat, written in the transaction that stored the article.

:class:`Topics` keeps the matcher in step with what readers follow: rebuilt from storage
at start, updated on every follow and unfollow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.text.matcher import Matcher
from bot.text.topics import Catalog, ResolvedTopic, from_key, load_catalog
from storage.alerts import create_alert, list_alertable
from storage.models import Topic
from storage.subscriptions import (
    add_subscription,
    list_followers,
    list_topics,
    remove_subscription,
    upsert_topic,
)

log = logging.getLogger(__name__)


class Topics:
    """The followed topics, indexed for matching articles against all of them at once."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or load_catalog()
        self._matcher = Matcher()
        self._keys: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self._newest = 0  # the highest stored topic id loaded

    def __len__(self) -> int:
        return len(self._keys)

    async def load(self, session: AsyncSession) -> int:
        """Index the stored topics not indexed yet (the engine's current rules apply): all
        of them at start, later those another process or the CLI added; how many in all."""
        for topic in await list_topics(session, after_id=self._newest):
            self._index(topic)
            self._newest = max(self._newest, topic.id)
        return len(self._keys)

    async def follow(
        self, session: AsyncSession, chat_id: int, topic: ResolvedTopic
    ) -> tuple[int, bool]:
        """The chat follows the topic; (the stored topic's id, False if it already did)."""
        topic_id = self._ids.get(topic.key)
        if topic_id is None:  # a topic nobody here followed yet: store it
            topic_id = (await upsert_topic(session, topic.key, topic.label)).id
        added = await add_subscription(session, chat_id, topic_id)
        if topic_id not in self._keys:
            self._add(topic_id, topic)
        return topic_id, added

    async def unfollow(self, session: AsyncSession, chat_id: int, topic_id: int) -> bool:
        """The chat stops following the topic; False if it did not follow it."""
        # The topic stays indexed: other chats may follow it, and an unfollowed topic costs
        # nothing at fan-out (it has no followers to look up).
        return await remove_subscription(session, chat_id, topic_id)

    def match_ids(self, title: str, summary: str) -> set[int]:
        """The ids of the followed topics a story matches."""
        return self._matcher.match(title, summary)

    def key_of(self, topic_id: int) -> str | None:
        """The key of an indexed topic."""
        return self._keys.get(topic_id)

    def _index(self, topic: Topic) -> None:
        resolved = from_key(topic.key, topic.label, self.catalog)
        if resolved is None:
            log.warning("topic %s (%s) is no longer understood; skipped", topic.id, topic.key)
            return
        self._add(topic.id, resolved)

    def _add(self, topic_id: int, topic: ResolvedTopic) -> None:
        self._matcher.add(topic_id, topic.phrases, exclude=topic.exclude)
        self._keys[topic_id] = topic.key
        self._ids[topic.key] = topic_id


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


__all__ = ["Fanout", "Topics"]
