"""Running ``newsbot`` as operators do, for the end-to-end tests and the fan-out benchmark:
the console script as a process, pointed at a fake Bot API and a local feed server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import IO
from unittest import mock

from sqlalchemy import func, select

from bot.cli import main
from bot.text.topics import ResolvedTopic, load_catalog, resolve
from storage.db import Database
from storage.deliveries import CLAIMED, PENDING, SENDING
from storage.models import Chat, Delivery, Subscription
from storage.subscriptions import upsert_topic
from tests.fakebotapi import FakeBotAPI, SentMessage
from tests.feedserver import Item, make_rss

NEWSBOT = str(Path(sys.executable).with_name("newsbot"))
EDITOR = 7001
# How long a stopping bot may take: the sender's grace for requests in flight is 10 s.
STOP_TIMEOUT = 15.0
START_TIMEOUT = 20.0
ALERT_LABELS = ("عاجل |", "BREAKING |")


@dataclass(frozen=True)
class Result:
    """What a finished command printed and returned."""

    code: int
    out: str
    err: str


def bot_env(fake: FakeBotAPI, database_url: str, **variables: object) -> dict[str, str]:
    """The NEWSBOT_ variables a test bot runs with; keyword names are the part after NEWSBOT_."""
    env = {
        "NEWSBOT_TOKEN": fake.token,
        "NEWSBOT_API_URL": fake.base_url,
        "NEWSBOT_DATABASE_URL": database_url,
        "NEWSBOT_POLL_INTERVAL": "1",
        "NEWSBOT_PARSE_WORKERS": "0",
        "NEWSBOT_ADMINS": str(EDITOR),
        "NEWSBOT_TIMEZONE": "UTC",
    }
    env.update({f"NEWSBOT_{name.upper()}": str(value) for name, value in variables.items()})
    return env


def _process_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its NEWSBOT_ variables, plus ``env``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
    return clean | dict(env)


async def newsbot_command(*args: str, env: Mapping[str, str], cwd: Path) -> Result:
    """Run one ``newsbot`` command (``feeds add URL``…) as a process, to the end."""
    return await run_process(NEWSBOT, *args, env=env, cwd=cwd)


async def newsbot(*args: str, env: dict[str, str], cwd: Path | None = None) -> Result:
    """Run the console script's entry point in this process (fast), as the script would,
    with only the given NEWSBOT_ variables set."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with (
            mock.patch.dict(os.environ, clean | env, clear=True),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            return main(list(args))

    assert cwd is None or cwd.exists()
    code = await asyncio.to_thread(call)
    return Result(code, out.getvalue(), err.getvalue())


def one_line_error(result: Result) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


async def run_process(*argv: str, env: Mapping[str, str], cwd: Path) -> Result:
    """Run a program to the end with this environment's NEWSBOT_ variables replaced by
    ``env``; what it printed."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=_process_env(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def add_feed(url: str, *, env: Mapping[str, str], cwd: Path, breaking: bool = False) -> str:
    """``newsbot feeds add URL [--breaking]``; the line it printed."""
    result = await newsbot_command(
        "feeds", "add", url, *(["--breaking"] if breaking else []), env=env, cwd=cwd
    )
    assert result.code == 0, result.err
    return result.out.strip()


class BotProcess:
    """One ``newsbot run`` process; its output goes to files so a chatty bot never blocks."""

    def __init__(
        self,
        fake: FakeBotAPI,
        env: Mapping[str, str],
        directory: Path,
        *,
        command: str = NEWSBOT,
    ) -> None:
        self.fake = fake
        self.command = command
        self.env = dict(env)
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self._runs = 0
        self._stderr_path = directory / "newsbot.err"
        self._files: list[IO[bytes]] = []

    @property
    def stderr(self) -> str:
        """Everything the process (or its predecessors) wrote on stderr."""
        if not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.returncode is None

    async def spawn(self) -> asyncio.subprocess.Process:
        """Start ``newsbot run`` and return at once."""
        assert not self.running
        self._runs += 1
        stdout = (self.directory / f"newsbot-{self._runs}.out").open("ab")
        stderr = self._stderr_path.open("ab")
        self._files += [stdout, stderr]
        self.started_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            self.command,
            "run",
            env=_process_env(self.env),
            cwd=self.directory,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        return self.process

    async def start(self) -> None:
        """Start ``newsbot run`` and return once it is polling Telegram for updates."""
        # Long polling begins with deleteWebhook, once the services are up (post_init), then
        # getUpdates waits on the server.
        bootstraps = self.fake.calls["deleteWebhook"]
        process = await self.spawn()

        async def exited() -> None:
            await process.wait()

        waiter = asyncio.create_task(exited())
        try:
            await self.fake.wait_for(
                lambda: (
                    (self.fake.calls["deleteWebhook"] > bootstraps and self.fake.polls_waiting > 0)
                    or waiter.done()
                ),
                START_TIMEOUT,
                "newsbot run to poll for updates",
            )
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        if process.returncode is not None:
            raise AssertionError(f"newsbot run exited with {process.returncode}: {self.stderr}")

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> tuple[int, float]:  # noqa: ASYNC109
        """SIGTERM, as an operator's service manager stops it: (exit code, seconds taken)."""
        assert self.process is not None and self.running
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        self._close_files()
        return code, time.monotonic() - began

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-whatever it was doing."""
        assert self.process is not None and self.running
        self.process.kill()
        await self.process.wait()
        self._close_files()

    async def stop_cleanly(self) -> float:
        """SIGTERM; assert it exits 0 promptly, no traceback or error logged; the seconds."""
        code, seconds = await self.terminate()
        assert code == 0, self.stderr
        assert "Traceback" not in self.stderr and " ERROR " not in self.stderr, self.stderr
        return seconds

    def _close_files(self) -> None:
        for file in self._files:
            file.close()
        self._files.clear()


@asynccontextmanager
async def running_newsbot(
    fake: FakeBotAPI, env: Mapping[str, str], directory: Path, *meanwhile: Awaitable[object]
) -> AsyncIterator[BotProcess]:
    """``newsbot run`` for the duration of the block; stopped by SIGTERM at its end, which
    must end it with exit status 0, promptly and without a traceback.

    ``meanwhile`` (``add_feed(…)`` commands, say) run while the bot starts.
    """
    bot = BotProcess(fake, env, directory)
    try:
        await asyncio.gather(bot.start(), *meanwhile)
    except BaseException:
        if bot.running:
            await bot.kill()
        raise
    try:
        yield bot
    except BaseException:
        if bot.running:
            await bot.kill()
        raise
    if bot.running:
        await bot.stop_cleanly()


async def say(
    fake: FakeBotAPI,
    chat_id: int,
    text: str,
    *,
    replies: int = 1,
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline, as the fake's wait_for
    **kwargs: object,
) -> list[SentMessage]:
    """A reader sends ``text``; the ``replies`` new messages the chat then got."""
    before = len(fake.messages_to(chat_id))
    fake.send_text(chat_id, text, **kwargs)  # type: ignore[arg-type]
    messages = await fake.wait_for_messages(chat_id, before + replies, timeout)
    return messages[before:]


async def press(
    fake: FakeBotAPI,
    chat_id: int,
    message: SentMessage,
    data: str,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - as say
    user_id: int | None = None,
) -> None:
    """Press a button under a message and wait until the bot has answered the press."""
    answered = len(fake.callback_answers)
    fake.press_button(chat_id, message.message_id, data, user_id=user_id)
    await fake.wait_for(
        lambda: len(fake.callback_answers) > answered, timeout, "the button's answer"
    )


def is_alert(message: SentMessage) -> bool:
    """Whether a message is a breaking-news alert (not a reply, preview or list)."""
    return message.plain.startswith(ALERT_LABELS) and message.reply_markup is None


def alerts_to(fake: FakeBotAPI, chat_id: int) -> list[SentMessage]:
    """The alerts a chat received, oldest first."""
    return [message for message in fake.messages_to(chat_id) if is_alert(message)]


def alert_counts(fake: FakeBotAPI, chat_ids: Iterable[int]) -> dict[int, int]:
    """How many alerts each of these chats received."""
    return {chat_id: len(alerts_to(fake, chat_id)) for chat_id in chat_ids}


def rfc822(moment: datetime) -> str:
    """A date as RSS writes it."""
    return format_datetime(moment, usegmt=True)


def story(title: str, slug: str, *, age: timedelta = timedelta(), description: str = "") -> Item:
    """An RSS item published ``age`` ago, linked at news.example/``slug``."""
    return Item(
        title,
        f"https://news.example/{slug}",
        description=description,
        published=rfc822(datetime.now(UTC) - age),
    )


# Seven different events in Kursk, two days apart: seven stories, for paging search results.
KURSK_EVENTS = (
    "إجلاء المدنيين من القرى الحدودية",
    "انقطاع الكهرباء عن المستشفيات",
    "وصول قافلة مساعدات طبية",
    "إغلاق المدارس حتى إشعار آخر",
    "اجتماع حاكم المقاطعة مع رؤساء البلديات",
    "تعليق الرحلات في المطار المحلي",
    "افتتاح ملاجئ جديدة للنازحين",
)


def kursk_stories() -> list[Item]:
    """Seven items «كورسك: رقم N …», linked at news.example/kursk-N, each its own story."""
    return [
        story(f"كورسك: رقم {n} {event}", f"kursk-{n}", age=timedelta(days=2 * n))
        for n, event in enumerate(KURSK_EVENTS, start=1)
    ]


def feed(*items: Item, title: str = "وكالة الأنباء") -> str:
    """An RSS document with these items."""
    return make_rss(title, list(items))


def topic(phrase: str) -> ResolvedTopic:
    """What a reader typing ``phrase`` follows."""
    resolved = resolve(phrase, load_catalog())
    assert isinstance(resolved, ResolvedTopic), resolved
    return resolved


async def seed_followers(
    db: Database, chat_ids: Iterable[int], phrase: str, *, language: str = "ar"
) -> None:
    """Register private chats following ``phrase``, as /start and /follow would have."""
    followed = topic(phrase)
    ids = list(chat_ids)
    async with db.transaction() as session:
        stored = await upsert_topic(session, followed.key, followed.label)
        session.add_all(Chat(id=chat_id, kind="private", language=language) for chat_id in ids)
        await session.flush()
        session.add_all(Subscription(chat_id=chat_id, topic_id=stored.id) for chat_id in ids)


async def deliveries_in(db: Database, *states: str) -> dict[int, str]:
    """The state of each delivery (chat id → state), optionally only those in ``states``."""
    query = select(Delivery.chat_id, Delivery.state)
    if states:
        query = query.where(Delivery.state.in_(states))
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    return {row.chat_id: row.state for row in rows}


async def outbox_empty(db: Database) -> bool:
    """Whether no delivery is waiting or being sent."""
    async with db.sessions() as session:
        waiting = await session.scalar(
            select(func.count()).where(Delivery.state.in_((PENDING, CLAIMED, SENDING)))
        )
    return waiting == 0


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 - a deadline that fails saying what it waited for
    what: str = "",
) -> None:
    """Poll an async condition (checked every 0.1 s) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout} s")
        await asyncio.sleep(0.1)


async def settle(
    db: Database,
    feed_hits: Mapping[str, int],
    path: str,
    *,
    polls: int = 2,
    timeout: float = 15.0,  # noqa: ASYNC109 - a deadline
) -> None:
    """Wait until the bot has polled ``path`` ``polls`` more times and sent all it queued:
    whatever those polls would have alerted twice has then been sent."""
    # Polls of one feed never overlap: once the next one has begun, these have been stored.
    target = feed_hits[path] + polls + 1

    async def settled() -> bool:
        return feed_hits[path] >= target and await outbox_empty(db)

    await wait_until(settled, timeout=timeout, what=f"{polls} more polls of {path}")
