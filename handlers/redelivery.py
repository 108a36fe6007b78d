"""Each update is handled once: Telegram delivers an update again when the process that
fetched it died before confirming it, or a webhook's answer was lost (and with several
processes the second delivery may reach another one). Runs before every other handler.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from handlers.context import Context
from storage.handled import add_handled_update, remove_handled_before

log = logging.getLogger(__name__)

# Telegram keeps an update it could not deliver for 24 hours: one handled longer ago than
# this never comes again, and is forgotten.
KEPT_FOR = timedelta(days=2)
# Forgetting is done by the update whose id is a multiple of this (any process).
SWEEP_EVERY = 1_000


async def drop_redelivered(update: Update, context: Context) -> None:
    """Record the update as handled, or stop here if it already was.

    When the database cannot say, the update is handled: answering twice is better than
    not at all (the handlers will meet the same database anyway).
    """
    services = context.services
    bot_id, update_id, now = context.bot.id, update.update_id, services.clock()

    async def record(session: AsyncSession) -> bool:
        first = await add_handled_update(session, bot_id, update_id, now)
        if first and update_id % SWEEP_EVERY == 0:
            await remove_handled_before(session, now - KEPT_FOR)
        return first

    try:
        first = await services.writer.run(record)
    except Exception:  # see the docstring
        log.warning("update %s: could not record it as handled", update_id, exc_info=True)
        return
    if not first:
        log.info("update %s was delivered again: dropped", update_id)
        raise ApplicationHandlerStop


__all__ = ["drop_redelivered"]
