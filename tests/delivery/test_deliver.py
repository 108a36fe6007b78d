"""Delivering one outbox row: each reader's alert names the matched topics that reader
follows at send time, and no one else's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import Bot

from bot.delivery.deliver import AlertDelivery
from bot.text.topics import load_catalog
from storage.alerts import create_alert
from storage.chats import set_all_breaking, upsert_chat
from storage.db import Database
from storage.deliveries import claim_due
from storage.subscriptions import add_subscription, remove_subscription, upsert_topic
from tests.fakebotapi import FakeBotAPI

NOW = datetime.now(UTC)
MATCHED = ("russia", "ukraine", "gaza")


def tags(text: str) -> list[str]:
    """The hashtags of a message, in order."""
    return [word for word in text.split() if word.startswith("#")]


async def test_each_reader_sees_only_the_matched_topics_they_follow(db: Database) -> None:
    """Of the topics a story matched, each chat's alert tags only those it follows when the
    alert is sent: not another reader's, not one it stopped following, none for a channel
    that takes every story."""
    async with db.transaction() as session:
        ids = {key: (await upsert_topic(session, key, key)).id for key in MATCHED}
        follows = {1: ["russia"], 2: ["ukraine", "russia"], 3: ["ukraine"], 5: ["gaza"]}
        for chat_id, language in [(1, "ar"), (2, "ar"), (3, "en"), (5, "ar")]:
            await upsert_chat(session, chat_id, kind="private", language=language)
            for key in follows[chat_id]:
                await add_subscription(session, chat_id, ids[key])
        await upsert_chat(session, -1004, kind="channel")
        await set_all_breaking(session, -1004, True)
        await create_alert(
            session, [1, 2, 3, -1004, 5], NOW, text="روسيا وأوكرانيا وغزة", topics=MATCHED
        )
    async with db.transaction() as session:  # after the fan-out, before the send
        await remove_subscription(session, 5, ids["gaza"])
    async with db.transaction() as session:
        rows = await claim_due(session, NOW + timedelta(seconds=1), 10)

    async with FakeBotAPI(any_chat=True) as fake, Bot(fake.token, base_url=fake.base_url) as bot:
        deliver = AlertDelivery(bot, db, zone=ZoneInfo("UTC"), markers=(), catalog=load_catalog())
        await asyncio.gather(*(deliver(row) for row in rows))  # sent together, as the sender does
        sent = {chat_id: fake.messages_to(chat_id)[0].plain for chat_id in (1, 2, 3, -1004, 5)}

    assert tags(sent[1]) == ["#روسيا"]
    assert tags(sent[2]) == ["#روسيا", "#أوكرانيا"]
    assert tags(sent[3]) == ["#Ukraine"]
    assert tags(sent[-1004]) == [] and tags(sent[5]) == []
    assert all("روسيا وأوكرانيا وغزة" in text for text in sent.values())
