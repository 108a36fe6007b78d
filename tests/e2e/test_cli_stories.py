"""`newsbot stories`: the stories newest first, as lines and as JSON, and `--regroup` over an
archive stored before stories were kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.feeds.stories import StoryAssigner
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from tests.processes import newsbot, one_line_error

KYIV = [
    "روسيا تشن هجوما واسعا بالمسيرات على العاصمة الأوكرانية كييف",
    "هجوم روسي بالمسيرات والصواريخ على كييف يوقع 3 قتلى",
    "مقتل ثلاثة أشخاص في هجوم روسي بطائرات مسيرة على كييف",
]
IDLIB = "انفجار سيارة مفخخة وسط إدلب يوقع قتلى وجرحى"
OUTLETS = ["الجزيرة", "سكاي نيوز عربية", "بي بي سي عربي"]


def article(uid: str, title: str, published: datetime) -> ArticleData:
    """An article as a feed gives it."""
    return ArticleData(
        uid=uid,
        link=f"https://news.example/{uid}",
        title=title,
        summary="",
        categories=(),
        published_at=published,
        alertable=True,
        breaking=False,
    )


async def archive(db: Database, *, grouped: bool) -> None:
    """Three outlets' reports of one event and one other story, stored a minute apart (put
    in stories as they are stored if ``grouped``, else as an archive from before stories)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        feeds = [
            add_feed(session, f"https://f{i}.example/rss", name=n) for i, n in enumerate(OUTLETS)
        ]
        await session.flush()
        feed_ids = [feed.id for feed in feeds]
    assigner = StoryAssigner()
    stored = [(0, IDLIB), *((index, title) for index, title in enumerate(KYIV))]
    for minute, (index, title) in enumerate(stored):
        at = now - timedelta(minutes=10 - minute)
        async with db.transaction() as session:
            new = await upsert_articles(
                session, feed_ids[index], [article(f"a{minute}", title, at)], at
            )
            if grouped:
                await assigner.assign(session, new.new_ids, at)


def env_of(db: Database) -> dict[str, str]:
    """The variables that point `newsbot` at the test database."""
    return {"NEWSBOT_DATABASE_URL": db.url.render_as_string(False), "NEWSBOT_TIMEZONE": "UTC"}


async def test_stories_are_listed_newest_first_with_their_articles(
    db: Database, tmp_path: Path
) -> None:
    """`newsbot stories` shows each story with its count of articles and outlets and each
    article's feed and title; `--json` gives the same as a list of objects, newest first."""
    await archive(db, grouped=True)
    listed = await newsbot("stories", env=env_of(db), cwd=tmp_path)
    assert listed.code == 0, listed.err
    assert "3 articles, 3 outlets" in listed.out
    assert "1 article, 1 outlet" in listed.out
    assert f"  بي بي سي عربي · {KYIV[2]}" in listed.out

    as_json = await newsbot("stories", "--json", "--since", "1", env=env_of(db), cwd=tmp_path)
    assert as_json.code == 0, as_json.err
    assert "\\u" not in as_json.out  # UTF-8, not escaped
    stories = json.loads(as_json.out)
    assert [len(story["articles"]) for story in stories] == [3, 1]  # newest first
    newest = stories[0]
    assert set(newest) == {"id", "first_seen", "articles"}
    assert datetime.fromisoformat(newest["first_seen"]).tzinfo is not None
    assert [a["title"] for a in newest["articles"]] == KYIV
    assert [a["feed"] for a in newest["articles"]] == OUTLETS
    first = newest["articles"][0]
    assert set(first) == {"id", "feed", "title", "link", "published"}
    assert first["link"].startswith("https://news.example/")
    assert datetime.fromisoformat(first["published"]).tzinfo is not None

    nothing = await newsbot("stories", "--json", "--since", "0", env=env_of(db), cwd=tmp_path)
    assert json.loads(nothing.out) == []


async def test_regroup_puts_an_archive_into_stories(db: Database, tmp_path: Path) -> None:
    """`--regroup` groups the articles stored before stories were kept, in time order, says
    how many it placed and in how many new stories; a second run finds nothing to do."""
    await archive(db, grouped=False)
    before = json.loads((await newsbot("stories", "--json", env=env_of(db), cwd=tmp_path)).out)
    assert before == []
    regrouped = await newsbot("stories", "--regroup", env=env_of(db), cwd=tmp_path)
    assert regrouped.code == 0, regrouped.err
    assert "regrouped: articles placed 4, new stories 2" in regrouped.out
    assert "4 of 4 articles read" in regrouped.err
    stories = json.loads((await newsbot("stories", "--json", env=env_of(db), cwd=tmp_path)).out)
    assert sorted(len(story["articles"]) for story in stories) == [1, 3]
    again = await newsbot("stories", "--regroup", env=env_of(db), cwd=tmp_path)
    assert "regrouped: articles placed 0, new stories 0" in again.out


async def test_bad_hours_are_one_line_errors(db: Database, tmp_path: Path) -> None:
    """A negative or non-numeric `--since` is refused in one line, exit status 2."""
    for given in ("-1", "abc", "nan"):
        result = await newsbot("stories", "--since", given, env=env_of(db), cwd=tmp_path)
        assert result.code == 2
        assert "--since expects a number of hours" in one_line_error(result)
