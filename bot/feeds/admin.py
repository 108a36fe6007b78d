"""Adding and removing watched feeds, shared by ``newsbot feeds`` and the editors' /addfeed
and /removefeed: the URL is checked, the feed fetched once, and kept only if that worked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.feeds.ingest import Ingestor
from bot.feeds.links import canonical_link
from bot.feeds.parse import storable_link
from storage.db import Database
from storage.feeds import add_feed, feed_column_room, get_feed, get_feed_by_url, remove_feed
from storage.models import Feed, utcnow

# A new feed is not due for the watcher until this long after it is stored: its first fetch,
# made here, alone decides whether the feed stays. The fetch resets the schedule either way.
FIRST_FETCH_HOLD = timedelta(hours=1)
# A longer name is shortened to fit its column.
NAME_ROOM = feed_column_room("name")


class FeedAddReason(enum.Enum):
    """Why a feed was not added (the CLI and the handlers word each in their own way)."""

    NOT_A_URL = "not_a_url"  # not an absolute http(s) URL (or too long to store)
    ALREADY_WATCHED = "already_watched"  # a feed with this URL exists (``feed_id``)
    FETCH_FAILED = "fetch_failed"  # the first fetch failed (``detail`` says why, in English)


class FeedAddError(Exception):
    """A feed that could not be added, with the reason and what goes with it."""

    def __init__(
        self, reason: FeedAddReason, *, url: str, detail: str = "", feed_id: int | None = None
    ) -> None:
        super().__init__(f"{reason.value}: {detail or url}")
        self.reason = reason
        self.url = url
        self.detail = detail
        self.feed_id = feed_id


@dataclass(frozen=True, slots=True)
class AddedFeed:
    """A feed now watched, after its first fetch."""

    id: int
    url: str
    title: str  # the name given, else the feed's own title, else its URL
    items: int  # items in the first fetch (archived, never alerted)
    breaking: bool


def storable_name(name: str | None) -> str | None:
    """A feed's name cut to what storage holds (with "…"), or None for no name."""
    if name and len(name) > NAME_ROOM:
        return name[: NAME_ROOM - 1].rstrip() + "…"
    return name or None


async def add_feed_and_fetch(
    db: Database,
    ingestor: Ingestor,
    url: str,
    *,
    name: str | None = None,
    breaking: bool = False,
    in_chat: bool = False,
) -> AddedFeed:
    """Store the feed and fetch it once; raise FeedAddError and keep nothing when the URL
    is wrong, already watched or the fetch fails. A feed added ``in_chat`` is fetched,
    now and on every poll, refusing private addresses unless the operator allows them."""
    canonical = storable_link(canonical_link(url))
    if canonical is None or not url.strip().lower().startswith(("http://", "https://")):
        raise FeedAddError(FeedAddReason.NOT_A_URL, url=url)
    name = storable_name(name)
    try:
        async with db.transaction() as session:
            if (existing := await get_feed_by_url(session, canonical)) is not None:
                raise FeedAddError(
                    FeedAddReason.ALREADY_WATCHED, url=canonical, feed_id=existing.id
                )
            feed = add_feed(
                session, canonical, name=name, breaking=breaking, added_in_chat=in_chat
            )
            feed.next_fetch_at = utcnow() + FIRST_FETCH_HOLD
            await session.flush()
            feed_id = feed.id
    except IntegrityError:  # added by someone else at the same moment
        raise FeedAddError(FeedAddReason.ALREADY_WATCHED, url=canonical) from None
    outcome = await ingestor.poll_feed(feed_id)
    if outcome.status == "failed":
        async with db.transaction() as session:
            await remove_feed(session, feed_id)
        raise FeedAddError(FeedAddReason.FETCH_FAILED, url=canonical, detail=outcome.error or "")
    return AddedFeed(
        id=feed_id,
        url=canonical,
        title=name or outcome.title or canonical,
        items=outcome.items,
        breaking=breaking,
    )


async def find_feed(session: AsyncSession, key: str) -> Feed | None:
    """The feed named by its id or its URL, or None."""
    key = key.strip()
    if key.isdigit():
        return await get_feed(session, int(key))
    url = canonical_link(key)
    return await get_feed_by_url(session, url) if url else None


__all__ = [
    "FIRST_FETCH_HOLD",
    "AddedFeed",
    "FeedAddError",
    "FeedAddReason",
    "add_feed_and_fetch",
    "find_feed",
]
