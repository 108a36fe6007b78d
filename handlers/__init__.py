"""Telegram handlers, registered in one ordered list by :func:`register`."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from telegram import Bot

from handlers.context import NewsbotApplication


def register(application: NewsbotApplication) -> None:
    """Every handler, in the order it is tried (the first that matches an update wins)."""
    # -- readers (start, topics, settings, membership) ------------------------------------
    from telegram.ext import (
        CallbackQueryHandler,
        ChatMemberHandler,
        CommandHandler,
        MessageHandler,
        filters,
    )

    from handlers import membership, settings, start, topics

    # New messages only: an edited "/follow" must not act twice, and channel posts are
    # not commands from readers.
    messages = filters.UpdateType.MESSAGE
    application.add_handlers(
        [
            CommandHandler("start", start.start, filters=messages),
            CommandHandler("help", start.help_command, filters=messages),
            CommandHandler("follow", topics.follow, filters=messages),
            CommandHandler("unfollow", topics.unfollow, filters=messages),
            CommandHandler("topics", topics.show_topics, filters=messages),
            CommandHandler("mute", settings.mute, filters=messages),
            CommandHandler("unmute", settings.unmute, filters=messages),
            CommandHandler("quiet", settings.quiet, filters=messages),
            CommandHandler("lang", settings.choose_language, filters=messages),
            CommandHandler("stop", settings.stop, filters=messages),
            CallbackQueryHandler(topics.pick, pattern=r"^pick:\d{1,4}$"),
            CallbackQueryHandler(topics.browse, pattern=r"^browse:(?:new|\d:\d{1,3})$"),
            CallbackQueryHandler(topics.unfollow_button, pattern=r"^unfollow:\d{1,19}$"),
            CallbackQueryHandler(settings.language_button, pattern=r"^lang:[a-z]{2}$"),
            ChatMemberHandler(membership.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
            MessageHandler(filters.StatusUpdate.MIGRATE, membership.on_migrate),
        ]
    )
    # -- end of readers ---------------------------------------------------------------------
    # -- search and editors -----------------------------------------------------------------
    from handlers import editor, search

    # New messages only: an edited /alert must not make a second preview.
    new_messages = filters.UpdateType.MESSAGE
    application.add_handlers(
        [
            CommandHandler("search", search.search, filters=new_messages),
            CallbackQueryHandler(search.turn_page, pattern=r"^search:\d{1,9}:\d{1,4}$"),
            CommandHandler("latest", search.latest, filters=new_messages),
            # Editors only: each handler refuses anyone else itself, politely.
            CommandHandler("alert", editor.alert, filters=new_messages),
            CallbackQueryHandler(
                editor.confirm_alert, pattern=r"^alert:(?:send|cancel):[\w-]{1,16}$"
            ),
            CommandHandler("feeds", editor.feeds, filters=new_messages),
            CommandHandler("addfeed", editor.add_feed, filters=new_messages),
            CommandHandler("removefeed", editor.remove_feed, filters=new_messages),
            CommandHandler("stats", editor.stats, filters=new_messages),
        ]
    )
    # -- end of search and editors ------------------------------------------------------------
    # -- last: plain text and unknown commands get guidance; errors are logged -----------------
    from handlers import errors

    application.add_handlers(
        [
            MessageHandler(filters.COMMAND & messages, start.unknown_command),
            # In groups plain text is conversation between members: the bot keeps out of it.
            MessageHandler(
                filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE & messages, start.guide
            ),
        ]
    )
    application.add_error_handler(errors.on_error)


async def publish_commands(bot: Bot, editors: Iterable[int]) -> None:
    """The command menus, in Arabic (the default) and English (setMyCommands); editors see
    theirs too, in their private chats."""
    from telegram import BotCommand, BotCommandScopeChat
    from telegram.error import TelegramError

    from bot.i18n import translator
    from handlers.start import editor_commands, reader_commands

    log = logging.getLogger(__name__)

    def menu(language: str, *, editor: bool = False) -> list[BotCommand]:
        _ = translator(language).gettext
        listed = reader_commands(_) + (editor_commands(_) if editor else [])
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
    for editor in editors:
        scope = BotCommandScopeChat(editor)
        try:
            for code, language in ((None, "ar"), ("en", "en")):
                await bot.set_my_commands(
                    menu(language, editor=True), scope=scope, language_code=code
                )
        except TelegramError as exc:
            log.warning("no editor commands for %s: %s", editor, exc)


__all__ = ["publish_commands", "register"]
