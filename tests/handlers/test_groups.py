"""Groups and channels, through the running bot: only admins (anonymous ones too) undo a
group's /stop, channels are the operator's to add, and the editors' commands answer in a
private chat only, never showing the credentials in a feed's address.

Every test uses chats of its own: on PostgreSQL the database is shared by the whole run.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select

from storage.chats import upsert_chat
from storage.db import Database, alembic_config
from storage.feeds import add_feed, list_feeds
from storage.models import Chat, Draft
from tests.botharness import EDITOR, RunningBot
from tests.feedserver import FeedServer, Item, make_rss

EN = {"language_code": "en"}
PRIVATE_ONLY = "work only in a private chat"


# -- who may undo a group's /stop ------------------------------------------------------------


async def test_a_members_start_does_not_undo_an_admins_stop(
    db: Database, newsbot: RunningBot
) -> None:
    """After an admin's /stop a member's /start gets the welcome and the group stays
    stopped; an admin's /start resumes it."""
    group, admin, member = -3501, 3951, 3952
    newsbot.fake.add_chat(group, chat_type="group", title="غرفة الأخبار")
    newsbot.fake.set_admins(group, [admin])
    await newsbot.say(group, "/follow روسيا", user_id=admin, **EN)
    await newsbot.say(group, "/stop", user_id=admin, **EN)

    (welcome,) = await newsbot.say(group, "/start", user_id=member, **EN)
    assert "Welcome" in welcome.plain
    chat = await newsbot.stored_chat(group)
    assert chat is not None and not chat.active

    await newsbot.say(group, "/start", user_id=admin, **EN)
    chat = await newsbot.stored_chat(group)
    assert chat is not None and chat.active


async def test_a_members_start_registers_a_group_new_to_the_bot(
    db: Database, newsbot: RunningBot
) -> None:
    """A group the bot has not stored yet is stored by anyone's /start, active."""
    group = -3502
    newsbot.fake.add_chat(group, chat_type="group")
    await newsbot.say(group, "/start", user_id=3953, **EN)
    chat = await newsbot.stored_chat(group)
    assert chat is not None and chat.active


async def test_anonymous_admins_are_admins(db: Database, newsbot: RunningBot) -> None:
    """An anonymous admin (writing as the group, from GroupAnonymousBot) changes what the
    group follows and undoes its /stop."""
    group = -1003503
    newsbot.fake.add_chat(group, chat_type="supergroup", title="Desk")
    (done,) = await newsbot.say(group, "/follow روسيا", anonymous_admin=True)
    assert "روسيا" in done.plain and "✓" in done.plain
    assert await newsbot.followed(group) == ["russia"]
    await newsbot.say(group, "/stop", anonymous_admin=True)
    assert await newsbot.followed(group) == []
    await newsbot.say(group, "/start", anonymous_admin=True)
    chat = await newsbot.stored_chat(group)
    assert chat is not None and chat.active


# -- channels ----------------------------------------------------------------------------------


async def test_a_channel_that_adds_the_bot_receives_nothing(
    db: Database, newsbot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel making the bot its admin is not stored, and an editor's alert to everyone
    does not count it; the operator adds channels."""
    channel = -1003504
    async with newsbot.services.db.transaction() as session:
        await upsert_chat(session, 3504, kind="private")
    with caplog.at_level(logging.INFO, logger="handlers.membership"):
        newsbot.fake.member_update(channel, "administrator", chat_type="channel", title="قناة")
        await newsbot.fake.wait_for(
            lambda: any(str(channel) in record.getMessage() for record in caplog.records),
            what="the membership update handled",
        )
    assert await newsbot.stored_chat(channel) is None
    (shown,) = await newsbot.say(EDITOR, "/alert خبر للجميع", user_id=EDITOR, **EN)
    assert "Send this alert to 1 chat?" in shown.plain


async def test_the_upgrade_stops_channels_nobody_added(db: Database) -> None:
    """Upgrading to 0005 deactivates the channels that only added the bot; channels the
    operator added (with topics, or taking every breaking story) and groups stay active."""

    def move(connection: sa.Connection, revision: str, down: bool) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(move, "0004", True)
    try:
        async with db.engine.begin() as connection:
            chats = sa.table(
                "chats",
                *(sa.column(name) for name in ("id", "kind", "active", "all_breaking")),
                sa.column("created_at"),
            )
            rows = [(-1001, "channel", False), (-1002, "channel", True), (-1003, "channel", False)]
            rows.append((-1004, "group", False))
            for chat_id, kind, every in rows:
                await connection.execute(
                    chats.insert().values(
                        id=chat_id,
                        kind=kind,
                        active=True,
                        all_breaking=every,
                        created_at=sa.func.now(),
                    )
                )
            topics = sa.table("topics", sa.column("id"), sa.column("key"), sa.column("label"))
            await connection.execute(topics.insert().values(id=1, key="iran", label="إيران"))
            subscriptions = sa.table(
                "subscriptions",
                sa.column("chat_id"),
                sa.column("topic_id"),
                sa.column("created_at"),
            )
            await connection.execute(
                subscriptions.insert().values(chat_id=-1003, topic_id=1, created_at=sa.func.now())
            )
    finally:
        async with db.engine.begin() as connection:
            await connection.run_sync(move, "head", False)
    async with db.sessions() as session:
        active = dict((await session.execute(select(Chat.id, Chat.active))).all())
    assert active == {-1001: False, -1002: True, -1003: True, -1004: True}


# -- the editors' commands ---------------------------------------------------------------------


async def test_editor_commands_answer_only_in_a_private_chat(
    db: Database, newsbot: RunningBot
) -> None:
    """In a group every editor command, even an editor's, gets a pointer to the private
    chat: no feed address, no figure, no draft; /help there lists no editor command."""
    group = -1003505
    newsbot.fake.add_chat(group, chat_type="supergroup")
    async with newsbot.services.db.transaction() as session:
        feed = add_feed(session, "https://news.example/rss.xml", name="وكالة")
        feed.next_fetch_at = newsbot.services.clock() + timedelta(days=1)
    for command_text in (
        "/feeds",
        "/stats",
        "/alert خبر #روسيا",
        "/addfeed https://other.example/rss",
        "/removefeed 1",
    ):
        (reply,) = await newsbot.say(group, command_text, user_id=EDITOR, **EN)
        assert PRIVATE_ONLY in reply.plain, command_text
        assert "news.example" not in reply.plain and reply.reply_markup is None
    async with newsbot.services.db.sessions() as session:
        assert [feed.url for feed in await list_feeds(session)] == ["https://news.example/rss.xml"]
        assert await session.scalar(select(func.count()).select_from(Draft)) == 0
    (helped,) = await newsbot.say(group, "/help", user_id=EDITOR, **EN)
    assert "/alert" not in helped.plain and "/feeds" not in helped.plain
    (private,) = await newsbot.say(EDITOR, "/feeds", user_id=EDITOR, **EN)
    assert "news.example/rss.xml" in private.plain


async def test_feed_credentials_are_never_shown(
    db: Database, newsbot: RunningBot, feed_server: FeedServer
) -> None:
    """/feeds, /removefeed, /stats and a refused /addfeed show a feed's address without its
    user, password or key, wherever the address appears."""
    secret_url = "https://editor:s3cret-pw@news.example/rss.xml?api_key=k3y-value&cat=5"  # noqa: S105 - a fake credential to hide
    async with newsbot.services.db.transaction() as session:
        feed = add_feed(session, secret_url)
        feed.next_fetch_at = newsbot.services.clock() + timedelta(days=1)
        feed.last_status = "error"
        feed.last_error = f"HTTP 500 from {secret_url}"
        feed.failures = 2
    secrets = ("s3cret-pw", "k3y-value", "editor:")
    replies = [
        (await newsbot.say(EDITOR, command_text, user_id=EDITOR, **EN))[0].plain
        for command_text in ("/feeds", "/stats", "/removefeed 1")
    ]
    url = feed_server.add("feed.xml", make_rss("وكالة", [Item("خبر", "https://n.example/1")]))
    local = url.replace("http://", "http://editor:s3cret-pw@", 1) + "?token=k3y-value"
    (refused,) = await newsbot.say(EDITOR, f"/addfeed {local}", user_id=EDITOR, **EN)
    replies.append(refused.plain)
    for text in replies:
        assert not any(secret in text for secret in secrets), text
    assert "***@news.example/rss.xml?api_key=***&cat=5" in replies[0]
    assert "HTTP 500 from https://***@news.example" in replies[1]
    assert "Could not fetch http://***@127.0.0.1" in replies[3]
