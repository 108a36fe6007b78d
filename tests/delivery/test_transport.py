"""AiohttpRequest behaves as python-telegram-bot's HTTPXRequest, against the fake Bot API."""

from __future__ import annotations

import asyncio
import socket
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from bot.delivery.transport import AiohttpRequest
from tests.fakebotapi import DEFAULT_TOKEN, FakeBotAPI

READER = 42
NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)  # as bot/delivery/sender.py


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API server that knows one reader's private chat."""
    async with FakeBotAPI() as server:
        server.add_chat(READER, first_name="سارة")
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    """PTB's real Bot on the fake, both of its requests over aiohttp, with short timeouts."""
    async with Bot(
        fake.token,
        base_url=fake.base_url,
        request=AiohttpRequest(read_timeout=0.5),
        get_updates_request=AiohttpRequest(read_timeout=0.5),
    ) as client:
        yield client


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    yield port


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so that a new connection hangs in SYN_SENT."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with suppress(BlockingIOError):  # connecting goes on in the background
                    filler.connect(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


def described(exc: BaseException) -> str:
    """The traceback a log would show, with every chained cause."""
    return "".join(traceback.format_exception(exc))


async def test_get_me_and_send_message_reach_the_server(fake: FakeBotAPI, bot: Bot) -> None:
    """getMe answers and sendMessage delivers the text with its options, Arabic intact."""
    me = await bot.get_me()
    assert (me.id, me.username) == (123456, "NewsbotTestBot")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("المزيد", callback_data="topic:7")]])
    message = await bot.send_message(
        READER, "<b>عاجل</b> خبر &amp; تفاصيل", parse_mode=ParseMode.HTML, reply_markup=keyboard
    )
    [sent] = fake.messages_to(READER)
    assert (sent.plain, sent.parse_mode, sent.callback_data) == (
        "عاجل خبر & تفاصيل",
        "HTML",
        ["topic:7"],
    )
    assert message.message_id == sent.message_id


async def test_the_server_receives_what_httpxrequest_would_send(fake: FakeBotAPI) -> None:
    """Every parameter arrives at the server exactly as PTB's default transport sends it."""
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("رابط", url="https://example.com/ع")]])
    for request in (HTTPXRequest(), AiohttpRequest()):
        async with Bot(fake.token, base_url=fake.base_url, request=request) as client:
            await client.send_message(
                READER,
                "نص فيه + و & و = و %",
                reply_markup=keyboard,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                disable_notification=True,
            )
    via_httpx, via_aiohttp = (
        call.params for call in fake.requests if call.method == "sendMessage"
    )
    assert via_aiohttp == via_httpx


async def test_files_go_as_multipart_with_their_utf8_names(fake: FakeBotAPI, bot: Bot) -> None:
    """A request with a file is multipart: form fields and the file name arrive unmangled."""
    certificate = InputFile(b"-----BEGIN CERTIFICATE-----\n", filename="شهادة.pem")
    await bot.set_webhook(
        "https://example.com/hook",
        certificate=certificate,
        secret_token="s3",  # noqa: S106 - a test value
    )
    [call] = [call for call in fake.requests if call.method == "setWebhook"]
    assert call.params["certificate"] == "شهادة.pem"
    assert fake.webhook is not None
    assert (fake.webhook["url"], fake.webhook["secret_token"]) == (
        "https://example.com/hook",
        "s3",
    )


async def test_429_raises_retry_after(fake: FakeBotAPI, bot: Bot) -> None:
    """A 429 answer raises RetryAfter carrying Telegram's retry_after."""
    fake.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(READER, "عاجل")
    assert caught.value.retry_after == timedelta(seconds=3)


async def test_403_raises_forbidden(fake: FakeBotAPI, bot: Bot) -> None:
    """A 403 answer (the reader blocked the bot) raises Forbidden."""
    fake.block(READER)
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(READER, "عاجل")


async def test_a_late_answer_times_out_and_may_have_been_delivered(
    fake: FakeBotAPI, bot: Bot
) -> None:
    """An answer slower than read_timeout raises TimedOut not marked as never sent."""
    fake.delay("sendMessage", 2.0, times=1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimedOut) as caught:
        await bot.send_message(READER, "عاجل")
    assert asyncio.get_running_loop().time() - started < 1.5
    assert not isinstance(caught.value.__cause__, NEVER_SENT)
    assert fake.texts_to(READER) == ["عاجل"]  # Telegram had it: a resend would duplicate it


async def test_a_refused_connection_is_marked_never_sent() -> None:
    """A refused connection raises NetworkError chained from httpx.ConnectError."""
    request = AiohttpRequest()
    with closed_port() as port:
        bot = Bot(DEFAULT_TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request)
        async with request:  # not the Bot: initialising it would call getMe
            with pytest.raises(NetworkError) as caught:
                await bot.send_message(READER, "عاجل")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert DEFAULT_TOKEN not in described(caught.value)


async def test_a_connect_timeout_is_marked_never_sent_without_the_token() -> None:
    """A connection that never opens raises TimedOut from httpx.ConnectTimeout; no token shown."""
    request = AiohttpRequest(connect_timeout=0.3)
    with unanswered_port() as port:
        bot = Bot(DEFAULT_TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request)
        async with request:  # not the Bot: initialising it would call getMe
            with pytest.raises(TimedOut) as caught:
                await bot.send_message(READER, "عاجل")
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)
    assert DEFAULT_TOKEN not in described(caught.value)


async def test_a_full_pool_times_out_before_sending(fake: FakeBotAPI) -> None:
    """With every connection busy past pool_timeout, TimedOut from httpx.PoolTimeout, unsent."""
    fake.delay("sendMessage", 1.0, times=1)
    request = AiohttpRequest(connection_pool_size=1, pool_timeout=0.2, read_timeout=3)
    async with Bot(fake.token, base_url=fake.base_url, request=request) as bot:
        first = asyncio.create_task(bot.send_message(READER, "الأول"))
        await fake.wait_for_call("sendMessage")
        with pytest.raises(TimedOut, match="Pool timeout") as caught:
            await bot.send_message(READER, "الثاني")
        await first
    assert isinstance(caught.value.__cause__, httpx.PoolTimeout)
    assert fake.texts_to(READER) == ["الأول"]


async def test_long_polling_waits_past_the_default_read_timeout(
    fake: FakeBotAPI, bot: Bot
) -> None:
    """getUpdates(timeout=1) outlasts read_timeout=0.5 and returns a message sent meanwhile."""
    assert await bot.get_updates(timeout=1) == ()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for(lambda: fake.polls_waiting == 1)
    fake.send_text(READER, "مرحبا")
    [update] = await poll
    assert update.message is not None
    assert update.message.text == "مرحبا"


async def test_initialize_and_shutdown_may_repeat() -> None:
    """Shutdown before initialize, a second initialize or shutdown, and reopening all work."""
    request = AiohttpRequest()
    await request.shutdown()
    await request.initialize()
    await request.initialize()
    await request.shutdown()
    await request.shutdown()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:9/bot", "POST")
    async with FakeBotAPI() as fake, Bot(fake.token, base_url=fake.base_url, request=request):
        pass  # initialising the Bot reopens the request and calls getMe through it
    assert fake.calls["getMe"] == 1
