"""Newsbot as installed speaks Arabic, or refuses to run: never a quiet fall back to English.

The catalogs ship as ``.po`` files inside the package. ``.ci/run`` builds the wheel from the
sdist, installs it into a fresh virtual environment outside the checkout and points
``NEWSBOT_INSTALLED`` at its ``newsbot`` command; without it, the checkout's own is used.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.fakebotapi import FakeBotAPI
from tests.processes import NEWSBOT, BotProcess, bot_env, run_process, say

INSTALLED = os.environ.get("NEWSBOT_INSTALLED")
COMMAND = INSTALLED or NEWSBOT
PYTHON = str(Path(INSTALLED).with_name("python")) if INSTALLED else sys.executable
LOCALES = Path(__file__).resolve().parents[2] / "locales"


def locales_without_arabic(directory: Path) -> Path:
    """A ``locales`` package with the English catalog only, to put first on the path."""
    package = directory / "locales"
    (package / "en" / "LC_MESSAGES").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(LOCALES / "en" / "LC_MESSAGES" / "messages.po", package / "en" / "LC_MESSAGES")
    return directory


async def test_an_arabic_reader_is_greeted_in_arabic(
    fake_api: FakeBotAPI, sqlite_url: str, tmp_path: Path
) -> None:
    """/start from a reader whose Telegram is in Arabic gets an Arabic welcome from the
    installed bot, run from a directory that is not the checkout."""
    bot = BotProcess(fake_api, bot_env(fake_api, sqlite_url), tmp_path, command=COMMAND)
    await bot.start()
    try:
        (welcome,) = await say(fake_api, 5001, "/start", language_code="ar")
        english = await say(fake_api, 5002, "/start", language_code="en")
    finally:
        await bot.stop_cleanly()
    assert "Welcome" not in welcome.plain
    assert sum("\u0600" <= letter <= "\u06ff" for letter in welcome.plain) > 40, welcome.plain
    assert "Welcome" in english[0].plain  # the English catalog is there too


async def test_without_the_arabic_catalog_run_refuses_in_one_line(tmp_path: Path) -> None:
    """If the Arabic catalog cannot be loaded, `newsbot run` exits non-zero with one line
    saying so, before it talks to Telegram."""
    shadow = locales_without_arabic(tmp_path / "shadow")
    result = await run_process(
        PYTHON,
        "-c",
        "import sys; from bot.cli import main; sys.exit(main(['run']))",
        env={"NEWSBOT_TOKEN": "123456:fake", "PYTHONPATH": str(shadow)},
        cwd=tmp_path,
    )
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("newsbot: cannot read the 'ar' catalog"), line
    assert "reinstall Newsbot" in line


@pytest.mark.skipif(not INSTALLED, reason="NEWSBOT_INSTALLED names no installed newsbot")
async def test_the_installed_command_is_not_the_checkout(tmp_path: Path) -> None:
    """The installed package is imported from its own site-packages, not from the checkout."""
    result = await run_process(
        PYTHON,
        "-c",
        "import bot, locales; print(bot.__file__, locales.__file__)",
        env={},
        cwd=tmp_path,
    )
    root = str(Path(__file__).resolve().parents[2])
    assert result.code == 0 and "site-packages" in result.out and root not in result.out
