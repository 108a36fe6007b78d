"""Delivering one outbox row: the alert rendered in the chat's language, tagged with the
matched topics the chat follows when it is sent, naming the other outlets that confirmed
its story, and sent silently during the chat's quiet hours; a development of a story goes
as a silent reply to the chat's first message of it. Editing a sent alert when its story
is confirmed again. The sender (``bot.delivery.sender``) decides when and what follows.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.warnings import PTBUserWarning

from bot.delivery.render import alert_view, is_quiet, render_alert
from bot.text.topics import Catalog
from storage.alerts import (
    ALERT,
    DEVELOPMENT,
    AlertRecord,
    Outlet,
    get_alert,
    get_first_message,
    list_followed_among,
    list_story_outlets,
)
from storage.db import Database
from storage.deliveries import Claimed, DueEdit
from storage.models import utcnow

CACHED_ALERTS = 64
# A development waits this long, again and again, for the push it replies to to be sent.
REPLY_WAIT = 2.0
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_RAW_SEND_ADVICE = r"Please use 'Bot\.sendMessage' instead"
# A rendered text by alert, language, the reader's own topics, the outlets named, and
# whether it goes as a development (a reply).
_TextKey = tuple[int, str, tuple[str, ...], tuple[tuple[str, str | None], ...], bool]


class NotYet(Exception):
    """The row cannot be sent yet (nothing left): try again in ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not yet: again in {seconds} s")
        self.seconds = seconds


class AlertDelivery:
    """Sends an alert to one chat; each alert is read once, and rendered once per language
    and set of the reader's own topics."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        *,
        zone: ZoneInfo,
        markers: Sequence[str],
        catalog: Catalog,
        clock: Callable[[], datetime] = utcnow,
        paid: bool = False,
    ) -> None:
        """``paid``: send as paid broadcasts (``allow_paid_broadcast``), which Telegram
        lets through at up to 1,000 a second, for Stars."""
        self._bot = bot
        self._paid = paid
        # It sends through Bot.do_api_request (see __call__), which suggests send_message.
        warnings.filterwarnings("ignore", _RAW_SEND_ADVICE, PTBUserWarning)
        self._db = db
        self._zone = zone
        self._markers = markers
        self._catalog = catalog
        self._clock = clock
        # A fan-out sends one alert to thousands of chats: load it once, not per row.
        self._records: OrderedDict[int, asyncio.Future[AlertRecord | None]] = OrderedDict()
        self._texts: dict[_TextKey, str] = {}
        self._followed = _FollowedTopics(db)
        self._outlets: dict[int, tuple[datetime, asyncio.Future[list[Outlet]]]] = {}

    async def __call__(self, row: Claimed) -> int | None:
        """Send the row's alert to its chat; the message's id (raises what the Bot API
        raised). A development goes as a silent reply to the chat's first message of its
        story (loud if an editor sent it), or as a push if the chat has none."""
        record = await self._record(row.alert_id)
        if record is None:
            return None  # the alert was deleted: nothing to say
        first = None
        if record.kind == DEVELOPMENT and record.story_id is not None:
            async with self._db.sessions() as session:
                first, waiting = await get_first_message(
                    session, row.chat_id, record.story_id, row.alert_id
                )
            if waiting:  # the story's push to this chat is still queued: reply to it later
                raise NotYet(REPLY_WAIT)
        text = await self.text(
            row.alert_id, row.language, row.chat_id, since=row.claimed_at, reply=first is not None
        )
        if text is None:
            return None
        local = self._clock().astimezone(self._zone)
        silent = is_quiet(row.quiet_from, row.quiet_to, local.hour * 60 + local.minute)
        if first is not None and not record.by_editor:
            silent = True  # the reader was told of the story: what adds to it makes no sound
        options: dict[str, object] = {
            "chat_id": row.chat_id,
            "text": text,
            "parse_mode": ParseMode.HTML,
            "disable_notification": silent,
            "link_preview_options": _NO_PREVIEW,
        }
        if self._paid:
            options["allow_paid_broadcast"] = True
        if first is not None:
            options["reply_parameters"] = ReplyParameters(first, allow_sending_without_reply=True)
        # The answer as Telegram sent it: only its message id is needed, and making a
        # Message of every answer is a fifth of the sender's CPU at 1,000 a second.
        answer = await self._bot.do_api_request("sendMessage", api_kwargs=options)
        return int(answer["message_id"]) if isinstance(answer, dict) else None

    async def edit(self, row: DueEdit) -> None:
        """Edit a sent alert to what it says now (the outlets that confirmed its story
        since); raises what the Bot API raised («message is not modified» included)."""
        text = await self.text(row.alert_id, row.language, row.chat_id, since=row.claimed_at)
        if text is None:
            return
        await self._bot.edit_message_text(
            text,
            chat_id=row.chat_id,
            message_id=row.message_id,
            parse_mode=ParseMode.HTML,
            link_preview_options=_NO_PREVIEW,
        )

    async def text(
        self,
        alert_id: int,
        language: str,
        chat_id: int | None = None,
        *,
        since: datetime | None = None,
        reply: bool = False,
    ) -> str | None:
        """The alert as Telegram HTML for this chat: in this language, tagged with the
        matched topics the chat follows (none without a chat), naming the other outlets
        of its story as read after ``since``; ``reply``: as a development of a story the
        chat was told of."""
        record = await self._record(alert_id)
        if record is None:
            return None
        own: tuple[str, ...] = ()
        if chat_id is not None and record.topics:
            own = await self._followed.among(chat_id, record.topics)
        confirmed: tuple[tuple[str, str | None], ...] = ()
        if record.kind == ALERT and record.story_id is not None:
            outlets = await self._story_outlets(record.story_id, since)
            confirmed = tuple(
                (outlet.name, outlet.link)
                for outlet in outlets
                if outlet.feed_id != record.feed_id
            )
        key = (alert_id, language, own, confirmed, reply)
        if key in self._texts:
            return self._texts[key]
        view = alert_view(
            record,
            language=language,
            markers=self._markers,
            catalog=self._catalog,
            followed=own,
            confirmed_by=confirmed,
            development=reply,
        )
        text = render_alert(view, language=language, zone=self._zone)
        self._texts[key] = text
        return text

    async def _story_outlets(self, story_id: int, since: datetime | None) -> list[Outlet]:
        """The story's outlets, read after ``since``: rows claimed together share a read,
        and a row claimed after a confirmation never gets a list read before it."""
        cached = self._outlets.get(story_id)
        if cached is not None and (since is None or cached[0] >= since):
            return await cached[1]
        future: asyncio.Future[list[Outlet]] = asyncio.get_running_loop().create_future()
        self._outlets[story_id] = (self._clock(), future)
        if len(self._outlets) > CACHED_ALERTS:
            del self._outlets[next(iter(self._outlets))]
        try:
            async with self._db.sessions() as session:
                future.set_result(await list_story_outlets(session, story_id))
        except BaseException as exc:
            if self._outlets.get(story_id, (None, None))[1] is future:
                del self._outlets[story_id]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: waiters or not, no "never retrieved" noise
            else:
                future.cancel()
            raise
        return future.result()

    async def _record(self, alert_id: int) -> AlertRecord | None:
        future = self._records.get(alert_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._records[alert_id] = future
            if len(self._records) > CACHED_ALERTS:
                old, _ = self._records.popitem(last=False)
                for language_key in [key for key in self._texts if key[0] == old]:
                    del self._texts[language_key]
            try:
                async with self._db.sessions() as session:
                    future.set_result(await get_alert(session, alert_id))
            except Exception as exc:
                # Those waiting see the error too; the next row tries to read it again.
                del self._records[alert_id]
                future.set_exception(exc)
                future.exception()  # retrieved: waiters or not, no "never retrieved" noise
                raise
            except BaseException:
                self._records.pop(alert_id, None)
                future.cancel()
                raise
        return await future


class _FollowedTopics:
    """Which of an alert's topics a chat follows, read at send time: the rows that ask
    while one read is under way share the next, so a fan-out costs a query per batch of
    rows, not one per row."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._wanted: list[tuple[int, tuple[str, ...], asyncio.Future[frozenset[str]]]] = []
        self._reading: asyncio.Task[None] | None = None

    async def among(self, chat_id: int, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``keys`` the chat follows now, in their order."""
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._wanted.append((chat_id, keys, future))
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        followed = await future
        return tuple(key for key in keys if key in followed)

    async def _read(self) -> None:
        while self._wanted:
            batch, self._wanted = self._wanted, []
            chats = {chat_id for chat_id, _, _ in batch}
            keys = {key for _, wanted, _ in batch for key in wanted}
            try:
                async with self._db.sessions() as session:
                    found = await list_followed_among(session, chats, keys)
            except Exception as exc:
                # Each row fails as a failed read of its alert would; the next rows read again.
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: a cancelled row leaves no noise
                continue
            for chat_id, _, future in batch:
                if not future.done():
                    future.set_result(frozenset(found.get(chat_id, ())))


__all__ = ["AlertDelivery", "NotYet"]
