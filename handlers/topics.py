"""What a chat follows: /follow (a name, or the browser of catalog topics), /unfollow,
/topics, and their buttons. Only a group's admins change what the group follows, and a
chat brings only so many new free phrases into storage a day (``bot.delivery.fanout``).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MaybeInaccessibleMessage,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.delivery.fanout import TooManyNewTopics
from bot.delivery.render import topic_label
from bot.text.topics import (
    MAX_PHRASE_CHARS,
    MAX_PHRASE_TERMS,
    PHRASE_PREFIX,
    Catalog,
    Kind,
    RefusalReason,
    ResolvedTopic,
    TopicRefusal,
    from_key,
    resolve,
)
from handlers.context import (
    Context,
    Reader,
    allowed_to_change,
    may_change_topics,
    pick_button,
    reader,
    short_label,
)
from storage.models import Topic
from storage.subscriptions import (
    get_topic,
    get_topic_by_key,
    list_chat_topic_keys,
    list_chat_topics,
)

# The browser's tabs, most asked for first.
BROWSER_KINDS: tuple[Kind, ...] = (
    "country",
    "region",
    "capital",
    "leader",
    "organisation",
    "sector",
)
PAGE_SIZE = 10
# A chat follows at most this many topics: /topics gives each a button (Telegram allows
# 100 in a keyboard), and every followed topic is matched against every story.
MAX_TOPICS = 50
# Several topics at once: /follow روسيا، أوكرانيا
SEPARATORS = re.compile(r"[,،;؛\n]+")
MAX_AT_ONCE = 10
PICK = re.compile(r"pick:(\d+)")


# -- /follow, /unfollow, /topics -------------------------------------------------------------


async def follow(update: Update, context: Context) -> None:
    """/follow NAME[, NAME…] follows each; /follow alone opens the browser of topics."""
    message = update.effective_message
    if message is None:
        return
    if not await _may_change(update, context, message):
        return
    r = await reader(update, context, register=True)
    phrases = phrases_of(message)
    if not phrases:
        text, markup = await _browser(context, r, 0, 0)
        await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    lines = await _follow_phrases(context, r, phrases)
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


async def unfollow(update: Update, context: Context) -> None:
    """/unfollow NAME[, NAME…] stops following each; /unfollow alone lists the topics."""
    message = update.effective_message
    if message is None:
        return
    if not await _may_change(update, context, message):
        return
    r = await reader(update, context)
    phrases = phrases_of(message)
    if not phrases:
        await _send_topics(context, r, message)
        return
    _ = r.gettext
    services = context.services
    catalog = services.topics.catalog
    found = [resolve(phrase, catalog) for phrase in phrases[:MAX_AT_ONCE]]
    lines: list[str] = []
    async with services.db.transaction() as session:
        for topic in found:
            if isinstance(topic, TopicRefusal):
                lines.append(refusal_text(topic, r))
                continue
            name = html.escape(_resolved_label(topic, r.language, catalog))
            stored = await get_topic_by_key(session, topic.key)
            if stored is not None and await services.topics.unfollow(
                session, r.chat_id, stored.id, now=services.clock()
            ):
                lines.append(_("You no longer follow <b>{topic}</b>.").format(topic=name))
            else:
                lines.append(
                    _("You do not follow <b>{topic}</b>; /topics lists what you follow.").format(
                        topic=name
                    )
                )
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


async def show_topics(update: Update, context: Context) -> None:
    """/topics: what the chat follows, each with a button to unfollow it."""
    message = update.effective_message
    if message is None:
        return
    r = await reader(update, context)
    await _send_topics(context, r, message)


def phrases_of(message: Message) -> list[str]:
    """The names after the command, split at commas and new lines."""
    parts = (message.text or "").split(maxsplit=1)
    rest = parts[1] if len(parts) > 1 else ""
    return [phrase for part in SEPARATORS.split(rest) if (phrase := " ".join(part.split()))]


def refusal_text(refusal: TopicRefusal, r: Reader) -> str:
    """Why a name cannot be followed, and what to do instead."""
    _ = r.gettext
    phrase = html.escape(refusal.phrase)
    if refusal.reason is RefusalReason.FUNCTION_WORD:
        return _(
            "«{phrase}» is too common: it is in almost every story. Add another word, "
            "e.g. <code>/follow Ali Khamenei</code>."
        ).format(phrase=phrase)
    if refusal.reason is RefusalReason.TOO_LONG:
        return _(
            "A topic has at most {words} words and {chars} characters: send a shorter name."
        ).format(words=MAX_PHRASE_TERMS, chars=MAX_PHRASE_CHARS)
    return _(
        "That has no words to follow: send /follow and a name, e.g. <code>/follow Russia</code>."
    )


async def _follow_phrases(context: Context, r: Reader, phrases: Sequence[str]) -> list[str]:
    """Follow each name; one line per name saying what happened."""
    _ = r.gettext
    services = context.services
    catalog = services.topics.catalog
    found = [resolve(phrase, catalog) for phrase in phrases[:MAX_AT_ONCE]]
    if not any(isinstance(topic, ResolvedTopic) for topic in found):
        return [refusal_text(topic, r) for topic in found if isinstance(topic, TopicRefusal)]

    async def follow_each(session: AsyncSession) -> list[str]:
        lines: list[str] = []
        followed = await list_chat_topic_keys(session, r.chat_id)
        for topic in found:
            if isinstance(topic, TopicRefusal):
                lines.append(refusal_text(topic, r))
                continue
            name = html.escape(_resolved_label(topic, r.language, catalog))
            if topic.key in followed:
                lines.append(_("You already follow <b>{topic}</b>.").format(topic=name))
            elif len(followed) >= MAX_TOPICS:
                lines.append(_limit_text(r))
            else:
                try:
                    await services.topics.follow(session, r.chat_id, topic, now=services.clock())
                except TooManyNewTopics as exc:
                    lines.append(_new_topics_limit_text(r, exc.limit))
                    continue
                followed.add(topic.key)
                if topic.catalog is not None:
                    line = _("✓ Following <b>{topic}</b>: its breaking news will arrive here.")
                else:
                    line = _(
                        "✓ Following «{topic}»: breaking stories that mention these words "
                        "will arrive here."
                    )
                lines.append(line.format(topic=name))
        return lines

    return await services.writer.run(follow_each)


def _limit_text(r: Reader) -> str:
    return r.ngettext(
        "This chat follows {count} topic, the most it can: unfollow one first (/topics).",
        "This chat follows {count} topics, the most it can: unfollow one first (/topics).",
        MAX_TOPICS,
    ).format(count=MAX_TOPICS)


def _new_topics_limit_text(r: Reader, limit: int) -> str:
    return r.ngettext(
        "This chat has created {count} new topic today, the most it can in a day: try again "
        "tomorrow. The topics /follow lists are not limited.",
        "This chat has created {count} new topics today, the most it can in a day: try again "
        "tomorrow. The topics /follow lists are not limited.",
        limit,
    ).format(count=limit)


def _resolved_label(topic: ResolvedTopic, language: str, catalog: Catalog) -> str:
    """A catalog topic by its name in this language, a free phrase as the reader typed it."""
    if topic.catalog is not None:
        return topic_label(topic.key, language, catalog)
    return topic.label


def _stored_label(topic: Topic, language: str, catalog: Catalog) -> str:
    """A followed topic's name: a free phrase as first typed, else the catalog's name."""
    if topic.key.startswith(PHRASE_PREFIX):
        return topic.label
    return topic_label(topic.key, language, catalog)


async def _send_topics(context: Context, r: Reader, message: Message) -> None:
    async with context.services.db.sessions() as session:
        followed = await list_chat_topics(session, r.chat_id)
    text, markup = topics_view(followed, r, context.services.topics.catalog)
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


def topics_view(
    followed: Sequence[Topic], r: Reader, catalog: Catalog
) -> tuple[str, InlineKeyboardMarkup]:
    """The list of followed topics with an "unfollow:<topic id>" button each."""
    _ = r.gettext
    browse = [InlineKeyboardButton(_("Browse topics…"), callback_data="browse:new")]
    if not followed:
        text = _(
            "Nothing is followed here yet. Send /follow and a name, e.g. "
            "<code>/follow Russia</code>, or /follow alone to browse the topics."
        )
        return text, InlineKeyboardMarkup([browse])
    names = [_stored_label(topic, r.language, catalog) for topic in followed]
    lines = [
        r.ngettext(
            "<b>This chat follows {count} topic:</b>",
            "<b>This chat follows {count} topics:</b>",
            len(followed),
        ).format(count=len(followed)),
        *(f"• {html.escape(name)}" for name in names),
        "",
        _("Tap a topic below to unfollow it; /follow adds more."),
    ]
    buttons = [
        InlineKeyboardButton(f"✕ {short_label(name)}", callback_data=f"unfollow:{topic.id}")
        for topic, name in zip(followed, names, strict=True)
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return "\n".join(lines), InlineKeyboardMarkup([*rows, browse])


# -- the browser ------------------------------------------------------------------------------


async def browse(update: Update, context: Context) -> None:
    """ "browse:<kind>:<page>" turns the browser's page in place; "browse:new" opens one."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    r = await reader(update, context)
    _feature, _sep, where = query.data.partition(":")
    if where == "new":
        text, markup = await _browser(context, r, 0, 0)
        await context.bot.send_message(
            r.chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup
        )
    else:
        kind, _sep, page = where.partition(":")
        text, markup = await _browser(context, r, int(kind), int(page))
        await _edit(query, text, markup)
    await query.answer()


async def _browser(
    context: Context, r: Reader, kind_index: int, page: int
) -> tuple[str, InlineKeyboardMarkup]:
    async with context.services.db.sessions() as session:
        followed = await list_chat_topic_keys(session, r.chat_id)
    return browser_page(context.services.topics.catalog, r, kind_index, page, followed)


def browser_page(
    catalog: Catalog, r: Reader, kind_index: int, page: int, followed: Collection[str]
) -> tuple[str, InlineKeyboardMarkup]:
    """One page of the catalog's topics of one kind: tabs, topics (✓ followed), «prev/next»."""
    _ = r.gettext
    kind_index = min(max(kind_index, 0), len(BROWSER_KINDS) - 1)
    kind = BROWSER_KINDS[kind_index]
    topics = [topic for topic in catalog.topics if topic.kind == kind]
    pages = max(1, math.ceil(len(topics) / PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    names = _kind_names(r)
    text = "\n".join(
        [
            _("<b>{kind}</b> · page {page} of {pages}").format(
                kind=html.escape(names[kind]), page=page + 1, pages=pages
            ),
            _("Tap a topic to follow it, tap it again to stop; ✓ marks what is followed here."),
        ]
    )
    tabs = [
        InlineKeyboardButton(
            f"• {names[other]}" if other == kind else names[other],
            callback_data=f"browse:{index}:0",
        )
        for index, other in enumerate(BROWSER_KINDS)
    ]
    shown = topics[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    buttons = [pick_button(catalog, topic, r.language, followed) for topic in shown]
    navigation = []
    if page > 0:
        navigation.append(
            InlineKeyboardButton(_("« Previous"), callback_data=f"browse:{kind_index}:{page - 1}")
        )
    if page < pages - 1:
        navigation.append(
            InlineKeyboardButton(_("Next »"), callback_data=f"browse:{kind_index}:{page + 1}")
        )
    rows = [tabs[:3], tabs[3:], *(buttons[i : i + 2] for i in range(0, len(buttons), 2))]
    if navigation:
        rows.append(navigation)
    return text, InlineKeyboardMarkup(rows)


def _kind_names(r: Reader) -> dict[Kind, str]:
    _ = r.gettext
    return {
        "country": _("Countries"),
        "region": _("Regions"),
        "capital": _("Capitals"),
        "leader": _("Leaders"),
        "organisation": _("Organisations"),
        "sector": _("Subjects"),
    }


# -- buttons that change what is followed ----------------------------------------------------


async def pick(update: Update, context: Context) -> None:
    """ "pick:<catalog index>": follow the catalog topic, or stop if it is followed; the
    buttons of the message it sits under are marked again (welcome, browser, guidance)."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    services = context.services
    catalog = services.topics.catalog
    index = int(query.data.partition(":")[2])
    if index >= len(catalog.topics):
        await query.answer()
        return
    if not await may_change_topics(update, context):
        await _refuse_button(update, context, query)
        return
    r = await reader(update, context, register=True)
    _ = r.gettext
    topic = catalog.topics[index]
    name = topic_label(topic.key, r.language, catalog)
    now = services.clock()
    async with services.db.transaction() as session:
        followed = await list_chat_topic_keys(session, r.chat_id)
        if topic.key in followed:
            stored = await get_topic_by_key(session, topic.key)
            if stored is not None:
                await services.topics.unfollow(session, r.chat_id, stored.id, now=now)
            followed.discard(topic.key)
            answer = _("Unfollowed {topic}").format(topic=name)
        elif len(followed) >= MAX_TOPICS:
            answer = _limit_text(r)
        else:
            resolved = from_key(topic.key, catalog=catalog)
            if resolved is not None:  # a catalog topic: no daily quota applies
                await services.topics.follow(session, r.chat_id, resolved, now=now)
                followed.add(topic.key)
            answer = _("✓ Following {topic}").format(topic=name)
    markup = _marked(query.message, catalog, r.language, followed)
    if markup is not None:
        await _edit_markup(query, markup)
    await query.answer(answer)


def _marked(
    message: MaybeInaccessibleMessage | None,
    catalog: Catalog,
    language: str,
    followed: Collection[str],
) -> InlineKeyboardMarkup | None:
    """The message's keyboard with every "pick:" button marked anew; None if unchanged."""
    if not isinstance(message, Message) or message.reply_markup is None:
        return None
    keyboard = message.reply_markup
    rows = []
    for row in keyboard.inline_keyboard:
        buttons = []
        for button in row:
            found = PICK.fullmatch(str(button.callback_data or ""))
            if found and int(found[1]) < len(catalog.topics):
                button = pick_button(catalog, catalog.topics[int(found[1])], language, followed)
            buttons.append(button)
        rows.append(buttons)
    marked = InlineKeyboardMarkup(rows)
    return None if marked == keyboard else marked


async def unfollow_button(update: Update, context: Context) -> None:
    """ "unfollow:<topic id>" under /topics: stop following it and show the list again."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    if not await may_change_topics(update, context):
        await _refuse_button(update, context, query)
        return
    r = await reader(update, context)
    _ = r.gettext
    services = context.services
    catalog = services.topics.catalog
    topic_id = int(query.data.partition(":")[2])
    async with services.db.transaction() as session:
        topic = await get_topic(session, topic_id)
        removed = await services.topics.unfollow(
            session, r.chat_id, topic_id, now=services.clock()
        )
        followed = await list_chat_topics(session, r.chat_id)
    text, markup = topics_view(followed, r, catalog)
    await _edit(query, text, markup)
    if removed and topic is not None:
        name = _stored_label(topic, r.language, catalog)
        await query.answer(_("Unfollowed {topic}").format(topic=name))
    else:
        await query.answer(_("That topic is no longer followed here."))


# -- shared -----------------------------------------------------------------------------------


async def _may_change(update: Update, context: Context, message: Message) -> bool:
    """Whether the sender may change the chat; if not, they are told politely."""
    return await allowed_to_change(update, context, message, _refusal)


def _refusal(r: Reader) -> str:
    return r.gettext("Only this group's admins can change what it follows.")


async def _refuse_button(update: Update, context: Context, query: CallbackQuery) -> None:
    r = await reader(update, context)
    await query.answer(r.gettext("Only this group's admins can change what it follows."))


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    try:
        await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" not in exc.message:
            raise


async def _edit_markup(query: CallbackQuery, markup: InlineKeyboardMarkup) -> None:
    try:
        await query.edit_message_reply_markup(markup)
    except BadRequest as exc:
        if "not modified" not in exc.message:
            raise


__all__ = [
    "browse",
    "browser_page",
    "follow",
    "phrases_of",
    "pick",
    "refusal_text",
    "show_topics",
    "topics_view",
    "unfollow",
    "unfollow_button",
]
