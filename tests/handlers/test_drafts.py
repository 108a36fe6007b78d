"""An editor's alert waits in the database for «Send»: across a restart, in a process other
than the one that showed the preview, taken once, and not after it expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from telegram import Update

from storage.chats import upsert_chat
from storage.db import Database
from storage.drafts import add_draft, get_draft, take_draft
from storage.models import Delivery, Draft, utcnow
from tests.botharness import EDITOR, RunningBot, running_bot
from tests.fakebotapi import FakeBotAPI, SentMessage

READERS = (3401, 3402)


async def readers(newsbot: RunningBot) -> None:
    """Two readers who receive alerts sent to everyone."""
    async with newsbot.services.db.transaction() as session:
        for chat_id in READERS:
            await upsert_chat(session, chat_id, kind="private", language="ar")


async def preview(newsbot: RunningBot, text: str) -> SentMessage:
    """The editor sends /alert and gets the preview (in English)."""
    (reply,) = await newsbot.say(EDITOR, text, user_id=EDITOR, language_code="en")
    return reply


async def delivered_to(db: Database) -> list[int]:
    """The chats with a delivery row."""
    async with db.sessions() as session:
        return sorted((await session.scalars(select(Delivery.chat_id))).all())


async def drafts(db: Database) -> int:
    """How many drafts are stored."""
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Draft)) or 0)


async def test_a_draft_is_sent_after_a_restart(
    db: Database, fake_api: FakeBotAPI, database_url: str
) -> None:
    """A preview shown before the bot restarted is sent by the «Send» pressed after it."""
    async with running_bot(database_url, fake_api) as before:
        await readers(before)
        shown = await preview(before, "/alert انقطاع الكهرباء في العاصمة")
    async with running_bot(database_url, fake_api) as after:
        await after.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
        assert after.fake.callback_answers[-1].text == "Sent to 2 chats."
        assert await delivered_to(db) == list(READERS)
        for chat_id in READERS:
            (alert,) = await after.fake.wait_for_messages(chat_id)
            assert "انقطاع الكهرباء في العاصمة" in alert.plain
    assert await drafts(db) == 0


async def test_send_pressed_in_another_process_sends_the_draft(
    db: Database, fake_api: FakeBotAPI, database_url: str
) -> None:
    """With two processes on one database, «Send» reaching the one that did not show the
    preview sends the alert and says so under the preview."""
    async with running_bot(database_url, fake_api) as first:
        await readers(first)
        shown = await preview(first, "/alert زلزال قوي يضرب المنطقة")
        updater = first.application.updater
        assert updater is not None
        await updater.stop()  # the first process runs on; updates reach the second only
        try:
            async with running_bot(database_url, fake_api) as second:
                await second.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
                assert second.fake.callback_answers[-1].text == "Sent to 2 chats."
        finally:
            await updater.start_polling(
                poll_interval=0.0, timeout=1, allowed_updates=Update.ALL_TYPES
            )
    assert await delivered_to(db) == list(READERS)
    assert "Sent to 2 chats." in fake_api.message(EDITOR, shown.message_id)["text"]


async def test_an_expired_draft_is_not_sent(newsbot: RunningBot) -> None:
    """«Send» pressed after the preview expired sends nothing and says to write it again."""
    await readers(newsbot)
    shown = await preview(newsbot, "/alert خبر قديم")
    services = newsbot.services
    later = services.clock() + timedelta(hours=2)
    services.clock = lambda: later
    await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
    assert "expired" in str(newsbot.fake.callback_answers[-1].text)
    assert "/alert" in newsbot.fake.message(EDITOR, shown.message_id)["text"]
    assert await delivered_to(services.db) == []
    assert await drafts(services.db) == 0


async def test_two_presses_in_two_transactions_take_the_draft_once(db: Database) -> None:
    """Two transactions taking the same draft at once (two processes' presses): one takes
    it, the other finds it gone once the first commits."""
    now = utcnow()
    async with db.transaction() as session:
        draft = await add_draft(
            session,
            editor_id=EDITOR,
            text="خبر",
            topic_key=None,
            topic_label=None,
            now=now,
            expires_at=now + timedelta(hours=1),
        )
    first_took = asyncio.Event()

    async def press(wait: bool) -> bool:
        if wait:
            await first_took.wait()
        async with db.transaction() as session:
            assert await get_draft(session, draft.id) is not None or wait
            taken = await take_draft(session, draft.id)
            if not wait:
                first_took.set()
                await asyncio.sleep(0.2)  # the second press starts meanwhile
            return taken

    assert await asyncio.gather(press(False), press(True)) == [True, False]
