"""Broken sources: a feed failing for too long, or silent far beyond its usual rhythm, is
reported to the editors once, and once again when it recovers.

"Failing": its last poll failed and its last success (or its addition) is older than
``failing_after`` (``NEWSBOT_FEED_ALARM_MINUTES``). "Silent": it is fetched fine but has
brought no new article for max(``SILENCE_FLOOR``, ``SILENCE_FACTOR`` × the median gap
between its last ``RHYTHM_ARTICLES`` articles); a feed with fewer than ``RHYTHM_MINIMUM``
articles has no known rhythm and is never called silent. ``feeds.reported_at`` remembers a
report: it is claimed with a conditional update, so of several processes (and across
restarts) exactly one tells the editors, once.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from babel.dates import format_timedelta

from bot.feeds.links import host_of
from bot.i18n import translator
from storage.chats import get_chat
from storage.db import Database
from storage.feeds import list_arrivals, list_feeds_with_newest, swap_reported
from storage.models import Feed, utcnow

log = logging.getLogger(__name__)

SILENCE_FLOOR = timedelta(hours=24)
SILENCE_FACTOR = 10
RHYTHM_ARTICLES = 20
RHYTHM_MINIMUM = 5
# How often the feeds are checked (seconds).
CHECK_EVERY = 60.0
DEFAULT_LANGUAGE = "ar"

# Sends one plain-text message to one editor's private chat.
Send = Callable[[int, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Notice:
    """What the editors are told about one feed: ``kind`` is "failing", "silent" or
    "recovered"; ``since`` when the trouble began; ``rhythm`` a silent feed's usual gap."""

    feed_id: int
    name: str
    kind: str
    since: datetime | None = None
    error: str | None = None
    rhythm: timedelta | None = None


class FeedAlarms:
    """Checks the feeds and tells the editors of those that broke or recovered."""

    def __init__(
        self,
        db: Database,
        editors: Collection[int],
        send: Send,
        *,
        failing_after: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._editors = sorted(editors)
        self._send = send
        self._failing_after = failing_after
        self._clock = clock

    async def run(
        self,
        *,
        every: float = CHECK_EVERY,
        report: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Check now and every ``every`` seconds, forever; a failed check is reported to
        ``report`` (else logged) and tried again at the next turn."""
        while True:
            try:
                await self.check()
            except Exception as exc:
                if report is None:
                    log.exception("checking the feeds for the editors failed")
                else:
                    report(exc)
            else:
                if report is not None:
                    report(None)
            await asyncio.sleep(every)

    async def check(self) -> list[Notice]:
        """One pass: claim and send what changed since the last; what was sent."""
        if not self._editors:
            return []
        now = self._clock()
        async with self._db.sessions() as session:
            feeds = await list_feeds_with_newest(session)
            verdicts = [(feed, await self._verdict(feed, newest, now)) for feed, newest in feeds]
            languages = {
                editor: (chat.language if (chat := await get_chat(session, editor)) else None)
                for editor in self._editors
            }
        sent = []
        for feed, notice in verdicts:
            if notice is not None and feed.reported_at is None:
                new, undo = now, None
            elif notice is None and feed.reported_at is not None:
                notice = Notice(feed.id, _name(feed), "recovered")
                new, undo = None, feed.reported_at
            else:
                continue
            if not await self._swap(feed.id, undo, new):
                continue  # another process told them
            if await self._tell(notice, languages, now):
                sent.append(notice)
            else:  # nobody heard: try again at the next check
                await self._swap(feed.id, new, undo)
        return sent

    async def _verdict(self, feed: Feed, newest: datetime | None, now: datetime) -> Notice | None:
        """A notice if the feed is broken now, else None."""
        if feed.last_status == "error":
            since = feed.last_success_at or feed.created_at
            if now - since >= self._failing_after:
                return Notice(feed.id, _name(feed), "failing", since, error=feed.last_error)
            return None
        if newest is None or now - newest < SILENCE_FLOOR:
            return None
        async with self._db.sessions() as reading:
            arrivals = await list_arrivals(reading, feed.id, RHYTHM_ARTICLES)
        if len(arrivals) < RHYTHM_MINIMUM:
            return None
        gaps = [(later - earlier).total_seconds() for later, earlier in pairwise(arrivals)]
        rhythm = timedelta(seconds=statistics.median(gaps))
        if now - newest < max(SILENCE_FLOOR, rhythm * SILENCE_FACTOR):
            return None
        return Notice(feed.id, _name(feed), "silent", newest, rhythm=rhythm)

    async def _swap(self, feed_id: int, expected: datetime | None, new: datetime | None) -> bool:
        async with self._db.transaction() as session:
            return await swap_reported(session, feed_id, expected, new)

    async def _tell(self, notice: Notice, languages: dict[int, str | None], now: datetime) -> bool:
        """Send the notice to every editor; whether at least one got it."""
        heard = False
        for editor in self._editors:
            text = render(notice, languages.get(editor) or DEFAULT_LANGUAGE, now)
            try:
                await self._send(editor, text)
                heard = True
            except Exception as exc:  # an editor who never started the bot: the others
                log.warning(
                    "telling editor %s about feed %s failed: %s", editor, notice.feed_id, exc
                )
        if heard:
            log.info("told the editors feed %s is %s", notice.feed_id, notice.kind)
        return heard


def render(notice: Notice, language: str, now: datetime) -> str:
    """The message an editor reading ``language`` gets."""
    _ = translator(language).gettext

    def duration(delta: timedelta) -> str:
        return format_timedelta(delta, locale=language, threshold=1.5)

    if notice.kind == "recovered":
        return _("✅ Feed {id} ({name}) works again.").format(id=notice.feed_id, name=notice.name)
    assert notice.since is not None  # noqa: S101 - a broken feed's notice says since when
    if notice.kind == "failing":
        return _(
            "⚠️ Feed {id} ({name}) has been failing for {duration}. Last error: {error}"
        ).format(
            id=notice.feed_id,
            name=notice.name,
            duration=duration(now - notice.since),
            error=notice.error or "?",
        )
    assert notice.rhythm is not None  # noqa: S101 - a silent feed's notice has its rhythm
    return _(
        "⚠️ Feed {id} ({name}) has brought no new article for {duration}; "
        "it usually brings one every {rhythm}."
    ).format(
        id=notice.feed_id,
        name=notice.name,
        duration=duration(now - notice.since),
        rhythm=duration(notice.rhythm),
    )


def _name(feed: Feed) -> str:
    # Never the URL itself: it may carry a user, a password or a key.
    return (feed.name or feed.title or host_of(feed.url))[:200]
