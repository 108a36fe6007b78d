"""The newsroom editors' commands: /alert (or a story's update, ``/alert #story:ID TEXT``)
with a preview to confirm, /feeds, /addfeed, /removefeed and /stats. They answer in an
editor's private chat only, never in a group, and never show the credentials a feed's
address may carry. Anyone else is refused politely and nothing happens.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import unquote

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.constants import ParseMode

from bot.delivery.fanout import INLINE_DELIVERIES
from bot.delivery.render import alert_view, render_alert, topic_label
from bot.feeds.admin import FeedAddError, FeedAddReason, add_feed_and_fetch, find_feed
from bot.services import Services
from bot.text.topics import ResolvedTopic, resolve
from handlers.context import Context, Reader, is_private, reader
from storage.alerts import (
    DEVELOPMENT,
    AlertRecord,
    Audience,
    add_alert,
    count_audience,
    count_story_readers,
    fan_out,
)
from storage.deliveries import CLAIMED, DROPPED, FAILED, PENDING, SENDING, SENT, UNKNOWN
from storage.drafts import add_draft, get_draft, take_draft
from storage.feeds import list_feeds_with_counts
from storage.feeds import remove_feed as unwatch_feed
from storage.models import Draft
from storage.stats import collect_stats
from storage.subscriptions import get_topic_by_key

# An editor's alert is its headline: long enough for any, short enough that the rendered
# alert stays far within Telegram's 4,096 characters.
MAX_ALERT_CHARS = 1000
# A preview left unconfirmed this long is no longer sent: the news in it has aged.
DRAFT_LIFETIME = timedelta(hours=1)
MESSAGE_LIMIT = 4000  # a little under Telegram's 4,096, for the lines joining the pieces
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_BREAKING_WORDS = frozenset({"breaking", "عاجل"})
# `/alert #story:ID TEXT` sends TEXT as an update of that story to the chats it reached.
# Its draft keeps "story:ID" where a topic's key would be (no topic key has that form).
_STORY = re.compile(r"#story:(\d{1,18})\s*", re.IGNORECASE)
STORY_PREFIX = "story:"
# A feed's address may carry credentials: a user and password before the host, or a key in
# a parameter. What an editor is shown hides them (the feed is still fetched with them).
HIDDEN = "***"
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s<>\"']+", re.IGNORECASE)
_PARAMETER = re.compile(r"([?&;#])([^=&;#]*)=([^&;#]*)")
_SECRET_PARTS = ("key", "token", "secret", "passw", "pwd", "session", "credential", "signature")
_SECRET_WORDS = frozenset({"auth", "pass", "sig"})  # whole words: not "author", "design"


async def _editor(update: Update, context: Context) -> Reader | None:
    """The reader if the user is an editor in their private chat; anyone else, and a
    group, is told so, politely, and None."""
    r = await reader(update, context)
    _ = r.gettext
    user = update.effective_user
    if not is_private(update.effective_chat):
        # Feed addresses and figures are the newsroom's: not for every member of a group.
        refusal = _("The editors' commands work only in a private chat with the bot.")
    elif context.services.is_editor(user.id if user else None):
        return r
    else:
        refusal = _("Sorry, only the newsroom's editors can use this command.")
    if update.callback_query is not None:
        await update.callback_query.answer(refusal, show_alert=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(refusal)
    return None


# -- /alert -------------------------------------------------------------------------------


async def alert(update: Update, context: Context) -> None:
    """/alert TEXT [#topic]: preview a hand-written alert, with buttons to send or cancel."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None or (r := await _editor(update, context)) is None:
        return
    _, ngettext = r.gettext, r.ngettext
    text, hashtag = _alert_text(message.text or "")
    story = _STORY.match(text)
    if story is not None:
        text, hashtag = text[story.end() :].strip(), ""
    if not text:
        await message.reply_text(
            _(
                "Write the alert after the command, and optionally a topic at the end: {example}"
            ).format(example="/alert انفجار في مرفأ بيروت #لبنان")
        )
        return
    if len(text) > MAX_ALERT_CHARS:
        await message.reply_text(
            _("An alert has at most {limit} characters; this one has {count}.").format(
                limit=MAX_ALERT_CHARS, count=len(text)
            )
        )
        return
    services = context.services
    if story is not None:
        await _prepare_update(update, context, r, text, int(story.group(1)))
        return
    topic: ResolvedTopic | None = None
    if hashtag:
        resolved = resolve(hashtag, services.topics.catalog)
        if isinstance(resolved, ResolvedTopic):
            topic = resolved
    now = services.clock()
    async with services.db.sessions() as session:
        audience = await _audience(session, topic.key if topic else None)
        count = await count_audience(session, audience, now)
    if hashtag and (topic is None or not count):
        await message.reply_text(
            _("Nobody follows #{topic}: no alert was prepared.").format(
                topic=hashtag.replace(" ", "_")
            )
        )
        return
    async with services.db.transaction() as session:
        draft = await add_draft(
            session,
            editor_id=user.id,
            text=text,
            topic_key=topic.key if topic else None,
            topic_label=topic.label if topic else None,
            now=now,
            expires_at=now + DRAFT_LIFETIME,
        )
    draft_id = draft.id
    if topic is None:
        question = ngettext(
            "Send this alert to {count} chat?", "Send this alert to {count} chats?", count
        )
    else:
        question = ngettext(
            "Send this alert to the {count} chat following {topic}?",
            "Send this alert to the {count} chats following {topic}?",
            count,
        )
    label = topic_label(topic.key, r.language, services.topics.catalog) if topic else ""
    buttons = _send_or_cancel(r, draft_id)
    await message.reply_text(
        _preview(services, r, draft, now, question.format(count=count, topic=label)),
        parse_mode=ParseMode.HTML,
        reply_markup=buttons,
        link_preview_options=_NO_PREVIEW,
    )


async def _prepare_update(
    update: Update, context: Context, r: Reader, text: str, story_id: int
) -> None:
    """Preview an editor's update of a story, to the chats the story reached (loud: the
    editor's choice), with buttons to send or cancel."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None  # noqa: S101 - alert() checked them
    _, ngettext = r.gettext, r.ngettext
    services = context.services
    now = services.clock()
    async with services.db.transaction() as session:
        count = await count_story_readers(session, story_id, now)
        if not count:
            draft = None
        else:
            draft = await add_draft(
                session,
                editor_id=user.id,
                text=text,
                topic_key=f"{STORY_PREFIX}{story_id}",
                topic_label=None,
                now=now,
                expires_at=now + DRAFT_LIFETIME,
            )
    if draft is None:
        await message.reply_text(
            _("Story {id} reached nobody: no update was prepared.").format(id=story_id)
        )
        return
    question = ngettext(
        "Send this update of story {id} to the {count} chat it reached?",
        "Send this update of story {id} to the {count} chats it reached?",
        count,
    ).format(id=story_id, count=count)
    await message.reply_text(
        _preview(services, r, draft, now, question),
        parse_mode=ParseMode.HTML,
        reply_markup=_send_or_cancel(r, draft.id),
        link_preview_options=_NO_PREVIEW,
    )


def _send_or_cancel(r: Reader, draft_id: str) -> InlineKeyboardMarkup:
    """The preview's buttons."""
    _ = r.gettext
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("Send"), callback_data=f"alert:send:{draft_id}"),
                InlineKeyboardButton(_("Cancel"), callback_data=f"alert:cancel:{draft_id}"),
            ]
        ]
    )


def _story_of(draft: Draft) -> int | None:
    """The story a draft updates, if it is an update."""
    key = draft.topic_key or ""
    return int(key.removeprefix(STORY_PREFIX)) if key.startswith(STORY_PREFIX) else None


class Press(Enum):
    """What became of a press of «Send» or «Cancel»."""

    GONE = "gone"  # already sent or cancelled (by this press's twin, in any process)
    NOT_YOURS = "not yours"
    EXPIRED = "expired"
    SENT = "sent"
    CANCELLED = "cancelled"


async def confirm_alert(update: Update, context: Context) -> None:
    """The preview's «Send» or «Cancel» button: only the editor who wrote it decides, once,
    before it expires, whichever process the press reaches."""
    query = update.callback_query
    assert query is not None  # noqa: S101 - registered for callback queries
    if (r := await _editor(update, context)) is None:
        return
    _, ngettext = r.gettext, r.ngettext
    parts = (query.data or "").split(":")  # "alert:send:<id>" or "alert:cancel:<id>"
    action, draft_id = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    services = context.services
    now = services.clock()
    # The draft is taken in the transaction that records the alert: of two presses, in one
    # process or two, the second finds it gone; if recording fails, the draft stays.
    async with services.db.transaction() as session:
        draft, press, count = await _decide(session, draft_id, action, query.from_user.id, now=now)
    if press is Press.GONE or draft is None:
        await query.answer(_("This alert was already sent or cancelled."))
        return
    if press is Press.NOT_YOURS:
        await query.answer(_("Only the editor who wrote this alert can send it."), show_alert=True)
        return
    if press is Press.SENT:
        services.wake_sender()
        outcome = ngettext("Sent to {count} chat.", "Sent to {count} chats.", count)
        outcome = outcome.format(count=count)
    elif press is Press.EXPIRED:
        outcome = _("This preview expired, so nothing was sent: send /alert again.")
    else:
        outcome = _("Cancelled: nothing was sent.")
    try:
        await query.edit_message_text(
            _preview(services, r, draft, now, outcome),
            parse_mode=ParseMode.HTML,
            link_preview_options=_NO_PREVIEW,
        )
    finally:
        await query.answer(outcome)


def _alert_text(message_text: str) -> tuple[str, str]:
    """The alert's words and the topic of a closing #hashtag (underscores read as spaces)."""
    parts = message_text.split(maxsplit=1)
    body = parts[1].strip() if len(parts) > 1 else ""
    words = body.rsplit(maxsplit=1)
    if len(words) == 2 and words[1].startswith("#") and len(words[1]) > 1:
        return words[0].strip(), words[1][1:].replace("_", " ")
    if len(words) == 1 and body.startswith("#"):
        return "", body[1:].replace("_", " ")
    return body, ""


async def _decide(
    session: AsyncSession, draft_id: str, action: str, user_id: int, *, now: datetime
) -> tuple[Draft | None, Press, int]:
    """Take the draft and act on the press: (the draft, what became of it, chats reached)."""
    draft = await get_draft(session, draft_id) if action in ("send", "cancel") else None
    if draft is None:
        return None, Press.GONE, 0
    if draft.editor_id != user_id:
        return draft, Press.NOT_YOURS, 0
    if not await take_draft(session, draft_id):
        return draft, Press.GONE, 0
    if draft.expires_at <= now:
        return draft, Press.EXPIRED, 0
    if action == "cancel":
        return draft, Press.CANCELLED, 0
    story_id = _story_of(draft)
    if story_id is not None:
        count = await count_story_readers(session, story_id, now)
        alert_id = await add_alert(
            session,
            Audience(),
            now,
            text=draft.text,
            created_by=draft.editor_id,
            story_id=story_id,
            kind=DEVELOPMENT,
        )
        await fan_out(session, alert_id, now, INLINE_DELIVERIES)
        return draft, Press.SENT, count
    audience = await _audience(session, draft.topic_key)
    count = await count_audience(session, audience, now)
    alert_id = await add_alert(
        session,
        audience,
        now,
        text=draft.text,
        created_by=draft.editor_id,
        topics=[draft.topic_key] if draft.topic_key else [],
    )
    # The first deliveries now, the rest by the fan-out that wake_sender wakes.
    await fan_out(session, alert_id, now, INLINE_DELIVERIES)
    return draft, Press.SENT, count


async def _audience(session: AsyncSession, topic_key: str | None) -> Audience:
    """The chats an alert reaches: a topic's followers (and the chats that take every
    breaking story), or every chat that receives alerts."""
    if topic_key is None:
        return Audience(everyone=True)
    stored = await get_topic_by_key(session, topic_key)
    if stored is None:
        return Audience()
    return Audience((stored.id,), all_breaking=True)


def _preview(services: Services, r: Reader, draft: Draft, now: datetime, note: str) -> str:
    """The alert exactly as readers of this language will see it, then a note."""
    # An update of a story is a reply to its readers' alert; else it is shown as the
    # topic's followers see it, with its hashtag.
    story_update = _story_of(draft) is not None
    record = AlertRecord(
        id=0,
        title=draft.text,
        summary="",
        categories=(),
        link=None,
        source=None,
        published=now,
        topics=(draft.topic_key,) if draft.topic_key and not story_update else (),
        by_editor=True,
    )
    view = alert_view(
        record,
        language=r.language,
        markers=services.markers,
        catalog=services.topics.catalog,
        followed=record.topics,
        development=story_update,
    )
    rendered = render_alert(view, language=r.language, zone=services.zone)
    return f"{rendered}\n\n— — —\n{html.escape(note)}"


# -- /feeds, /addfeed, /removefeed ----------------------------------------------------------


async def feeds(update: Update, context: Context) -> None:
    """/feeds: every watched feed with its status and last error."""
    message = update.effective_message
    if message is None or (r := await _editor(update, context)) is None:
        return
    _, ngettext = r.gettext, r.ngettext
    async with context.services.db.sessions() as session:
        rows = await list_feeds_with_counts(session)
    if not rows:
        await message.reply_text(_("No feeds yet: add one with /addfeed URL."))
        return
    title = ngettext("{count} feed", "{count} feeds", len(rows)).format(count=len(rows))
    blocks = [f"<b>{html.escape(title)}</b>"]
    for feed, count in rows:
        # Hidden before shortened: a cut address could keep half a password, not its "@".
        name = f"{feed.id}. <b>{html.escape(shown_text(feed.display_name)[:200])}</b>"
        if feed.breaking:
            name += " · " + html.escape(_("breaking"))
        if feed.last_error:
            status = ngettext(
                "error ({count} failure in a row): {error}",
                "error ({count} failures in a row): {error}",
                feed.failures,
            ).format(count=feed.failures, error=shown_text(feed.last_error)[:300])
        elif feed.last_status is None:
            status = _("not fetched yet")
        else:
            status = _("working")
        articles = ngettext("{count} article", "{count} articles", count).format(count=count)
        blocks.append(
            "\n".join(
                [
                    name,
                    html.escape(shown_url(feed.url)[:300]),
                    html.escape(f"{status} · {articles}"),
                ]
            )
        )
    for text in _messages(blocks):
        await message.reply_text(text, parse_mode=ParseMode.HTML, link_preview_options=_NO_PREVIEW)


async def add_feed(update: Update, context: Context) -> None:
    """/addfeed URL [breaking]: fetch the feed once and watch it if that worked."""
    message = update.effective_message
    if message is None or (r := await _editor(update, context)) is None:
        return
    _, ngettext = r.gettext, r.ngettext
    args = context.args or []
    if not args or len(args) > 2 or (len(args) == 2 and args[1].lower() not in _BREAKING_WORDS):
        await message.reply_text(
            _(
                "Send the feed's address, and «breaking» if its every item is breaking news: "
                "{example}"
            ).format(example="/addfeed https://example.com/rss.xml breaking")
        )
        return
    services = context.services
    try:
        added = await add_feed_and_fetch(
            services.db,
            services.ingestor,
            args[0],
            breaking=len(args) == 2,
            in_chat=True,
        )
    except FeedAddError as exc:
        await message.reply_text(_feed_add_problem(r, exc))
        return
    text = ngettext(
        "Added feed {id}: {title} ({count} item archived; new items will be watched).",
        "Added feed {id}: {title} ({count} items archived; new items will be watched).",
        added.items,
    ).format(id=added.id, title=shown_text(added.title), count=added.items)
    await message.reply_text(text, link_preview_options=_NO_PREVIEW)


def shown_url(url: str) -> str:
    """The address without its credentials: no user or password before the host, and the
    values of parameters named like a key, token, password or signature hidden."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    ends = [index for index in map(rest.find, "/?#") if index >= 0]
    end = min(ends, default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rpartition('@')[2]}"

    def hide(found: re.Match[str]) -> str:
        lead, name, value = found.groups()
        lowered = unquote(name).lower()
        secret = any(part in lowered for part in _SECRET_PARTS) or not _SECRET_WORDS.isdisjoint(
            re.split(r"[^a-z0-9]+", lowered)
        )
        return f"{lead}{name}={HIDDEN if secret and value else value}"

    return f"{scheme}://{authority}{_PARAMETER.sub(hide, tail)}"


def shown_text(text: str) -> str:
    """Text (a feed's name, an error) with every address in it shown by :func:`shown_url`."""
    return _URL.sub(lambda found: shown_url(found.group()), text)


def _feed_add_problem(r: Reader, exc: FeedAddError) -> str:
    _ = r.gettext
    if exc.reason is FeedAddReason.NOT_A_URL:
        return _("That is not a feed address: send a link that starts with http:// or https://.")
    if exc.reason is FeedAddReason.ALREADY_WATCHED:
        if exc.feed_id is None:
            return _("That feed is already watched.")
        return _("That feed is already watched: it is feed {id}.").format(id=exc.feed_id)
    # TRANSLATORS: {reason} is a technical reason in English, e.g. "HTTP 404 Not Found".
    return _("Could not fetch {url}: {reason}").format(
        url=shown_url(exc.url), reason=shown_text(exc.detail)
    )


async def remove_feed(update: Update, context: Context) -> None:
    """/removefeed ID_OR_URL: stop watching a feed (its articles stay searchable)."""
    message = update.effective_message
    if message is None or (r := await _editor(update, context)) is None:
        return
    _ = r.gettext
    args = context.args or []
    if len(args) != 1:
        await message.reply_text(
            _("Send the feed's number (see /feeds) or its address: {example}").format(
                example="/removefeed 3"
            )
        )
        return
    async with context.services.db.transaction() as session:
        feed = await find_feed(session, args[0])
        if feed is not None:
            await unwatch_feed(session, feed.id)
    if feed is None:
        await message.reply_text(_("There is no such feed: see /feeds."))
        return
    await message.reply_text(
        _("Removed feed {id}: {title}. Its articles stay in the archive.").format(
            id=feed.id, title=shown_text(feed.display_name)
        ),
        link_preview_options=_NO_PREVIEW,
    )


# -- /stats ---------------------------------------------------------------------------------


async def stats(update: Update, context: Context) -> None:
    """/stats: readers, subscriptions, top topics, deliveries and failing feeds."""
    message = update.effective_message
    if message is None or (r := await _editor(update, context)) is None:
        return
    _, ngettext = r.gettext, r.ngettext
    services = context.services
    async with services.db.sessions() as session:
        figures = await collect_stats(session, services.clock())
    heading = _("Statistics")
    lines = [f"<b>{html.escape(heading)}</b>", ""]
    lines.append(
        ngettext("{count} chat", "{count} chats", figures.chats).format(count=figures.chats)
        + " · "
        + ngettext("{count} active", "{count} active", figures.active_chats).format(
            count=figures.active_chats
        )
    )
    lines.append(
        ngettext("{count} subscription", "{count} subscriptions", figures.subscriptions).format(
            count=figures.subscriptions
        )
    )
    if figures.top_topics:
        lines += ["", _("Most followed topics:")]
        for topic in figures.top_topics:
            label = topic_label(topic.key, r.language, services.topics.catalog)
            followers = ngettext("{count} follower", "{count} followers", topic.followers)
            lines.append(f"• {label}: {followers.format(count=topic.followers)}")
    for heading, states in (
        (_("Last hour:"), figures.last_hour),
        (_("Last day:"), figures.last_day),
    ):
        lines += ["", heading, *_deliveries(r, states)]
    lines += [
        "",
        ngettext("{count} feed", "{count} feeds", figures.feeds).format(count=figures.feeds),
    ]
    if figures.feed_errors:
        errors = len(figures.feed_errors)
        lines.append(
            ngettext("{count} feed failing:", "{count} feeds failing:", errors).format(
                count=errors
            )
        )
        for failing in figures.feed_errors:
            lines.append(
                "• "
                + ngettext(
                    "{name}: {error} ({count} failure in a row)",
                    "{name}: {error} ({count} failures in a row)",
                    failing.failures,
                ).format(
                    name=shown_text(failing.name)[:100],
                    error=shown_text(failing.error)[:200],
                    count=failing.failures,
                )
            )
    # The header is the only markup: escape everything after it.
    text = "\n".join(lines[:1] + [html.escape(line) for line in lines[1:]])
    await message.reply_text(text, parse_mode=ParseMode.HTML, link_preview_options=_NO_PREVIEW)


def _deliveries(r: Reader, states: dict[str, int]) -> list[str]:
    """Deliveries by outcome, one line each (only those that happened)."""
    ngettext = r.ngettext
    sent = states.get(SENT, 0)
    failed = states.get(FAILED, 0) + states.get(UNKNOWN, 0)
    waiting = sum(states.get(state, 0) for state in (PENDING, CLAIMED, SENDING))
    dropped = states.get(DROPPED, 0)
    lines = [
        "• "
        + ngettext("{count} alert delivered", "{count} alerts delivered", sent).format(count=sent),
        "• "
        + ngettext("{count} delivery failed", "{count} deliveries failed", failed).format(
            count=failed
        ),
    ]
    if waiting:
        lines.append(
            "• " + ngettext("{count} waiting", "{count} waiting", waiting).format(count=waiting)
        )
    if dropped:
        lines.append(
            "• "
            + ngettext(
                "{count} dropped (stopped chats, stale alerts)",
                "{count} dropped (stopped chats, stale alerts)",
                dropped,
            ).format(count=dropped)
        )
    return lines


def _messages(blocks: Iterable[str]) -> list[str]:
    """Blocks joined into as few messages as Telegram's length limit allows."""
    messages: list[str] = []
    for block in blocks:
        if messages and len(messages[-1]) + 2 + len(block) <= MESSAGE_LIMIT:
            messages[-1] += "\n\n" + block
        else:
            messages.append(block)
    return messages


__all__ = [
    "add_feed",
    "alert",
    "confirm_alert",
    "feeds",
    "remove_feed",
    "shown_text",
    "shown_url",
    "stats",
]
