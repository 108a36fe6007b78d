"""Several ``newsbot poll`` processes on one PostgreSQL database share the feeds: each feed
is fetched about once per poll interval, not once per process, and the feeds of a process
killed with SIGKILL are fetched by the others once its leases run out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from storage.db import Database
from tests.feeds.ingesting import watch
from tests.feedserver import FeedServer, Item, make_rss
from tests.processes import NEWSBOT, _process_env, wait_until

FEEDS = 12
# Each answer takes this long, so that two processes fetching one feed would overlap.
ANSWER_DELAY = 0.3
WINDOW = 6.0  # seconds of polling counted: about six poll intervals


class SlowFeedServer(FeedServer):
    """The feed server, answering every request after ANSWER_DELAY, and counting the
    requests for a feed that came while another for it was still being answered."""

    def __init__(self) -> None:
        super().__init__()
        self.answering: Counter[str] = Counter()
        self.overlapping: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if self.answering[path]:
            self.overlapping[path] += 1
        self.answering[path] += 1
        try:
            await asyncio.sleep(ANSWER_DELAY)
            return await super()._handle(request)
        finally:
            self.answering[path] -= 1


@asynccontextmanager
async def pollers(
    count: int, database_url: str, directory: Path
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` ``newsbot poll`` processes (each feed every second), killed at the end."""
    env = _process_env(
        {
            "NEWSBOT_DATABASE_URL": database_url,
            "NEWSBOT_POLL_INTERVAL": "1",
            "NEWSBOT_PARSE_WORKERS": "0",
            "NEWSBOT_FETCH_PER_HOST": "50",
        }
    )
    started = []
    try:
        for number in range(count):
            with (directory / f"poll-{number}.err").open("wb") as errors:
                started.append(
                    await asyncio.create_subprocess_exec(
                        NEWSBOT,
                        "poll",
                        env=env,
                        cwd=directory,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=errors,
                    )
                )
        yield started
    finally:
        for process in started:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 15)
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 3])
async def test_pollers_share_the_feeds_and_take_over_a_killed_ones(
    count: int, postgres_url: str, db: Database, tmp_path: Path
) -> None:
    """With 2 and 3 pollers, each feed is fetched about once a second (not once per
    process) and never by two at once; after one is killed the others go on fetching
    every feed."""
    if db.is_sqlite:
        pytest.skip("several processes share a PostgreSQL database, not a SQLite one")
    async with SlowFeedServer() as server:
        paths = [f"f{n}.xml" for n in range(FEEDS)]
        for n, path in enumerate(paths):
            body = make_rss(f"F{n}", [Item(f"خبر {n}", f"https://n.example/{n}")])
            server.add(path, body)
            await watch(db, server.url(path))
        async with pollers(count, postgres_url, tmp_path) as processes:

            async def every_feed_fetched_twice() -> bool:
                return all(server.hits[path] >= 2 for path in paths)

            await wait_until(every_feed_fetched_twice, timeout=60, what="every feed polled")
            before = dict(server.hits)
            await asyncio.sleep(WINDOW)
            fetched = {path: server.hits[path] - before[path] for path in paths}
            # A feed is fetched again 0.9 s (the interval, less its jitter) at the soonest
            # after the last fetch, which takes ANSWER_DELAY: so many times at most.
            assert max(fetched.values()) <= WINDOW / (0.9 + ANSWER_DELAY) + 1, fetched
            assert min(fetched.values()) >= 2, fetched

            processes[0].kill()  # mid-fetch, most likely, holding leases
            await processes[0].wait()
            after_kill = dict(server.hits)

            async def every_feed_fetched_again() -> bool:
                return all(server.hits[path] >= after_kill[path] + 2 for path in paths)

            await wait_until(every_feed_fetched_again, timeout=30, what="the killed one's feeds")
        assert server.overlapping == Counter(), "a feed was fetched by two processes at once"
