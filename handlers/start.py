"""The first contact: /start (welcome, popular topics, deep links that follow a topic), /help,
and short guidance for plain text and unknown commands; also the command list and its
descriptions that /help and the command menus show.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Collection, Sequence

from babel.lists import format_list
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ParseMode

from bot.delivery.render import topic_label
from bot.text.topics import Catalog, CatalogTopic, ResolvedTopic, from_key, resolve
from handlers.context import (
    Context,
    Reader,
    is_group,
    is_private,
    may_change_topics,
    pick_button,
    reader,
)
from storage.subscriptions import list_chat_topic_keys

# The welcome's buttons: what Arabic newsrooms' readers follow most.
POPULAR = ("palestine", "gaza", "russia", "ukraine", "usa", "iran", "egypt", "economy")
# A deep link names catalog keys joined by "-" (keys are [a-z0-9_]; Telegram allows
# A-Za-z0-9_- up to 64 characters): t.me/BOT?start=russia or ?start=russia-ukraine.
DEEP_LINK_SEPARATOR = "-"
# How much of a reader's text is echoed back in guidance.
ECHO_CHARS = 60

Translate = Callable[[str], str]


def reader_commands(_: Translate) -> list[tuple[str, str]]:
    """The reader commands with their descriptions in one language (help and the menus)."""
    return [
        ("start", _("Welcome and popular topics")),
        ("follow", _("Follow a topic, or browse them all")),
        ("unfollow", _("Stop following a topic")),
        ("topics", _("The topics followed here")),
        ("search", _("Search the news archive")),
        ("latest", _("The latest breaking news")),
        ("mute", _("Pause alerts for some hours")),
        ("unmute", _("Resume alerts")),
        ("quiet", _("Quiet hours: alerts arrive without sound")),
        ("lang", _("Language: Arabic or English")),
        ("help", _("How to use the bot")),
        ("stop", _("Stop all alerts")),
    ]


def editor_commands(_: Translate) -> list[tuple[str, str]]:
    """The editors' commands with their descriptions in one language."""
    return [
        ("alert", _("Push a breaking alert to readers")),
        ("feeds", _("The feeds being watched")),
        ("addfeed", _("Watch a new feed")),
        ("removefeed", _("Stop watching a feed")),
        ("stats", _("Chats, topics and deliveries")),
    ]


async def start(update: Update, context: Context) -> None:
    """/start [payload]: register the chat, welcome it, and follow a deep link's topics."""
    message = update.effective_message
    if message is None:
        return
    # A group member who is not an admin gets the welcome only: it neither follows a link
    # nor undoes an admin's /stop (a group new to the bot is stored all the same).
    may_change = await may_change_topics(update, context)
    r = await reader(update, context, register=True, reactivate=may_change)
    _ = r.gettext
    services = context.services
    catalog = services.topics.catalog
    linked = linked_topics(context.args[0] if context.args else "", catalog) if may_change else []

    async def follow_linked(session: AsyncSession) -> set[str]:
        for topic in linked:
            resolved = from_key(topic.key, catalog=catalog)
            if resolved is not None:  # a catalog topic: no daily quota applies
                await services.topics.follow(session, r.chat_id, resolved, now=services.clock())
        return await list_chat_topic_keys(session, r.chat_id)

    # Through the shared writer even without a link: many /start share one transaction.
    followed = await services.writer.run(follow_linked)
    lines = welcome(r, context.bot.first_name, group=is_group(message.chat))
    if linked:
        names = [f"<b>{html.escape(topic_label(t.key, r.language, catalog))}</b>" for t in linked]
        lines += [
            "",
            r.ngettext(
                "✓ Following {topics}: its breaking news will arrive here.",
                "✓ Following {topics}: their breaking news will arrive here.",
                len(names),
            ).format(topics=format_list(names, locale=r.language)),
        ]
    await message.reply_text(
        "\n".join(lines),
        parse_mode=ParseMode.HTML,
        reply_markup=welcome_keyboard(r, catalog, followed),
    )


def linked_topics(payload: str, catalog: Catalog) -> list[CatalogTopic]:
    """The catalog topics a deep link's payload names (unknown keys are ignored)."""
    keys = dict.fromkeys(payload.lower().split(DEEP_LINK_SEPARATOR))
    return [topic for key in keys if key and (topic := catalog.get(key)) is not None]


def welcome(r: Reader, bot_name: str, *, group: bool) -> list[str]:
    """The welcome's lines: what the bot does and how to start."""
    _ = r.gettext
    lines = [
        _("<b>Welcome to {name}</b>").format(name=html.escape(bot_name)),
        _(
            "Breaking-news alerts on the topics you follow, moments after they are "
            "published, and a searchable news archive."
        ),
        "",
        _(
            "Tap a topic below to follow it, or send /follow and any name, e.g. "
            "<code>/follow Russia</code>; /follow alone shows every topic."
        ),
        _("/search finds past stories, /latest shows the latest alerts, /help lists everything."),
    ]
    if group:
        lines.append(_("In a group, only its admins choose the topics."))
    return lines


def welcome_keyboard(
    r: Reader, catalog: Catalog, followed: Collection[str]
) -> InlineKeyboardMarkup:
    """The popular topics to follow with one tap (✓ on those followed), and the browser."""
    _ = r.gettext
    buttons = [
        pick_button(catalog, topic, r.language, followed)
        for key in POPULAR
        if (topic := catalog.get(key)) is not None
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([InlineKeyboardButton(_("All topics…"), callback_data="browse:new")])
    return InlineKeyboardMarkup(rows)


async def help_command(update: Update, context: Context) -> None:
    """/help: every reader command, and the editors' to an editor."""
    message = update.effective_message
    if message is None:
        return
    r = await reader(update, context)
    user = update.effective_user
    # The editors' commands work in their private chat only: a group is not told of them.
    editor = is_private(message.chat) and context.services.is_editor(user.id if user else None)
    await message.reply_text(
        help_text(r, editor=editor, group=is_group(message.chat)), parse_mode=ParseMode.HTML
    )


def help_text(r: Reader, *, editor: bool, group: bool) -> str:
    """What /help says."""
    _ = r.gettext
    lines = [
        _("Breaking-news alerts on the topics you follow, and a searchable news archive."),
        "",
        *_command_lines(reader_commands(_)),
        "",
        _(
            "Examples: <code>/follow Russia</code> · <code>/search Gaza ceasefire</code> · "
            "<code>/mute 8</code> · <code>/quiet 23-7</code>"
        ),
    ]
    if group:
        lines.append(_("In a group, only its admins choose the topics."))
    if editor:
        lines += [
            "",
            _("<b>Editors</b>"),
            *_command_lines(editor_commands(_)),
            _(
                "Examples: <code>/alert Text of the alert #russia</code> · "
                "<code>/addfeed https://example.com/rss breaking</code>"
            ),
        ]
    return "\n".join(lines)


def _command_lines(commands: Sequence[tuple[str, str]]) -> list[str]:
    return [f"/{name} — {html.escape(description)}" for name, description in commands]


async def guide(update: Update, context: Context) -> None:
    """Plain text in a private chat: how to follow or search for it."""
    message = update.effective_message
    if message is None or not message.text:
        return
    r = await reader(update, context)
    _ = r.gettext
    catalog = context.services.topics.catalog
    phrase = " ".join(message.text.split())
    found = resolve(phrase, catalog) if len(phrase) <= ECHO_CHARS else None
    if not isinstance(found, ResolvedTopic):
        await message.reply_text(
            _(
                "Send /follow and a topic to get its breaking news, or /search and some words "
                "to search the archive. /help lists every command."
            ),
            parse_mode=ParseMode.HTML,
        )
        return
    shown = html.escape(phrase)
    lines = [
        _("To get breaking news about «{text}», send <code>/follow {text}</code>").format(
            text=shown
        ),
        _("To search the archive for it, send <code>/search {text}</code>").format(text=shown),
    ]
    markup = None
    if found.catalog is not None:
        async with context.services.db.sessions() as session:
            followed = await list_chat_topic_keys(session, r.chat_id)
        lines.append(_("Or tap the button to follow it."))
        button = pick_button(catalog, found.catalog, r.language, followed)
        markup = InlineKeyboardMarkup([[button]])
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML, reply_markup=markup)


async def unknown_command(update: Update, context: Context) -> None:
    """A command the bot does not know: point to /help (in a group only when addressed)."""
    message = update.effective_message
    if message is None or not message.text:
        return
    command = _command_of(message)
    if command is None:
        return
    name, _at, addressee = command.partition("@")
    if is_group(message.chat) and addressee.lower() != (context.bot.username or "").lower():
        return  # meant for every bot in the group, or for another one: stay quiet
    r = await reader(update, context)
    _ = r.gettext
    await message.reply_text(
        _("I do not know {command}. /help lists the commands.").format(command=html.escape(name)),
        parse_mode=ParseMode.HTML,
    )


def _command_of(message: Message) -> str | None:
    """The command that opens the message ("/name" or "/name@bot"), if any."""
    entities = message.parse_entities([MessageEntity.BOT_COMMAND])
    for entity, text in entities.items():
        if entity.offset == 0:
            return text
    return None


__all__ = [
    "POPULAR",
    "editor_commands",
    "guide",
    "help_command",
    "help_text",
    "linked_topics",
    "reader_commands",
    "start",
    "unknown_command",
    "welcome",
    "welcome_keyboard",
]
