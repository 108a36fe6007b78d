"""Engines, sessions and schema upgrades for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on; transactions that write
start with ``BEGIN IMMEDIATE`` so a read-then-write never fails with "database is locked".
PostgreSQL connections are checked as they leave the pool, so that a connection the server
cut (a restart) is replaced instead of failing the next query.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 10_000
_IMMEDIATE = "newsbot_begin_immediate"


T = TypeVar("T")
WriteJob = Callable[[AsyncSession], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What an upgrade did: the revision before (``None``: a new database) and after, and
    whether a revision applied asks for the stored articles' search terms to be recomputed
    (revisions import nothing of the text engine: the application does it)."""

    before: str | None
    after: str
    reindex: bool = False


def default_database_url() -> str:
    """SQLite file ``newsbot.db`` in the working directory."""
    return f"sqlite+aiosqlite:///{Path.cwd() / 'newsbot.db'}"


def process_holder() -> str:
    """Who this process is, as claims and leases record it: host, pid and a random part
    (a pid is reused after a restart; the holder never is). At most 64 characters."""
    return _HOLDER


_HOLDER = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class LockLost(Exception):
    """The connection holding a lock of :meth:`Database.exclusive` was cut: the lock is gone,
    and another process may hold it by now."""


# PostgreSQL's classes of errors that pass by themselves: connection exception, insufficient
# resources, operator intervention (a shutdown, a restart), system error; and conflicts.
_TRANSIENT_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_STATES = ("40001", "40P01")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error may pass by itself: a lock held too long, a connection cut
    or refused, a server restarting, a pool exhausted (the same work may succeed later)."""
    if isinstance(exc, DBAPIError):
        # No statement: connecting failed (a server starting up, or refusing connections).
        if exc.connection_invalidated or exc.statement is None:
            return True
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return True
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError)


class Database:
    """One database: an engine, a session factory and the migrations that shape it."""

    def __init__(
        self, url: str, *, busy_timeout: float | None = None, **engine_options: Any
    ) -> None:
        """``busy_timeout``: how long a SQLite write waits for another's lock, in seconds
        (default: the URL's ``?timeout=``, else ``SQLITE_BUSY_TIMEOUT_MS``)."""
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.busy_timeout = busy_timeout
        if not self.is_sqlite:
            # A pooled connection the server cut (a restart, a failover) is replaced when
            # next taken, instead of failing the query it was taken for.
            engine_options.setdefault("pool_pre_ping", True)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options)
        if self.is_sqlite:
            if busy_timeout is None:
                given = self.url.query.get("timeout")
                busy_timeout = (
                    float(given) if isinstance(given, str) else SQLITE_BUSY_TIMEOUT_MS / 1000
                )
                self.busy_timeout = busy_timeout
            event.listen(
                self.engine.sync_engine, "connect", _sqlite_on_connect(round(busy_timeout * 1000))
            )
            event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writers = async_sessionmaker(
            self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside a write transaction, committed on success, rolled back on error."""
        async with self._writers() as session, session.begin():
            yield session

    def group_writer(self) -> GroupWriter:
        """A writer that shares one transaction among the jobs queued while it commits."""
        return GroupWriter(self)

    async def upgrade(self) -> SchemaChange:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        async with self.engine.begin() as connection:
            return await connection.run_sync(_upgrade)

    async def pending_migrations(self) -> bool:
        """Whether the schema is behind the newest migration."""
        async with self.engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
        return set(current) != set(ScriptDirectory.from_config(alembic_config()).get_heads())

    @asynccontextmanager
    async def exclusive(
        self, name: str, *, retry: float = 1.0, check: float = 1.0
    ) -> AsyncIterator[None]:
        """Hold a lock named ``name`` across processes while inside, trying for it every
        ``retry`` seconds first.

        On PostgreSQL a session advisory lock (released if the process dies) on a connection
        of its own, outside the pool, so that neither a pre-ping nor a recycle can swap it.
        The block is cancelled and :class:`LockLost` raised as soon as that connection ends
        (asyncpg tells at once when the server closes it), or when it fails to answer a check
        within ``check`` seconds (checked every ``check`` seconds): the lock went with it, or
        may have. On SQLite a no-op, as one process serves a SQLite database.
        """
        if self.is_sqlite:
            yield
            return
        key = lock_key(name)
        holder = asyncio.current_task()
        assert holder is not None  # noqa: S101 - an async context manager runs in a task
        dedicated = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with dedicated.connect() as connection:
                locked = text("SELECT pg_try_advisory_lock(:key)")
                while not await connection.scalar(locked, {"key": key}):
                    await connection.rollback()  # no transaction left open while we wait
                    await asyncio.sleep(retry)
                await connection.commit()
                lost, done = asyncio.Event(), asyncio.Event()
                raw = (await connection.get_raw_connection()).driver_connection
                guard = asyncio.create_task(_guard(connection, raw, check, lost, done))
                guard.add_done_callback(lambda _: holder.cancel() if lost.is_set() else None)
                try:
                    yield
                except asyncio.CancelledError:
                    # Cancelled by the guard (and nobody else): say why, as asyncio.timeout does.
                    if lost.is_set() and holder.uncancel() == 0:
                        raise LockLost(f"lost the lock {name!r}: its connection was cut") from None
                    raise
                finally:
                    done.set()  # not cancelled: a query cut short leaves the connection unusable
                    await guard
                    await _unlock(connection, key, lost.is_set())
        finally:
            await dedicated.dispose()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


class GroupWriter:
    """Group commit: write jobs queued together run in one transaction, in order.

    Many small writes (a feed's status after a 304) then cost one commit between them. A
    failing job does not sink its neighbours: the batch is rolled back and each job is
    retried in a transaction of its own.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._queue: list[tuple[WriteJob[Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, job: WriteJob[T]) -> T:
        """Run ``job(session)`` in a write transaction and return its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def aclose(self) -> None:
        """Wait for the queued jobs to be written (call before disposing of the database)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._database.transaction() as session:
                    results = [await job(session) for job, _ in batch]
            except Exception as exc:
                if is_transient(exc):
                    # The database, not a job, failed (locked, unreachable): one by one each
                    # would wait out the same busy timeout, or fail the same way.
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                await self._one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[WriteJob[Any], asyncio.Future[Any]]]) -> None:
        for job, future in batch:
            try:
                async with self._database.transaction() as session:
                    result = await job(session)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)


DIALECT_INSERTS: dict[str, Callable[..., Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    """The INSERT construct of the session's backend, for ON CONFLICT clauses."""
    return DIALECT_INSERTS[session.get_bind().dialect.name]


def alembic_config() -> Config:
    """Alembic's configuration, pointing at the migrations shipped with Newsbot."""
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    return config


def _upgrade(connection: Connection) -> SchemaChange:
    before = MigrationContext.configure(connection).get_current_revision()
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_revision()
    assert after is not None  # noqa: S101 - "head" is a revision
    applied = ScriptDirectory.from_config(config).iterate_revisions(after, before or "base")
    reindex = before is not None and any(
        getattr(script.module, "REINDEX", False) for script in applied
    )
    return SchemaChange(before=before, after=after, reindex=reindex)


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of the lock named ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def _guard(
    connection: AsyncConnection,
    raw: Any,
    every: float,
    lost: asyncio.Event,
    done: asyncio.Event,
) -> None:
    """Set ``lost`` once the lock's connection ends or stops answering; return then, or
    when ``done`` is set."""
    ended = asyncio.Event()
    raw.add_termination_listener(lambda _connection: ended.set())
    while not done.is_set():
        waiting = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(ended.wait())]
        _, pending = await asyncio.wait(
            waiting, timeout=every, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if done.is_set():
            return
        alive = not ended.is_set() and not raw.is_closed()
        if alive:
            try:
                # A partition answers nothing: a check that takes longer counts as a loss.
                async with asyncio.timeout(every):
                    await connection.scalar(text("SELECT 1"))
                    await connection.rollback()
            except Exception:
                alive = False
        if not alive:
            lost.set()
            return


async def _unlock(connection: AsyncConnection, key: int, lost: bool) -> None:
    """Release the advisory lock; a connection that may still hold it is never pooled."""
    if not lost:
        try:
            await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            await connection.commit()
            return
        except Exception:  # noqa: S110 - closing the session below releases the lock
            pass
    # The server releases a session's locks when it ends: end it, rather than pool it.
    await connection.invalidate()


def _sqlite_on_connect(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={busy_timeout_ms}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    return on_connect


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
