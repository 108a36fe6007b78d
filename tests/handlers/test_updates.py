"""The bot starts as ``newsbot run`` builds it: services wired, commands published."""

from __future__ import annotations

import asyncio

from telegram import Update

from storage.subscriptions import list_chat_topic_keys
from tests.botharness import RunningBot


async def test_the_bot_starts_and_publishes_its_services(newsbot: RunningBot) -> None:
    """After start the handlers have their services and the sender is running."""
    assert newsbot.services.topics.catalog.topics
    await newsbot.fake.wait_for_call("getUpdates")


async def test_one_chats_commands_are_handled_in_the_order_sent(newsbot: RunningBot) -> None:
    """Follow, unfollow, follow … sent back to back end as the last one said, with the
    replies in order."""
    chat = 5151
    commands = ["/follow روسيا", "/unfollow روسيا"] * 3 + ["/follow روسيا"]
    for command in commands:
        newsbot.fake.send_text(chat, command, language_code="en")
    replies = await newsbot.fake.wait_for_messages(chat, len(commands), timeout=10)
    assert [reply.plain.startswith("✓") for reply in replies] == [
        command.startswith("/follow") for command in commands
    ]
    async with newsbot.services.db.sessions() as session:
        assert await list_chat_topic_keys(session, chat) == {"russia"}


async def test_a_flooding_chat_does_not_hold_up_the_others(newsbot: RunningBot) -> None:
    """A chat that sends dozens of commands at once has the excess dropped; another reader
    is answered meanwhile."""
    flooder, reader = 6161, 6262
    for _ in range(40):
        newsbot.fake.send_text(flooder, "/topics", language_code="en")
    (answer,) = await newsbot.say(reader, "/help", language_code="en")
    assert "/follow" in answer.plain
    await asyncio.sleep(1.0)
    assert 8 <= len(newsbot.fake.messages_to(flooder)) < 40


async def test_an_update_delivered_again_is_handled_once(newsbot: RunningBot) -> None:
    """Telegram sends an update again when the process that fetched it died before
    confirming it (or a webhook's answer was lost): the reader is not answered twice, and
    the updates after it are handled as usual."""
    chat = 7171
    update_id = newsbot.fake.send_text(chat, "/follow روسيا", language_code="en")
    (reply,) = await newsbot.fake.wait_for_messages(chat, 1, timeout=5)
    assert reply.plain.startswith("✓")
    again = Update.de_json(newsbot.fake.injected[update_id], newsbot.application.bot)
    await newsbot.application.process_update(again)
    (answer,) = await newsbot.say(chat, "/topics", language_code="en")
    assert len(newsbot.fake.messages_to(chat)) == 2  # the follow's reply, then this one
    assert "Russia" in answer.plain
