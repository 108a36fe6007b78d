"""Editors hear of broken sources: a feed failing too long or silent far beyond its rhythm
is reported once (whatever the number of processes), and once more when it recovers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from bot.feeds.alarms import FeedAlarms
from storage.db import Database
from storage.models import Article, Chat, Feed
from tests.botharness import EDITOR, running_bot
from tests.fakebotapi import FakeBotAPI
from tests.feeds.ingesting import watch
from tests.processes import wait_until

EDITORS = (501, 502)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Inbox:
    """The editors' private chats: what each was sent."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.sent: list[tuple[int, str]] = []
        self.refuse = refuse

    async def send(self, chat_id: int, text: str) -> None:
        """Deliver one message, or fail as Telegram does for a chat that never started."""
        if chat_id in self.refuse:
            raise RuntimeError("Forbidden: bot can't initiate conversation with a user")
        self.sent.append((chat_id, text))


async def set_feed(db: Database, feed_id: int, **values: object) -> None:
    """Write columns of a feed, as polls would have left them."""
    async with db.transaction() as session:
        await session.execute(update(Feed).where(Feed.id == feed_id).values(**values))


async def failing(db: Database, *, name: str = "وكالة", hours: float = 2) -> int:
    """A feed whose last success was ``hours`` ago and whose polls fail since."""
    url = f"https://user:secret@news.example/{name}.xml"
    feed_id = await watch(db, url, hold=True)
    await set_feed(
        db,
        feed_id,
        name=name,
        created_at=NOW - timedelta(days=30),
        last_success_at=NOW - timedelta(hours=hours),
        last_status="error",
        last_error="HTTP 503",
        failures=9,
    )
    return feed_id


def alarms(db: Database, inbox: Inbox, clock: list[datetime]) -> FeedAlarms:
    """The checker as a process runs it, alarm after an hour."""
    return FeedAlarms(
        db, EDITORS, inbox.send, failing_after=timedelta(minutes=60), clock=lambda: clock[0]
    )


async def test_a_feed_failing_past_the_alarm_time_is_reported_once_then_its_recovery(
    db: Database,
) -> None:
    """A feed failing for two hours is reported to each editor once, however often the
    check runs; when it works again each editor hears so once; a short failure is not."""
    feed_id = await failing(db)
    await failing(db, name="brief", hours=0.5)  # under the hour: nobody is told
    inbox, clock = Inbox(), [NOW]
    checker = alarms(db, inbox, clock)
    await checker.check()
    await checker.check()
    assert [chat for chat, _ in inbox.sent] == list(EDITORS)
    assert all(f"Feed {feed_id}" in text or str(feed_id) in text for _, text in inbox.sent)
    assert all("وكالة" in text and "secret" not in text for _, text in inbox.sent)
    await set_feed(db, feed_id, last_status="ok", last_success_at=NOW, failures=0)
    clock[0] = NOW + timedelta(minutes=1)
    await checker.check()
    await checker.check()
    assert len(inbox.sent) == 4
    assert [chat for chat, _ in inbox.sent[2:]] == list(EDITORS)
    assert inbox.sent[2][1] != inbox.sent[0][1]


async def test_several_processes_report_a_broken_feed_once(
    db: Database, database_url: str
) -> None:
    """Three processes checking the feeds at the same moment tell the editors once."""
    await failing(db)
    inbox, clock = Inbox(), [NOW]
    others = [Database(database_url) for _ in range(2)]
    try:
        checkers = [alarms(database, inbox, clock) for database in [db, *others]]
        await asyncio.gather(*(checker.check() for checker in checkers))
    finally:
        for database in others:
            await database.dispose()
    assert [chat for chat, _ in inbox.sent] == list(EDITORS)


async def test_a_report_nobody_received_is_tried_again(db: Database) -> None:
    """When no editor can be reached the report is not counted as made: the next check,
    once an editor can be reached, makes it."""
    await failing(db)
    clock = [NOW]
    unreachable = Inbox(refuse=frozenset(EDITORS))
    await alarms(db, unreachable, clock).check()
    reachable = Inbox(refuse=frozenset({EDITORS[0]}))
    await alarms(db, reachable, clock).check()
    assert [chat for chat, _ in reachable.sent] == [EDITORS[1]]


async def test_a_feed_silent_far_beyond_its_rhythm_is_reported(db: Database) -> None:
    """A feed that brought an article every hour and none for two days is reported as
    silent; one with an article a week is not, after the same two days."""
    hourly = await watch(db, "https://hourly.example/rss", hold=True)
    weekly = await watch(db, "https://weekly.example/rss", hold=True)
    last = NOW - timedelta(days=2)
    async with db.transaction() as session:
        for feed_id, gap in ((hourly, timedelta(hours=1)), (weekly, timedelta(days=7))):
            for n in range(10):
                seen = last - gap * n
                session.add(
                    Article(
                        uid=f"{feed_id}-{n}",
                        feed_id=feed_id,
                        title=f"خبر {n}",
                        published_at=seen,
                        first_seen_at=seen,
                        alertable=False,
                    )
                )
    for feed_id in (hourly, weekly):
        await set_feed(db, feed_id, last_status="unchanged", last_success_at=NOW)
    inbox = Inbox()
    sent = await alarms(db, inbox, [NOW]).check()
    assert [(notice.feed_id, notice.kind) for notice in sent] == [(hourly, "silent")]
    assert len(inbox.sent) == 2


async def test_the_running_bot_tells_an_editor_in_arabic(
    db: Database, database_url: str, fake_api: FakeBotAPI
) -> None:
    """The running bot checks the feeds as it starts: an editor gets a private message
    about a feed failing for hours (in their chat's language, Arabic by default)."""
    async with db.transaction() as session:
        session.add(Chat(id=EDITOR, kind="private", language="ar"))
    await failing(db, hours=3)
    # The bot's clock is the real one: a failure three hours before now.
    await set_feed(db, 1, last_success_at=datetime.now(UTC) - timedelta(hours=3))
    async with running_bot(database_url, fake_api):

        async def told() -> bool:
            return bool(fake_api.messages_to(EDITOR))

        await wait_until(told, what="the editor to be told")
    messages = fake_api.messages_to(EDITOR)
    assert len(messages) == 1
    assert "وكالة" in messages[0].plain and "HTTP 503" in messages[0].plain
