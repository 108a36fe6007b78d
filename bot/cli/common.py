"""What every ``newsbot`` command shares: its strings, its errors, opening the core."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from bot.i18n import translator

if TYPE_CHECKING:
    import argparse

    from bot.app import Core
    from bot.config import Settings

# Operators read the command line in English; the catalogs carry the strings all the same.
_ = translator("en").gettext
ngettext = translator("en").ngettext

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A command that cannot do what was asked; ``str()`` is the one line to show."""


class DatabaseUnusable(Exception):
    """The database could not be opened or upgraded; ``str()`` says why."""


def fail(message: str) -> None:
    """Print the one line of a failed command."""
    print(f"newsbot: {message}", file=sys.stderr)


def say(message: str) -> None:
    """Print a line about what a long-running command is doing, as it happens."""
    print(f"newsbot: {message}", file=sys.stderr, flush=True)


def first_line(exc: BaseException) -> str:
    """An exception's message, as one line (a database error's own, not SQLAlchemy's)."""
    original = getattr(exc, "orig", None)
    if isinstance(original, BaseException):
        exc = original
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


CoreCommand = Callable[["Core", "argparse.Namespace"], Awaitable[int]]


def with_core(command: CoreCommand) -> Callable[[Settings, argparse.Namespace], int]:
    """A command that runs with the core open (the schema upgraded first)."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        async def inside() -> int:
            async with open_core_for_command(settings) as core:
                return await command(core, args)

        return asyncio.run(inside())

    run.__doc__ = command.__doc__
    return run


@asynccontextmanager
async def open_core_for_command(
    settings: Settings, *, upgrade: bool = True
) -> AsyncIterator[Core]:
    """The core, with a database that cannot be reached reported as such."""
    from bot.app import open_core

    entered = False
    try:
        async with open_core(settings, upgrade=upgrade) as core:
            entered = True
            yield core
    except OSError as exc:
        if entered:  # the command's own failure (a file, a connection lost): say it as is
            raise CommandError(first_line(exc)) from None
        raise DatabaseUnusable(first_line(exc)) from None
