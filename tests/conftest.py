"""Shared fixtures: a real database on SQLite and on PostgreSQL, and a local feed server."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.models import Base
from tests.botharness import RunningBot, running_bot
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer
from tests.postgres import execute_as_admin

# python-telegram-bot 22 warns when it builds a RetryAfter unless timedelta values are
# opted into (as the bot does in bot/runner.py).
os.environ.setdefault("PTB_TIMEDELTA", "true")

POSTGRES_URL = os.environ.get("NEWSBOT_TEST_POSTGRES_URL")
POSTGRES_REQUIRED = os.environ.get("NEWSBOT_REQUIRE_POSTGRES") == "1"


def _asyncpg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "newsbot.db"
    database = Database(f"sqlite+aiosqlite:///{path}")

    async def build() -> None:
        await database.upgrade()
        await database.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this run's own, migrated, dropped at the end."""
    if not POSTGRES_URL:
        if POSTGRES_REQUIRED:
            pytest.fail("NEWSBOT_REQUIRE_POSTGRES=1 but NEWSBOT_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "PostgreSQL tests need NEWSBOT_TEST_POSTGRES_URL (e.g. postgresql://…/postgres)"
        )
    name = f"newsbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(execute_as_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        if POSTGRES_REQUIRED:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    url = make_url(_asyncpg_url(POSTGRES_URL)).set(database=name).render_as_string(False)
    database = Database(url)

    async def build() -> None:
        await database.upgrade()
        await database.dispose()

    asyncio.run(build())
    yield url
    asyncio.run(execute_as_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "newsbot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty SQLite database (for tests about one backend's behaviour)."""
    path = tmp_path / "newsbot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A Database on each backend, emptied after the test."""
    database = Database(database_url)
    yield database
    if not database.is_sqlite:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        async with database.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await database.dispose()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A local HTTP server whose documents, headers and behaviour each test sets."""
    async with FeedServer() as server:
        yield server


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API server that accepts messages to any chat."""
    async with FakeBotAPI(any_chat=True) as server:
        yield server


@pytest.fixture
async def newsbot(
    db: Database, database_url: str, fake_api: FakeBotAPI
) -> AsyncIterator[RunningBot]:
    """The bot running in this test's loop on each backend, against the fake Bot API
    (``db`` empties PostgreSQL after the test)."""
    async with running_bot(database_url, fake_api) as running:
        yield running


@pytest.fixture
async def pg_db(postgres_url: str) -> AsyncIterator[Database]:
    """The run's PostgreSQL database, emptied after the test."""
    database = Database(postgres_url)
    yield database
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await database.dispose()
