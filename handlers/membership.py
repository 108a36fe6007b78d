"""The bot's own membership: added to a group (register it), removed, kicked or blocked
(deactivate it), and a group that became a supergroup (its chat id moves). A channel that
adds the bot gets nothing: channels are the operator's to add (`newsbot channels add`).
"""

from __future__ import annotations

import logging

from telegram import ChatMember, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError

from handlers.context import Context, is_group, language_of, reader_in, register_chat
from storage.chats import migrate_chat
from storage.deliveries import deactivate_chat

log = logging.getLogger(__name__)


async def on_my_chat_member(update: Update, context: Context) -> None:
    """The bot joined or left a chat: register it, or stop sending to it."""
    change = update.my_chat_member
    if change is None:
        return
    chat = change.chat
    was_in, is_in = _present(change.old_chat_member), _present(change.new_chat_member)
    services = context.services
    if was_in and not is_in:
        reason = (
            "the user blocked the bot"
            if chat.type == ChatType.PRIVATE
            else "the bot was removed from the chat"
        )
        async with services.db.transaction() as session:
            await deactivate_chat(session, chat.id, reason)
        log.info("chat %s: %s", chat.id, reason)
        return
    if is_in and not was_in and chat.type == ChatType.CHANNEL:
        # Anyone may make the bot a channel's admin: stored, the channel would receive
        # every alert sent to everyone. It stays unknown until the operator adds it.
        log.info("channel %s added the bot; `newsbot channels add` sends it alerts", chat.id)
        return
    if is_in and not was_in and chat.type != ChatType.PRIVATE:
        # A private chat that unblocks the bot starts again with /start (Telegram offers
        # the button): making it active here would undo a /stop.
        language = await register_chat(services, chat, language_of(update))
        log.info("chat %s (%s) added the bot", chat.id, chat.type)
        if is_group(chat):
            await _greet(context, chat.id, language)


def _present(member: ChatMember) -> bool:
    """Whether the bot is in the chat with this membership."""
    if member.status == ChatMember.RESTRICTED:
        return bool(getattr(member, "is_member", False))
    return member.status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER)


async def _greet(context: Context, chat_id: int, language: str) -> None:
    """A short hello in a group that just added the bot: what it does, who sets it up."""
    _ = reader_in(chat_id, language).gettext
    text = "\n".join(
        [
            _(
                "Hello! I post breaking news on the topics this group follows, moments after "
                "it is published."
            ),
            _(
                "Admins: send /follow and a name (e.g. <code>/follow Russia</code>), or "
                "/follow alone to browse the topics. /help lists everything."
            ),
        ]
    )
    try:
        await context.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
    except TelegramError as exc:  # the group may not let the bot write: it stays quiet
        log.info("chat %s: no greeting (%s)", chat_id, exc)


async def on_migrate(update: Update, context: Context) -> None:
    """A group became a supergroup: its subscriptions, settings and pending alerts move."""
    message = update.effective_message
    if message is None:
        return
    if message.migrate_to_chat_id:
        old, new = message.chat_id, message.migrate_to_chat_id
    elif message.migrate_from_chat_id:
        old, new = message.migrate_from_chat_id, message.chat_id
    else:
        return
    services = context.services
    # Both service messages arrive (one in each chat): the second finds nothing left to move.
    async with services.db.transaction() as session:
        await migrate_chat(session, old, new)
    services.languages.pop(old, None)
    services.languages.pop(new, None)
    log.info("chat %s became supergroup %s", old, new)


__all__ = ["on_migrate", "on_my_chat_member"]
