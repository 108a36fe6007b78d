"""The fake Bot API answers python-telegram-bot's real HTTP client the way Telegram does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from tests.fakebotapi import FakeBotAPI, parse_html

READER = 42
GROUP = -4001


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    """A fake Bot API server that knows one reader's private chat."""
    async with FakeBotAPI() as server:
        server.add_chat(READER, first_name="سارة")
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    """python-telegram-bot's real Bot, talking HTTP to the fake."""
    async with Bot(fake.token, base_url=fake.base_url) as client:
        yield client


@pytest.fixture
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB's timedelta retry_after: without it RetryAfter warns as it is built."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def test_get_me_answers_and_a_wrong_token_is_invalid(fake: FakeBotAPI, bot: Bot) -> None:
    """getMe returns the bot's user; a token the server does not know raises InvalidToken."""
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "NewsbotTestBot", True)
    with pytest.raises(InvalidToken):
        async with Bot("999:WRONG", base_url=fake.base_url):
            pass


async def test_unknown_method_is_not_found(fake: FakeBotAPI, bot: Bot) -> None:
    """A method the fake does not serve answers 404, which PTB reports as EndPointNotFound."""
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendNothing", api_kwargs={"chat_id": READER})


async def test_send_message_records_the_message_with_its_options(
    fake: FakeBotAPI, bot: Bot
) -> None:
    """sendMessage returns a Message with parsed entities and records every option sent."""
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("المزيد", callback_data="story:17")]])
    message = await bot.send_message(
        READER,
        "<b>عاجل</b>: زلزال &amp; تسونامي",
        parse_mode=ParseMode.HTML,
        disable_notification=True,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        reply_markup=keyboard,
    )

    assert message.text == "عاجل: زلزال & تسونامي"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 4)]
    assert message.reply_markup == keyboard
    [sent] = fake.messages_to(READER)
    assert sent.message_id == message.message_id
    assert sent.text == "<b>عاجل</b>: زلزال &amp; تسونامي"
    assert sent.plain == message.text
    assert sent.parse_mode == "HTML"
    assert sent.disable_notification is True
    assert sent.link_preview_options == {"is_disabled": True}
    assert sent.callback_data == ["story:17"]
    assert fake.message(READER, message.message_id)["text"] == message.text


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<script>alert(1)</script>", 'Unsupported start tag "script" at byte offset 0'),
        ("Tom & Jerry", 'Unescaped "&" at byte offset 4'),
        ("<b>bold <i>both</b></i>", 'expected "</i>", found "</b>"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ('<span class="x">x</span>', 'Tag "span" must have class "tg-spoiler"'),
    ],
)
async def test_html_that_telegram_cannot_parse_is_rejected(
    bot: Bot, html: str, reason: str
) -> None:
    """Unclosed, unknown or misnested tags and a bare "&" are "can't parse entities"."""
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities") as caught:
        await bot.send_message(READER, html, parse_mode=ParseMode.HTML)
    assert reason.lower() in caught.value.message.lower()


@pytest.mark.parametrize(
    ("html", "plain", "entities"),
    [
        ("&lt;b&gt; is not bold", "<b> is not bold", []),
        ('<a href="https://x">link</a>', "link", [("text_link", 0, 4, "https://x")]),
        ("&#1593;&#x627;&quot;", 'عا"', []),
        (
            '<pre><code class="language-python">x = 1</code></pre>',
            "x = 1",
            [("pre", 0, 5, "python")],
        ),
        (
            "<blockquote expandable>خبر</blockquote>",
            "خبر",
            [("expandable_blockquote", 0, 3, None)],
        ),
        ('<span class="tg-spoiler">سر</span>', "سر", [("spoiler", 0, 2, None)]),
    ],
)
async def test_html_telegram_accepts_is_parsed_into_entities(
    bot: Bot, html: str, plain: str, entities: list[tuple[str, int, int, str | None]]
) -> None:
    """Escaped text, links, numeric entities and Telegram's own tags parse as Telegram does."""
    message = await bot.send_message(READER, html, parse_mode=ParseMode.HTML)
    assert message.text == plain
    found = [(e.type, e.offset, e.length, e.url or e.language) for e in message.entities]
    assert found == entities


def test_parse_html_counts_offsets_in_utf16_units() -> None:
    """An emoji before a tag moves the entity's offset by two UTF-16 units."""
    plain, entities = parse_html("😀 <i>x</i>")
    assert plain == "😀 x"
    assert entities == [{"offset": 3, "length": 1, "type": "italic"}]


async def test_text_length_is_counted_after_parsing_in_utf16_units(bot: Bot) -> None:
    """4,096 Arabic letters pass, 4,097 characters do not, and an emoji counts as two."""
    await bot.send_message(READER, "ب" * 4096)
    await bot.send_message(READER, "<b>" + "ب" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    await bot.send_message(READER, "😀" * 2048)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(READER, "a" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(READER, "😀" * 2048 + "a")


async def test_empty_text_is_rejected(bot: Bot) -> None:
    """Text that is empty once tags and surrounding spaces are gone is "message text is empty"."""
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(READER, "<b> </b>\n", parse_mode=ParseMode.HTML)


async def test_callback_data_is_limited_to_64_bytes(fake: FakeBotAPI, bot: Bot) -> None:
    """32 Arabic letters (64 bytes) fit in callback_data; one more byte is BUTTON_DATA_INVALID."""
    fits = "ع" * 32
    await bot.send_message(
        READER,
        "x",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data=fits)]]),
    )
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("no", callback_data=fits + "a")]])
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(READER, "x", reply_markup=too_long)
    assert len(fake.sent) == 1


async def test_an_unknown_chat_is_not_found(bot: Bot) -> None:
    """A chat that never wrote to the bot and was not registered is "chat not found"."""
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(777, "hello")


async def test_a_blocked_or_deactivated_reader_is_forbidden(fake: FakeBotAPI, bot: Bot) -> None:
    """block() and deactivate() make sends raise Forbidden with Telegram's descriptions."""
    fake.block(READER)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(READER, "hello")
    fake.deactivate(READER)
    with pytest.raises(Forbidden, match=r"(?i)user is deactivated"):
        await bot.send_message(READER, "hello")
    fake.unblock(READER)
    await bot.send_message(READER, "hello")
    assert fake.texts_to(READER) == ["hello"]


@pytest.mark.usefixtures("ptb_timedelta")
async def test_flood_limit_raises_retry_after(fake: FakeBotAPI, bot: Bot) -> None:
    """Past one message a second to a chat the fake answers 429 and PTB raises RetryAfter."""
    fake.rate_limit(per_chat_per_second=1)
    await bot.send_message(READER, "first")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(READER, "second")
    assert caught.value.retry_after == timedelta(seconds=1)
    [flood] = fake.too_many
    assert (flood.chat_id, flood.scope, flood.retry_after) == (READER, "chat", 1)
    assert fake.texts_to(READER) == ["first"]


@pytest.mark.usefixtures("ptb_timedelta")
async def test_global_and_group_limits_use_sliding_windows(fake: FakeBotAPI, bot: Bot) -> None:
    """The overall per-second and the per-group per-minute windows each answer 429 when full."""
    fake.rate_limit(per_second=3, per_chat_per_second=None, per_group_per_minute=2)
    fake.add_chats(range(1, 5))
    for chat_id in range(1, 4):
        await bot.send_message(chat_id, "x")
    with pytest.raises(RetryAfter):
        await bot.send_message(4, "x")
    assert fake.max_per_second() == 3

    fake.rate_limit(per_second=None, per_chat_per_second=None, per_group_per_minute=2)
    fake.add_chat(GROUP)
    await bot.send_message(GROUP, "1")
    await bot.send_message(GROUP, "2")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP, "3")
    assert caught.value.retry_after in (timedelta(seconds=59), timedelta(seconds=60))
    assert [t.scope for t in fake.too_many] == ["global", "group"]


@pytest.mark.usefixtures("ptb_timedelta")
async def test_fail_next_injects_one_error(fake: FakeBotAPI, bot: Bot) -> None:
    """fail_next answers the next call with the chosen error, then the method works again."""
    fake.fail_next("sendMessage", 429, retry_after=7)
    fake.fail_next("sendMessage", 502)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(READER, "x")
    assert caught.value.retry_after == timedelta(seconds=7)
    with pytest.raises(NetworkError, match=r"(?i)Bad Gateway"):
        await bot.send_message(READER, "x")
    await bot.send_message(READER, "x")
    assert [t.scope for t in fake.too_many] == ["injected"]
    assert len(fake.sent) == 1


async def test_a_migrated_group_raises_chat_migrated(fake: FakeBotAPI, bot: Bot) -> None:
    """After migrate_group, sends to the old id raise ChatMigrated with the supergroup's id."""
    fake.add_chat(GROUP, title="غرفة الأخبار")
    new_id = fake.migrate_group(GROUP)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(GROUP, "hello")
    assert caught.value.new_chat_id == new_id
    await bot.send_message(new_id, "hello")
    updates = await bot.get_updates(timeout=0)
    assert [u.message.migrate_to_chat_id for u in updates if u.message] == [new_id, None]


async def test_a_read_timeout_still_delivers(fake: FakeBotAPI) -> None:
    """A slow answer makes the client time out, yet the message was delivered, as on Telegram."""
    fake.delay("sendMessage", 2.0, times=1)
    request = HTTPXRequest(read_timeout=0.2)
    async with Bot(fake.token, base_url=fake.base_url, request=request) as slow_bot:
        with pytest.raises(TimedOut):
            await slow_bot.send_message(READER, "قد يصل مرتين")
        assert fake.texts_to(READER) == ["قد يصل مرتين"]
        await slow_bot.send_message(READER, "fast again")


async def test_get_updates_long_polls_until_an_update_comes(fake: FakeBotAPI, bot: Bot) -> None:
    """A waiting getUpdates returns as soon as an update is injected, well within its timeout."""
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await fake.wait_for(lambda: fake.polls_waiting == 1, what="a waiting getUpdates")
    update_id = fake.send_text(READER, "/start")
    updates = await poll
    assert time.monotonic() - started < 5
    [update] = updates
    assert update.update_id == update_id
    assert update.message is not None
    assert update.message.text == "/start"
    assert update.message.from_user is not None
    assert update.message.from_user.language_code == "ar"
    assert [(e.type, e.offset, e.length) for e in update.message.entities] == [
        ("bot_command", 0, 6)
    ]


async def test_get_updates_returns_nothing_after_its_timeout(bot: Bot) -> None:
    """With no update, getUpdates waits out its timeout and returns an empty list."""
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 3


async def test_confirmed_updates_are_not_returned_again(fake: FakeBotAPI, bot: Bot) -> None:
    """Updates come back until an offset past them confirms them."""
    first = fake.send_text(READER, "one")
    second = fake.send_text(READER, "two")
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=first + 1, timeout=0)] == [second]
    assert await bot.get_updates(offset=second + 1, timeout=0) == ()
    assert fake.pending_updates == 0


async def test_allowed_updates_filters_and_a_second_poller_conflicts(
    fake: FakeBotAPI, bot: Bot
) -> None:
    """allowed_updates drops other update types; a newer getUpdates ends the waiting one."""
    fake.send_text(READER, "ignored")
    fake.member_update(READER, "kicked")
    updates = await bot.get_updates(timeout=0, allowed_updates=["my_chat_member"])
    [update] = updates
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    with pytest.raises(Forbidden, match=r"(?i)blocked"):
        await bot.send_message(READER, "x")

    waiting = asyncio.create_task(bot.get_updates(offset=update.update_id + 1, timeout=10))
    await fake.wait_for(lambda: fake.polls_waiting == 1, what="a waiting getUpdates")
    async with Bot(fake.token, base_url=fake.base_url) as second_instance:
        assert await second_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates"):
        await waiting


async def test_a_pressed_button_arrives_as_a_callback_query(fake: FakeBotAPI, bot: Bot) -> None:
    """press_button queues a callback_query on a bot message; answers and edits are recorded."""
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("تابع", callback_data="follow:3")]])
    message = await bot.send_message(READER, "موضوع", reply_markup=keyboard)
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(READER, message.message_id, "follow:4")
    fake.press_button(READER, message.message_id, "follow:3")
    [update] = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert query is not None
    assert query.data == "follow:3"
    assert query.message is not None
    assert query.message.message_id == message.message_id
    assert await query.answer("تمت المتابعة")
    edited = await bot.edit_message_text("موضوع ✓", chat_id=READER, message_id=message.message_id)
    assert not isinstance(edited, bool)
    assert edited.text == "موضوع ✓"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("موضوع ✓", chat_id=READER, message_id=message.message_id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer()
    assert [a.text for a in fake.callback_answers] == ["تمت المتابعة"]
    assert [(e.method, e.plain) for e in fake.edits] == [("editMessageText", "موضوع ✓")]


async def test_commands_and_admins_are_served(fake: FakeBotAPI, bot: Bot) -> None:
    """setMyCommands is kept per language and scope; admins are configurable per group."""
    await bot.set_my_commands([BotCommand("start", "ابدأ")], language_code="ar")
    await bot.set_my_commands(
        [BotCommand("alerts", "Alerts")], scope=BotCommandScopeAllGroupChats()
    )
    assert fake.commands("ar") == [{"command": "start", "description": "ابدأ"}]
    assert fake.commands(scope={"type": "all_group_chats"})[0]["command"] == "alerts"
    assert [c.command for c in await bot.get_my_commands(language_code="ar")] == ["start"]
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand("Start-Now", "x")])

    fake.add_chat(GROUP, title="المحررون")
    fake.set_admins(GROUP, [7], creator=5)
    assert (await bot.get_chat_member(GROUP, 7)).status == "administrator"
    assert (await bot.get_chat_member(GROUP, 5)).status == "creator"
    assert (await bot.get_chat_member(GROUP, 9)).status == "member"
    assert {m.user.id for m in await bot.get_chat_administrators(GROUP)} == {5, 7}
    chat = await bot.get_chat(GROUP)
    assert (chat.id, chat.title) == (GROUP, "المحررون")


async def test_an_application_answers_start_through_the_whole_loop(fake: FakeBotAPI) -> None:
    """A real Application polling the fake answers an injected /start and /start@bot in a group."""

    async def start(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("أهلاً بك")

    app: Application = ApplicationBuilder().token(fake.token).base_url(fake.base_url).build()  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", start))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        fake.send_text(READER, "/start")
        fake.send_text(GROUP, "/start@NewsbotTestBot", chat_type="group", user_id=7)
        fake.send_text(GROUP, "/start@SomeOtherBot", chat_type="group", user_id=7)
        [reply] = await fake.wait_for_messages(READER, 1)
        [group_reply] = await fake.wait_for_messages(GROUP, 1)
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert reply.plain == "أهلاً بك"
    assert group_reply.reply_to_message_id is not None
    assert fake.calls["deleteWebhook"] == 1
    assert fake.pending_updates == 0
    assert len(fake.messages_to(GROUP)) == 1
