"""The real Application, built by the composition root, running in the test's event loop
against the fake Bot API: updates go in through getUpdates, replies come out over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from telegram import Update

from bot.app import build_application
from bot.config import load_settings
from bot.services import Services
from handlers.context import NewsbotApplication
from storage.chats import get_chat
from storage.models import Chat, Subscription, Topic
from tests.fakebotapi import FakeBotAPI, SentMessage

EDITOR = 7001


@dataclass
class RunningBot:
    """A running bot and the fake Telegram it talks to."""

    application: NewsbotApplication
    fake: FakeBotAPI

    @property
    def services(self) -> Services:
        """The services the handlers use."""
        services = self.application.bot_data.services
        assert services is not None
        return services

    async def say(
        self,
        chat_id: int,
        text: str,
        *,
        replies: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline, as the fake's wait_for
        **kwargs: Any,
    ) -> list[SentMessage]:
        """Send ``text`` from the chat and return the ``replies`` new messages it got."""
        before = len(self.fake.messages_to(chat_id))
        self.fake.send_text(chat_id, text, **kwargs)
        messages = await self.fake.wait_for_messages(chat_id, before + replies, timeout)
        return messages[before:]

    async def press(self, chat_id: int, message: SentMessage, data: str, **kwargs: Any) -> None:
        """Press a button under a message and wait until the bot answered the press."""
        answered = len(self.fake.callback_answers)
        self.fake.press_button(chat_id, message.message_id, data, **kwargs)
        await self.fake.wait_for(
            lambda: len(self.fake.callback_answers) > answered, what="the button's answer"
        )

    async def followed(self, chat_id: int) -> list[str]:
        """The keys of the topics a chat follows, as stored, in the order followed."""
        async with self.services.db.sessions() as session:
            query = (
                select(Topic.key)
                .join(Subscription, Subscription.topic_id == Topic.id)
                .where(Subscription.chat_id == chat_id)
                .order_by(Subscription.id)
            )
            return list((await session.scalars(query)).all())

    async def stored_chat(self, chat_id: int) -> Chat | None:
        """The chat as stored."""
        async with self.services.db.sessions() as session:
            return await get_chat(session, chat_id)


@asynccontextmanager
async def running_bot(
    database_url: str, fake: FakeBotAPI, **settings: Any
) -> AsyncIterator[RunningBot]:
    """Run the bot as ``newsbot run`` does (long polling), inside the test's loop."""
    values: dict[str, Any] = {
        "token": fake.token,
        "api_url": fake.base_url,
        "database_url": database_url,
        "parse_workers": 0,
        "poll_interval": 1,
        "admins": frozenset({EDITOR}),
        "timezone": "Asia/Riyadh",
    }
    values.update(settings)
    application = build_application(load_settings(**values))
    await application.initialize()
    assert application.post_init is not None
    await application.post_init(application)
    assert application.updater is not None
    await application.updater.start_polling(
        poll_interval=0.0, timeout=1, allowed_updates=Update.ALL_TYPES
    )
    await application.start()
    try:
        yield RunningBot(application, fake)
    finally:
        await application.updater.stop()
        await application.stop()
        if application.post_stop is not None:
            await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)
