"""Real database outages for tests: another program holding SQLite's write lock, PostgreSQL
cutting every connection (as a restart does) and refusing new ones for a while."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from storage.db import Database
from tests.conftest import POSTGRES_URL
from tests.postgres import execute_as_admin


@asynccontextmanager
async def write_locked(path: Path) -> AsyncIterator[None]:
    """Another program holds the SQLite database's write lock inside the block."""
    other = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def cut_connections(db: Database, *, pid: int | None = None) -> int:
    """End every session on this PostgreSQL database (or the one of ``pid``), as a restart
    does; how many were ended."""
    assert POSTGRES_URL is not None
    which = "pid = $1" if pid is not None else "datname = $1 AND pid <> pg_backend_pid()"
    admin = make_url(POSTGRES_URL)
    connection = await asyncpg.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 5432,
        user=admin.username or "postgres",
        password=admin.password,
        database=admin.database or "postgres",
    )
    try:
        ended = await connection.fetch(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {which}",  # noqa: S608 - a fixed condition, with parameters
            pid if pid is not None else db.url.database,
        )
    finally:
        await connection.close()
    return len(ended)


@asynccontextmanager
async def database_down(db: Database) -> AsyncIterator[None]:
    """Inside, the database takes no write: on SQLite another program holds the write lock;
    PostgreSQL cuts every connection and refuses new ones."""
    if db.is_sqlite:
        async with write_locked(Path(db.url.database or "")):
            yield
        return
    assert POSTGRES_URL is not None
    name = db.url.database
    await execute_as_admin(POSTGRES_URL, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await cut_connections(db)
        yield
    finally:
        await execute_as_admin(POSTGRES_URL, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
