"""Delivering one outbox row: the alert rendered in the chat's language, tagged with the
matched topics the chat follows when it is sent, and sent silently during the chat's quiet
hours. The sender (``bot.delivery.sender``) decides when and what follows.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode

from bot.delivery.render import alert_view, is_quiet, render_alert
from bot.text.topics import Catalog
from storage.alerts import AlertRecord, get_alert, list_followed_among
from storage.db import Database
from storage.deliveries import Claimed
from storage.models import utcnow

CACHED_ALERTS = 64
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


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
        self._db = db
        self._zone = zone
        self._markers = markers
        self._catalog = catalog
        self._clock = clock
        # A fan-out sends one alert to thousands of chats: load it once, not per row.
        self._records: OrderedDict[int, asyncio.Future[AlertRecord | None]] = OrderedDict()
        self._texts: dict[tuple[int, str, tuple[str, ...]], str] = {}
        self._followed = _FollowedTopics(db)

    async def __call__(self, row: Claimed) -> None:
        """Send the row's alert to its chat (raises what the Bot API raised)."""
        text = await self.text(row.alert_id, row.language, row.chat_id)
        if text is None:
            return  # the alert was deleted: nothing to say
        local = self._clock().astimezone(self._zone)
        silent = is_quiet(row.quiet_from, row.quiet_to, local.hour * 60 + local.minute)
        await self._bot.send_message(
            row.chat_id,
            text,
            parse_mode=ParseMode.HTML,
            disable_notification=silent,
            link_preview_options=_NO_PREVIEW,
            allow_paid_broadcast=self._paid or None,
        )

    async def text(self, alert_id: int, language: str, chat_id: int | None = None) -> str | None:
        """The alert as Telegram HTML for this chat: in this language, tagged with the
        matched topics the chat follows (none without a chat)."""
        record = await self._record(alert_id)
        if record is None:
            return None
        own: tuple[str, ...] = ()
        if chat_id is not None and record.topics:
            own = await self._followed.among(chat_id, record.topics)
        key = (alert_id, language, own)
        if key in self._texts:
            return self._texts[key]
        view = alert_view(
            record, language=language, markers=self._markers, catalog=self._catalog, followed=own
        )
        text = render_alert(view, language=language, zone=self._zone)
        self._texts[key] = text
        return text

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


__all__ = ["AlertDelivery"]
