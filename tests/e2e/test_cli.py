"""The `newsbot` command as an operator runs it: a process, a local feed server, a database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from aiohttp import web
from telegram.error import NetworkError

from bot.config import DEFAULT_API_URL
from bot.runner import bot_api_problem
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from tests.faults import REFUSAL, refusing_articles
from tests.feedserver import FeedServer, Item, make_rss
from tests.processes import NEWSBOT, newsbot, newsbot_command, one_line_error


def arabic_feed() -> str:
    """A small Arabic feed with a story about Kursk."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    items = [
        Item(
            "عاجل: بوتين يشكر زعيم كوريا الشمالية على المساعدة في كورسك",
            "https://news.example/kursk?utm_source=rss",
            description="<p>أعرب الرئيس الروسي عن امتنانه</p>",
            published=now,
        ),
        Item("مصر تستضيف قمة اقتصادية", "https://news.example/egypt", published=now),
        Item("مصرف لبنان يرفع الفائدة", "https://news.example/bank", published=now),
    ]
    return make_rss("وكالة الأنباء", items)


async def test_a_new_operator_adds_polls_lists_and_searches(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """feeds add reports the title and count; poll, list and search then show the articles."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    url = feed_server.add("ar.xml", arabic_feed())

    added = await newsbot_command("feeds", "add", url, "--name", "الوكالة", env=env, cwd=tmp_path)
    assert added.code == 0, added.err
    assert "الوكالة" in added.out and "3 items" in added.out

    polled = await newsbot("poll", "--once", env=env, cwd=tmp_path)
    assert polled.code == 0, polled.err
    assert "fetched 0, unchanged 1, failed 0, new articles 0" in polled.out

    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    header, row = listed.out.strip().splitlines()
    assert header.split("\t") == [
        "id",
        "name",
        "URL",
        "breaking",
        "last fetch",
        "status",
        "articles",
    ]
    assert row.split("\t")[:4] == ["1", "الوكالة", url, "no"]
    assert row.split("\t")[-2:] == ["unchanged", "3"]

    found = await newsbot_command("search", "كورسك", "--json", env=env, cwd=tmp_path)
    assert found.code == 0, found.err
    (line,) = found.out.strip().splitlines()
    article = json.loads(line)
    assert article["title"].startswith("عاجل: بوتين")
    assert article["link"] == "https://news.example/kursk"
    assert article["source"] == "الوكالة"
    assert datetime.fromisoformat(article["published"]).tzinfo is not None

    for spelled in ("كوريا الشماليه", "بوتن", "وكورسك"):  # other spellings find it too
        result = await newsbot("search", spelled, "--json", env=env, cwd=tmp_path)
        titles = [json.loads(line)["title"] for line in result.out.splitlines()]
        assert titles and titles[0].startswith("عاجل: بوتين"), (spelled, titles)
    bank = await newsbot("search", "مصر", "--json", env=env, cwd=tmp_path)
    assert [json.loads(line)["link"] for line in bank.out.splitlines()] == [
        "https://news.example/egypt"
    ]

    pages = [
        await newsbot("search", "قمة", "--limit", "1", "--page", str(page), "--json", env=env)
        for page in (1, 2)
    ]
    assert [len(page.out.splitlines()) for page in pages] == [1, 0]

    hostile = await newsbot("search", '"*(OR', env=env, cwd=tmp_path)
    assert hostile.code == 0 and "no articles match" in hostile.out


async def test_poll_once_reports_failures(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """A feed that starts failing is counted and named in poll's summary."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    url = feed_server.add("ar.xml", arabic_feed())
    assert (await newsbot("feeds", "add", url, env=env, cwd=tmp_path)).code == 0
    feed_server.add("ar.xml", "gone", status=410)
    polled = await newsbot("poll", "--once", env=env, cwd=tmp_path)
    assert "fetched 0, unchanged 0, failed 1, new articles 0" in polled.out
    assert "feed 1 failed: HTTP 410" in polled.out
    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    assert "error (1×): HTTP 410" in listed.out


async def test_mistakes_get_one_line(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """A mistyped URL, a missing feed, a non-feed page and a bad variable each get one line."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    page = feed_server.add("page.html", "<html><body>hi</body></html>", content_type="text/html")
    cases = {
        ("feeds", "add", "htps//example.com/rss"): "not a feed URL",
        ("feeds", "add", feed_server.url("missing.xml")): "HTTP 404",
        ("feeds", "add", page): "not an RSS or Atom feed",
        ("feeds", "remove", "42"): "no feed '42'",
        ("search", "   "): "empty query",
    }
    for args, expected in cases.items():
        assert expected in one_line_error(await newsbot(*args, env=env, cwd=tmp_path))
    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    assert "no feeds yet" in listed.out  # nothing half-added

    bad = {
        "NEWSBOT_POLL_INTERVAL": ("0", "NEWSBOT_POLL_INTERVAL: expected a number of at least 1"),
        "NEWSBOT_ADMINS": ("12,abc", "NEWSBOT_ADMINS: expected comma-separated Telegram user"),
        "NEWSBOT_TIMEZONE": ("Mars/Olympus", "NEWSBOT_TIMEZONE: expected an IANA time zone"),
        "NEWSBOT_DATABASE_URL": ("mysql://db", "NEWSBOT_DATABASE_URL: expected a sqlite"),
    }
    for variable, (value, expected) in bad.items():
        result = await newsbot("feeds", "list", env=env | {variable: value}, cwd=tmp_path)
        assert one_line_error(result).startswith(f"newsbot: {expected}")


async def test_run_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    """`newsbot run` with no token explains in one line how to create and set one."""
    line = one_line_error(await newsbot_command("run", env={}, cwd=tmp_path))
    assert "@BotFather" in line and "NEWSBOT_TOKEN" in line


async def test_run_with_a_rejected_token_says_so(tmp_path: Path) -> None:
    """A token the Bot API refuses ends `newsbot run` with one line naming NEWSBOT_TOKEN."""

    async def unauthorized(_request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
        )

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", unauthorized)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = {
            "NEWSBOT_TOKEN": "123456:not-a-real-token",
            "NEWSBOT_API_URL": f"http://127.0.0.1:{port}/bot",
            "NEWSBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        }
        result = await newsbot_command("run", env=env, cwd=tmp_path)
    finally:
        await runner.cleanup()
    line = one_line_error(result)
    assert "NEWSBOT_TOKEN" in line and "rejected" in line
    assert "not-a-real-token" not in result.err + result.out  # the secret never shows


async def test_opml_import_export_and_remove(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """Feeds imported from OPML are listed, exported back, and removed by id or URL."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    one, two = feed_server.url("one.xml"), feed_server.url("two.xml")
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>'
        f'<outline text="واحد" xmlUrl="{one}"/>'
        f'<outline text="group"><outline text="اثنان" xmlUrl="{two}"/></outline>'
        "</body></opml>",
        encoding="utf-8",
    )
    imported = await newsbot("feeds", "import", str(opml), env=env, cwd=tmp_path)
    assert "imported 2 feeds (0 already watched)" in imported.out
    again = await newsbot("feeds", "import", str(opml), env=env, cwd=tmp_path)
    assert "imported 0 feeds (2 already watched)" in again.out

    exported = await newsbot("feeds", "export", env=env, cwd=tmp_path)
    assert f'xmlUrl="{one}"' in exported.out and 'text="اثنان"' in exported.out

    assert (await newsbot("feeds", "remove", "1", env=env, cwd=tmp_path)).code == 0
    assert (await newsbot("feeds", "remove", two, env=env, cwd=tmp_path)).code == 0
    assert "no feeds yet" in (await newsbot("feeds", "list", env=env, cwd=tmp_path)).out
    missing = await newsbot("feeds", "import", str(tmp_path / "nope.opml"), env=env, cwd=tmp_path)
    assert "cannot read" in one_line_error(missing)


async def test_db_upgrade_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    """With no configuration, `db upgrade` creates newsbot.db in the working directory."""
    result = await newsbot_command("db", "upgrade", env={}, cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "newsbot.db").exists()


async def test_db_reindex_brings_stale_search_terms_up_to_date(
    db: Database, tmp_path: Path
) -> None:
    """Articles whose stored terms an older text engine wrote are found after reindexing."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    now = datetime.now(UTC)
    stale = ArticleData(
        uid="u:https://n.example/energy",
        link="https://n.example/energy",
        title="افتتاح محطة للطاقة الشمسية",
        summary="",
        categories=(),
        published_at=now,
        alertable=False,
        breaking=False,
        title_terms="افتتاح محطه للطاقه شمسيه",  # what the engine used to say
    )
    async with db.transaction() as session:
        feed = add_feed(session, "https://n.example/rss")
        await session.flush()
        await upsert_articles(session, feed.id, [stale], now)
    before = await newsbot("search", "الطاقة الشمسية", "--json", env=env, cwd=tmp_path)
    assert before.out == ""

    reindexed = await newsbot("db", "reindex", env=env, cwd=tmp_path)

    assert reindexed.code == 0 and reindexed.out.startswith("re-indexed 1 article ")
    after = await newsbot("search", "الطاقة الشمسية", "--json", env=env, cwd=tmp_path)
    assert "للطاقة الشمسية" in after.out


async def test_one_liners_say_what_really_happened(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """An unwritable export file, a page past the last and a one-item feed are each told as
    they are, not as a database problem, an empty archive or "1 items"."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    one = make_rss("وكالة", [Item("غزة: هدنة جديدة", "https://news.example/gaza")])
    added = await newsbot("feeds", "add", feed_server.add("one.xml", one), env=env)
    assert "(1 item, archived without alerts)" in added.out

    exported = await newsbot("feeds", "export", "-o", "/no/such/dir/f.opml", env=env)
    line = one_line_error(exported)
    assert "cannot write /no/such/dir/f.opml: No such file or directory" in line
    assert "database" not in line
    written = await newsbot("feeds", "export", "-o", str(tmp_path / "f.opml"), env=env)
    assert written.code == 0 and "wrote 1 feed to" in written.err
    assert "xmlUrl" in (tmp_path / "f.opml").read_text(encoding="utf-8")

    past = await newsbot("search", "غزة", "--page", "99", env=env)
    assert past.code == 0
    assert "page 99 is past the last: 'غزة' has 1 page of results" in past.out
    assert "no articles match" not in past.out


async def test_db_upgrade_says_whether_it_created_upgraded_or_found_it_current(
    tmp_path: Path,
) -> None:
    """A new database is reported as created, an up-to-date one as up to date."""
    env = {"NEWSBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"}
    created = await newsbot("db", "upgrade", env=env)
    assert created.out.startswith("created the database ") and "fresh.db" in created.out
    again = await newsbot("db", "upgrade", env=env)
    assert again.out.startswith("the database is up to date (schema revision ")


async def test_unknown_variables_are_warned_about(tmp_path: Path) -> None:
    """A misspelt NEWSBOT_ variable in .env or the environment is named, with the setting it
    probably meant; the command still runs."""
    (tmp_path / ".env").write_text("NEWSBOT_TOKN=123:abc\nNEWSBOT_TIMEZONE=UTC\n")
    result = await newsbot_command(
        "feeds", "list", env={"NEWSBOT_POLL_INTERVALL": "5"}, cwd=tmp_path
    )
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        "newsbot: warning: NEWSBOT_POLL_INTERVALL (in the environment) is not a setting and is"
        " ignored; did you mean NEWSBOT_POLL_INTERVAL?",
        "newsbot: warning: NEWSBOT_TOKN (in .env) is not a setting and is ignored; did you mean"
        " NEWSBOT_TOKEN?",
    ]


async def test_an_unreachable_bot_api_is_not_blamed_on_the_wrong_setting(tmp_path: Path) -> None:
    """A Bot API that cannot be reached is told as such: Telegram's own points at the network,
    a local one at that server or NEWSBOT_API_URL; neither blames the token."""
    env = {
        "NEWSBOT_TOKEN": "123456:fake",
        "NEWSBOT_API_URL": "http://127.0.0.1:9/bot",  # the discard port: nothing listens
        "NEWSBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    }
    line = one_line_error(await newsbot_command("run", env=env, cwd=tmp_path))
    assert line.startswith("newsbot: cannot reach the Bot API at http://127.0.0.1:9/bot (")
    assert "NEWSBOT_TOKEN" not in line

    telegrams = bot_api_problem(NetworkError("Connection refused"), DEFAULT_API_URL)
    assert "network" in telegrams and "NEWSBOT_API_URL" not in telegrams


async def test_continuous_poll_reports_news_and_stops_cleanly_on_a_signal(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """`newsbot poll` says what it polls, prints a line for each feed with news, and exits 0
    on SIGINT and on SIGTERM, its parse workers stopped (no leaked semaphores)."""
    env = {
        "NEWSBOT_DATABASE_URL": db.url.render_as_string(False),
        "NEWSBOT_POLL_INTERVAL": "1",
        "NEWSBOT_PARSE_WORKERS": "1",
    }
    url = feed_server.add("ar.xml", arabic_feed())
    assert (await newsbot("feeds", "add", url, env=env)).code == 0
    for number in (signal.SIGINT, signal.SIGTERM):
        process = await asyncio.create_subprocess_exec(
            NEWSBOT,
            "poll",
            env={k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")} | env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        first = await asyncio.wait_for(process.stderr.readline(), 30)
        assert first.decode().startswith("newsbot: polling 1 feed, each every 1 s")
        if number == signal.SIGINT:  # news arrives: the next poll reports it
            fresh = Item("عاجل: زلزال في تركيا", "https://news.example/quake")
            feed_server.add("ar.xml", make_rss("وكالة الأنباء", [fresh]))
            news = await asyncio.wait_for(process.stderr.readline(), 30)
            assert news.decode().startswith("newsbot: feed 1 (وكالة الأنباء): 1 new article")
        process.send_signal(number)
        _out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        assert err.decode().strip().endswith("newsbot: stopped")
        assert "Traceback" not in err.decode() and "leaked" not in err.decode()


async def test_poll_once_survives_a_feed_the_database_refuses(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """A feed whose articles the database refuses fails alone: `poll --once` stores the
    others, names the failure, and `feeds list` shows it with its count."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    good = feed_server.add("good.xml", arabic_feed())
    bad = feed_server.add("bad.xml", make_rss("Bad", [Item("خبر أول", "https://b.example/1")]))
    for url in (good, bad):
        assert (await newsbot("feeds", "add", url, env=env, cwd=tmp_path)).code == 0
    feed_server.add("good.xml", make_rss("وكالة", [Item("خبر جديد", "https://news.example/n")]))
    feed_server.add("bad.xml", make_rss("Bad", [Item("poison", "https://b.example/2")]))
    async with refusing_articles(db, "poison"):
        polled = await newsbot("poll", "--once", env=env, cwd=tmp_path)
    assert polled.code == 0, polled.err
    assert "fetched 1, unchanged 0, failed 1, new articles 1" in polled.out
    assert f"feed 2 failed: storage error: {REFUSAL}" in polled.out
    assert "Traceback" not in polled.err
    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    assert f"error (1×): storage error: {REFUSAL}" in listed.out


async def test_feeds_add_keeps_nothing_the_database_refuses(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """A feed whose first fetch cannot be stored, or whose URL is too long to store, is
    not added: one line says why and no feed is left behind."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    bad = feed_server.add("bad.xml", make_rss("Bad", [Item("poison", "https://b.example/1")]))
    long = feed_server.add("long/" + "l" * 2100 + ".xml", arabic_feed())
    async with refusing_articles(db, "poison"):
        refused = await newsbot("feeds", "add", bad, env=env, cwd=tmp_path)
    assert one_line_error(refused) == f"newsbot: cannot add {bad}: storage error: {REFUSAL}"
    assert "not a feed URL" in one_line_error(await newsbot("feeds", "add", long, env=env))
    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    assert "no feeds yet" in listed.out


async def test_a_verbose_run_never_logs_the_token(sqlite_url: str, tmp_path: Path) -> None:
    """`newsbot -v run` logs its start-up check, polling, a reader's command and its stop
    in detail, yet the bot token appears nowhere in its output."""
    from tests.fakebotapi import FakeBotAPI
    from tests.processes import BotProcess, bot_env, say

    verbose = tmp_path / "newsbot-verbose"
    verbose.write_text(f'#!/bin/sh\nexec "{NEWSBOT}" -v "$@"\n')
    verbose.chmod(0o755)
    async with FakeBotAPI(any_chat=True) as fake:
        bot = BotProcess(fake, bot_env(fake, sqlite_url), tmp_path, command=str(verbose))
        await bot.start()
        try:
            await say(fake, 4242, "/start")
        finally:
            await bot.stop_cleanly()
        secret = fake.token.split(":", 1)[1]
    output = bot.stderr + "".join(path.read_text() for path in tmp_path.glob("newsbot-*.out"))
    assert " INFO " in output, output  # it did log in detail
    assert secret not in output, [line for line in output.splitlines() if secret in line]


async def test_an_opml_with_overlong_entries_imports_the_rest(
    db: Database, feed_server: FeedServer, tmp_path: Path
) -> None:
    """An OPML entry whose URL storage cannot hold is skipped and an over-long name is cut:
    the other feeds are imported, on both backends, instead of the whole list refused."""
    env = {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False)}
    good, long_url = feed_server.url("good.xml"), feed_server.url("x" * 3000 + ".xml")
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>'
        f'<outline text="{"اسم طويل " * 60}" xmlUrl="{good}"/>'
        f'<outline text="long" xmlUrl="{long_url}"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    imported = await newsbot("feeds", "import", str(opml), env=env, cwd=tmp_path)
    assert imported.code == 0, imported.err
    assert "imported 1 feed (0 already watched)" in imported.out
    listed = await newsbot("feeds", "list", env=env, cwd=tmp_path)
    (row,) = listed.out.strip().splitlines()[1:]
    name = row.split("\t")[1]
    assert name.startswith("اسم طويل") and name.endswith("…") and len(name) <= 200
