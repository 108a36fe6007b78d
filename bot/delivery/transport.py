"""PTB's HTTP transport over one aiohttp session: HTTPXRequest's contract at a fraction of its CPU.

PTB sees HTTPXRequest's defaults, timeouts and errors; a request that never left is chained from
httpx's ConnectError, ConnectTimeout or PoolTimeout, as there, so callers may safely resend it.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx

# Private, but BaseRequest.do_request is typed with them and HTTPXRequest uses them too.
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_FORM = "application/x-www-form-urlencoded"
_POOL_TIMEOUT_MESSAGE = (
    "Pool timeout: All connections in the connection pool are occupied. Request was *not* sent "
    "to Telegram. Consider adjusting the connection pool size or the pool timeout."
)


class AiohttpRequest(BaseRequest):
    """A ``telegram.request.BaseRequest`` over one shared ``aiohttp.ClientSession``.

    The session is made in :meth:`initialize`, inside the running loop. ``write_timeout`` is
    accepted for PTB's interface but not enforced: aiohttp has no per-write timeout, and a
    form-encoded request fits the socket buffer; file uploads are not bounded while they write.
    """

    __slots__ = (
        "_connect_timeout",
        "_default_timeout",
        "_pool_size",
        "_pool_timeout",
        "_read_timeout",
        "_session",
        "_slots",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,  # accepted, not enforced: see the class docstring
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._default_timeout = _client_timeout(read_timeout, connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def read_timeout(self) -> float | None:
        """The read timeout used when a call does not pass one (PTB adds it to long polls)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session; does nothing when it is already open."""
        if self._session is not None and not self._session.closed:
            return
        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.USER_AGENT},
            # Telegram sets no cookies, and filtering a jar costs time on every request.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._default_timeout,
        )
        # aiohttp's own pool wait shares its timeout with connecting; counting the requests in
        # flight here tells a pool timeout (never sent) from a slow connect, as httpx does.
        self._slots = asyncio.Semaphore(self._pool_size)

    async def shutdown(self) -> None:
        """Close the session; does nothing when it was never opened or is already closed."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; return its status code and body, or raise PTB's network errors."""
        session, slots = self._session, self._slots
        if session is None or slots is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        timeout = self._default_timeout
        if not isinstance(read_timeout, DefaultValue) or not isinstance(
            connect_timeout, DefaultValue
        ):
            timeout = _client_timeout(
                self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout,
                self._connect_timeout
                if isinstance(connect_timeout, DefaultValue)
                else connect_timeout,
            )
        await _take(
            slots, self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        )
        try:
            async with session.request(
                method,
                url,
                data=_body(request_data),
                timeout=timeout,
                allow_redirects=False,  # httpx follows none either
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            clean = _redacted(str(exc), url)
            text = f"aiohttp.{type(exc).__name__}: {clean}"
            # Some aiohttp messages quote the URL, and so the bot token; tracebacks get logged.
            cause = exc if clean == str(exc) else aiohttp.ClientError(text)
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise TimedOut from _never_sent(httpx.ConnectTimeout, text, cause)
            if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: nothing sent
                raise NetworkError(text) from _never_sent(httpx.ConnectError, text, cause)
            if isinstance(exc, TimeoutError):  # a read timeout: Telegram may have acted on it
                raise TimedOut from cause
            raise NetworkError(text) from cause
        finally:
            slots.release()


def _client_timeout(read: float | None, connect: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for httpx's read and connect ones (the pool wait is counted apart)."""
    # No total: as with httpx each phase has its own bound, and a long poll may take minutes.
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)


async def _take(slots: asyncio.Semaphore, pool_timeout: float | None) -> None:
    """Wait for a free connection slot, or raise TimedOut as httpx's pool timeout does."""
    if not slots.locked():
        await slots.acquire()
        return
    try:
        async with asyncio.timeout(pool_timeout):
            await slots.acquire()
    except TimeoutError:
        raise TimedOut(_POOL_TIMEOUT_MESSAGE) from httpx.PoolTimeout(
            f"no free connection within {pool_timeout} s"
        )


def _body(request_data: RequestData | None) -> aiohttp.BytesPayload | aiohttp.FormData | None:
    """The request body as HTTPXRequest sends it: form-encoded, or multipart with files."""
    if request_data is None:
        return None
    parameters = request_data.json_parameters
    if not request_data.contains_files:
        if not parameters:
            return None
        # Encoded here: aiohttp's FormData takes twice as long to make the same bytes.
        return aiohttp.BytesPayload(urlencode(parameters).encode(), content_type=_FORM)
    # UTF-8 file names written as they are, as httpx does, not percent-encoded.
    form = aiohttp.FormData(quote_fields=False)
    for name, value in parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form


def _never_sent(
    marker: type[httpx.TransportError], text: str, cause: BaseException
) -> httpx.TransportError:
    """httpx's exception for a request that never left (callers test for it), from aiohttp's."""
    error = marker(text)
    error.__cause__ = cause
    return error


def _redacted(text: str, url: str) -> str:
    """``text`` without the bot token, which Bot API URLs carry as a path segment."""
    for segment in urlsplit(url).path.split("/"):
        if ":" in segment:
            text = text.replace(segment, "<token>")
    return text
