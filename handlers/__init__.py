"""Telegram handlers, registered in one ordered list by :func:`register`."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from telegram import Bot, BotCommand, BotCommandScopeChat, Update
from telegram.error import TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.i18n import translator
from handlers import (
    editor,
    errors,
    membership,
    redelivery,
    search,
    settings,
    start,
    topics,
)
from handlers.context import NewsbotApplication

log = logging.getLogger(__name__)

# New messages only: an edited "/follow" or "/alert" must not act twice, and channel posts
# are not commands from readers.
NEW = filters.UpdateType.MESSAGE


def register(application: NewsbotApplication) -> None:
    """Every handler, in the order it is tried (the first that matches an update wins)."""
    # First, in a group of its own: an update Telegram delivered again is dropped.
    application.add_handler(TypeHandler(Update, redelivery.drop_redelivered), group=-1)
    application.add_handlers(
        [
            # Readers.
            CommandHandler("start", start.start, filters=NEW),
            CommandHandler("help", start.help_command, filters=NEW),
            CommandHandler("follow", topics.follow, filters=NEW),
            CommandHandler("unfollow", topics.unfollow, filters=NEW),
            CommandHandler("topics", topics.show_topics, filters=NEW),
            CommandHandler("search", search.search, filters=NEW),
            CommandHandler("latest", search.latest, filters=NEW),
            CommandHandler("mute", settings.mute, filters=NEW),
            CommandHandler("unmute", settings.unmute, filters=NEW),
            CommandHandler("quiet", settings.quiet, filters=NEW),
            CommandHandler("lang", settings.choose_language, filters=NEW),
            CommandHandler("stop", settings.stop, filters=NEW),
            CallbackQueryHandler(topics.pick, pattern=r"^pick:\d{1,4}$"),
            CallbackQueryHandler(topics.browse, pattern=r"^browse:(?:new|\d:\d{1,3})$"),
            CallbackQueryHandler(topics.unfollow_button, pattern=r"^unfollow:\d{1,19}$"),
            CallbackQueryHandler(settings.language_button, pattern=r"^lang:[a-z]{2}$"),
            CallbackQueryHandler(
                search.turn_page, pattern=r"^search:[\w-]{1,16}:\d{1,4}(?::\d{1,12})?$"
            ),
            # Editors: each handler refuses anyone else itself, politely.
            CommandHandler("alert", editor.alert, filters=NEW),
            CallbackQueryHandler(
                editor.confirm_alert, pattern=r"^alert:(?:send|cancel):[\w-]{1,16}$"
            ),
            CommandHandler("feeds", editor.feeds, filters=NEW),
            CommandHandler("addfeed", editor.add_feed, filters=NEW),
            CommandHandler("removefeed", editor.remove_feed, filters=NEW),
            CommandHandler("stats", editor.stats, filters=NEW),
            # The bot's own membership, and groups that became supergroups.
            ChatMemberHandler(membership.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
            MessageHandler(filters.StatusUpdate.MIGRATE, membership.on_migrate),
            # Last, after every command: unknown commands and plain text get guidance. In
            # groups plain text is conversation between members: the bot keeps out of it.
            MessageHandler(filters.COMMAND & NEW, start.unknown_command),
            MessageHandler(
                filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE & NEW, start.guide
            ),
        ]
    )
    application.add_error_handler(errors.on_error)


async def publish_commands(bot: Bot, editors: Iterable[int]) -> None:
    """The command menus, in Arabic (the default) and English (setMyCommands); editors see
    theirs too, in their private chats."""

    def menu(language: str, *, editor: bool = False) -> list[BotCommand]:
        _ = translator(language).gettext
        listed = start.reader_commands(_) + (start.editor_commands(_) if editor else [])
        return [BotCommand(name, description) for name, description in listed]

    # The menus help, they are not needed: a refusal is logged and the bot starts anyway
    # (an editor who never opened the bot has no chat to scope a menu to yet).
    try:
        # The default list (no language) is Arabic: readers whose Telegram speaks another
        # language than English still see the newsroom's language.
        for code, language in ((None, "ar"), ("ar", "ar"), ("en", "en")):
            await bot.set_my_commands(menu(language), language_code=code)
    except TelegramError as exc:
        log.warning("the command menus were not published: %s", exc)
    for editor_id in editors:
        scope = BotCommandScopeChat(editor_id)
        try:
            for code, language in ((None, "ar"), ("en", "en")):
                await bot.set_my_commands(
                    menu(language, editor=True), scope=scope, language_code=code
                )
        except TelegramError as exc:
            log.warning("no editor commands for %s: %s", editor_id, exc)


__all__ = ["publish_commands", "register"]
