"""The health and metrics server at NEWSBOT_METRICS_LISTEN: ``/healthz`` for a load
balancer or a service manager, ``/metrics`` for Prometheus (see :mod:`bot.metrics`).

It serves from the bot's own event loop (aiohttp), in polling and webhook mode alike.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from bot.config import ConfigError
from bot.i18n import translator
from bot.metrics import DATABASE_TIMEOUT, Metrics, Observed, task_problem
from storage.db import Database
from storage.models import utcnow

log = logging.getLogger(__name__)
_ = translator("en").gettext


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` for one runtime until stopped."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self.metrics = Metrics(observed)
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; a port that cannot be had is a ConfigError."""
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                _("NEWSBOT_METRICS_LISTEN: cannot listen on {host}:{port} ({reason})").format(
                    host=host, port=port, reason=exc.strerror or exc
                )
            ) from None
        log.info("health and metrics at http://%s:%d/healthz and /metrics", host, port)

    async def stop(self) -> None:
        """Stop listening and close the open connections."""
        await self._runner.cleanup()

    async def problems(self) -> list[str]:
        """What is unhealthy, one line each (``database: …``, ``sender: …``); none when
        the database answers and every long-running task is alive."""
        found = []
        error = await database_problem(self.observed.db)
        if error is not None:
            found.append(f"database: {error}")
        now = utcnow()
        for name, task in sorted(self.observed.tasks.items()):
            problem = task_problem(task, now)
            if problem is not None:
                found.append(f"{name}: {problem}")
        return found

    async def _healthz(self, _request: web.Request) -> web.Response:
        problems = await self.problems()
        if problems:
            return web.Response(status=503, text="\n".join(["unhealthy", *problems, ""]))
        tasks = [f"{name}: ok" for name in sorted(self.observed.tasks)]
        roles = ", ".join(sorted(self.observed.roles)) or "none"
        return web.Response(text="\n".join(["ok", "database: ok", *tasks, f"roles: {roles}", ""]))

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def database_problem(db: Database) -> str | None:
    """Why the database does not answer ``SELECT 1`` within the timeout, or None if it does."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # whatever it is, the check's answer is that it failed
        return _one_line(exc)
    return None


def _one_line(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


__all__ = ["HealthServer", "database_problem"]
