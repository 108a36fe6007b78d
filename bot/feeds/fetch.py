"""Fetching feeds over HTTP through one shared, keep-alive httpx client.

Owns conditional GETs, redirects, and the caps on size, time, concurrency and address range.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)
# Only what _Inflater decodes. httpx's own decoders inflate a whole network read at once, so a
# 50 KiB gzip bomb arriving in one read becomes 50 MiB before anyone can count it; httpx would
# also advertise br/zstd as soon as someone installs brotli or zstandard.
_ACCEPT_ENCODING = "gzip, deflate"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_INFLATE_STEP = 256 * 1024


# The most of an unwanted body (error page, redirect) read just to keep the connection.
_DRAIN_LIMIT = 64 * 1024
# Seconds an idle pooled connection is kept (httpx's default).
_KEEPALIVE = 5.0


class FetchError(Exception):
    """A fetch that failed; ``str()`` is a one-line reason an operator can act on."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(" ".join(reason.split()))
        self.retry_after = retry_after


class PrivateAddressError(OSError):
    """A host name resolved to a private address where only public ones are allowed."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How long, how large, how many redirects and how many requests at once."""

    total_timeout: float = 30.0
    connect_timeout: float = 10.0
    max_bytes: int = 15 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 20
    per_host: int = 2
    user_agent: str = "Newsbot/0.1 (+https://github.com/newsbot; feed reader)"
    allow_private: bool = True

    def __post_init__(self) -> None:
        if min(self.total_timeout, self.connect_timeout) <= 0:
            raise ValueError("fetch timeouts must be positive")
        if min(self.max_bytes, self.concurrency, self.per_host) < 1 or self.max_redirects < 0:
            raise ValueError("max_bytes, concurrency, per_host >= 1 and max_redirects >= 0")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One successful fetch: a 2xx body (Content-Encoding already undone), or a 304."""

    url: str
    permanent_url: str | None
    not_modified: bool
    body: bytes
    headers: Mapping[str, str]
    etag: str | None
    last_modified: str | None
    status: int


class Fetcher:
    """Fetches feed URLs through one keep-alive httpx client shared by every poll.

    Concurrency is limited per ``host:port`` (each hop takes its host's slot, then a global
    slot, so a slow host queues its own requests without holding global slots while it waits).
    Without ``allow_private``, the connection pool checks every address a name resolves to
    when it connects; a ``transport`` given instead makes its own connections, unchecked.
    """

    def __init__(
        self,
        limits: FetchLimits = FetchLimits(),
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._timeout_reason = f"timed out after {limits.total_timeout:g} s"
        self._too_large_reason = f"response larger than {_size(limits.max_bytes)}"
        self._resolver: AbstractResolver | None = None
        if transport is None:
            # httpx's own pool (httpcore) re-scans every connection for every queued request:
            # O(concurrency²) per request, 2.5 ms of CPU a fetch at 20 in flight. aiohttp's
            # connection pool behind the same httpx client costs a fraction of that.
            transport = AiohttpTransport(client=self._open_session)
        self._client = httpx.AsyncClient(
            transport=transport,
            # The semaphores bound requests in flight; the pool must never be the tighter limit.
            limits=httpx.Limits(
                max_connections=limits.concurrency,
                max_keepalive_connections=limits.concurrency,
            ),
            # asyncio.timeout enforces the total; httpx's read/write/pool timeouts only back it up.
            timeout=httpx.Timeout(limits.total_timeout, connect=limits.connect_timeout),
            follow_redirects=False,
            headers={
                "User-Agent": limits.user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": _ACCEPT_ENCODING,
            },
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared client and its pooled connections."""
        await self._client.aclose()
        if self._resolver is not None:
            await self._resolver.close()

    def _open_session(self) -> aiohttp.ClientSession:
        """aiohttp's session for the transport, made on the first request (it needs the loop)."""
        resolver = None
        if not self._limits.allow_private:
            # The check sits where the connection is made, on the very addresses it goes to:
            # checking a lookup of our own first would let a DNS server that answers the two
            # lookups differently (DNS rebinding) slip a private address past it.
            # getaddrinfo, as every other program here resolves names (whatever aiohttp would
            # pick by default, aiodns say, when installed).
            resolver = self._resolver = PublicAddressesOnly(ThreadedResolver())
        connector = aiohttp.TCPConnector(
            limit=self._limits.concurrency,
            keepalive_timeout=_KEEPALIVE,
            ssl=httpx.create_ssl_context(),
            resolver=resolver,
        )
        return aiohttp.ClientSession(connector=connector)

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url`` (conditionally when given validators); any failure is a FetchError."""
        limits = self._limits
        # Bytes, because httpx encodes str header values as ASCII and a validator it decoded
        # from a response may not be; a mangled validator merely costs a full 200.
        headers: dict[bytes, bytes] = {}
        if etag:
            headers[b"If-None-Match"] = etag.encode()
        if last_modified:
            headers[b"If-Modified-Since"] = last_modified.encode()
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchError(f"invalid URL: {exc}") from None
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        all_permanent = True
        for hop in range(limits.max_redirects + 1):
            scheme = current.scheme
            if scheme not in _DEFAULT_PORTS:
                # The URL itself stays out of the message: it may carry credentials.
                raise FetchError(
                    f"unsupported URL scheme {scheme!r}" if scheme else "not an absolute URL"
                )
            if not current.host:
                raise FetchError("URL has no host")
            port = current.port or _DEFAULT_PORTS[scheme]
            async with self._host_slot(f"{current.host}:{port}"), self._slots:
                # The clock starts once a slot is held: waiting behind other feeds is not this
                # server's slowness.
                if deadline is None:
                    deadline = loop.time() + limits.total_timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        if not limits.allow_private:
                            _refuse_private_literal(current)
                        response, body = await self._get(current, headers)
                except TimeoutError:
                    raise FetchError(self._timeout_reason) from None
                except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                    raise FetchError(self._reason(exc, current)) from exc

            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(f"HTTP {status} {response.reason_phrase} without a Location")
                if hop == limits.max_redirects:
                    raise FetchError(f"too many redirects (more than {limits.max_redirects})")
                try:
                    current = current.join(location)
                except httpx.InvalidURL:
                    raise FetchError(f"invalid redirect location {location!r}") from None
                all_permanent = all_permanent and status in _PERMANENT
                continue

            if status != 304 and not 200 <= status < 300:
                retry_after = None
                if status in (429, 503):
                    retry_after = _retry_after(response.headers.get("retry-after"))
                raise FetchError(
                    f"HTTP {status} {response.reason_phrase}", retry_after=retry_after
                )
            not_modified = status == 304
            return FetchResult(
                url=str(current),
                permanent_url=str(current) if hop and all_permanent else None,
                not_modified=not_modified,
                body=body,
                headers=response.headers,
                # A 304 may omit the validators; the stored ones are still the current ones.
                etag=response.headers.get("etag") or (etag if not_modified else None),
                last_modified=response.headers.get("last-modified")
                or (last_modified if not_modified else None),
                status=status,
            )
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _host_slot(self, key: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(key)
        if slot is None:
            slot = self._host_slots[key] = asyncio.Semaphore(self._limits.per_host)
        return slot

    async def _get(
        self, url: httpx.URL, headers: dict[bytes, bytes]
    ) -> tuple[httpx.Response, bytes]:
        """One GET without following redirects: the closed response and its decoded body."""
        request = self._client.build_request("GET", url, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            if 200 <= response.status_code < 300:
                body = await self._read(response)
            else:
                body = b""
                # Nobody looks at a 304's, a redirect's or an error's body, but reading a small
                # one to its end lets the connection go back to the pool: without that, every
                # 304 of a warm poll would cost a new TCP connection.
                await self._drain(response)
        finally:
            await response.aclose()
        return response, body

    @staticmethod
    async def _drain(response: httpx.Response) -> None:
        drained = 0
        async for raw in response.aiter_raw():
            drained += len(raw)
            if drained > _DRAIN_LIMIT:
                return  # not worth it: closing the connection is cheaper

    async def _read(self, response: httpx.Response) -> bytes:
        """The decompressed body, refused as soon as it passes ``max_bytes``."""
        cap = self._limits.max_bytes
        too_large = FetchError(self._too_large_reason)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise too_large
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        inflater = None if encoding in ("identity", "") else _Inflater(encoding)
        chunks: list[bytes] = []
        total = raw_total = 0
        try:
            async for raw in response.aiter_raw():
                if inflater is None:
                    total += len(raw)
                    if total > cap:
                        raise too_large
                    chunks.append(raw)
                    continue
                # Counting the compressed bytes too stops endless junk after the stream's end,
                # which inflates to nothing.
                raw_total += len(raw)
                if raw_total > cap:
                    raise too_large
                for piece in inflater.inflate(raw, cap - total + 1):
                    total += len(piece)
                    chunks.append(piece)
                if total > cap:
                    raise too_large
            if inflater is not None:
                chunks.append(inflater.flush())
                total += len(chunks[-1])
                if total > cap:
                    raise too_large
        except zlib.error as exc:
            raise FetchError(f"could not decompress {encoding} body: {exc}") from None
        return b"".join(chunks)

    def _reason(self, exc: Exception, url: httpx.URL) -> str:
        """A one-line operator-facing reason for an httpx failure."""
        # The operating system's reason first: the transport may file a refused connection
        # under a timeout class.
        for cause in _causes(exc):
            if isinstance(cause, PrivateAddressError):
                return str(cause)
            if isinstance(cause, socket.gaierror):
                return f"could not resolve host {url.host}"
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, ConnectionResetError):
                return "connection reset by peer"
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"TLS certificate error: {cause.verify_message}"
            if isinstance(cause, ssl.SSLError):
                return f"TLS error: {getattr(cause, 'reason', None) or cause}"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connect timed out after {self._limits.connect_timeout:g} s"
        if isinstance(exc, httpx.TimeoutException):
            return self._timeout_reason
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"protocol error: {exc}"
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return f"invalid URL: {exc}"
        if isinstance(exc, httpx.ConnectError):
            return f"connection failed: {exc}"
        return f"network error: {exc or type(exc).__name__}"


class _Inflater:
    """Streaming gzip/deflate decoder that produces no more output than it is allowed."""

    __slots__ = ("_decoder", "_may_be_raw")

    def __init__(self, encoding: str) -> None:
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._may_be_raw = False
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
            # Some servers send raw deflate without the zlib header the RFC asks for.
            self._may_be_raw = True
        else:
            raise FetchError(f"unsupported content-encoding {encoding!r}")

    def inflate(self, data: bytes, room: int) -> list[bytes]:
        """Inflate ``data`` into pieces totalling at most ``room`` bytes (the caller's cap + 1)."""
        # max_length keeps a bomb from materialising: zlib leaves the rest of the input in
        # unconsumed_tail. Small steps also keep zlib from holding a big output twice while it
        # assembles the result.
        pieces: list[bytes] = []
        while room > 0:
            step = min(_INFLATE_STEP, room)
            out = self._decompress(data, step)
            data = self._decoder.unconsumed_tail
            if out:
                pieces.append(out)
                room -= len(out)
            # A full step may leave output pending inside zlib even when all input is consumed.
            if not data and len(out) < step:
                break
        return pieces

    def _decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._decoder.decompress(data, max_length)
        except zlib.error:
            if not self._may_be_raw:
                raise
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._decoder.decompress(data, max_length)
        self._may_be_raw = False
        return out

    def flush(self) -> bytes:
        """Whatever the decoder still holds once the body has ended."""
        return self._decoder.flush()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from, including exception-group members."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        for linked in (item.__context__, item.__cause__):
            if linked is not None:
                stack.append(linked)


def _refuse_private_literal(url: httpx.URL) -> None:
    """Raise FetchError if the URL's host is a private IP address (the connection pool does
    not resolve an address, so it checks only names: see PublicAddressesOnly)."""
    try:
        literal = ipaddress.ip_address(url.raw_host.decode("ascii"))
    except ValueError:
        return
    if _is_private(literal):
        raise FetchError(f"address {literal} is private")


class PublicAddressesOnly(AbstractResolver):
    """Resolves host names for the connection pool, refusing a name with any private address.

    The pool connects only to what this returns, on every poll and every redirect, so the
    addresses checked are the addresses connected to.
    """

    def __init__(self, resolver: AbstractResolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host``; PrivateAddressError if any of them is private."""
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            # An IPv6 link-local address may carry a %scope suffix that ip_address rejects.
            address = ipaddress.ip_address(result["host"].partition("%")[0])
            if _is_private(address):
                raise PrivateAddressError(f"address {address} of {host} is private")
        return results

    async def close(self) -> None:
        """Release the underlying resolver."""
        await self._resolver.close()


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # Python 3.11 judges ::ffff:127.0.0.1 and 2002:7f00:1:: by their IPv6 ranges only.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and _is_private(embedded):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), if it parses."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"
