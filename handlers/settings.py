"""How and when a chat gets its alerts: /mute, /unmute, /quiet, /lang and /stop.

Quiet hours are minutes after local midnight (services.zone): the sender then delivers
alerts silently instead of dropping them. Only a group's admins change its settings.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

from babel import Locale
from babel.dates import format_datetime
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.i18n import LANGUAGES
from handlers.context import (
    Context,
    Reader,
    allowed_to_change,
    may_change_topics,
    reader,
    reader_in,
)
from storage.chats import (
    get_chat,
    set_language,
    set_muted,
    set_quiet_hours,
    stop_chat,
    upsert_chat,
)

DEFAULT_MUTE_HOURS = 8
MAX_MUTE_HOURS = 168  # a week
# "/mute 8", "/mute 8h", "/mute ٨ ساعات" (\d takes Arabic-Indic digits too)
MUTE = re.compile(r"(\d{1,3})\s*(?:h|hours?|س|ساعة|ساعات)?", re.IGNORECASE)
# "/quiet 23-7", "/quiet 23:00-07:00", "/quiet 23.30 – 6"
QUIET = re.compile(
    r"(\d{1,2})(?:[:.](\d{2}))?\s*(?:-|–|—|~|to|إلى|الى)\s*(\d{1,2})(?:[:.](\d{2}))?",
    re.IGNORECASE,
)
QUIET_OFF = frozenset({"off", "none", "0", "إيقاف", "ايقاف", "إلغاء", "الغاء", "لا"})
# What readers type for a language, besides its code.
LANGUAGE_NAMES = {
    "arabic": "ar",
    "عربي": "ar",
    "العربية": "ar",
    "english": "en",
    "انجليزي": "en",
    "إنجليزي": "en",
    "الإنجليزية": "en",
    "الانجليزية": "en",
}


# -- /mute, /unmute ---------------------------------------------------------------------------


async def mute(update: Update, context: Context) -> None:
    """/mute [HOURS]: no alerts for that long (8 hours unless told, at most a week)."""
    message = update.effective_message
    if message is None or not await _may_change(update, context, message):
        return
    r = await reader(update, context)
    hours = mute_hours(" ".join(context.args or ()))
    if hours is None:
        await message.reply_text(
            r.gettext(
                "Send /mute and a number of hours from {least} to {most}, "
                "e.g. <code>/mute 8</code>."
            ).format(least=1, most=MAX_MUTE_HOURS),
            parse_mode=ParseMode.HTML,
        )
        return
    services = context.services
    until = services.clock() + timedelta(hours=hours)
    async with services.db.transaction() as session:
        await _known(session, update, r)
        await set_muted(session, r.chat_id, until)
    # TRANSLATORS: a Babel date pattern (d day, MMMM month name, HH:mm time); keep letters.
    pattern = r.gettext("d MMMM, HH:mm")
    when = format_datetime(until, format=pattern, tzinfo=services.zone, locale=r.language)
    await message.reply_text(
        r.ngettext(
            "Alerts paused for {count} hour, until {time}. /unmute resumes them.",
            "Alerts paused for {count} hours, until {time}. /unmute resumes them.",
            hours,
        ).format(count=hours, time=html.escape(when)),
        parse_mode=ParseMode.HTML,
    )


def mute_hours(text: str) -> int | None:
    """The hours a /mute asks for (the default when none), or None when unreadable."""
    if not text.strip():
        return DEFAULT_MUTE_HOURS
    found = MUTE.fullmatch(text.strip())
    if found is None:
        return None
    hours = int(found[1])
    return hours if 1 <= hours <= MAX_MUTE_HOURS else None


async def unmute(update: Update, context: Context) -> None:
    """/unmute: alerts again from now on."""
    message = update.effective_message
    if message is None or not await _may_change(update, context, message):
        return
    r = await reader(update, context)
    async with context.services.db.transaction() as session:
        await set_muted(session, r.chat_id, None)
    await message.reply_text(r.gettext("Alerts are on again."))


# -- /quiet ------------------------------------------------------------------------------------


async def quiet(update: Update, context: Context) -> None:
    """/quiet FROM-TO: alerts arrive silently then; /quiet off removes it; /quiet shows it."""
    message = update.effective_message
    if message is None:
        return
    r = await reader(update, context)
    _ = r.gettext
    services = context.services
    text = " ".join(context.args or ()).strip()
    if not text:
        async with services.db.sessions() as session:
            chat = await get_chat(session, r.chat_id)
        if chat is None or chat.quiet_from is None or chat.quiet_to is None:
            reply = _(
                "No quiet hours: alerts arrive with sound at any hour. To receive them "
                "silently at night, send e.g. <code>/quiet 23-7</code>."
            )
        else:
            reply = _quiet_text(r, chat.quiet_from, chat.quiet_to, services.zone.key)
        await message.reply_text(reply, parse_mode=ParseMode.HTML)
        return
    if not await _may_change(update, context, message):
        return
    if text.lower() in QUIET_OFF:
        async with services.db.transaction() as session:
            await set_quiet_hours(session, r.chat_id, None, None)
        await message.reply_text(_("Quiet hours removed: alerts arrive with sound at any hour."))
        return
    hours = quiet_hours(text)
    if hours is None:
        await message.reply_text(
            _(
                "I could not read those hours. Send /quiet FROM-TO in 24-hour time, e.g. "
                "<code>/quiet 23-7</code> or <code>/quiet 23:30-06:00</code>; "
                "<code>/quiet off</code> removes them."
            ),
            parse_mode=ParseMode.HTML,
        )
        return
    start, end = hours
    async with services.db.transaction() as session:
        await _known(session, update, r)
        await set_quiet_hours(session, r.chat_id, start, end)
    await message.reply_text(
        _quiet_text(r, start, end, services.zone.key), parse_mode=ParseMode.HTML
    )


def quiet_hours(text: str) -> tuple[int, int] | None:
    """(from, to) in minutes after local midnight from "23-7" or "23:00-07:00"; None if not
    two different times of day."""
    found = QUIET.fullmatch(text.strip())
    if found is None:
        return None
    minutes = []
    for hour, minute in ((found[1], found[2]), (found[3], found[4])):
        h, m = int(hour), int(minute or 0)
        if h > 24 or m > 59 or (h == 24 and m):
            return None
        minutes.append(h % 24 * 60 + m)
    start, end = minutes
    return (start, end) if start != end else None


def _quiet_text(r: Reader, start: int, end: int, zone: str) -> str:
    return r.gettext(
        "Quiet hours: {start}–{end} ({zone}). Alerts still arrive then, without sound; "
        "<code>/quiet off</code> removes them."
    ).format(start=_clock(start), end=_clock(end), zone=html.escape(zone))


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- /lang -------------------------------------------------------------------------------------


async def choose_language(update: Update, context: Context) -> None:
    """/lang ar|en: the chat's language; /lang alone offers both as buttons."""
    message = update.effective_message
    if message is None or not await _may_change(update, context, message):
        return
    r = await reader(update, context)
    text = " ".join(context.args or ()).strip().lower()
    if not text:
        await message.reply_text(
            r.gettext("Choose the language:"), reply_markup=_language_buttons(r.language)
        )
        return
    language = text if text in LANGUAGES else LANGUAGE_NAMES.get(text)
    if language is None:
        await message.reply_text(
            r.gettext("Send <code>/lang ar</code> or <code>/lang en</code>."),
            parse_mode=ParseMode.HTML,
            reply_markup=_language_buttons(r.language),
        )
        return
    chosen = await _set_language(update, context, r, language)
    await message.reply_text(_language_text(chosen))


async def language_button(update: Update, context: Context) -> None:
    """ "lang:<code>": the chat's language, chosen by button."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    language = query.data.partition(":")[2]
    r = await reader(update, context)
    if language not in LANGUAGES:
        await query.answer()
        return
    if not await may_change_topics(update, context):
        await query.answer(r.gettext("Only this group's admins can change its settings."))
        return
    chosen = await _set_language(update, context, r, language)
    try:
        await query.edit_message_text(_language_text(chosen))
    except BadRequest as exc:
        if "not modified" not in exc.message:
            raise
    await query.answer()


async def _set_language(update: Update, context: Context, r: Reader, language: str) -> Reader:
    async with context.services.db.transaction() as session:
        await _known(session, update, r)
        await set_language(session, r.chat_id, language)
    context.services.languages[r.chat_id] = language
    return reader_in(r.chat_id, language)


def _language_text(r: Reader) -> str:
    return r.gettext("Language: {language}. Replies and alerts here use it from now on.").format(
        language=_autonym(r.language)
    )


def _language_buttons(current: str) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            f"✓ {_autonym(code)}" if code == current else _autonym(code),
            callback_data=f"lang:{code}",
        )
        for code in LANGUAGES
    ]
    return InlineKeyboardMarkup([buttons])


def _autonym(language: str) -> str:
    """A language's name in itself (العربية, English), the same whatever the chat reads."""
    return str(Locale.parse(language).get_display_name(language))


# -- /stop -------------------------------------------------------------------------------------


async def stop(update: Update, context: Context) -> None:
    """/stop: no more alerts and no subscriptions; /start resumes."""
    message = update.effective_message
    if message is None or not await _may_change(update, context, message):
        return
    r = await reader(update, context)
    async with context.services.db.transaction() as session:
        removed = await stop_chat(session, r.chat_id)
    await message.reply_text(
        r.ngettext(
            "Stopped: {count} topic removed and no more alerts will arrive here. "
            "Send /start to start again.",
            "Stopped: {count} topics removed and no more alerts will arrive here. "
            "Send /start to start again.",
            removed,
        ).format(count=removed)
    )


# -- shared ------------------------------------------------------------------------------------


async def _may_change(update: Update, context: Context, message: Message) -> bool:
    """Whether the sender may change the chat; if not, they are told politely."""
    return await allowed_to_change(update, context, message, _refusal)


def _refusal(r: Reader) -> str:
    return r.gettext("Only this group's admins can change its settings.")


async def _known(session: AsyncSession, update: Update, r: Reader) -> None:
    """Store the chat if it is new, without making a stopped chat active again."""
    chat = update.effective_chat
    if chat is not None and await get_chat(session, chat.id) is None:
        await upsert_chat(
            session,
            chat.id,
            kind=chat.type,
            title=chat.title or chat.username,
            language=r.language,
        )


__all__ = [
    "choose_language",
    "language_button",
    "mute",
    "mute_hours",
    "quiet",
    "quiet_hours",
    "stop",
    "unmute",
]
