"""Health and metrics at NEWSBOT_METRICS_LISTEN, through the running bot: /healthz says
200 while all is well and 503 naming what is not; /metrics holds the figures an operator
and the Grafana dashboard read, and still answers while the database does not."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics as bot_metrics
from bot.app import TaskState
from bot.metrics import task_problem
from bot.text.topics import ResolvedTopic, resolve
from storage.chats import upsert_chat
from storage.db import Database
from storage.feeds import add_feed
from storage.models import utcnow
from tests.botharness import EDITOR, RunningBot, running_bot
from tests.fakebotapi import FakeBotAPI
from tests.feedserver import FeedServer, Item, make_rss
from tests.outages import database_down
from tests.processes import wait_until

DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "newsbot.json"
FOLLOWERS = (601, 602)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def watched(
    db: Database, database_url: str, fake_api: FakeBotAPI
) -> AsyncIterator[tuple[RunningBot, str]]:
    """The bot running with health and metrics on a free port; its base URL."""
    port = free_port()
    async with running_bot(database_url, fake_api, metrics_listen=f"127.0.0.1:{port}") as bot:
        yield bot, f"http://127.0.0.1:{port}"


def samples(page: str) -> Samples:
    """Every sample of a Prometheus page by name and labels (the parser rejects a bad page)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value."""
    return found[(name, frozenset(labels.items()))]


async def scrape(base: str) -> Samples:
    """GET /metrics, which must answer 200."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def health(base: str) -> httpx.Response:
    """GET /healthz."""
    async with httpx.AsyncClient() as client:
        return await client.get(f"{base}/healthz", timeout=10)


def russia() -> ResolvedTopic:
    """The catalog topic Russia, as a reader follows it."""
    resolved = resolve("روسيا")
    assert isinstance(resolved, ResolvedTopic)
    return resolved


async def send_alert_to_followers(bot: RunningBot) -> None:
    """Two readers follow Russia; the editor sends an alert to them; both receive it."""
    async with bot.services.db.transaction() as session:
        for chat_id in FOLLOWERS:
            await upsert_chat(session, chat_id, kind="private", language="ar")
            await bot.services.topics.follow(session, chat_id, russia())
    (shown,) = await bot.say(EDITOR, "/alert الكرملين يعلن هدنة #روسيا", user_id=EDITOR)
    await bot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
    for chat_id in FOLLOWERS:
        await bot.fake.wait_for_messages(chat_id, 1, 15.0)


async def test_healthz_and_metrics_show_a_working_bot(
    watched: tuple[RunningBot, str], feed_server: FeedServer
) -> None:
    """After a feed was polled and an alert reached two readers, /healthz answers 200 and
    /metrics counts the sends, the outbox, the feed's polls and its newest article, the
    topic's followers, the role and the tasks; every metric the Grafana dashboard queries
    is on the page."""
    bot, base = watched
    url = feed_server.add("feed.xml", make_rss("وكالة", [Item("خبر", "https://n.example/1")]))
    async with bot.services.db.transaction() as session:
        add_feed(session, url, name="وكالة الأنباء")
    await send_alert_to_followers(bot)

    async def settled() -> bool:
        found = await scrape(base)
        return (
            value(found, "newsbot_deliveries", state="sent") == len(FOLLOWERS)
            and value(found, "newsbot_feed_fetch_seconds_count") >= 1
            and ("newsbot_feed_newest_article_age_seconds", frozenset()) not in found
            and any(name == "newsbot_feed_newest_article_age_seconds" for name, _ in found)
        )

    await wait_until(settled, timeout=30, what="the alert and the poll in /metrics")
    found = await scrape(base)
    outcomes = {dict(labels)["outcome"] for name, labels in found if name == "newsbot_sends_total"}
    assert outcomes == {"sent", "rate_limited", "failed", "in_doubt"}
    # The sender counts what it sends in SendStats (bot/delivery/sender.py): at most 2 here.
    assert value(found, "newsbot_sends_total", outcome="sent") in (0, len(FOLLOWERS))
    assert value(found, "newsbot_sends_total", outcome="rate_limited") == 0
    assert value(found, "newsbot_sends_in_doubt") == 0
    assert value(found, "newsbot_feed_fetches_total", outcome="fetched") >= 1
    assert value(found, "newsbot_feeds") == 1 and value(found, "newsbot_feeds_failing") == 0
    age = value(
        found, "newsbot_feed_newest_article_age_seconds", feed_id="1", feed="وكالة الأنباء"
    )
    assert 0 <= age < timedelta(days=1).total_seconds()
    followers = value(found, "newsbot_topic_followers", topic=russia().label, key=russia().key)
    assert followers == len(FOLLOWERS)
    assert value(found, "newsbot_readers") >= len(FOLLOWERS)
    assert value(found, "newsbot_role", role="sender") == 1
    assert value(found, "newsbot_database_up") == 1
    tasks = {
        dict(labels)["task"]: v for (name, labels), v in found.items() if name == "newsbot_task_up"
    }
    assert {"watcher", "sender"} <= set(tasks) and set(tasks.values()) == {1.0}

    healthy = await health(base)
    assert healthy.status_code == 200, healthy.text
    assert healthy.text.startswith("ok") and "sender: ok" in healthy.text
    assert "roles: " in healthy.text and "sender" in healthy.text.split("roles: ")[1]

    names = {name for name, _ in found}
    for query in dashboard_queries():
        for metric in re.findall(r"\bnewsbot_[a-z_]+", query):
            assert metric in names, f"the dashboard queries {metric}, which /metrics lacks"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard (which must be valid JSON, with a
    Prometheus datasource variable that every panel uses)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    queries = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        queries += [target["expr"] for target in panel["targets"]]
    assert len(queries) >= 10
    return queries


async def test_healthz_names_what_fails_while_the_database_is_down(
    watched: tuple[RunningBot, str], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the database takes no write, /healthz answers 503 naming the tasks that fail
    (and, on PostgreSQL, the database itself) while /metrics still answers, with
    newsbot_database_up 0 where the database cannot be read; once it is back, 200."""
    _, base = watched
    monkeypatch.setattr(bot_metrics, "FAILING_FOR", timedelta(0))
    assert (await health(base)).status_code == 200

    async def unhealthy() -> bool:
        response = await health(base)
        return response.status_code == 503 and "sender: failing since" in response.text

    async with database_down(db):
        await wait_until(unhealthy, timeout=60, what="/healthz to name the failing sender")
        text = (await health(base)).text
        assert text.startswith("unhealthy")
        if not db.is_sqlite:  # SQLite still answers reads while another program writes
            assert "\ndatabase: " in text
            found = await scrape(base)
            assert value(found, "newsbot_database_up") == 0
            assert value(found, "newsbot_role", role="sender") in (0, 1)
            assert not any(name == "newsbot_deliveries" for name, _ in found)

    async def healthy() -> bool:
        return (await health(base)).status_code == 200

    await wait_until(healthy, timeout=60, what="/healthz to be 200 again")


def test_a_task_is_unhealthy_once_failing_too_long_or_stopped() -> None:
    """A running task is healthy; one failing for up to a minute too (a database restart
    is no emergency), past it not; a task that stopped without failing is not running."""
    now = utcnow()
    task = TaskState("the sender", running=True)
    assert task_problem(task, now) is None
    task.failing_since, task.last_error = now - timedelta(seconds=30), "connection refused"
    assert task_problem(task, now) is None
    task.failing_since = now - timedelta(seconds=61)
    problem = task_problem(task, now)
    assert problem is not None and "failing since" in problem and "connection refused" in problem
    assert task_problem(TaskState("the watcher", running=False), now) == "not running"
