"""Telegram handlers, registered in one ordered list by :func:`register`."""

from __future__ import annotations

from telegram import Bot

from handlers.context import NewsbotApplication


def register(application: NewsbotApplication) -> None:
    """Every handler, in the order it is tried (the first that matches an update wins)."""
    # -- readers (start, topics, settings, membership) ------------------------------------
    # -- end of readers ---------------------------------------------------------------------
    # -- search and editors -----------------------------------------------------------------
    # -- end of search and editors ------------------------------------------------------------
    # -- last: plain text and unknown commands get guidance; errors are logged -----------------


async def publish_commands(bot: Bot) -> None:
    """The command menus, in Arabic (the default) and English (setMyCommands)."""


__all__ = ["publish_commands", "register"]
