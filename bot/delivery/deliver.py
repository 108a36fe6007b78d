"""Delivering one outbox row: the alert rendered in the chat's language, sent silently
during the chat's quiet hours. The sender (``bot.delivery.sender``) decides when and what follows.
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
from storage.alerts import AlertRecord, get_alert
from storage.db import Database
from storage.deliveries import Claimed
from storage.models import utcnow

CACHED_ALERTS = 64
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class AlertDelivery:
    """Sends an alert to one chat; each alert is read and rendered once per language."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        *,
        zone: ZoneInfo,
        markers: Sequence[str],
        catalog: Catalog,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._bot = bot
        self._db = db
        self._zone = zone
        self._markers = markers
        self._catalog = catalog
        self._clock = clock
        # A fan-out sends one alert to thousands of chats: load it once, not per row.
        self._records: OrderedDict[int, asyncio.Future[AlertRecord | None]] = OrderedDict()
        self._texts: dict[tuple[int, str], str] = {}

    async def __call__(self, row: Claimed) -> None:
        """Send the row's alert to its chat (raises what the Bot API raised)."""
        text = await self.text(row.alert_id, row.language)
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
        )

    async def text(self, alert_id: int, language: str) -> str | None:
        """The alert as Telegram HTML for readers of this language."""
        key = (alert_id, language)
        if key in self._texts:
            return self._texts[key]
        record = await self._record(alert_id)
        if record is None:
            return None
        view = alert_view(record, language=language, markers=self._markers, catalog=self._catalog)
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


__all__ = ["AlertDelivery"]
