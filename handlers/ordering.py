"""The order updates are handled in: chats concurrently, one chat's updates in turn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger(__name__)


class InOrderPerChat(BaseUpdateProcessor):
    """Updates of different chats are handled concurrently, those of one chat in the order
    they came: "/follow X" then "/unfollow X" never ends up following X. A chat that floods
    the bot has at most ``per_chat`` updates waiting; the rest are dropped, so it cannot
    take every slot from the others."""

    def __init__(self, max_concurrent_updates: int, per_chat: int = 8) -> None:
        super().__init__(max_concurrent_updates)
        self._per_chat = per_chat
        self._chats: dict[int, tuple[asyncio.Lock, int]] = {}  # lock, updates using it

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for this chat's earlier updates, then handle this one."""
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock, users = self._chats.get(chat.id, (asyncio.Lock(), 0))
        if users >= self._per_chat:
            log.warning("chat %s floods the bot: an update dropped", chat.id)
            if isinstance(coroutine, Coroutine):
                coroutine.close()
            return
        self._chats[chat.id] = (lock, users + 1)
        try:
            async with lock:  # FIFO: the updates of one chat keep their order
                await coroutine
        finally:
            lock, users = self._chats[chat.id]
            if users == 1:
                del self._chats[chat.id]
            else:
                self._chats[chat.id] = (lock, users - 1)

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""
