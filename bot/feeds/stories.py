"""Which story each stored article joins, decided as it is stored.

A :class:`StoryAssigner` keeps the text engine's :class:`~bot.text.stories.StoryGrouper`
over the articles of the window and places every new article, in the transaction that
stores it: joined, it takes the story of the article it joined; else a new story is
inserted. Processes sharing a PostgreSQL database take turns (a transaction-level advisory
lock, taken before the articles are inserted, so ids follow the turns) and each first
catches up on what the others stored since it last looked. The grouper is never left
ahead of the database: what a transaction placed is checked against storage at the next
turn, and a transaction that did not commit makes the assigner start again from storage.
``regroup`` places an archive stored before stories were kept.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.text.stories import WINDOW, StoryGrouper
from storage.db import Database, lock_key
from storage.stories import (
    ArticleText,
    count_articles,
    get_story_ids,
    last_article_id,
    link_articles,
    list_articles_after,
    list_articles_by_time,
    list_window_articles,
    save_stories,
)

log = logging.getLogger(__name__)

# The advisory lock under which processes assign stories one at a time.
STORIES_LOCK = "newsbot:stories"
# Articles read and written per transaction by ``regroup``.
REGROUP_CHUNK = 2_000


class _Stories:
    """A grouper and the story of each article it holds (bounded to the window)."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.grouper = StoryGrouper(window)
        self.story_of: dict[int, int] = {}
        self.created = 0  # stories this one inserted

    def learn(self, row: ArticleText, since: datetime | None) -> None:
        """Take in an article already in a story (so that later ones may join it)."""
        assert row.story_id is not None  # noqa: S101 - only stored stories are learnt
        if since is None or row.published_at >= since:
            # Its story is known: it only needs to be found by the articles that follow.
            self.grouper.remember(str(row.id), row.title, row.summary, row.published_at)
            self.story_of[row.id] = row.story_id

    async def place(
        self, session: AsyncSession, rows: Sequence[ArticleText], since: datetime | None
    ) -> dict[int, int]:
        """Put the rows without a story in one (learning those that have one), in order,
        and store it; the stories given."""
        placed, seen = self.decide(rows, since)
        await write(session, placed, seen)
        return placed

    def decide(
        self, rows: Sequence[ArticleText], since: datetime | None
    ) -> tuple[dict[int, int], dict[int, tuple[datetime, datetime]]]:
        """The story of each row without one (learning those that have one), in order, and
        the first and last seen times of the stories they are in. An article published
        before ``since`` starts a story alone."""
        placed: dict[int, int] = {}
        seen: dict[int, tuple[datetime, datetime]] = {}  # story → first and last seen
        for row in rows:
            if row.story_id is not None:
                self.learn(row, since)
                continue
            story = None
            recent = since is None or row.published_at >= since
            if recent:
                placement = self.grouper.add(str(row.id), row.title, row.summary, row.published_at)
                joined = placement.explanation.compared_with
                if placement.joined and joined is not None:
                    story = self.story_of.get(int(joined))
                    log.debug("article %s joins story %s: %s", row.id, story, placement)
            if story is None:  # a story is named after its first article
                story = row.id
                self.created += 1
            first, last = seen.get(story, (row.first_seen_at, row.first_seen_at))
            seen[story] = (first, max(last, row.first_seen_at))
            if recent:
                self.story_of[row.id] = story
            placed[row.id] = story
        self._prune()
        return placed, seen

    def _prune(self) -> None:
        """Forget the stories of articles that left the grouper's window."""
        if len(self.story_of) > 2 * len(self.grouper) + 1_024:
            self.story_of = {
                article: story
                for article, story in self.story_of.items()
                if self.grouper.story_of(str(article)) is not None
            }


async def write(
    session: AsyncSession, placed: Mapping[int, int], seen: Mapping[int, tuple[datetime, datetime]]
) -> None:
    """Store what :meth:`_Stories.decide` decided."""
    await link_articles(session, placed)
    await save_stories(session, seen)


async def take_turn(session: AsyncSession) -> None:
    """Wait for this transaction's turn to assign stories (PostgreSQL; SQLite has a single
    writer). Released when the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(STORIES_LOCK)}
        )


class StoryAssigner:
    """Puts every new article in a story, inside the transaction that stores it."""

    def __init__(self, window: timedelta = WINDOW) -> None:
        self.window = window
        self._stories: _Stories | None = None  # None: to be warmed up from storage
        self._cursor = 0  # every article up to this id has been seen
        # What the last transaction placed, until a later one sees it stored.
        self._unconfirmed: dict[int, int] = {}
        self._placed_in: AsyncSession | None = None
        self._preparing = asyncio.Lock()

    async def prepare(self, db: Database, now: datetime) -> None:
        """Learn the window from storage, if not yet, outside any write transaction (so that
        a large window does not hold the database's write lock while it is learnt)."""
        if self._stories is not None:
            return
        async with self._preparing:
            if self._stories is not None:
                return
            async with db.sessions() as session:
                cursor = await last_article_id(session)
                rows = await list_window_articles(session, now - self.window, before_id=cursor + 1)
            stories = await self._learnt(rows, now - self.window)
            if self._stories is None:  # else a transaction learnt them meanwhile
                self._stories, self._cursor = stories, cursor

    async def lock(self, session: AsyncSession) -> None:
        """Take the stories' turn before inserting articles (see :func:`take_turn`)."""
        await take_turn(session)

    async def assign(
        self, session: AsyncSession, article_ids: Collection[int], now: datetime
    ) -> dict[int, int]:
        """Put these new articles (and any other without a story stored since this process
        last looked) in stories; each one's story id."""
        if not article_ids:
            return {}
        await take_turn(session)
        try:
            await self._confirm(session)
            if self._stories is None:
                await self._warm_up(session, now, before_id=min(article_ids))
            assert self._stories is not None  # noqa: S101 - warmed up just above
            rows = await list_articles_after(session, self._cursor)
            if rows:
                self._cursor = max(self._cursor, rows[-1].id)
            placed = await self._stories.place(session, rows, now - self.window)
        except BaseException:
            self._forget()  # whatever it did half-way is not in storage: start again
            raise
        self._unconfirmed.update(placed)
        return {id_: placed[id_] for id_ in article_ids if id_ in placed}

    def committed(self, article_ids: Collection[int]) -> None:
        """The transaction that stored these articles committed: no need to check them."""
        for article_id in article_ids:
            self._unconfirmed.pop(article_id, None)

    def _forget(self) -> None:
        self._stories = None
        self._cursor = 0
        self._unconfirmed = {}
        self._placed_in = None

    async def _confirm(self, session: AsyncSession) -> None:
        """Check that what an earlier transaction placed was committed; if it was not, start
        again from storage (a transaction of its own may still be open: then it goes on)."""
        if self._unconfirmed and session is not self._placed_in:
            stored = await get_story_ids(session, self._unconfirmed)
            if stored != self._unconfirmed:
                log.info("a transaction that placed stories did not commit: reloading them")
                self._forget()
            self._unconfirmed = {}
        self._placed_in = session

    async def _warm_up(self, session: AsyncSession, now: datetime, *, before_id: int) -> None:
        """Learn the stories of the window from storage (the articles before ``before_id``,
        the first of those being stored now)."""
        rows = await list_window_articles(session, now - self.window, before_id=before_id)
        stories = await self._learnt(rows, now - self.window)
        self._cursor = await last_article_id(session, before_id=before_id)
        self._stories = stories

    async def _learnt(self, rows: Sequence[ArticleText], since: datetime) -> _Stories:
        """A grouper that has learnt these articles."""
        stories = _Stories(self.window)

        def learn_all() -> None:
            for row in rows:
                stories.learn(row, since)

        # A large window takes seconds of CPU: in a thread, the bot keeps answering meanwhile.
        await asyncio.to_thread(learn_all)
        # Its million objects live as long as the window: keep them out of the cyclic garbage
        # collector's full scans (as the composition root does at start), which would
        # otherwise cost every later article stored several milliseconds.
        gc.freeze()
        log.info("stories: %d articles of the last %s learnt", len(rows), self.window)
        return stories


@dataclass(frozen=True, slots=True)
class RegroupProgress:
    """How far ``regroup`` got: articles read of those stored, and what it placed."""

    read: int
    total: int
    placed: int
    stories: int


async def regroup(
    db: Database,
    window: timedelta = WINDOW,
    *,
    chunk: int = REGROUP_CHUNK,
    on_progress: Callable[[RegroupProgress], None] | None = None,
) -> RegroupProgress:
    """Put every article that is in no story in one, going through the archive in
    publication order, a chunk at a time (articles already in a story keep it and others
    may join them); what it did. Each chunk is read, grouped, then written in a short
    transaction of its own: a running bot's writes wait for none of the grouping."""
    async with db.sessions() as session:
        if not await count_articles(session, without_story=True):
            return RegroupProgress(0, 0, 0, 0)
        total = await count_articles(session)
    stories = _Stories(window)
    after: tuple[datetime, int] | None = None
    read = placed = 0
    while True:
        async with db.sessions() as session:
            rows = await list_articles_by_time(session, after, chunk)
        if not rows:
            break
        found, seen = stories.decide(rows, None)
        async with db.transaction() as session:
            await take_turn(session)
            await write(session, found, seen)
        after = (rows[-1].published_at, rows[-1].id)
        read += len(rows)
        placed += len(found)
        if on_progress is not None:
            on_progress(RegroupProgress(read, total, placed, stories.created))
    return RegroupProgress(read, total, placed, stories.created)


__all__ = ["STORIES_LOCK", "RegroupProgress", "StoryAssigner", "regroup", "take_turn"]
