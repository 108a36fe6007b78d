"""A local HTTP server for feed documents, with conditional GET, gzip, redirects and hangs.

Used by the tests and the benchmarks: real HTTP over loopback, no mocks.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from xml.sax.saxutils import escape

from aiohttp import web

RSS = "application/rss+xml; charset=utf-8"


@dataclass
class Document:
    """What the server answers on one path."""

    body: bytes = b""
    content_type: str = RSS
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    validators: bool = True  # send ETag and Last-Modified, answer 304 when they match
    gzip: bool = False
    redirect_to: str | None = None
    hang: bool = False  # accept the request and never answer


class FeedServer:
    """An aiohttp server on 127.0.0.1 with an ephemeral port."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.hits: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.requests: list[web.Request] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> FeedServer:
        app = web.Application()
        app.router.add_route("GET", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        """The absolute URL of a path on this server."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes | str = b"", **options: object) -> str:
        """Serve a document on a path and return its URL."""
        data = body.encode() if isinstance(body, str) else body
        self.documents[path.lstrip("/")] = Document(body=data, **options)  # type: ignore[arg-type]
        return self.url(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if request.query_string:
            path_with_query = f"{path}?{request.query_string}"
            if path_with_query in self.documents:
                path = path_with_query
        self.hits[path] += 1
        self.requests.append(request)
        document = self.documents.get(path)
        if document is None:
            return web.Response(status=404, text="not found")
        if document.hang:
            await self._closing.wait()
            return web.Response(status=503)
        if document.redirect_to is not None:
            return web.Response(status=document.status, headers={"Location": document.redirect_to})
        headers = dict(document.headers)
        if document.validators and document.status == 200:
            etag = '"' + hashlib.sha256(document.body).hexdigest()[:16] + '"'
            modified = formatdate(1_700_000_000 + len(document.body), usegmt=True)
            headers.update({"ETag": etag, "Last-Modified": modified})
            if request.headers.get("If-None-Match") == etag:
                self.not_modified[path] += 1
                return web.Response(status=304, headers=headers)
        body = document.body
        if document.gzip and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = document.content_type
        return web.Response(status=document.status, body=body, headers=headers)


@dataclass(frozen=True)
class Item:
    """One RSS item for :func:`make_rss`."""

    title: str
    link: str | None = None
    guid: str | None = None
    description: str = ""
    published: str | None = None  # RFC 822, as RSS wants
    categories: tuple[str, ...] = ()


def make_rss(title: str, items: list[Item], link: str = "https://news.example/") -> str:
    """A small, valid RSS 2.0 document."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link>",
        "<description>test feed</description>",
    ]
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(item.title)}</title>")
        if item.link:
            parts.append(f"<link>{escape(item.link)}</link>")
        if item.guid:
            parts.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>')
        if item.description:
            parts.append(f"<description>{escape(item.description)}</description>")
        if item.published:
            parts.append(f"<pubDate>{item.published}</pubDate>")
        parts.extend(f"<category>{escape(category)}</category>" for category in item.categories)
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts)
