"""Archive search on SQLite (FTS5) and PostgreSQL (tsvector): matching, ranking, paging,
hostile input, keeping the index in step, and the migration that builds it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, select, text, update

import storage.search
from bot.feeds.reindex import reindex_articles
from bot.text.normalise import index_text, query_terms
from storage.articles import ArticleData, upsert_articles
from storage.db import Database
from storage.feeds import add_feed
from storage.models import Article, UTCDateTime
from storage.search import (
    Ranking,
    SearchHit,
    count_matches,
    list_found_articles,
    rank_matches,
    search_articles,
)
from storage.ui_state import add_ui_state, get_ui_state
from tests.processes import newsbot
from tests.storage.migrating import migrate

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FEED_URL = "https://news.example/rss"


def plain_terms(text: str) -> str:
    """The test's stand-in for the text engine: the words as written, lower-cased.

    Storage only sees terms, whatever the engine makes of a text; most tests pin storage's
    behaviour on terms they choose, so that improving the engine never changes them.
    """
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Story:
    """An article to store: its text and how long before NOW it was published."""

    title: str
    summary: str = "خبر من وكالة الانباء"
    age: timedelta = timedelta(0)
    uid: str = ""
    terms: Callable[[str], str] = plain_terms


async def store(db: Database, *stories: Story) -> list[int]:
    """Store the stories one by one (ids follow their order), terms as ingestion writes them."""
    ids = []
    for story in stories:
        async with db.transaction() as session:
            feed_id = await session.scalar(select(sa.func.min(Article.feed_id)))
            if feed_id is None:
                feed = add_feed(session, FEED_URL)
                await session.flush()
                feed_id = feed.id
            result = await upsert_articles(session, feed_id, [item(story)], NOW)
        ids.extend(result.new_ids)
    return ids


def item(story: Story) -> ArticleData:
    """The story as a feed item, with its terms (see `plain_terms`)."""
    return ArticleData(
        uid=story.uid or uuid.uuid4().hex,
        link=None,
        title=story.title,
        summary=story.summary,
        categories=(),
        published_at=NOW - story.age,
        alertable=True,
        breaking=False,
        title_terms=story.terms(story.title),
        summary_terms=story.terms(story.summary),
    )


async def search(
    db: Database, positions: Sequence[Sequence[str]], *, limit: int = 10, offset: int = 0
) -> list[SearchHit]:
    """One page of results, ranked at NOW."""
    async with db.sessions() as session:
        hits = await search_articles(session, positions, limit=limit, offset=offset, now=NOW)
    return list(hits)


async def titles(db: Database, query: str | Sequence[Sequence[str]], **page: int) -> list[str]:
    """The titles a query finds, best first (a string: each word one position)."""
    positions = (
        [(word,) for word in plain_terms(query).split()] if isinstance(query, str) else query
    )
    return [hit.article.title for hit in await search(db, positions, **page)]


async def assert_fts_consistent(db: Database) -> None:
    """On SQLite, FTS5's own check that its index matches the articles table."""
    if db.is_sqlite:
        async with db.transaction() as session:
            await session.execute(
                text("INSERT INTO articles_fts(articles_fts, rank) VALUES ('integrity-check', 1)")
            )


async def test_an_arabic_article_is_found_by_words_of_its_title_and_of_its_summary(
    db: Database,
) -> None:
    """With the text engine's terms, words of the title and of the summary, and a vowelled
    spelling, find the story."""
    kursk = "عاجل: بوتين يشكر زعيم كوريا الشمالية على المساعدة في كورسك"
    await store(
        db,
        Story(kursk, "أعرب الرئيس الروسي عن امتنانه لبيونغ يانغ", terms=index_text),
        Story("الاقتصاد المصري ينمو", "توقعات صندوق النقد", terms=index_text),
    )

    async def found(query: str) -> list[str]:
        return [hit.article.title for hit in await search(db, query_terms(query))]

    assert await found("كورسك") == [kursk]
    assert await found("امتنانه") == [kursk]
    assert await found("كوريا الشمالية") == [kursk]
    assert await found("كُورْسك") == [kursk]
    assert await found("موسكو") == []
    (hit,) = await search(db, query_terms("كورسك"))
    assert hit.score > 0
    assert hit.article.feed is not None and hit.article.feed.url == FEED_URL


async def test_a_common_word_in_several_spellings_is_found_once_the_archive_is_analysed(
    db: Database,
) -> None:
    """On PostgreSQL a spelling known from ANALYZE's most common words is not probed in the
    index; the search finds the same articles, newest first, whichever spellings it offers."""
    stories = [Story(f"غارة على غزة رقم {n}", age=timedelta(hours=n)) for n in range(40)]
    await store(db, *stories, Story("غارة على رفح", age=timedelta(hours=1)))
    if not db.is_sqlite:
        async with db.engine.connect() as connection:
            await connection.execute(text("ANALYZE articles"))
            await connection.commit()
    positions = [("غزة", "بغزة", "لغزة"), ("غارة", "الغارة")]
    found = [hit.article.title for hit in await search(db, positions, limit=5)]
    assert found == [f"غارة على غزة رقم {n}" for n in range(5)]


async def test_title_hits_rank_above_summary_only_hits(db: Database) -> None:
    """A story with the word in its title outranks one that only mentions it in the summary."""
    await store(
        db,
        Story("قمة في موسكو اليوم", "يلتقي القادة لبحث الملفات"),
        Story("قمة في باريس اليوم", "يلتقي القادة بعد زيارة موسكو"),
    )

    assert await titles(db, "موسكو") == ["قمة في موسكو اليوم", "قمة في باريس اليوم"]


async def test_newer_beats_older_at_equal_relevance(db: Database) -> None:
    """Among equally relevant stories the most recently published comes first, whatever the id."""
    await store(
        db,
        Story("انفجار في مرفأ صيدا", age=timedelta(days=1)),
        Story("انفجار في مرفأ بيروت", age=timedelta(days=3)),
        Story("انفجار في مرفأ طرطوس", age=timedelta(hours=5)),
        Story("انفجار في مرفأ اللاذقية", age=timedelta(days=2)),
    )

    assert await titles(db, "انفجار") == [
        "انفجار في مرفأ طرطوس",
        "انفجار في مرفأ صيدا",
        "انفجار في مرفأ اللاذقية",
        "انفجار في مرفأ بيروت",
    ]


async def test_a_much_better_old_match_beats_a_weak_new_one_but_not_forever(
    db: Database,
) -> None:
    """A day-old title hit outranks a fresh summary-only mention; a month-old one does not."""
    await store(
        db,
        Story("زلزال يضرب تركيا", "سقوط ضحايا في عدة مدن", age=timedelta(days=1)),
        Story("اجتماع الحكومة", "بحث الوزراء اثار زلزال امس"),
        Story("زلزال يضرب اليابان", "سقوط ضحايا في عدة مدن", age=timedelta(days=30)),
    )

    assert await titles(db, "زلزال") == [
        "زلزال يضرب تركيا",
        "اجتماع الحكومة",
        "زلزال يضرب اليابان",
    ]


async def test_pages_are_stable_and_complete(db: Database) -> None:
    """Pages of two over seven results (ties included) cover all seven once, in ranked order."""
    await store(
        db,
        *(Story(f"مباراة الفريق رقم {n}", age=timedelta(days=n % 3)) for n in range(7)),
        Story("نتائج الانتخابات", "لا علاقة لها بالرياضة"),
    )

    everything = await titles(db, "مباراة", limit=10)
    pages = [await titles(db, "مباراة", limit=2, offset=offset) for offset in range(0, 8, 2)]

    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert [title for page in pages for title in page] == everything
    assert len(set(everything)) == 7
    assert await titles(db, "مباراة", limit=2, offset=8) == []
    assert await titles(db, "مباراة", limit=2, offset=2) == pages[1]


@pytest.mark.parametrize(
    "hostile",
    [
        '"',
        "*",
        "كور*",
        "NEAR(",
        "NEAR(كورسك بوتين)",
        "title_terms:كورسك",
        "{title_terms}:كورسك",
        "title:",
        "(",
        ")",
        "(كورسك)",
        '"كورسك"',
        "'",
        "a'b",
        "\\",
        "&",
        "|",
        "!كورسك",
        "-كورسك",
        "^كورسك",
        "كورسك:*",
        "كورسك:A",
        "كورسك بوتين",
        "",
        "\x00",
        "x" * 5000,
        "ك" * 5000,
    ],
    ids=lambda term: repr(term[:20]),
)
async def test_hostile_terms_never_raise_and_never_act_as_syntax(
    db: Database, hostile: str
) -> None:
    """Quotes, operators, prefixes, column filters and huge terms match only as plain text."""
    await store(
        db,
        Story("بوتين يزور كورسك", "زيارة مفاجئة"),
        Story("قصف قرب خاركيف", "and or not near title"),
    )

    # Alone, none of these is a word the articles contain (prefix, filter, phrase: no match).
    assert await titles(db, [[hostile]]) == []
    async with db.sessions() as session:
        assert await count_matches(session, [[hostile]]) == 0
    # Beside a real word, it never widens the search (e.g. into an OR) ...
    assert await titles(db, [["كورسك"], [hostile]]) == []
    # ... and as a refused alternative it does not spoil a good one.
    assert await titles(db, [["كورسك", hostile]]) == ["بوتين يزور كورسك"]


async def test_operator_words_are_searched_as_words(db: Database) -> None:
    """OR, AND, NOT and NEAR are ordinary words: they find the article that contains them."""
    await store(
        db,
        Story("بوتين يزور كورسك", "زيارة مفاجئة"),
        Story("قصف قرب خاركيف", "and or not near title"),
    )

    for word in ("OR", "and", "NOT", "NEAR", "title"):
        assert await titles(db, [[word]]) == ["قصف قرب خاركيف"], word
    assert await titles(db, [["كورسك"], ["OR"], ["خاركيف"]]) == []


async def test_a_bare_string_position_is_one_term(db: Database) -> None:
    """A position given as a string is one word, not a list of one-letter alternatives."""
    await store(db, Story("بوتين يزور كورسك"), Story("ك"))

    assert await titles(db, ["كورسك"]) == ["بوتين يزور كورسك"]


async def test_alternatives_within_a_position(db: Database) -> None:
    """Any term of a position matches; every position must match."""
    await store(
        db,
        Story("هجوم على موسكو", age=timedelta(hours=1)),
        Story("هجوم على كييف", age=timedelta(hours=2)),
        Story("محادثات في كييف", age=timedelta(hours=3)),
        Story("هجوم على بيروت", age=timedelta(hours=4)),
    )

    assert await titles(db, [["موسكو", "كييف"]]) == [
        "هجوم على موسكو",
        "هجوم على كييف",
        "محادثات في كييف",
    ]
    assert await titles(db, [["موسكو", "كييف"], ["هجوم"]]) == [
        "هجوم على موسكو",
        "هجوم على كييف",
    ]


async def test_overlong_queries_are_cut_not_refused(db: Database) -> None:
    """Positions past MAX_POSITIONS and alternatives past MAX_ALTERNATIVES are ignored."""
    words = [f"كلمه{n}" for n in range(storage.search.MAX_POSITIONS)]
    await store(db, Story(" ".join(words)))
    extra = [[f"غائبه{n}"] for n in range(50)]
    crowd = [f"بديل{n}" for n in range(storage.search.MAX_ALTERNATIVES)]

    assert await titles(db, [[word] for word in words] + extra) == [" ".join(words)]
    assert await titles(db, [[*crowd, words[0]]]) == []
    assert await titles(db, [[words[0], *crowd]]) == [" ".join(words)]


async def test_search_leaves_the_planner_settings_as_it_found_them(db: Database) -> None:
    """On PostgreSQL the planner settings search changes are back to normal after it."""
    await store(db, *(Story(f"خبر رقم {n}") for n in range(5)))

    async with db.sessions() as session:
        await search_articles(session, [["خبر"]], now=NOW)
        await count_matches(session, [["خبر"]])
        if not db.is_sqlite:
            for name in ("enable_indexscan", "enable_seqscan", "plan_cache_mode"):
                current = await session.scalar(text(f"SELECT current_setting('{name}')"))
                default = await session.scalar(
                    text("SELECT reset_val FROM pg_settings WHERE name = :name"), {"name": name}
                )
                assert current == default, name


async def test_an_empty_query_finds_nothing(db: Database) -> None:
    """No positions, or a position with no term, finds nothing and counts nothing."""
    await store(db, Story("بوتين يزور كورسك"))

    assert await titles(db, []) == []
    assert await titles(db, [[]]) == []
    assert await titles(db, [["كورسك"], []]) == []
    async with db.sessions() as session:
        assert await count_matches(session, []) == 0


async def test_a_correction_updates_the_index(db: Database) -> None:
    """When the source corrects a title, the old words stop matching and the new ones match."""
    await store(db, Story("قصف على كورسك", uid="story-1"))

    await store(db, Story("قصف على خاركيف", uid="story-1"))

    assert await titles(db, "كورسك") == []
    assert await titles(db, "خاركيف") == ["قصف على خاركيف"]
    await assert_fts_consistent(db)


async def test_updates_that_leave_the_terms_alone_keep_the_index(db: Database) -> None:
    """Changing other columns (a flag) neither drops the article from the index nor corrupts it."""
    (article_id,) = await store(db, Story("قصف على كورسك"))

    async with db.transaction() as session:
        await session.execute(
            update(Article).where(Article.id == article_id).values(breaking=True)
        )

    assert await titles(db, "كورسك") == ["قصف على كورسك"]
    await assert_fts_consistent(db)


async def test_deleting_an_article_removes_it_from_the_index(db: Database) -> None:
    """A deleted article is no longer found; the others still are."""
    gone, _kept = await store(db, Story("قصف على كورسك"), Story("كورسك تحت النار"))

    async with db.transaction() as session:
        await session.execute(delete(Article).where(Article.id == gone))

    assert await titles(db, "كورسك") == ["كورسك تحت النار"]
    async with db.sessions() as session:
        assert await count_matches(session, [["كورسك"]]) == 1
    await assert_fts_consistent(db)


async def test_only_the_newest_window_of_matches_is_ranked(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more matches than the window, only the newest by arrival are ranked and counted."""
    monkeypatch.setattr(storage.search, "SEARCH_WINDOW", 3)
    await store(db, *(Story(f"غارة جوية رقم {n}", age=timedelta(days=10 - n)) for n in range(5)))

    assert await titles(db, "غارة") == ["غارة جوية رقم 4", "غارة جوية رقم 3", "غارة جوية رقم 2"]
    async with db.sessions() as session:
        assert await count_matches(session, [["غارة"]]) == 3
        assert await count_matches(session, [["غارة"]], cap=2) == 2


async def test_a_ranking_holds_every_page_and_says_when_more_matched(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rank_matches gives the window's ids in search's own order (all its pages at once),
    says whether older matches were left out, and the articles load in that order."""
    monkeypatch.setattr(storage.search, "SEARCH_WINDOW", 3)
    ids = await store(
        db, *(Story(f"غارة جوية رقم {n}", age=timedelta(days=10 - n)) for n in range(5))
    )
    async with db.sessions() as session:
        full = await rank_matches(session, [["غارة"]], now=NOW)
        exact = await rank_matches(session, [["رقم"], ["4", "3", "2"]], now=NOW)
        found = await list_found_articles(session, full.ids)
    assert full == Ranking((ids[4], ids[3], ids[2]), more=True)
    assert exact == Ranking((ids[4], ids[3], ids[2]), more=False)
    assert [article.title for article in found] == await titles(db, "غارة")
    assert all(article.feed is not None for article in found)


async def test_a_button_state_is_only_its_own_chats_until_it_expires(db: Database) -> None:
    """A stored button state is found by its chat and kind until it expires; another chat,
    another kind or a later time finds nothing."""
    async with db.transaction() as session:
        state_id = await add_ui_state(
            session,
            chat_id=5,
            kind="search",
            data={"ids": [1, 2]},
            now=NOW,
            expires_at=NOW + timedelta(hours=24),
        )
    later = NOW + timedelta(hours=25)
    async with db.sessions() as session:
        mine = await get_ui_state(session, state_id, chat_id=5, kind="search", now=NOW)
        other_chat = await get_ui_state(session, state_id, chat_id=6, kind="search", now=NOW)
        other_kind = await get_ui_state(session, state_id, chat_id=5, kind="draft", now=NOW)
        expired = await get_ui_state(session, state_id, chat_id=5, kind="search", now=later)
    assert mine == {"ids": [1, 2]}
    assert other_chat is None and other_kind is None and expired is None
    assert len(state_id.encode()) + len("search::9999") <= 64  # fits Telegram's callback data


async def test_search_needs_an_aware_now(db: Database) -> None:
    """A naive `now` is a programming error, reported as such."""
    async with db.sessions() as session:
        with pytest.raises(ValueError, match="naive"):
            await search_articles(session, [["كورسك"]], now=datetime(2026, 1, 1))


# The articles table as migration 0001 left it (what an archive looked like before search).
ARTICLES_0001 = sa.Table(
    "articles",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uid", sa.String(512)),
    sa.Column("title", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Column("categories", sa.JSON),
    sa.Column("published_at", UTCDateTime()),
    sa.Column("first_seen_at", UTCDateTime()),
    sa.Column("alertable", sa.Boolean),
)


async def test_the_migration_indexes_the_articles_already_stored(blank_database: str) -> None:
    """Upgrading a 0001 archive with `newsbot db upgrade` fills the terms and the index;
    downgrading removes them."""
    db = Database(blank_database)
    try:
        await migrate(db, "0001")
        async with db.transaction() as session:
            await session.execute(
                ARTICLES_0001.insert(),
                [
                    {
                        "uid": f"old-{n}",
                        "title": title,
                        "summary": "أعرب الرئيس الروسي عن امتنانه",
                        "categories": [],
                        "published_at": NOW - timedelta(days=n),
                        "first_seen_at": NOW,
                        "alertable": False,
                    }
                    for n, title in enumerate(["بوتين يشكر كوريا على المساعدة في كورسك", "غيره"])
                ],
            )

        # As an operator upgrades: the revision adds the columns, Newsbot computes the terms.
        upgraded = await newsbot("db", "upgrade", env={"NEWSBOT_DATABASE_URL": blank_database})
        assert upgraded.code == 0, upgraded.err
        assert "re-indexed 2 articles" in upgraded.out

        assert await titles(db, query_terms("كورسك")) == ["بوتين يشكر كوريا على المساعدة في كورسك"]
        assert len(await titles(db, query_terms("امتنانه"))) == 2
        async with db.sessions() as session:
            stored = (await session.scalars(select(Article).order_by(Article.id))).all()
        assert [article.title_terms for article in stored] == [
            index_text(article.title) for article in stored
        ]
        await assert_fts_consistent(db)

        await migrate(db, "0001", down=True)
        async with db.engine.connect() as connection:
            names = await connection.run_sync(
                lambda sync: (
                    sa.inspect(sync).get_table_names(),
                    [column["name"] for column in sa.inspect(sync).get_columns("articles")],
                )
            )
        tables, columns = names
        assert "articles_fts" not in tables
        assert not {"title_terms", "summary_terms", "search_vector"} & set(columns)

        change = await db.upgrade()  # up again, by storage alone: it says a reindex is due
        assert change.reindex and await titles(db, query_terms("كورسك")) == []
        assert await reindex_articles(db) == 2
        assert await titles(db, query_terms("كورسك")) == ["بوتين يشكر كوريا على المساعدة في كورسك"]
    finally:
        await db.dispose()
