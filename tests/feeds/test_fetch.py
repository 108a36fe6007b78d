"""bot.feeds.fetch against real HTTP servers on loopback (aiohttp, or raw sockets to misbehave)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from bot.feeds.fetch import Fetcher, FetchError, FetchLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[dict[str, Handler]], Awaitable[str]]

MiB = 1024 * 1024
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp apps on 127.0.0.1 from {path: GET handler}; each call returns a base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    """A Fetcher with the production limits."""
    async with Fetcher() as f:
        yield f


@asynccontextmanager
async def raw_server(head: bytes) -> AsyncIterator[str]:
    """A TCP server that sends ``head`` (maybe nothing) and then stays silent until hung up on."""
    handlers: set[asyncio.Task[Any]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await reader.read()  # until the client gives up and closes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        # Python 3.11's wait_closed does not wait for open connections: close them ourselves.
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()


def feed_response(body: bytes = FEED, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering 200 with ``body`` and ``headers``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers=headers, content_type="application/rss+xml")

    return handler


def respond(status: int, headers: dict[str, str]) -> Handler:
    """A handler answering ``status`` with ``headers`` and no body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers)

    return handler


def redirect(status: int, location: str) -> Handler:
    """A handler answering ``status`` with a Location header exactly as given."""
    return respond(status, {"Location": location})


def gzip_of_zeros(mib: int) -> bytes:
    """A gzip stream of ``mib`` MiB of zeros, built without holding the zeros in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    return b"".join([*(compressor.compress(block) for _ in range(mib)), compressor.flush()])


class InFlight:
    """Counts requests being handled at once, per server and across servers sharing a total."""

    def __init__(self, total: InFlight | None = None) -> None:
        self.now = 0
        self.peak = 0
        self.total = total

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        if self.total is not None:
            self.total.enter()

    def leave(self) -> None:
        self.now -= 1
        if self.total is not None:
            self.total.leave()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.enter()
        try:
            await asyncio.sleep(0.05)
        finally:
            self.leave()
        return web.Response(body=FEED)


class RouteTo(httpx.AsyncBaseTransport):
    """Delivers every request to one local server, as an outbound proxy would (Host is kept)."""

    def __init__(self, base: str) -> None:
        self._base = httpx.URL(base)
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._base.host, port=self._base.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_200_returns_body_headers_and_validators(serve: Serve, fetcher: Fetcher) -> None:
    """A 200 gives the body, lower-case headers, both validators and no permanent URL."""
    base = await serve(
        {"/feed": feed_response(FEED, {"ETag": ETAG, "Last-Modified": LAST_MODIFIED})}
    )
    result = await fetcher.fetch(f"{base}/feed")
    assert result.status == 200
    assert result.body == FEED
    assert not result.not_modified
    assert result.url == f"{base}/feed"
    assert result.permanent_url is None
    assert (result.etag, result.last_modified) == (ETAG, LAST_MODIFIED)
    assert dict(result.headers)["content-type"] == "application/rss+xml"


async def test_validators_make_a_conditional_get_answered_by_304(
    serve: Serve, fetcher: Fetcher
) -> None:
    """Stored validators are sent back; a 304 reads no body and keeps the stored validators."""
    seen: list[tuple[str | None, str | None]] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        sent = (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        seen.append(sent)
        if sent == (ETAG, LAST_MODIFIED):
            return web.Response(status=304)
        return web.Response(body=FEED, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})

    base = await serve({"/feed": feed})
    first = await fetcher.fetch(f"{base}/feed")
    second = await fetcher.fetch(
        f"{base}/feed", etag=first.etag, last_modified=first.last_modified
    )
    assert seen == [(None, None), (ETAG, LAST_MODIFIED)]
    assert second.not_modified
    assert second.status == 304
    assert second.body == b""
    assert (second.etag, second.last_modified) == (ETAG, LAST_MODIFIED)


async def test_honest_user_agent_and_feed_accept_headers_are_sent(
    serve: Serve, fetcher: Fetcher
) -> None:
    """Requests name Newsbot in User-Agent, prefer feed types, and offer only gzip and deflate."""
    seen: dict[str, str] = {}

    async def feed(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        return web.Response(body=FEED)

    base = await serve({"/feed": feed})
    await fetcher.fetch(f"{base}/feed")
    assert seen["User-Agent"] == FetchLimits().user_agent
    assert seen["User-Agent"].startswith("Newsbot/")
    assert seen["Accept"].startswith("application/rss+xml, application/atom+xml")
    assert seen["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
async def test_compressed_body_is_decoded(
    serve: Serve, fetcher: Fetcher, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    """gzip, zlib deflate and the raw deflate some servers send all come back decoded."""
    base = await serve(
        {"/feed": feed_response(compress(FEED * 50), {"Content-Encoding": encoding})}
    )
    result = await fetcher.fetch(f"{base}/feed")
    assert result.body == FEED * 50


@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("gzip", b"not gzip at all", r"^could not decompress gzip body: "),
        ("br", b"\x0b\x02\x80hello\x03", r"^unsupported content-encoding 'br'$"),
    ],
)
async def test_undecodable_body_is_a_fetch_error(
    serve: Serve, fetcher: Fetcher, encoding: str, body: bytes, reason: str
) -> None:
    """A corrupt or unrequested Content-Encoding gives a one-line FetchError, not garbage bytes."""
    base = await serve({"/feed": feed_response(body, {"Content-Encoding": encoding})})
    with pytest.raises(FetchError, match=reason):
        await fetcher.fetch(f"{base}/feed")


async def test_non_ascii_validator_is_sent_not_crashed_on(serve: Serve, fetcher: Fetcher) -> None:
    """A stored ETag that is not ASCII goes out as UTF-8 instead of breaking the fetch."""
    seen: list[str | None] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("If-None-Match"))
        return web.Response(status=304)

    base = await serve({"/feed": feed})
    result = await fetcher.fetch(f"{base}/feed", etag='"خبر"')
    assert result.not_modified
    assert result.etag == '"خبر"'
    assert seen == ['"خبر"']


async def test_content_length_over_cap_is_refused_before_reading() -> None:
    """A Content-Length over the cap is refused at once, without waiting for the body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * MiB)
    async with raw_server(head) as base, Fetcher(FetchLimits(max_bytes=MiB)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"^response larger than 1 MiB$"):
            await fetcher.fetch(f"{base}/feed")
        assert time.monotonic() - started < 1


async def test_chunked_body_is_capped_while_streaming(serve: Serve) -> None:
    """A body without Content-Length is cut off once it passes the cap; exactly the cap is fine."""

    def chunked(size: int) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            try:
                for _ in range(size // (64 * 1024)):
                    await response.write(bytes(64 * 1024))
                await response.write_eof()
            except ConnectionError:
                pass  # the fetcher hung up, as it should
            return response

        return handler

    base = await serve({"/exact": chunked(MiB), "/huge": chunked(8 * MiB)})
    async with Fetcher(FetchLimits(max_bytes=MiB)) as fetcher:
        assert len((await fetcher.fetch(f"{base}/exact")).body) == MiB
        with pytest.raises(FetchError, match=r"^response larger than 1 MiB$"):
            await fetcher.fetch(f"{base}/huge")


async def test_gzip_bomb_is_refused_without_materialising_it(serve: Serve) -> None:
    """50 MiB of zeros gzipped to ~50 KiB is refused at the 15 MiB cap, never inflated in full."""
    bomb = gzip_of_zeros(50)
    assert len(bomb) < 100 * 1024
    base = await serve({"/feed": feed_response(bomb, {"Content-Encoding": "gzip"})})
    async with Fetcher() as fetcher:
        tracemalloc.start()
        try:
            started = time.monotonic()
            with pytest.raises(FetchError, match=r"^response larger than 15 MiB$"):
                await fetcher.fetch(f"{base}/feed")
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert elapsed < 2
    assert peak < 20 * MiB  # the cap plus slack, far below the 50 MiB inside


async def test_all_permanent_redirects_set_permanent_url(serve: Serve, fetcher: Fetcher) -> None:
    """A chain of 301 and 308 reports the final URL as the feed's new permanent address."""
    base = await serve(
        {"/a": redirect(301, "/b"), "/b": redirect(308, "/feed"), "/feed": feed_response()}
    )
    result = await fetcher.fetch(f"{base}/a")
    assert result.body == FEED
    assert result.url == result.permanent_url == f"{base}/feed"


async def test_a_temporary_hop_leaves_permanent_url_unset(serve: Serve, fetcher: Fetcher) -> None:
    """One 302 in the chain means the old URL stays the feed's address."""
    base = await serve(
        {"/a": redirect(301, "/b"), "/b": redirect(302, "/feed"), "/feed": feed_response()}
    )
    result = await fetcher.fetch(f"{base}/a")
    assert result.url == f"{base}/feed"
    assert result.permanent_url is None


async def test_five_redirects_are_followed_and_six_are_too_many(
    serve: Serve, fetcher: Fetcher
) -> None:
    """max_redirects=5 allows exactly five hops; the sixth is a FetchError."""

    async def hop(request: web.Request) -> web.StreamResponse:
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(body=FEED)
        return web.Response(status=301, headers={"Location": f"/r/{left - 1}"})

    base = await serve({"/r/{n}": hop})
    assert (await fetcher.fetch(f"{base}/r/5")).permanent_url == f"{base}/r/0"
    with pytest.raises(FetchError, match=r"^too many redirects \(more than 5\)$"):
        await fetcher.fetch(f"{base}/r/6")


@pytest.mark.parametrize(
    ("location", "final_path"),
    [
        ("../feed.xml", "/dir/feed.xml"),
        ("/feed.xml", "/feed.xml"),
        ("feed.xml", "/dir/sub/feed.xml"),
    ],
)
async def test_relative_location_is_resolved_against_the_current_url(
    serve: Serve, fetcher: Fetcher, location: str, final_path: str
) -> None:
    """A relative Location is resolved against the URL that answered with it."""
    base = await serve({"/dir/sub/page": redirect(302, location), final_path: feed_response()})
    result = await fetcher.fetch(f"{base}/dir/sub/page")
    assert result.url == f"{base}{final_path}"
    assert result.body == FEED


async def test_redirect_to_a_non_http_scheme_is_refused(serve: Serve, fetcher: Fetcher) -> None:
    """A redirect cannot lead the fetcher to file: or any other scheme."""
    base = await serve({"/feed": redirect(302, "file:///etc/passwd")})
    with pytest.raises(FetchError, match=r"^unsupported URL scheme 'file'$"):
        await fetcher.fetch(f"{base}/feed")


async def test_404_is_a_fetch_error_naming_the_status(serve: Serve, fetcher: Fetcher) -> None:
    """A 404 raises FetchError('HTTP 404 Not Found') with no retry hint."""
    base = await serve({})
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{base}/gone")
    assert str(caught.value) == "HTTP 404 Not Found"
    assert caught.value.retry_after is None


async def test_429_retry_after_seconds_is_reported(serve: Serve, fetcher: Fetcher) -> None:
    """A 429 with Retry-After: 120 gives retry_after == 120 seconds."""
    base = await serve({"/feed": respond(429, {"Retry-After": "120"})})
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{base}/feed")
    assert str(caught.value) == "HTTP 429 Too Many Requests"
    assert caught.value.retry_after == 120.0


async def test_503_retry_after_http_date_is_reported(serve: Serve, fetcher: Fetcher) -> None:
    """A 503 with Retry-After as an HTTP-date gives the seconds until that date."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    base = await serve({"/feed": respond(503, {"Retry-After": when})})
    with pytest.raises(FetchError, match=r"^HTTP 503 Service Unavailable$") as caught:
        await fetcher.fetch(f"{base}/feed")
    assert caught.value.retry_after is not None
    assert 80 < caught.value.retry_after <= 90


async def test_silent_server_times_out_without_starving_another_host(serve: Serve) -> None:
    """A host that never answers times out after total_timeout and holds only its own slots."""
    healthy = await serve({"/feed": feed_response()})
    # One global slot beyond the silent host's single per-host slot: if queued fetches of the
    # silent host held global slots while waiting, the healthy fetch would wait for a timeout.
    limits = FetchLimits(total_timeout=0.5, concurrency=2, per_host=1)
    async with raw_server(b"") as silent, Fetcher(limits) as fetcher:
        started = time.monotonic()

        async def timed(url: str) -> float:
            with pytest.raises(FetchError, match=r"^timed out after 0.5 s$"):
                await fetcher.fetch(url)
            return time.monotonic() - started

        stuck = [asyncio.create_task(timed(f"{silent}/feed")) for _ in range(2)]
        await asyncio.sleep(0)  # let both queue on the silent host first
        assert (await fetcher.fetch(f"{healthy}/feed")).body == FEED
        healthy_elapsed = time.monotonic() - started
        first, second = sorted(await asyncio.gather(*stuck))
    assert healthy_elapsed < 0.25
    assert 0.45 < first < 0.9
    assert 0.95 < second < 1.6  # the second waited for the per-host slot, then its own 0.5 s


async def test_trickling_body_hits_the_total_timeout(serve: Serve) -> None:
    """A server that keeps sending a byte at a time cannot hold a fetch past total_timeout."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(200):
                await response.write(b"<")
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass  # the fetcher hung up, as it should
        return response

    base = await serve({"/feed": trickle})
    async with Fetcher(FetchLimits(total_timeout=0.5)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"^timed out after 0.5 s$"):
            await fetcher.fetch(f"{base}/feed")
        assert time.monotonic() - started < 1


async def test_connection_refused_is_a_one_line_error(fetcher: Fetcher) -> None:
    """A closed port gives FetchError('connection refused')."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/feed")
    assert str(caught.value) == "connection refused"


async def test_unresolvable_host_is_named(fetcher: Fetcher) -> None:
    """A DNS failure names the host (.invalid never resolves, RFC 6761)."""
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch("http://example.invalid/feed")
    assert str(caught.value) == "could not resolve host example.invalid"


async def test_tls_failure_is_a_one_line_error(serve: Serve, fetcher: Fetcher) -> None:
    """Speaking TLS to a plain-HTTP server gives a one-line 'TLS error'."""
    base = await serve({"/feed": feed_response()})
    with pytest.raises(FetchError, match=r"^TLS error: [^\n]+$"):
        await fetcher.fetch(base.replace("http://", "https://") + "/feed")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("ftp://127.0.0.1/feed.xml", "unsupported URL scheme 'ftp'"),
        ("javascript:alert(1)", "unsupported URL scheme 'javascript'"),
        ("/etc/passwd", "not an absolute URL"),
        ("http:///feed", "URL has no host"),
    ],
)
async def test_only_http_and_https_urls_are_fetched(
    fetcher: Fetcher, url: str, reason: str
) -> None:
    """Anything but an absolute http(s) URL is refused before any connection is made."""
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    assert str(caught.value) == reason


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_private_addresses_are_refused_when_not_allowed(serve: Serve, host: str) -> None:
    """allow_private=False refuses loopback by literal, by name and in IPv4-mapped form."""
    hits: list[str] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(body=FEED)

    port = (await serve({"/feed": feed})).rsplit(":", 1)[1]
    async with Fetcher(FetchLimits(allow_private=False)) as fetcher:
        with pytest.raises(FetchError, match=r"^address \S+ (of localhost )?is private$"):
            await fetcher.fetch(f"http://{host}:{port}/feed")
    assert hits == []


async def test_redirect_to_a_private_address_is_refused(serve: Serve) -> None:
    """allow_private=False checks every hop: a public URL redirecting to loopback fails."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path == "/start":
            return web.Response(status=302, headers={"Location": f"{base}/secret"})
        return web.Response(body=b"internal")

    base = await serve({"/start": record, "/secret": record})
    # The first hop names a public address; RouteTo delivers it to the local server instead, so
    # nothing leaves the machine and the policy sees exactly what it would in production.
    limits = FetchLimits(allow_private=False)
    async with Fetcher(limits, transport=RouteTo(base)) as fetcher:
        with pytest.raises(FetchError, match=r"^address 127\.0\.0\.1 is private$"):
            await fetcher.fetch("http://93.184.215.14/start")
    assert hits == ["/start"]


class RebindingDNS:
    """Name resolution for ``rebind.test`` as a rebinding DNS server makes it: the system's
    getaddrinfo, which a check before connecting would ask, answers a public address; the
    lookup the connection itself makes (aiohttp's resolver) gets 127.0.0.1."""

    NAME = "rebind.test"
    PUBLIC = "93.184.215.14"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connection_lookups = 0
        system = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != self.NAME:
                return system(host, port, *args, **kwargs)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.PUBLIC, int(port)))]

        async def resolve(
            _resolver: ThreadedResolver,
            host: str,
            port: int = 0,
            family: socket.AddressFamily = socket.AF_INET,
        ) -> list[ResolveResult]:
            self.connection_lookups += 1
            address = "127.0.0.1" if host == self.NAME else self.PUBLIC
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            return [
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=flags,
                )
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(ThreadedResolver, "resolve", resolve)


async def test_a_name_rebound_to_loopback_for_the_connection_is_refused(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """allow_private=False checks the addresses the connection actually goes to: a name
    that looked public beforehand but resolves to 127.0.0.1 when connecting never reaches
    the loopback server, on the first fetch or any later one."""
    hits: list[str] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(body=FEED)

    port = (await serve({"/feed": feed})).rsplit(":", 1)[1]
    dns = RebindingDNS(monkeypatch)
    async with Fetcher(FetchLimits(allow_private=False)) as fetcher:
        for _poll in range(2):
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(f"http://{dns.NAME}:{port}/feed")
            assert str(caught.value) == f"address 127.0.0.1 of {dns.NAME} is private"
    assert hits == []
    assert dns.connection_lookups == 2  # each poll's connection was looked up and checked


async def test_per_host_slots_bound_one_host_but_not_the_total(serve: Serve) -> None:
    """per_host=2 caps each host:port at 2 requests in flight, while two hosts run 4 at once."""
    total = InFlight()
    a, b = InFlight(total), InFlight(total)
    base_a = await serve({"/feed": a.handler})
    base_b = await serve({"/feed": b.handler})  # another port: another host for the slots
    async with Fetcher(FetchLimits(per_host=2)) as fetcher:
        await asyncio.gather(*(fetcher.fetch(f"{u}/feed") for u in [base_a, base_b] * 6))
    assert (a.peak, b.peak, total.peak) == (2, 2, 4)


async def test_global_concurrency_caps_requests_across_hosts(serve: Serve) -> None:
    """concurrency=3 caps requests in flight over all hosts together."""
    total = InFlight()
    bases = [await serve({"/feed": InFlight(total).handler}) for _ in range(3)]
    async with Fetcher(FetchLimits(concurrency=3, per_host=2)) as fetcher:
        await asyncio.gather(*(fetcher.fetch(f"{u}/feed") for u in bases * 4))
    assert total.peak == 3


async def test_sequential_fetches_reuse_one_keep_alive_connection(
    serve: Serve, fetcher: Fetcher
) -> None:
    """Fetches of one server ride one pooled connection instead of reconnecting each time."""
    peers: set[object] = set()

    async def feed(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(body=FEED)

    base = await serve({"/feed": feed})
    for _ in range(5):
        await fetcher.fetch(f"{base}/feed")
    assert len(peers) == 1


async def test_not_modified_and_error_answers_keep_the_connection(
    serve: Serve, fetcher: Fetcher
) -> None:
    """304s, redirects and small error pages leave the connection reusable (a warm poll
    costs no new TCP connections)."""
    peers: set[object] = set()

    async def answer(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/feed"}, text="moved")
        if request.path == "/gone":
            return web.Response(status=404, text="<html>not here</html>")
        return web.Response(status=304, headers={"ETag": '"v1"'})

    base = await serve({"/feed": answer, "/moved": answer, "/gone": answer})
    for _ in range(3):
        assert (await fetcher.fetch(f"{base}/feed", etag='"v1"')).not_modified
        assert (await fetcher.fetch(f"{base}/moved", etag='"v1"')).not_modified
        with pytest.raises(FetchError):
            await fetcher.fetch(f"{base}/gone")
    assert len(peers) == 1
