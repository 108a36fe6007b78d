"""`newsbot run` with NEWSBOT_METRICS_LISTEN serves /healthz and /metrics, in long-polling
and webhook mode alike, and stops serving them when it stops."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_webhook import free_port, start_webhook_bot
from tests.fakebotapi import FakeBotAPI
from tests.processes import BotProcess, bot_env, newsbot_command, wait_until


async def get(url: str) -> httpx.Response:
    """GET ``url``, waiting for its server to listen (it starts with the bot's services)."""
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                return await client.get(url, timeout=10)
            except httpx.ConnectError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens at {url}")


async def assert_served(base: str, *, polling: bool) -> None:
    """/healthz is 200 and /metrics a Prometheus page saying this process is up, holds the
    sender, and (in long polling) takes the updates."""
    healthy = await get(f"{base}/healthz")
    assert healthy.status_code == 200, healthy.text
    assert healthy.text.startswith("ok")
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def holds_the_sender() -> bool:
        page = await get(f"{base}/metrics")
        assert page.status_code == 200
        values.clear()
        values.update(
            ((sample.name, tuple(sorted(sample.labels.items()))), sample.value)
            for family in text_string_to_metric_families(page.text)
            for sample in family.samples
        )
        return values[("newsbot_role", (("role", "sender"),))] == 1

    # The sender's lock is taken by a task of its own, just after the bot is up.
    await wait_until(holds_the_sender, what="the sender role in /metrics")
    assert values[("newsbot_database_up", ())] == 1
    assert values[("newsbot_task_up", (("task", "sender"),))] == 1
    assert ("newsbot_deliveries", (("state", "pending"),)) in values
    if not polling:  # a webhook bot never long-polls Telegram
        assert values[("newsbot_role", (("role", "updates"),))] == 0


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_running_bot_serves_health_and_metrics(
    mode: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A real `newsbot run` process, in each mode, answers /healthz and /metrics on
    NEWSBOT_METRICS_LISTEN, stops cleanly on SIGTERM and then no longer listens."""
    metrics_port = free_port()
    base = f"http://127.0.0.1:{metrics_port}"
    async with FakeBotAPI(any_chat=True) as fake:
        env = bot_env(fake, sqlite_url, metrics_listen=f"127.0.0.1:{metrics_port}")
        if mode == "polling":
            bot = BotProcess(fake, env, tmp_path)
            await bot.start()
        else:
            env |= bot_env(
                fake,
                sqlite_url,
                webhook_url="https://bot.news.example/hook",
                listen=f"127.0.0.1:{free_port()}",
            )
            bot = await start_webhook_bot(fake, env, tmp_path)
        try:
            await assert_served(base, polling=mode == "polling")
        finally:
            if bot.running:
                code, _seconds = await bot.terminate()
                assert code == 0, bot.stderr
        assert "Traceback" not in bot.stderr, bot.stderr
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{base}/healthz")


async def test_a_taken_metrics_port_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    """A metrics address another program holds stops `newsbot run` with one line naming
    NEWSBOT_METRICS_LISTEN, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        async with FakeBotAPI(any_chat=True) as fake:
            env = bot_env(fake, sqlite_url, metrics_listen=f"127.0.0.1:{port}")
            result = await newsbot_command("run", env=env, cwd=tmp_path)
    assert result.code == 2, result.err
    assert f"NEWSBOT_METRICS_LISTEN: cannot listen on 127.0.0.1:{port}" in result.err
    assert "Traceback" not in result.err, result.err
