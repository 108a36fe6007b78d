"""The composition root: builds the database, the HTTP clients, the services and the
Telegram ``Application`` from Settings, and registers the handlers.

Nothing else reads :class:`~bot.config.Settings` or creates long-lived resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from multiprocessing import get_context
from types import MappingProxyType
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from bot import __version__
from bot.config import Settings
from bot.delivery.fanout import Fanout, Topics
from bot.feeds.fetch import Fetcher, FetchLimits
from bot.feeds.indexing import ready
from bot.feeds.ingest import Ingestor
from bot.feeds.reindex import reindex_articles
from bot.feeds.stories import StoryAssigner
from bot.i18n import translator
from bot.logs import quiet_noisy_loggers
from storage.db import Database, GroupWriter, LockLost, is_transient, process_holder
from storage.deliveries import liveness_lock
from storage.models import utcnow
from storage.stats import count_feeds_and_readers

# The Telegram side is imported by build_application, when the bot runs: the other
# commands of the CLI do without python-telegram-bot (a third of a second to import).
if TYPE_CHECKING:
    from telegram.request import BaseRequest

    from bot.delivery.sender import Sender
    from handlers.context import NewsbotApplication

log = logging.getLogger(__name__)
# What the operator reads is English; the catalogs carry it all the same.
_ = translator("en").gettext
ngettext = translator("en").ngettext

# How often the watcher looks for due feeds; each feed keeps its own POLL_INTERVAL.
WATCH_TICK = 0.5
USER_AGENT = f"Newsbot/{__version__} (newsroom feed reader; +https://github.com/newsbot/newsbot)"


@dataclass(frozen=True, slots=True)
class Core:
    """The long-lived services every entry point shares."""

    settings: Settings
    db: Database
    fetcher: Fetcher
    ingestor: Ingestor
    parse_pool: ProcessPoolExecutor | None


def fetch_limits(settings: Settings, *, allow_private: bool = True) -> FetchLimits:
    """The fetcher's limits as the operator configured them."""
    return FetchLimits(
        total_timeout=settings.fetch_timeout,
        connect_timeout=settings.connect_timeout,
        max_bytes=settings.max_feed_bytes,
        concurrency=settings.fetch_concurrency,
        per_host=settings.fetch_per_host,
        user_agent=USER_AGENT,
        allow_private=allow_private,
    )


@asynccontextmanager
async def open_core(
    settings: Settings, *, upgrade: bool = True, fanout: Fanout | None = None
) -> AsyncIterator[Core]:
    """Open the database (upgrading its schema), the fetchers and the parse workers; close
    them all on exit.

    With ``fanout``, new breaking articles become alerts as they are stored.
    """
    quiet_noisy_loggers()
    db = Database(settings.database_url)
    try:
        if upgrade:
            change = await db.upgrade()
            if change.reindex:
                reindexed = await reindex_articles(db)
                log.warning("the schema upgrade recomputed %d articles' search terms", reindexed)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # garbage collector's full scans, which otherwise stall the event loop for 100+ ms.
        gc.freeze()
        chat_limits = fetch_limits(settings, allow_private=settings.allow_private_feeds)
        async with (
            Fetcher(fetch_limits(settings)) as fetcher,
            Fetcher(chat_limits) as chat_fetcher,
        ):
            with parse_pool(settings.parse_workers) as pool:
                ingestor = Ingestor(
                    db,
                    fetcher,
                    chat_fetcher=chat_fetcher,
                    poll_interval=timedelta(seconds=settings.poll_interval),
                    backlog_age=settings.backlog_age,
                    max_backoff=timedelta(seconds=settings.max_backoff),
                    parse_pool=pool,
                    on_new=fanout,
                    stories=StoryAssigner(settings.story_window),
                    markers=settings.breaking_markers,
                )
                try:
                    yield Core(
                        settings=settings,
                        db=db,
                        fetcher=fetcher,
                        ingestor=ingestor,
                        parse_pool=pool,
                    )
                finally:
                    await ingestor.aclose()
    finally:
        await db.dispose()


@contextmanager
def parse_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """The processes that parse feeds (started on first use), stopped on exit; ``None``
    (parse in a thread) for no workers."""
    if workers == 0:
        yield None
        return
    # spawn, not fork: this process has threads (aiosqlite, executors) that fork would copy.
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_ignore_interrupts
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers in its own time.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- newsbot run: the Telegram side -------------------------------------------------------

# Updates handled at once: commands mostly wait on the database, not on the CPU. (Updates
# of one chat wait their turn holding a slot: InOrderPerChat caps them at 8 a chat.)
CONCURRENT_UPDATES = 128
# Connections to the Bot API for sending (the sender keeps up to 64 requests in flight).
SEND_CONNECTIONS = 128
# How long a stopping sender may take to finish the requests in flight.
STOP_GRACE = 10.0
# A task that died is started again after this pause, doubled while it keeps failing.
RESTART_FIRST = 0.5
RESTART_MOST = 10.0
# A task that lost its lock (its connection cut) waits this long before trying for it
# again, so that a process standing by (which tries every second) takes over first: the
# one whose connection was cut is the one more likely to be in trouble.
LOST_LOCK_PAUSE = 3.0


def build_application(
    settings: Settings, *, announce: Callable[[str], None] = log.warning, poll: bool = False
) -> NewsbotApplication:
    """The Telegram Application with every handler registered and the services wired in:
    they open in ``post_init`` and close on shutdown (SIGINT, SIGTERM). ``announce`` gets
    the line saying the bot is up, and the one saying it stopped. With ``poll``, the
    services include long polling, by one process of the bot at a time (bot.updates)."""
    from telegram.ext import ApplicationBuilder

    import handlers
    from handlers.context import CONTEXT_TYPES
    from handlers.ordering import InOrderPerChat

    assert settings.token is not None  # noqa: S101 - the CLI checked it
    runtime = Runtime(settings, announce, poll=poll)
    application: NewsbotApplication = (
        ApplicationBuilder()
        .token(settings.token.get_secret_value())
        .base_url(settings.api_url)
        .context_types(CONTEXT_TYPES)
        .request(telegram_request(SEND_CONNECTIONS))
        .get_updates_request(telegram_request(1, read_timeout=60.0))
        .concurrent_updates(InOrderPerChat(CONCURRENT_UPDATES))
        .post_init(runtime.start)
        .post_stop(runtime.stop)
        .post_shutdown(runtime.close)
        .build()
    )
    handlers.register(application)
    _RUNTIMES[application] = runtime
    return application


def runtime_of(application: NewsbotApplication) -> Runtime:
    """The Runtime of an Application that :func:`build_application` built."""
    return _RUNTIMES[application]


def telegram_request(connections: int, *, read_timeout: float = 10.0) -> BaseRequest:
    """The HTTP client python-telegram-bot talks to the Bot API through: aiohttp, whose
    per-request cost is a sixth of httpx's (benchmarks/telegram_request.py)."""
    from bot.delivery.transport import AiohttpRequest

    return AiohttpRequest(
        connection_pool_size=connections, read_timeout=read_timeout, pool_timeout=5.0
    )


@dataclass(slots=True)
class TaskState:
    """How one long-running task is doing, as an operator or a health check reads it."""

    name: str
    running: bool = False  # False before it starts, after it stops, and while it restarts
    failing_since: datetime | None = None  # the first failure of the current streak
    failures: int = 0  # failures in the current streak
    restarts: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    def report(self, error: BaseException | None) -> None:
        """Hear how a pass of the task went: ``None`` when it worked, else what failed."""
        if error is None:
            if self.failing_since is not None:
                log.warning(
                    "%s works again after %d failures since %s",
                    self.name,
                    self.failures,
                    self.failing_since.isoformat(timespec="seconds"),
                )
            self.failing_since, self.failures = None, 0
        else:
            self._failed(error, "failed, retrying until it works")

    def died(self, error: BaseException) -> None:
        """The task ended with ``error``: it is about to be restarted."""
        self._failed(error, "stopped, restarting it")

    def _failed(self, error: BaseException, what: str) -> None:
        # ERROR once per streak: a database down for an hour is one error, not thousands.
        now = utcnow()
        self.failures += 1
        self.last_error, self.last_error_at = _one_line(error), now
        if self.failing_since is None:
            self.failing_since = now
            # A database that is down needs no traceback; anything else, a bug say, does.
            trace = None if is_transient(error) else error
            log.error("%s %s: %s", self.name, what, self.last_error, exc_info=trace)
        else:
            log.debug("%s %s again: %s", self.name, what, self.last_error)


class Runtime:
    """The services ``newsbot run`` keeps while the Application runs: the core, the
    followed topics, and the tasks that run meanwhile, the feed watcher and the sender,
    each restarted if it dies, each with its :class:`TaskState`."""

    def __init__(
        self, settings: Settings, announce: Callable[[str], None], *, poll: bool = False
    ) -> None:
        self._settings = settings
        self._announce = announce
        self._poll = poll
        self._started = False
        self._stack = AsyncExitStack()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._sender: Sender | None = None
        self._writer: GroupWriter | None = None
        self._tasks: dict[str, TaskState] = {}
        self._halt = asyncio.Event()
        # The roles only one process of a bot may hold at a time, while this one holds them
        # ("sender", "updates"): health and metrics show them.
        self.roles: set[str] = set()
        # Who this process is in the claims and leases it writes.
        self.holder = process_holder()

    @property
    def tasks(self) -> Mapping[str, TaskState]:
        """The long-running tasks by name (``watcher``, ``sender``…), and how each is doing."""
        return MappingProxyType(self._tasks)

    async def start(self, application: NewsbotApplication) -> None:
        """Open everything, then start watching feeds and sending."""
        import handlers
        from bot.delivery.deliver import AlertDelivery
        from bot.delivery.pacing import Pacing
        from bot.delivery.sender import Sender
        from bot.services import Services

        settings = self._settings
        topics = Topics()
        fanout = Fanout(
            topics,
            on_alert=self._wake_sender,
            edit_for=settings.story_edit_for,
            edit_most=settings.story_edit_chats,
        )
        core = await self._stack.enter_async_context(open_core(settings, fanout=fanout))
        if core.parse_pool is not None:
            # Start the parse workers now: the first breaking story must not wait for them.
            for _ in range(settings.parse_workers):
                core.parse_pool.submit(ready)
        async with core.db.sessions() as session:
            loaded = await topics.load(session)
            feeds, readers = await count_feeds_and_readers(session)
        log.info("following %d topics", loaded)
        deliver = AlertDelivery(
            application.bot,
            core.db,
            zone=settings.zone,
            markers=settings.breaking_markers,
            catalog=topics.catalog,
            paid=settings.paid_broadcasts,
        )
        self._writer = core.db.group_writer()
        self._sender = Sender(
            core.db,
            deliver,
            pacing=Pacing(per_second=settings.send_rate),
            stale_after=settings.stale_age,
            # While Telegram does not answer, getMe asks whether it does again: an alert
            # sent to find out would be left in doubt.
            probe=application.bot.get_me,
            holder=self.holder,
            edit=deliver.edit,
            edit_for=settings.story_edit_for,
        )
        application.bot_data.services = Services(
            db=core.db,
            topics=topics,
            ingestor=core.ingestor,
            admins=settings.admins,
            zone=settings.zone,
            markers=settings.breaking_markers,
            # An editor's alert is stored like a story's: its fan-out writes the rest.
            wake_sender=fanout.wake,
            writer=self._writer,
        )
        await handlers.publish_commands(application.bot, settings.admins)
        watcher = self._task_state("watcher", "the feed watcher")
        self._start_task(
            watcher, partial(core.ingestor.watch, tick=WATCH_TICK, report=watcher.report)
        )
        # Editors hear of feeds broken for long, and of their recovery (once, in any process).
        from bot.feeds.alarms import FeedAlarms

        alarms = FeedAlarms(
            core.db,
            settings.admins,
            application.bot.send_message,
            failing_after=settings.feed_alarm_after,
        )
        alarm_state = self._task_state("feed alarms", "the feed alarms")
        self._start_task(alarm_state, partial(alarms.run, report=alarm_state.report))
        sender = self._task_state("sender", "the sender")
        self._start_task(sender, partial(self._send, core.db, application.bot.id))
        # In every process: they take turns on an alert, and finish what a dead one left.
        expander = self._task_state("fanout", "the fan-out")
        self._start_task(expander, partial(fanout.run, core.db, report=expander.report))
        if settings.metrics_address is not None:
            from bot.health import HealthServer
            from bot.metrics import Observed

            assert self._sender is not None  # noqa: S101 - made above
            health = HealthServer(
                Observed(
                    db=core.db,
                    tasks=self.tasks,
                    roles=self.roles,
                    sends=self._sender.stats,
                    fetches=core.ingestor.stats,
                    holder=self.holder,
                )
            )
            await health.start(*settings.metrics_address)
            # Closed with the rest by close(), before the database it reads.
            self._stack.push_async_callback(health.stop)
        polling = await self._lead_updates(core.db, application) if self._poll else True
        self._started = True
        self._announce(
            _running_line(
                application.bot.username, feeds, readers, settings.webhook_url, standby=not polling
            )
        )

    async def stop(self, _application: NewsbotApplication) -> None:
        """Stop taking work: the sender finishes what is in flight, the watcher stops."""
        self._halt.set()
        if self._sender is not None:
            self._sender.stop()
        sending = self._running.get("sender")
        if sending is not None:  # asyncio.wait returns at the deadline, raising nothing
            await asyncio.wait({sending}, timeout=STOP_GRACE)
        for task in self._running.values():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("a background task had failed")
        self._running.clear()

    async def close(self, application: NewsbotApplication) -> None:
        """Close the fetchers and the database (stopping first if stopped while starting,
        when the Application skips ``post_stop``)."""
        await self.stop(application)
        if self._writer is not None:
            await self._writer.aclose()
        await self._stack.aclose()
        if self._started:
            self._announce(_("stopped: alerts in flight were sent or put back in the queue"))

    async def _lead_updates(self, db: Database, application: NewsbotApplication) -> bool:
        """Poll for updates while this process holds the bot's updates lock; whether it
        took the lock at once (False: another process polls, this one stands by)."""
        from bot.updates import LOCK_RETRY, UpdatesLeadership

        assert application.updater is not None  # noqa: S101 - ApplicationBuilder makes one
        leadership = UpdatesLeadership(
            db, application.updater, bot_id=application.bot.id, roles=self.roles
        )
        self._start_task(self._task_state("updates", "long polling"), leadership.run)
        # A free lock is taken in milliseconds; a held one is retried after LOCK_RETRY.
        return await leadership.leading_within(LOCK_RETRY)

    async def stop_updates(self) -> None:
        """Stop long polling, first thing on a stop: the Application must not be handed
        updates once it stops taking them."""
        polling = self._running.pop("updates", None)
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling

    def _wake_sender(self) -> None:
        if self._sender is not None:
            self._sender.wake()

    async def _send(self, db: Database, bot_id: int) -> None:
        assert self._sender is not None  # noqa: S101 - set by start
        # One sender per bot: a second process waits here and takes over if the first dies
        # (or loses the lock with its connection: this one then stops, and waits again).
        # The liveness lock, held first and throughout, tells another process's recovery
        # that this one's rows in flight are still being sent: it leaves them alone.
        async with (
            db.exclusive(liveness_lock(self.holder)),
            db.exclusive(f"newsbot-sender-{bot_id}"),
        ):
            self.roles.add("sender")
            try:
                await self._sender.run(report=self._tasks["sender"].report)
            finally:
                self.roles.discard("sender")

    def _task_state(self, name: str, label: str) -> TaskState:
        """The state of the task ``name`` (``label`` in the log), new at the first start."""
        return self._tasks.setdefault(name, TaskState(label))

    def _start_task(self, state: TaskState, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` as a supervised long-running task until the Runtime stops."""
        name = next(key for key, value in self._tasks.items() if value is state)
        self._running[name] = asyncio.create_task(self._supervise(state, run))

    async def _supervise(self, state: TaskState, run: Callable[[], Awaitable[None]]) -> None:
        """Run a task until it returns or the Runtime stops; if it dies, start it again."""
        while not self._halt.is_set():
            state.running = True
            lost_lock = False
            try:
                await run()
                return
            except Exception as exc:
                state.died(exc)
                lost_lock = isinstance(exc, LockLost)
            finally:
                state.running = False
            pause = min(RESTART_FIRST * 2.0 ** min(state.failures - 1, 10), RESTART_MOST)
            if lost_lock:
                pause = max(pause, LOST_LOCK_PAUSE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halt.wait(), pause)
            if not self._halt.is_set():
                state.restarts += 1


_RUNTIMES: WeakKeyDictionary[NewsbotApplication, Runtime] = WeakKeyDictionary()


def _one_line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:300]


def _running_line(
    username: str, feeds: int, readers: int, webhook_url: str | None, *, standby: bool = False
) -> str:
    if webhook_url:
        mode = _("webhook at {url}").format(url=webhook_url)
    else:
        # TRANSLATORS: another process of this bot polls; this one takes over if it stops.
        mode = _("long polling (standby)") if standby else _("long polling")
    return _("running as @{name}: {feeds}, {readers}, {mode}").format(
        name=username,
        feeds=ngettext("{count} feed", "{count} feeds", feeds).format(count=feeds),
        readers=ngettext("{count} reader", "{count} readers", readers).format(count=readers),
        mode=mode,
    )
