"""A fake Telegram Bot API server for tests and benchmarks: real HTTP over loopback, no mocks.

python-telegram-bot (or the ``newsbot`` process) talks to it through its configured base URL
exactly as it talks to Telegram; tests inject updates as a reader would act, switch on
Telegram's failure modes, and read back what the bot sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

JSON = dict[str, Any]
Handler = Callable[[JSON], Awaitable[Any]]

DEFAULT_TOKEN = "123456:TEST-TOKEN"  # noqa: S105 - the fake server's own, not a secret
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
DEFAULT_GROUP_USER = 1001  # who speaks in a group when a test does not say
# The sender Telegram shows for a group's anonymous admins.
ANONYMOUS_ADMIN = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}

# The update types Telegram sends when allowed_updates is empty or was never set.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_FORBIDDEN_KICKED = {
    "private": "Forbidden: bot was blocked by the user",
    "group": "Forbidden: bot was kicked from the group chat",
    "supergroup": "Forbidden: bot was kicked from the supergroup chat",
    "channel": "Forbidden: bot was kicked from the channel chat",
}
_FORBIDDEN_LEFT = {
    "private": "Forbidden: bot was blocked by the user",
    "group": "Forbidden: bot is not a member of the group chat",
    "supergroup": "Forbidden: bot is not a member of the supergroup chat",
    "channel": "Forbidden: bot is not a member of the channel chat",
}
_STATUS_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
# TDLib's bot command pattern: /command (1-64) with an optional @username (3-32).
_BOT_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


# ----------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the bot sent, as Telegram accepted it."""

    chat_id: int
    message_id: int
    text: str  # as the bot sent it, markup included
    plain: str  # what the reader sees, after entity parsing
    parse_mode: str | None
    entities: list[JSON]
    reply_markup: JSON | None
    disable_notification: bool
    link_preview_options: JSON | None
    message_thread_id: int | None
    reply_to_message_id: int | None
    at: float  # time.monotonic() when the server accepted it
    date: int  # Unix time, as in the Message
    params: JSON  # every parameter, as received

    @property
    def callback_data(self) -> list[str]:
        """The callback_data of every inline button, row by row."""
        return _callback_data(self.reply_markup)


@dataclass(frozen=True, slots=True)
class Edit:
    """One editMessageText or editMessageReplyMarkup the bot made."""

    method: str
    chat_id: int | None
    message_id: int | None
    inline_message_id: str | None
    text: str | None
    plain: str | None
    parse_mode: str | None
    reply_markup: JSON | None
    at: float


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    """One answerCallbackQuery."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    at: float


@dataclass(frozen=True, slots=True)
class TooMany:
    """One 429 answered: when, to what, and why."""

    at: float
    method: str
    chat_id: int | None
    retry_after: int
    scope: Literal["global", "chat", "group", "injected"]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request the server answered."""

    method: str
    params: JSON
    status: int
    at: float


# ----------------------------------------------------------------------------------------
# Internal state


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass(slots=True)
class _Chat:
    id: int
    type: str
    title: str | None = None
    first_name: str | None = None
    username: str | None = None
    forbidden: str | None = None  # the 403 description, when the bot may not write here
    migrated_to: int | None = None
    bot_status: str = "member"
    admins: dict[int, str] = field(default_factory=dict)  # user id -> administrator/creator

    def json(self) -> JSON:
        chat: JSON = {"id": self.id, "type": self.type}
        if self.type == "private":
            chat["first_name"] = self.first_name or f"User {self.id}"
        else:
            chat["title"] = self.title or f"Chat {self.id}"
        if self.username:
            chat["username"] = self.username
        return chat


@dataclass(slots=True)
class _Failure:
    error: ApiError
    times: int
    chat_id: int | None
    deliver: bool


@dataclass(slots=True)
class _Delay:
    seconds: float
    times: int | None


class _Signal:
    """Wakes every waiter each time something changes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seconds: float) -> None:
        event = self._event
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass


class _RateLimiter:
    """Telegram's flood limits as exact sliding windows over accepted sends."""

    def __init__(
        self,
        per_second: int | None,
        per_chat_per_second: int | None,
        per_group_per_minute: int | None,
        retry_after: int | None,
        paid_per_second: int | None = 1000,
    ) -> None:
        self.per_second = per_second
        self.paid_per_second = paid_per_second
        self.per_chat_per_second = per_chat_per_second
        self.per_group_per_minute = per_group_per_minute
        self.retry_after = retry_after
        self._global: deque[float] = deque()
        self._chat: dict[int, deque[float]] = {}
        self._group: dict[int, deque[float]] = {}

    def check(
        self, chat: _Chat, now: float, *, paid: bool = False
    ) -> tuple[Literal["global", "chat", "group"], int]:
        """The scope and retry_after of the first limit this send would exceed (0: none); a
        paid broadcast (allow_paid_broadcast) has the paid overall limit, not the free one."""
        checks: list[tuple[Literal["global", "chat", "group"], deque[float], int | None, float]]
        checks = [
            ("global", self._global, self.paid_per_second if paid else self.per_second, 1.0),
            ("chat", self._chat.setdefault(chat.id, deque()), self.per_chat_per_second, 1.0),
        ]
        if chat.type in ("group", "supergroup"):
            window = self._group.setdefault(chat.id, deque())
            checks.append(("group", window, self.per_group_per_minute, 60.0))
        for scope, window, limit, span in checks:
            while window and window[0] <= now - span:
                window.popleft()
            if limit is not None and len(window) >= limit:
                wait = window[-limit] + span - now
                return scope, self.retry_after or max(1, math.ceil(wait))
        return "global", 0

    def record(self, chat: _Chat, now: float) -> None:
        self._global.append(now)
        self._chat.setdefault(chat.id, deque()).append(now)
        if chat.type in ("group", "supergroup"):
            self._group.setdefault(chat.id, deque()).append(now)


# ----------------------------------------------------------------------------------------
# Text: Telegram's HTML parse mode and length rules


def most_within(times: list[float], seconds: float) -> int:
    """The most of these (sorted) moments inside any window of ``seconds`` (sliding)."""
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _decode_entity(s: str, pos: int) -> tuple[int, int]:
    """TDLib's decode_html_entity: (code point, position after it), or (0, pos)."""
    end = pos + 1
    code = 0
    if s[pos + 1] == "#":
        end += 1
        if s[pos + 2] == "x":
            end += 1
            while s[end] in "0123456789abcdefABCDEF":
                code = code * 16 + int(s[end], 16)
                end += 1
        else:
            while s[end] in "0123456789":
                code = code * 10 + int(s[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while s[end].isascii() and s[end].isalpha():
            end += 1
        code = {"lt": 60, "gt": 62, "amp": 38, "quot": 34}.get(s[pos + 1 : end], 0)
        if code == 0:
            return 0, pos
    if s[end] == ";":
        end += 1
    return code, end


_SPECIAL = re.compile("[<&]")
_SPACES = frozenset(" \t\r\n\v\0")
_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[JSON]]:
    """Telegram's HTML parse mode (a port of TDLib's parse_html): (plain text, entities).

    Raises ApiError with Telegram's "can't parse entities" descriptions. With ``strict``, a
    "&" that starts no known entity is refused too: Telegram keeps it as text, but the Bot
    API documentation requires escaping it, and a bot that forgets to escape feed text
    would otherwise pass tests and then mangle a headline containing "&lt".
    """

    def fail(reason: str) -> ApiError:
        return _bad(f"can't parse entities: {reason}")

    s = text + "\0\0"
    size = len(text)
    out: list[str] = []
    entities: list[JSON] = []
    stack: list[tuple[str, str, int, int]] = []  # tag, argument, utf16 offset, len(out)
    utf16 = 0
    surrogate = False
    i = 0
    while i < size:
        c = s[i]
        if c == "&":
            code, after = _decode_entity(s, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                surrogate = surrogate or 0xD800 <= code <= 0xDFFF
                out.append(chr(code))
                i = after
                continue
            if strict:
                raise fail(
                    f'Unescaped "&" at byte offset {_byte_offset(text, i)} '
                    "(Telegram keeps it as text; escape it as &amp;)"
                )
        if c != "<":
            # Copy the run of plain text up to the next "<" or "&" in one go.
            special = _SPECIAL.search(text, i + 1)
            end = special.start() if special else size
            out.append(text[i:end])
            utf16 += utf16_length(out[-1])
            i = end
            continue
        begin = i
        i += 1
        if s[i] != "/":
            while s[i] not in _SPACES and s[i] != ">":
                i += 1
            if s[i] == "\0":
                raise fail(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            tag = s[begin + 1 : i].lower()
            if tag not in _TAGS:
                raise fail(
                    f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            argument = ""
            while s[i] != ">":
                while s[i] != "\0" and s[i] in _SPACES:
                    i += 1
                if s[i] == ">":
                    break
                name_begin = i
                while s[i] not in _SPACES and s[i] != "=" and s[i] != ">":
                    i += 1
                name = s[name_begin:i]
                if not name:
                    raise fail(
                        f'Empty attribute name in the tag "{tag}" at byte offset '
                        f"{_byte_offset(text, begin)}"
                    )
                while s[i] != "\0" and s[i] in _SPACES:
                    i += 1
                if s[i] != "=":
                    if tag == "blockquote" and name == "expandable":
                        argument = "expandable"
                        continue
                    raise fail(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                i += 1
                while s[i] != "\0" and s[i] in _SPACES:
                    i += 1
                if s[i] == "\0":
                    raise fail(
                        f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                if s[i] not in "'\"":
                    token_begin = i
                    while (s[i].isascii() and s[i].isalnum()) or s[i] in ".-":
                        i += 1
                    value = s[token_begin:i].lower()
                    if s[i] not in _SPACES and s[i] != ">":
                        raise fail(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = s[i]
                    i += 1
                    chars: list[str] = []
                    while s[i] != quote and s[i] != "\0":
                        if s[i] == "&":
                            code, after = _decode_entity(s, i)
                            if code:
                                chars.append(chr(code))
                                i = after
                                continue
                            if strict:
                                raise fail(
                                    f'Unescaped "&" at byte offset {_byte_offset(text, i)} '
                                    "(Telegram keeps it as text; escape it as &amp;)"
                                )
                        chars.append(s[i])
                        i += 1
                    if s[i] == quote:
                        i += 1
                    value = "".join(chars)
                if s[i] == "\0":
                    raise fail(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise fail(
                    'Tag "span" must have class "tg-spoiler" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            stack.append((tag, argument, utf16, len(out)))
        else:
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            while s[i] not in _SPACES and s[i] != ">":
                i += 1
            end_tag = s[begin + 2 : i].lower()
            while s[i] != "\0" and s[i] in _SPACES:
                i += 1
            if s[i] != ">":
                raise fail(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            tag, argument, offset, out_at = stack.pop()
            if end_tag and end_tag != tag:
                raise fail(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{end_tag}>"'
                )
            if utf16 > offset:
                entity = _html_entity(tag, argument, offset, utf16 - offset, out, out_at, entities)
                if entity is not None:
                    entities.append(entity)
        i += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    if surrogate:
        raise fail(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        )
    for entity in entities:
        entity.pop("_argument", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _html_entity(
    tag: str,
    argument: str,
    offset: int,
    length: int,
    out: list[str],
    out_at: int,
    entities: list[JSON],
) -> JSON | None:
    """The entity a closed tag makes, or None when it merged into the previous one."""
    entity: JSON = {"offset": offset, "length": length}
    # <pre><code class="language-x"> (either nesting) makes one pre entity with a language.
    previous: JSON = entities[-1] if entities else {}
    same_span = previous.get("offset") == offset and previous.get("length") == length
    if tag in _SIMPLE_ENTITIES:
        entity["type"] = _SIMPLE_ENTITIES[tag]
    elif tag == "tg-emoji":
        if not argument.isdigit() or int(argument) == 0:
            raise _bad("can't parse entities: Invalid custom emoji identifier specified")
        entity.update(type="custom_emoji", custom_emoji_id=argument)
    elif tag == "a":
        url = argument or "".join(out[out_at:])
        if not url:
            return None
        entity.update(type="text_link", url=url)
    elif tag == "pre":
        if same_span and previous["type"] == "code" and previous.get("_argument"):
            previous.update(type="pre", language=previous.pop("_argument"))
            return None
        entity["type"] = "pre"
    elif tag == "code":
        if same_span and previous["type"] == "pre" and argument:
            previous["language"] = argument
            return None
        entity["type"] = "code"
        if argument:
            entity["_argument"] = argument
    else:  # blockquote
        entity["type"] = "expandable_blockquote" if argument else "blockquote"
    return entity


def _strip(plain: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Drop leading and trailing whitespace as Telegram does, moving entities with the text."""
    stripped = plain.strip()
    if stripped == plain:
        return plain, entities
    if not stripped:
        return "", []
    shift = utf16_length(plain[: len(plain) - len(plain.lstrip())])
    total = utf16_length(stripped)
    kept: list[JSON] = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def _callback_data(markup: JSON | None) -> list[str]:
    if not markup:
        return []
    return [
        button["callback_data"]
        for row in markup.get("inline_keyboard") or []
        for button in row
        if isinstance(button, dict) and isinstance(button.get("callback_data"), str)
    ]


def _check_reply_markup(markup: object) -> None:
    """Validate an inline keyboard as Telegram does (other markups pass as they are)."""
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise _bad("object expected as reply markup")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return
    if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
        raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in keyboard:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad("can't parse inline keyboard button: InlineKeyboardButton expected")
            if "callback_data" in button:
                data = button["callback_data"]
                size = len(data.encode("utf-8")) if isinstance(data, str) else 0
                if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad("BUTTON_DATA_INVALID")
            elif not any(action in button for action in _BUTTON_ACTIONS):
                raise _bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )


# ----------------------------------------------------------------------------------------
# Parameters as they arrive (form fields are strings; nested values are JSON strings)


def _opt_str(params: JSON, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _opt_int(params: JSON, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _opt_float(params: JSON, name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _flag(params: JSON, name: str) -> bool:
    return params.get(name) in (True, 1, "true", "True", "1")


def _opt_json(params: JSON, name: str) -> Any:
    value = params.get(name)
    if not isinstance(value, str):
        return value
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise _bad(f"can't parse {name} JSON object") from None


# ----------------------------------------------------------------------------------------
# The server


class FakeBotAPI:
    """A Bot API server on 127.0.0.1 (ephemeral port) that answers like Telegram.

    Use as ``async with FakeBotAPI() as fake:`` and point the bot at ``fake.base_url``.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "NewsbotTestBot",
        bot_name: str = "Newsbot",
        validate: bool = True,
        strict_html: bool = True,
        length_unit: Literal["utf16", "codepoints"] = "utf16",
        any_chat: bool = False,
        record_requests: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.validate = validate
        self.strict_html = strict_html
        self.length_unit = length_unit
        self.any_chat = any_chat
        self.record_requests = record_requests
        self.host = host
        self.port = port

        # What the bot did.
        self.sent: list[SentMessage] = []
        self.edits: list[Edit] = []
        self.deleted: list[tuple[int, int]] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.too_many: list[TooMany] = []
        self.requests: list[ApiCall] = []
        self.calls: Counter[str] = Counter()
        self.webhook: JSON | None = None
        self.webhooks: list[JSON] = []
        self._by_chat: dict[int, list[SentMessage]] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}

        # The world the bot lives in.
        self._chats: dict[int, _Chat] = {}
        self._usernames: dict[str, int] = {}
        self._users: dict[int, JSON] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._next_message_id: dict[int, int] = {}
        self._open_queries: dict[str, tuple[int, int]] = {}
        self._query_ids = itertools.count(1)

        # Updates for getUpdates.
        self._updates: deque[JSON] = deque()
        self._next_update_id = 1
        # Every update injected, by id: what a test delivers again, as Telegram may.
        self.injected: dict[int, JSON] = {}
        self._allowed_updates: frozenset[str] | None = None
        self._poller: object | None = None
        self.polls_waiting = 0  # getUpdates requests being answered right now
        # getUpdates answered 409 Conflict: another poller or a webhook (several processes
        # that all poll make a storm of these).
        self.poll_conflicts = 0

        # Failure switches.
        self._limiter: _RateLimiter | None = None
        self._limit_edits = False
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, _Delay] = {}

        self._changed = _Signal()
        self._new_update = _Signal()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in self._handlers().items():
            self._methods[name.lower()] = (name, handler)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeBotAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        # Wake long polls and slow answers so the server shuts down at once.
        self._closing.set()
        self._new_update.notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as NEWSBOT_API_URL or python-telegram-bot's ``base_url``."""
        return f"{self.url}/bot"

    @property
    def bot_user(self) -> JSON:
        """The bot's own User object."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_name,
            "username": self.bot_username,
        }

    # -- the world: chats, users, admins -------------------------------------------------

    def add_chat(
        self,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        first_name: str | None = None,
        username: str | None = None,
    ) -> None:
        """Make a chat known: private for positive ids, "-100…" a supergroup, else a group."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = _Chat(id=chat_id, type=chat_type or _default_chat_type(chat_id))
            self._chats[chat_id] = chat
        elif chat_type is not None:
            chat.type = chat_type
        if title is not None:
            chat.title = title
        if first_name is not None:
            chat.first_name = first_name
        if username is not None:
            chat.username = username
            self._usernames[username.lower()] = chat_id

    def add_chats(self, chat_ids: Iterable[int]) -> None:
        """Make many chats known at once (subscribers for a fan-out)."""
        for chat_id in chat_ids:
            self.add_chat(chat_id)

    def set_admins(
        self,
        chat_id: int,
        user_ids: Iterable[int],
        *,
        creator: int | None = None,
        bot_is_admin: bool = False,
    ) -> None:
        """Set a group's administrators (getChatMember, getChatAdministrators)."""
        chat = self._known_chat(chat_id)
        chat.admins = dict.fromkeys(user_ids, "administrator")
        if creator is not None:
            chat.admins[creator] = "creator"
        chat.bot_status = "administrator" if bot_is_admin else "member"

    # -- failure switches ----------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: sends answer 403 "bot was blocked by the user"."""
        self._known_chat(chat_id).forbidden = "Forbidden: bot was blocked by the user"

    def unblock(self, chat_id: int) -> None:
        """Sends to the chat work again."""
        self._known_chat(chat_id).forbidden = None

    def deactivate(self, chat_id: int) -> None:
        """The user deletes their account: sends answer 403 "user is deactivated"."""
        self._known_chat(chat_id).forbidden = "Forbidden: user is deactivated"

    def rate_limit(
        self,
        per_second: int | None = 30,
        per_chat_per_second: int | None = 1,
        per_group_per_minute: int | None = 20,
        *,
        retry_after: int | None = None,
        paid_per_second: int | None = 1000,
        edits: bool = False,
    ) -> None:
        """Answer sendMessage beyond these sliding windows with 429 and retry_after.
        With ``edits``, editMessageText counts in the same windows and is limited too.

        Windows count accepted sends as they arrive; None turns a window off. retry_after is
        the time until the window has room (at least 1 s), unless given. A send with
        allow_paid_broadcast counts against ``paid_per_second`` overall instead of
        ``per_second``, as Telegram's paid broadcasts do; per-chat limits hold for all.
        """
        self._limiter = _RateLimiter(
            per_second, per_chat_per_second, per_group_per_minute, retry_after, paid_per_second
        )
        self._limit_edits = edits

    def no_rate_limit(self) -> None:
        """Turn the flood limits off again (the default)."""
        self._limiter = None

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
        deliver: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (to ``chat_id``, if given) with an error.

        With ``deliver`` the call is carried out first (the message is recorded), then the
        error is answered: Telegram sent it, the bot cannot know.
        """
        parameters: JSON = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        if description is None:
            phrase = _STATUS_PHRASES.get(status, "Error")
            description = f"{phrase}: retry after {retry_after}" if retry_after else phrase
        failure = _Failure(
            ApiError(status, description, parameters or None), times, chat_id, deliver
        )
        self._failures.setdefault(method.lower(), []).append(failure)

    def delay(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """Answer ``method`` only after ``seconds`` (the call is carried out at once).

        A client that times out meanwhile still had its message delivered, as on Telegram.
        ``times`` limits it to the next n calls; ``delay(method, 0)`` turns it off.
        """
        if seconds <= 0:
            self._delays.pop(method.lower(), None)
        else:
            self._delays[method.lower()] = _Delay(seconds, times)

    # -- injecting what readers do -------------------------------------------------------

    def inject(self, update: JSON) -> int:
        """Queue a raw update (its update_id is assigned) and return the update_id."""
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **update})
        self.injected[update_id] = {"update_id": update_id, **update}
        self._new_update.notify()
        self._changed.notify()
        return update_id

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        language_code: str | None = "ar",
        first_name: str | None = None,
        username: str | None = None,
        title: str | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        anonymous_admin: bool = False,
    ) -> int:
        """A reader sends ``text`` to the bot (commands get their bot_command entity).

        The chat's type is ``chat_type``, else the one it has, else guessed from the id.
        ``anonymous_admin`` sends it as a group's anonymous admin does: as the group itself
        (``sender_chat``), from Telegram's GroupAnonymousBot.
        """
        self.add_chat(chat_id, chat_type=chat_type, title=title)
        chat = self._chats[chat_id]
        if user_id is None:
            user_id = chat_id if chat.type == "private" else DEFAULT_GROUP_USER
        user = self._user(user_id, language_code, first_name, username)
        if anonymous_admin:
            user = dict(ANONYMOUS_ADMIN)
        if chat.type == "private":
            if first_name is not None:
                chat.first_name = first_name
            # Writing to a bot one blocked unblocks it.
            if chat.forbidden == "Forbidden: bot was blocked by the user":
                chat.forbidden = None
        message: JSON = {
            "message_id": self._new_message_id(chat_id),
            "from": user,
            "chat": chat.json(),
            "date": int(time.time()),
            "text": text,
        }
        if anonymous_admin:
            message["sender_chat"] = chat.json()
        entities = [
            {
                "type": "bot_command",
                "offset": utf16_length(text[: match.start()]),
                "length": utf16_length(match.group()),
            }
            for match in _BOT_COMMAND.finditer(text)
        ]
        if entities:
            message["entities"] = entities
        if reply_to_message_id is not None:
            replied = self._messages.get((chat_id, reply_to_message_id))
            if replied is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id}")
            message["reply_to_message"] = replied
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        self._messages[(chat_id, message["message_id"])] = message
        return self.inject({"message": message})

    def press_button(
        self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None
    ) -> int:
        """A reader presses the inline button with ``data`` under a message the bot sent."""
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        buttons = _callback_data(message.get("reply_markup"))
        if data not in buttons:
            raise ValueError(f"message {message_id} has no button {data!r}; it has {buttons}")
        chat = self._chats[chat_id]
        if user_id is None:
            user_id = chat_id if chat.type == "private" else DEFAULT_GROUP_USER
        query_id = f"{self.bot_id}{next(self._query_ids):08d}"
        self._open_queries[query_id] = (chat_id, message_id)
        return self.inject(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(user_id),
                    "message": message,
                    "chat_instance": str(abs(hash((self.bot_id, chat_id)))),
                    "data": data,
                }
            }
        )

    def member_update(
        self,
        chat_id: int,
        status: Literal["member", "administrator", "kicked", "left"],
        *,
        old_status: str | None = None,
        user_id: int | None = None,
        chat_type: str | None = None,
        title: str | None = None,
    ) -> int:
        """The bot's own membership changes (my_chat_member): blocked, added, removed.

        The fake's state follows: after "kicked" or "left" sends answer 403.
        """
        if chat_id not in self._chats or chat_type is not None:
            self.add_chat(chat_id, chat_type=chat_type, title=title)
        chat = self._chats[chat_id]
        if old_status is None:
            if status in ("kicked", "left"):
                old_status = chat.bot_status if chat.forbidden is None else "member"
            else:
                old_status = "kicked" if chat.type == "private" else "left"
        if status == "kicked":
            chat.forbidden = _FORBIDDEN_KICKED[chat.type]
        elif status == "left":
            chat.forbidden = _FORBIDDEN_LEFT[chat.type]
        else:
            chat.forbidden = None
            chat.bot_status = status
        if user_id is None:
            user_id = chat_id if chat.type == "private" else DEFAULT_GROUP_USER
        return self.inject(
            {
                "my_chat_member": {
                    "chat": chat.json(),
                    "from": self._user(user_id),
                    "date": int(time.time()),
                    "old_chat_member": _member(self.bot_user, old_status),
                    "new_chat_member": _member(self.bot_user, status),
                }
            }
        )

    def migrate_group(
        self, old_chat_id: int, new_chat_id: int | None = None, *, notify: bool = True
    ) -> int:
        """The group becomes a supergroup: sends to the old id answer migrate_to_chat_id.

        Returns the new chat id; with ``notify`` both service messages are queued.
        """
        old = self._known_chat(old_chat_id)
        new_id = new_chat_id if new_chat_id is not None else int(f"-100{abs(old_chat_id)}")
        self.add_chat(new_id, chat_type="supergroup", title=old.title)
        new = self._chats[new_id]
        new.admins = dict(old.admins)
        new.bot_status = old.bot_status
        old.migrated_to = new_id
        if notify:
            user = self._user(DEFAULT_GROUP_USER)
            now = int(time.time())
            self.inject(
                {
                    "message": {
                        "message_id": self._new_message_id(old_chat_id),
                        "from": user,
                        "chat": old.json(),
                        "date": now,
                        "migrate_to_chat_id": new_id,
                    }
                }
            )
            self.inject(
                {
                    "message": {
                        "message_id": self._new_message_id(new_id),
                        "from": user,
                        "chat": new.json(),
                        "date": now,
                        "migrate_from_chat_id": old_chat_id,
                    }
                }
            )
        return new_id

    @property
    def pending_updates(self) -> int:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return len(self._updates)

    def take_updates(self) -> list[JSON]:
        """Remove the queued updates and return them, oldest first: for a test that posts
        them to a bot's webhook itself, as Telegram would."""
        updates = list(self._updates)
        self._updates.clear()
        return updates

    # -- reading back what the bot did ---------------------------------------------------

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        """Every message sent to a chat, oldest first."""
        return list(self._by_chat.get(chat_id, ()))

    def texts_to(self, chat_id: int) -> list[str]:
        """What the reader of a chat saw, message by message."""
        return [message.plain for message in self._by_chat.get(chat_id, ())]

    def message(self, chat_id: int, message_id: int) -> JSON:
        """A message as it stands now (after edits), as Telegram would return it."""
        return self._messages[(chat_id, message_id)]

    def commands(self, language_code: str = "", scope: JSON | None = None) -> list[JSON]:
        """The command list set for a language and scope (setMyCommands)."""
        return self._commands.get((_scope_key(scope), language_code), [])

    def sends_per_chat(self) -> Counter[int]:
        """How many messages each chat received."""
        return Counter({chat_id: len(sent) for chat_id, sent in self._by_chat.items()})

    def max_in_window(self, seconds: float, chat_id: int | None = None) -> int:
        """The most sends accepted within any window of ``seconds`` (sliding)."""
        sent = self.sent if chat_id is None else self._by_chat.get(chat_id, [])
        return most_within([message.at for message in sent], seconds)

    def max_per_second(self, chat_id: int | None = None) -> int:
        """The most sends accepted within any one second (overall or to one chat)."""
        return self.max_in_window(1.0, chat_id)

    async def wait_for(
        self,
        predicate: Callable[[], object],
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline that fails with what was sent
        what: str = "",
    ) -> None:
        """Return once ``predicate()`` is true; it is re-checked after every change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = [(m.chat_id, m.plain[:60]) for m in self.sent[-5:]]
                raise TimeoutError(
                    f"{what or 'condition'} not met within {timeout} s; "
                    f"calls: {dict(self.calls)}; last sent: {recent}"
                )
            await self._changed.wait(remaining)

    async def wait_for_messages(
        self,
        chat_id: int,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - as wait_for
    ) -> list[SentMessage]:
        """Wait until ``chat_id`` has received at least ``count`` messages; return them all."""
        await self.wait_for(
            lambda: len(self._by_chat.get(chat_id, ())) >= count,
            timeout,
            f"{count} message(s) to chat {chat_id}",
        )
        return self.messages_to(chat_id)

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - as wait_for
    ) -> None:
        """Wait until ``method`` has been called at least ``count`` times."""
        await self.wait_for(
            lambda: self.calls[method] >= count, timeout, f"{count} call(s) of {method}"
        )

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _response(ApiError(401, "Unauthorized").payload(), 401)
        params = await _read_params(request)
        method = request.match_info["method"]
        found = self._methods.get(method.lower())
        if found is None:
            return _response(ApiError(404, "Not Found: method not found").payload(), 404)
        name, handler = found
        status = 200
        failure = self._take_failure(name, params)
        try:
            if failure is not None and not failure.deliver:
                raise failure.error
            result = await handler(params)
            if failure is not None:
                raise failure.error
            payload: JSON = {"ok": True, "result": result}
        except ApiError as exc:
            status, payload = exc.status, exc.payload()
            if failure is not None and exc is failure.error and status == 429:
                self._record_429(name, params, exc)
        self.calls[name] += 1
        if self.record_requests:
            self.requests.append(ApiCall(name, params, status, time.monotonic()))
        self._changed.notify()
        await self._maybe_delay(name)
        return _response(payload, status)

    def _record_429(self, method: str, params: JSON, exc: ApiError) -> None:
        chat_id = params.get("chat_id")
        retry_after = (exc.parameters or {}).get("retry_after", 0)
        self.too_many.append(
            TooMany(
                time.monotonic(),
                method,
                int(chat_id) if isinstance(chat_id, int | str) and _is_int(chat_id) else None,
                int(retry_after),
                "injected",
            )
        )

    def _take_failure(self, method: str, params: JSON) -> _Failure | None:
        queue = self._failures.get(method.lower())
        if not queue:
            return None
        for failure in queue:
            if failure.chat_id is None or str(failure.chat_id) == str(params.get("chat_id")):
                failure.times -= 1
                if failure.times <= 0:
                    queue.remove(failure)
                return failure
        return None

    async def _maybe_delay(self, method: str) -> None:
        delay = self._delays.get(method.lower())
        if delay is None:
            return
        if delay.times is not None:
            delay.times -= 1
            if delay.times <= 0:
                del self._delays[method.lower()]
        try:
            async with asyncio.timeout(delay.seconds):
                await self._closing.wait()
        except TimeoutError:
            pass

    def _handlers(self) -> dict[str, Handler]:
        return {
            "getMe": self._get_me,
            "logOut": self._ok,
            "close": self._ok,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setMyDescription": self._ok,
            "setMyShortDescription": self._ok,
            "setMyName": self._ok,
            "setChatMenuButton": self._ok,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChatMemberCount": self._get_chat_member_count,
            "leaveChat": self._leave_chat,
        }

    # -- methods -------------------------------------------------------------------------

    async def _ok(self, _params: JSON) -> bool:
        return True

    async def _get_me(self, _params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSON) -> list[JSON]:
        try:
            return await self._poll_updates(params)
        except ApiError as exc:
            if exc.status == 409:
                self.poll_conflicts += 1
            raise

    async def _poll_updates(self, params: JSON) -> list[JSON]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = _opt_int(params, "offset") or 0
        limit = min(max(_opt_int(params, "limit") or 100, 1), 100)
        timeout = max(_opt_float(params, "timeout") or 0.0, 0.0)
        allowed = _opt_json(params, "allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else None
        # Only one getUpdates at a time: a newer one ends the older, as on Telegram.
        me = object()
        self._poller = me
        self._new_update.notify()
        self._confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.polls_waiting += 1
        self._changed.notify()
        try:
            while True:
                if self._poller is not me:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                batch = self._batch(limit)
                remaining = deadline - loop.time()
                if batch or remaining <= 0 or self._closing.is_set():
                    return batch
                await self._new_update.wait(remaining)
        finally:
            self.polls_waiting -= 1

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
            return
        while self._updates and self._updates[0]["update_id"] < offset:
            self._updates.popleft()

    def _batch(self, limit: int) -> list[JSON]:
        batch: list[JSON] = []
        for update in list(self._updates):
            kind = next(key for key in update if key != "update_id")
            allowed = (
                kind not in _OPT_IN_UPDATES
                if self._allowed_updates is None
                else kind in self._allowed_updates
            )
            if not allowed:
                # Telegram never sends an update of a type the bot did not ask for.
                self._updates.remove(update)
                continue
            batch.append(update)
            if len(batch) >= limit:
                break
        return batch

    async def _set_webhook(self, params: JSON) -> bool:
        url = _opt_str(params, "url") or ""
        if not url:
            self.webhook = None
            return True
        if not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if _flag(params, "drop_pending_updates"):
            self._updates.clear()
        allowed = _opt_json(params, "allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else None
        self.webhook = {
            "url": url,
            "secret_token": _opt_str(params, "secret_token"),
            "max_connections": _opt_int(params, "max_connections") or 40,
            "allowed_updates": allowed,
        }
        self.webhooks.append(self.webhook)
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        self.webhook = None
        if _flag(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, _params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _set_my_commands(self, params: JSON) -> bool:
        commands = _opt_json(params, "commands")
        if not isinstance(commands, list):
            raise _bad('parameter "commands" is required')
        if len(commands) > 100:
            raise _bad("too many commands specified")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("BotCommand expected")
            if not _COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = (_scope_key(_opt_json(params, "scope")), _opt_str(params, "language_code") or "")
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands(_opt_str(params, "language_code") or "", _opt_json(params, "scope"))

    async def _delete_my_commands(self, params: JSON) -> bool:
        key = (_scope_key(_opt_json(params, "scope")), _opt_str(params, "language_code") or "")
        self._commands.pop(key, None)
        return True

    async def _send_message(self, params: JSON) -> JSON:
        text = _opt_str(params, "text") or ""
        parse_mode = _opt_str(params, "parse_mode") or None
        reply_markup = _opt_json(params, "reply_markup")
        plain, entities = self._parse_text(text, parse_mode, _opt_json(params, "entities"))
        if self.validate:
            _check_reply_markup(reply_markup)
        chat = self._sendable_chat(params)
        reply_to = _reply_to(params)
        replied = None
        if reply_to is not None:
            message_id, allow_without = reply_to
            replied = self._messages.get((chat.id, message_id))
            if replied is None and not allow_without:
                raise _bad("message to be replied not found")
        now = time.monotonic()
        if self._limiter is not None:
            paid = _flag(params, "allow_paid_broadcast")
            scope, retry_after = self._limiter.check(chat, now, paid=paid)
            if retry_after:
                self.too_many.append(TooMany(now, "sendMessage", chat.id, retry_after, scope))
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            self._limiter.record(chat, now)
        link_preview = _opt_json(params, "link_preview_options")
        thread_id = _opt_int(params, "message_thread_id")
        message_id = self._new_message_id(chat.id)
        date = int(time.time())
        message: JSON = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": chat.json(),
            "date": date,
            "text": plain,
        }
        if entities:
            message["entities"] = entities
        if isinstance(reply_markup, dict) and "inline_keyboard" in reply_markup:
            message["reply_markup"] = reply_markup
        if isinstance(link_preview, dict):
            message["link_preview_options"] = link_preview
        if thread_id is not None:
            message["message_thread_id"] = thread_id
        if replied is not None:
            message["reply_to_message"] = {
                k: v for k, v in replied.items() if k != "reply_to_message"
            }
        self._messages[(chat.id, message_id)] = message
        record = SentMessage(
            chat_id=chat.id,
            message_id=message_id,
            text=text,
            plain=plain,
            parse_mode=parse_mode,
            entities=entities,
            reply_markup=reply_markup if isinstance(reply_markup, dict) else None,
            disable_notification=_flag(params, "disable_notification"),
            link_preview_options=link_preview if isinstance(link_preview, dict) else None,
            message_thread_id=thread_id,
            reply_to_message_id=reply_to[0] if reply_to else None,
            at=now,
            date=date,
            params=params,
        )
        self.sent.append(record)
        self._by_chat.setdefault(chat.id, []).append(record)
        return message

    async def _edit_message_text(self, params: JSON) -> JSON | bool:
        text = _opt_str(params, "text") or ""
        parse_mode = _opt_str(params, "parse_mode") or None
        reply_markup = _opt_json(params, "reply_markup")
        plain, entities = self._parse_text(text, parse_mode, _opt_json(params, "entities"))
        if self.validate:
            _check_reply_markup(reply_markup)
        new_markup = reply_markup if isinstance(reply_markup, dict) else None
        edit = Edit(
            method="editMessageText",
            chat_id=None,
            message_id=None,
            inline_message_id=_opt_str(params, "inline_message_id"),
            text=text,
            plain=plain,
            parse_mode=parse_mode,
            reply_markup=new_markup,
            at=time.monotonic(),
        )
        if edit.inline_message_id:
            self.edits.append(edit)
            return True
        chat, message = self._editable(params)
        if self._limiter is not None and self._limit_edits:
            now = time.monotonic()
            scope, retry_after = self._limiter.check(chat, now)
            if retry_after:
                self.too_many.append(TooMany(now, "editMessageText", chat.id, retry_after, scope))
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            self._limiter.record(chat, now)
        if (
            message.get("text") == plain
            and message.get("entities", []) == entities
            and message.get("reply_markup") == new_markup
        ):
            raise ApiError(400, _NOT_MODIFIED)
        message["text"] = plain
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        _set_markup(message, new_markup)
        link_preview = _opt_json(params, "link_preview_options")
        if isinstance(link_preview, dict):
            message["link_preview_options"] = link_preview
        message["edit_date"] = int(time.time())
        self.edits.append(replace(edit, chat_id=chat.id, message_id=message["message_id"]))
        return message

    async def _edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        reply_markup = _opt_json(params, "reply_markup")
        if self.validate:
            _check_reply_markup(reply_markup)
        new_markup = reply_markup if isinstance(reply_markup, dict) else None
        edit = Edit(
            method="editMessageReplyMarkup",
            chat_id=None,
            message_id=None,
            inline_message_id=_opt_str(params, "inline_message_id"),
            text=None,
            plain=None,
            parse_mode=None,
            reply_markup=new_markup,
            at=time.monotonic(),
        )
        if edit.inline_message_id:
            self.edits.append(edit)
            return True
        chat, message = self._editable(params)
        if message.get("reply_markup") == new_markup:
            raise ApiError(400, _NOT_MODIFIED)
        _set_markup(message, new_markup)
        message["edit_date"] = int(time.time())
        self.edits.append(replace(edit, chat_id=chat.id, message_id=message["message_id"]))
        return message

    async def _delete_message(self, params: JSON) -> bool:
        chat = self._chat(params)
        message_id = _opt_int(params, "message_id")
        if message_id is None or self._messages.pop((chat.id, message_id), None) is None:
            raise _bad("message to delete not found")
        self.deleted.append((chat.id, message_id))
        return True

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = _opt_str(params, "callback_query_id") or ""
        if self._open_queries.pop(query_id, None) is None:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = _opt_str(params, "text")
        if text is not None and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers.append(
            CallbackAnswer(
                query_id,
                text,
                _flag(params, "show_alert"),
                _opt_str(params, "url"),
                time.monotonic(),
            )
        )
        return True

    async def _send_chat_action(self, params: JSON) -> bool:
        self._sendable_chat(params)
        return True

    async def _get_chat(self, params: JSON) -> JSON:
        chat = self._chat(params)
        return {
            **chat.json(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, params: JSON) -> JSON:
        chat = self._chat(params)
        user_id = _opt_int(params, "user_id")
        if user_id is None:
            raise _bad("user_id is empty")
        if user_id == self.bot_id:
            status = chat.bot_status
            if chat.forbidden is not None:
                status = "kicked" if "kicked" in chat.forbidden else "left"
            return _member(self.bot_user, status)
        if chat.type == "private" and user_id != chat.id:
            raise _bad("user not found")
        return _member(self._user(user_id), chat.admins.get(user_id, "member"))

    async def _get_chat_administrators(self, params: JSON) -> list[JSON]:
        chat = self._chat(params)
        if chat.type == "private":
            raise _bad("there are no administrators in the private chat")
        admins = [_member(self._user(uid), status) for uid, status in chat.admins.items()]
        if chat.bot_status == "administrator":
            admins.append(_member(self.bot_user, "administrator"))
        return admins

    async def _get_chat_member_count(self, params: JSON) -> int:
        chat = self._chat(params)
        return 2 if chat.type == "private" else len(chat.admins) + 2

    async def _leave_chat(self, params: JSON) -> bool:
        chat = self._chat(params)
        if chat.type == "private":
            raise _bad("chat member status can't be changed in private chats")
        chat.forbidden = _FORBIDDEN_LEFT[chat.type]
        return True

    # -- helpers -------------------------------------------------------------------------

    def _parse_text(
        self, text: str, parse_mode: str | None, entities: object
    ) -> tuple[str, list[JSON]]:
        """Telegram's text rules: entity parsing, trimming, 1-4096 characters."""
        explicit = entities if isinstance(entities, list) else []
        if not self.validate:
            return text, explicit
        if parse_mode is None or not text:
            plain, found = text, explicit
        elif parse_mode.lower() == "html":
            if "<" in text or "&" in text:
                plain, found = parse_html(text, strict=self.strict_html)
            else:
                plain, found = text, []
        elif parse_mode.lower() in ("markdown", "markdownv2"):
            plain, found = text, []  # not parsed: the fake checks HTML only
        else:
            raise _bad("unsupported parse_mode")
        plain, found = _strip(plain, found)
        if not plain:
            raise _bad("message text is empty")
        length = utf16_length(plain) if self.length_unit == "utf16" else len(plain)
        if length > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        return plain, found

    def _chat(self, params: JSON) -> _Chat:
        """The chat a request names: 400 when it is empty or unknown."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            found = self._usernames.get(raw[1:].lower())
            if found is None:
                raise _bad("chat not found")
            return self._chats[found]
        if not _is_int(raw):
            raise _bad("chat not found")
        chat_id = int(raw)
        chat = self._chats.get(chat_id)
        if chat is None:
            if not self.any_chat or chat_id == 0:
                raise _bad("chat not found")
            self.add_chat(chat_id)
            chat = self._chats[chat_id]
        return chat

    def _sendable_chat(self, params: JSON) -> _Chat:
        """The chat a send goes to: 400 when migrated, 403 when the bot may not write."""
        chat = self._chat(params)
        if chat.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if chat.forbidden is not None:
            raise ApiError(403, chat.forbidden)
        return chat

    def _editable(self, params: JSON) -> tuple[_Chat, JSON]:
        chat = self._sendable_chat(params)
        message_id = _opt_int(params, "message_id")
        message = self._messages.get((chat.id, message_id or 0))
        if message is None:
            raise _bad("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return chat, message

    def _known_chat(self, chat_id: int) -> _Chat:
        if chat_id not in self._chats:
            self.add_chat(chat_id)
        return self._chats[chat_id]

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _user(
        self,
        user_id: int,
        language_code: str | None = None,
        first_name: str | None = None,
        username: str | None = None,
    ) -> JSON:
        user = self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
            self._users[user_id] = user
        if language_code is not None:
            user["language_code"] = language_code
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        return dict(user)


# ----------------------------------------------------------------------------------------
# Module helpers


def _set_markup(message: JSON, markup: JSON | None) -> None:
    """Messages keep only inline keyboards; anything else removes the keyboard."""
    message.pop("reply_markup", None)
    if markup and "inline_keyboard" in markup:
        message["reply_markup"] = markup


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.lstrip("-").isdigit()


def _default_chat_type(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _scope_key(scope: object) -> str:
    if not scope or scope == {"type": "default"}:
        return "default"
    return json.dumps(scope, sort_keys=True)


def _reply_to(params: JSON) -> tuple[int, bool] | None:
    reply = _opt_json(params, "reply_parameters")
    if isinstance(reply, dict) and _is_int(reply.get("message_id")):
        return int(reply["message_id"]), bool(reply.get("allow_sending_without_reply"))
    legacy = _opt_int(params, "reply_to_message_id")
    if legacy is not None:
        return legacy, _flag(params, "allow_sending_without_reply")
    return None


def _member(user: JSON, status: str) -> JSON:
    """A ChatMember object with every field python-telegram-bot requires."""
    member: JSON = {"status": status, "user": user}
    if status == "kicked":
        member["until_date"] = 0
    elif status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(
            can_be_edited=False,
            is_anonymous=False,
            can_manage_chat=True,
            can_delete_messages=True,
            can_manage_video_chats=True,
            can_restrict_members=True,
            can_promote_members=False,
            can_change_info=True,
            can_invite_users=True,
            can_post_stories=False,
            can_edit_stories=False,
            can_delete_stories=False,
        )
    return member


async def _read_params(request: web.Request) -> JSON:
    """The parameters of a request: query string, then form, multipart or JSON body."""
    params: JSON = dict(request.query)
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    form = await request.post()
    for name, value in form.items():
        params[name] = value if isinstance(value, str) else getattr(value, "filename", "")
    return params


def _response(payload: Mapping[str, Any], status: int) -> web.Response:
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        status=status,
        content_type="application/json",
    )
