"""What every handler module shares: the typed context, the reader's chat and language,
and the check that a user may change a group's topics. Feature modules import only this.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Chat as TelegramChat
from telegram import InlineKeyboardButton, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from bot.delivery.render import topic_label
from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES, translator
from bot.services import Services
from bot.text.topics import Catalog, CatalogTopic
from storage.chats import get_chat, upsert_chat

BUTTON_CHARS = 32


class BotData:
    """``bot_data``: holds the services once the composition root has built them."""

    services: Services | None = None


class Context(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]):
    """The callback context with typed access to the services."""

    @property
    def services(self) -> Services:
        """The bot's services (built before the first update is handled)."""
        services = self.bot_data.services
        assert services is not None  # noqa: S101 - post_init sets it before updates flow
        return services


CONTEXT_TYPES = ContextTypes(context=Context, bot_data=BotData)
NewsbotApplication = Application[
    ExtBot[None], Context, dict[Any, Any], dict[Any, Any], BotData, Any
]


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a handler answers: the chat, its language and the translation functions."""

    chat_id: int
    language: str
    gettext: Callable[[str], str]
    ngettext: Callable[[str, str, int], str]


def language_of(update: Update) -> str:
    """The language a new chat starts in: the user's Telegram language, else Arabic."""
    user = update.effective_user
    code = (user.language_code or "") if user else ""
    language = code.split("-")[0].lower()
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def reader_in(chat_id: int, language: str) -> Reader:
    """A reader of this language."""
    translations = translator(language)
    return Reader(chat_id, language, translations.gettext, translations.ngettext)


async def reader(
    update: Update, context: Context, *, register: bool = False, reactivate: bool = True
) -> Reader:
    """The chat of this update with its language; ``register`` stores the chat if new
    (or makes it active again, unless ``reactivate`` is False)."""
    chat = update.effective_chat
    assert chat is not None  # noqa: S101 - handlers are registered for chat updates only
    services = context.services
    language = services.languages.get(chat.id)
    if register:
        language = await register_chat(services, chat, language_of(update), reactivate=reactivate)
    elif language is None:
        async with services.db.sessions() as session:
            stored_chat = await get_chat(session, chat.id)
        language = stored_chat.language if stored_chat else language_of(update)
    services.languages[chat.id] = language
    return reader_in(chat.id, language)


async def register_chat(
    services: Services, chat: TelegramChat, language: str, *, reactivate: bool = True
) -> str:
    """Store the chat (new in ``language``, or made active again unless ``reactivate`` is
    False); its language."""

    async def store(session: AsyncSession) -> str:
        title = chat.title or chat.username
        return await upsert_chat(
            session,
            chat.id,
            kind=chat.type,
            title=title,
            language=language,
            reactivate=reactivate,
        )

    stored = await services.writer.run(store)
    services.languages[chat.id] = stored
    return stored


def short_label(label: str) -> str:
    """A label that fits on a button (Telegram cuts long ones unevenly)."""
    return label if len(label) <= BUTTON_CHARS else label[: BUTTON_CHARS - 1] + "…"


def pick_button(
    catalog: Catalog, topic: CatalogTopic, language: str, followed: Collection[str]
) -> InlineKeyboardButton:
    """A button that follows (or unfollows) a catalog topic, ✓ when followed:
    "pick:<its catalog position>" (the welcome, the browser and the guidance share it)."""
    label = short_label(topic_label(topic.key, language, catalog))
    text = f"✓ {label}" if topic.key in followed else label
    return InlineKeyboardButton(text, callback_data=f"pick:{catalog.positions[topic.key]}")


def is_group(chat: TelegramChat) -> bool:
    """Whether the chat is a group or a supergroup."""
    return chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def is_private(chat: TelegramChat | None) -> bool:
    """Whether the chat is a private chat with one user."""
    return chat is not None and chat.type == ChatType.PRIVATE


async def allowed_to_change(
    update: Update, context: Context, message: Message, refusal: Callable[[Reader], str]
) -> bool:
    """Whether the sender may change the chat (see :func:`may_change_topics`); if not,
    they are told why, politely, with ``refusal``'s words."""
    if await may_change_topics(update, context):
        return True
    await message.reply_text(refusal(await reader(update, context)))
    return False


async def may_change_topics(update: Update, context: Context) -> bool:
    """In a group only its administrators change what it follows; in a private chat, anyone."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return False
    if not is_group(chat):
        return True
    if context.services.is_editor(user.id):
        return True
    # An anonymous admin writes as the group itself (the sender shown is Telegram's
    # GroupAnonymousBot): only admins can. A message sent as a channel is no admin's.
    message = update.message
    if message is not None and message.sender_chat is not None:
        return message.sender_chat.id == chat.id
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)


__all__ = [
    "CONTEXT_TYPES",
    "BotData",
    "Context",
    "NewsbotApplication",
    "Reader",
    "allowed_to_change",
    "is_group",
    "is_private",
    "language_of",
    "may_change_topics",
    "pick_button",
    "reader",
    "reader_in",
    "register_chat",
    "short_label",
]
