"""The last resort for an update that failed: log it and tell the reader to try again; the
bot keeps running.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.error import Forbidden, TelegramError

from handlers.context import Context, language_of, reader_in

log = logging.getLogger(__name__)


async def on_error(update: object, context: Context) -> None:
    """Log the failure (one line for a Bot API error) and apologise in the chat it came from."""
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    if isinstance(error, TelegramError):
        log.warning("update %s failed: %s: %s", update_id, type(error).__name__, error)
    else:
        log.error("update %s failed", update_id, exc_info=error)
    if not isinstance(update, Update) or isinstance(error, Forbidden):
        return  # nobody to tell, or the chat cannot be written to
    chat = update.effective_chat
    # Only a reader who did something (a message, a button) is waiting for an answer.
    if chat is None or chat.type == ChatType.CHANNEL:
        return
    if update.message is None and update.callback_query is None:
        return
    services = context.bot_data.services
    language = (services.languages.get(chat.id) if services else None) or language_of(update)
    text = reader_in(chat.id, language).gettext("Sorry, something went wrong. Please try again.")
    if update.callback_query is not None:
        try:
            await update.callback_query.answer(text)
            return
        except TelegramError:
            pass  # the press was answered already: say it in the chat instead
    try:
        await context.bot.send_message(chat.id, text)
    except TelegramError as exc:
        log.debug("update %s: could not apologise: %s", update_id, exc)


__all__ = ["on_error"]
