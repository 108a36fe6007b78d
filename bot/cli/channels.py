"""``newsbot channels``: Telegram channels the bot posts alerts to."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from telegram import Bot, ChatFullInfo, ChatMemberAdministrator
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.app import Core
from bot.cli.common import EXIT_OK, CommandError, _, with_core
from bot.cli.run import require_token
from bot.config import Settings
from bot.runner import bot_api_problem, quiet_telegram
from bot.text.topics import ResolvedTopic, TopicRefusal, load_catalog, resolve
from storage.chats import get_chat, set_all_breaking, stop_chat, upsert_chat
from storage.models import Chat
from storage.subscriptions import (
    add_subscription,
    list_chat_topics,
    upsert_topic,
)


@asynccontextmanager
async def _bot_api(settings: Settings) -> AsyncIterator[Bot]:
    """The Bot API as the bot itself; any failure it answers becomes one line."""
    token = require_token(settings)
    # The failure is reported here, in one line: keep the library's own logging out of it.
    with quiet_telegram():
        try:
            async with Bot(token, base_url=settings.api_url) as bot:
                yield bot
        except TelegramError as exc:
            raise CommandError(bot_api_problem(exc, settings.api_url)) from None


def _chat_key(text: str) -> int | str:
    """A channel as the Bot API names it: its numeric id, or "@username"."""
    key = text.strip()
    for prefix in ("https://t.me/", "http://t.me/", "t.me/"):
        key = key.removeprefix(prefix)
    if key.lstrip("-").isdigit():
        return int(key)
    return key if key.startswith("@") else f"@{key}"


async def _find_channel(bot: Bot, text: str) -> ChatFullInfo:
    try:
        chat = await bot.get_chat(_chat_key(text))
    except (BadRequest, Forbidden):
        raise CommandError(
            _("unknown channel {channel}: check its @name or id").format(channel=text)
        ) from None
    if chat.type != ChatType.CHANNEL:
        raise CommandError(
            _("{channel} is not a channel (a group chooses its topics with /follow)").format(
                channel=text
            )
        )
    return chat


@with_core
async def add(core: Core, args: argparse.Namespace) -> int:
    """Send a channel the alerts of some topics, or every breaking story."""
    topics: list[ResolvedTopic] = []
    for phrase in args.topic:
        resolved = resolve(phrase, load_catalog())
        if isinstance(resolved, TopicRefusal):
            raise CommandError(
                _("cannot follow {topic!r}: {reason}").format(
                    topic=phrase, reason=resolved.message
                )
            )
        topics.append(resolved)
    async with _bot_api(core.settings) as bot:
        chat = await _find_channel(bot, args.channel)
        member = await bot.get_chat_member(chat.id, bot.id)
        # Telegram names can_post_messages for every administrator of a channel: absent, it
        # is not known to be refused.
        if not isinstance(member, ChatMemberAdministrator) or member.can_post_messages is False:
            raise CommandError(
                _(
                    "the bot is not an administrator of {channel} allowed to post: make it one "
                    "in the channel's settings, then try again"
                ).format(channel=args.channel)
            )
    title = chat.title or chat.username or str(chat.id)
    async with core.db.transaction() as session:
        await upsert_chat(session, chat.id, kind="channel", title=title)
        for topic in topics:
            stored = await upsert_topic(session, topic.key, topic.label)
            await add_subscription(session, chat.id, stored.id)
        await set_all_breaking(session, chat.id, not topics)
    if topics:
        labels = ", ".join(dict.fromkeys(topic.label for topic in topics))
        print(
            _("channel {title} ({id}) now follows: {topics}").format(
                title=title, id=chat.id, topics=labels
            )
        )
    else:
        print(
            _("channel {title} ({id}) now receives every breaking story").format(
                title=title, id=chat.id
            )
        )
    return EXIT_OK


@with_core
async def list_(core: Core, _args: argparse.Namespace) -> int:
    """The channels alerts go to, one a line."""
    lines = []
    async with core.db.sessions() as session:
        channels = await session.scalars(
            select(Chat)
            .where(Chat.kind == "channel", Chat.active.is_(True))
            .order_by(Chat.created_at, Chat.id)
        )
        for chat in channels.all():
            if chat.all_breaking:
                what = _("every breaking story")
            else:
                labels = [topic.label for topic in await list_chat_topics(session, chat.id)]
                what = ", ".join(labels) or _("nothing (no topics)")
            lines.append(f"{chat.id}\t{chat.title or ''}\t{what}")
    if not lines:
        print(_("no channels yet: add one with `newsbot channels add @name`"))
    for line in lines:
        print(line)
    return EXIT_OK


@with_core
async def remove(core: Core, args: argparse.Namespace) -> int:
    """Stop sending alerts to a channel."""
    key = _chat_key(args.channel)
    if isinstance(key, str):  # a @name: only Telegram knows its id
        async with _bot_api(core.settings) as bot:
            key = (await _find_channel(bot, args.channel)).id
    async with core.db.transaction() as session:
        chat = await get_chat(session, key)
        if chat is None or chat.kind != "channel" or not chat.active:
            raise CommandError(
                _("no channel {channel}: see `newsbot channels list`").format(channel=args.channel)
            )
        title = chat.title or str(chat.id)
        await stop_chat(session, chat.id)
    print(_("removed channel {title} ({id}): no more alerts go there").format(title=title, id=key))
    return EXIT_OK
