"""The alert's invariants over any feed text (Hypothesis): whatever the title, summary,
source, link and topics, the message is Telegram HTML that Telegram accepts, within its
4,096 characters, and a reader is shown only the few matched topics they follow."""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.delivery.render import (
    LINK_MAX,
    MAX_CONFIRMATIONS,
    MAX_TAGS,
    TAG_MAX,
    AlertView,
    alert_view,
    hashtags,
    render_alert,
    topic_label,
    usable_link,
)
from bot.text.topics import PHRASE_PREFIX, load_catalog
from storage.alerts import AlertRecord
from tests.fakebotapi import MAX_TEXT_LENGTH, parse_html, utf16_length

RIYADH = ZoneInfo("Asia/Riyadh")
CATALOG = load_catalog()
# Few examples, each a whole alert: a few seconds in all, on a busy machine too.
ALERTS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Any character, with markup, entities, emoji (two UTF-16 units) and Arabic made common.
_SPECIAL = st.sampled_from(["<", ">", "&", '"', "'", "&amp;", "<b>", "</a>", " ", "\n", "🚨"])
_ARABIC = st.sampled_from(["عاجل", "كوريا الشمالية", "«بوتين»", "ـ", "ً", "#غزة", "٣"])
_CHARS = st.one_of(st.characters(), _SPECIAL, _ARABIC)
_PIECE = st.lists(_CHARS, max_size=12).map("".join)


def texts() -> st.SearchStrategy[str]:
    """Feed text: short and odd, or a piece repeated into thousands of characters."""
    repeated = st.builds(operator.mul, _PIECE, st.integers(0, 2500))
    return st.one_of(_PIECE, repeated)


def links() -> st.SearchStrategy[str | None]:
    """No link, any text, or a link-shaped string (sometimes far too long)."""
    hosts = st.sampled_from(["news.example", "localhost", "[::1]", "a.b:0", "x.y:8080", ""])
    schemes = st.sampled_from(["https", "http", "HTTP", "ftp", "javascript", ""])
    shaped = st.builds(
        lambda scheme, host, path, repeat: f"{scheme}://{host}/{path * repeat}",
        schemes,
        hosts,
        _PIECE,
        st.integers(0, 400),
    )
    return st.one_of(st.none(), texts(), shaped)


def labels() -> st.SearchStrategy[list[str]]:
    """Topic labels: none, a few, hundreds repeated, or hundreds distinct."""
    few = st.lists(texts(), max_size=6)
    repeated = st.builds(operator.mul, st.lists(_PIECE, max_size=8), st.integers(0, 100))
    distinct = st.builds(
        lambda label, count: [f"{label} {n}" for n in range(count)], _PIECE, st.integers(0, 700)
    )
    return st.one_of(few, repeated, distinct)


@ALERTS
@given(
    headline=texts(),
    summary=texts(),
    source=texts(),
    link=links(),
    topics=labels(),
    language=st.sampled_from(["ar", "en"]),
)
def test_any_alert_is_telegram_html_within_the_limit(
    headline: str, summary: str, source: str, link: str | None, topics: list[str], language: str
) -> None:
    """For any title, summary, source, link and topics the alert parses as Telegram HTML
    (strictly: every <, > and & of the feed escaped), uses only bold and a text link, and
    is at most 4,096 UTF-16 code units once parsed."""
    view = AlertView(
        headline=headline,
        summary=summary,
        source=source,
        published=datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
        link=link,
        topics=topics,
    )
    plain, entities = parse_html(render_alert(view, language=language, zone=RIYADH))
    assert utf16_length(plain.strip()) <= MAX_TEXT_LENGTH
    assert {entity["type"] for entity in entities} <= {"bold", "text_link"}
    assert [entity["type"] for entity in entities].count("bold") <= 1
    links = [entity["url"] for entity in entities if entity["type"] == "text_link"]
    assert links == ([link] if usable_link(link) else [])


@ALERTS
@given(
    headline=texts(),
    summary=texts(),
    source=texts(),
    link=links(),
    topics=labels(),
    confirmed_by=st.lists(st.tuples(texts(), links()), max_size=12),
    development=st.booleans(),
    language=st.sampled_from(["ar", "en"]),
)
def test_any_confirmed_alert_is_telegram_html_within_the_limit(
    headline: str,
    summary: str,
    source: str,
    link: str | None,
    topics: list[str],
    confirmed_by: list[tuple[str, str | None]],
    development: bool,
    language: str,
) -> None:
    """Naming any outlets that confirmed the story (any names, any links, however many),
    the alert still parses as Telegram HTML within 4,096 UTF-16 code units, links each
    named outlet whose link Telegram accepts, then the article."""
    view = AlertView(
        headline=headline,
        summary=summary,
        source=source,
        published=datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
        link=link,
        topics=topics,
        confirmed_by=confirmed_by,
        development=development,
    )
    plain, entities = parse_html(render_alert(view, language=language, zone=RIYADH))
    assert utf16_length(plain.strip()) <= MAX_TEXT_LENGTH
    assert {entity["type"] for entity in entities} <= {"bold", "text_link"}
    links = [entity["url"] for entity in entities if entity["type"] == "text_link"]
    named = [usable_link(url) for _, url in confirmed_by[:MAX_CONFIRMATIONS]]
    expected = [url for url in named if url] + ([link] if usable_link(link) else [])
    assert links == expected
    if confirmed_by and language == "ar":
        assert "أكّدته أيضًا: " in plain


@ALERTS
@given(topics=labels())
def test_a_reader_gets_a_few_short_distinct_hashtags(topics: list[str]) -> None:
    """However many topics matched, an alert carries at most a few hashtags, each distinct,
    a single word and of bounded length."""
    tags = hashtags(topics)
    assert len(tags) <= MAX_TAGS and len(set(tags)) == len(tags)
    for tag in tags:
        assert tag.startswith("#") and len(tag) > 1 and utf16_length(tag) <= TAG_MAX
        assert not any(c.isspace() for c in tag)


@ALERTS
@given(link=links())
def test_a_kept_link_is_one_telegram_accepts(link: str | None) -> None:
    """A link is kept only if it is http(s), has a dotted host (or IPv6) and a valid port,
    holds no space or control character and is at most LINK_MAX characters."""
    kept = usable_link(link)
    if kept is None:
        return
    assert kept == link and len(kept) <= LINK_MAX
    scheme, _, rest = kept.partition("://")
    assert scheme.lower() in ("http", "https")
    assert not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in kept)
    authority = rest.split("/")[0].split("?")[0].split("#")[0].rpartition("@")[2]
    assert authority.startswith("[") or "." in authority


_KEYS = st.sampled_from([*(t.key for t in CATALOG.topics[:40]), f"{PHRASE_PREFIX}طاقة شمسية"])


@ALERTS
@given(
    matched=st.lists(_KEYS, unique=True, max_size=30),
    followed=st.sets(_KEYS, max_size=30),
    language=st.sampled_from(["ar", "en"]),
)
def test_a_reader_sees_only_matched_topics_they_follow(
    matched: list[str], followed: set[str], language: str
) -> None:
    """An alert names, for each reader, only the topics the story matched that this reader
    follows, in the order they matched."""
    record = AlertRecord(
        id=1,
        title="عاجل: خبر",
        summary="",
        categories=(),
        link=None,
        source=None,
        published=datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
        topics=tuple(matched),
        by_editor=False,
    )
    view = alert_view(record, language=language, catalog=CATALOG, followed=followed)
    own = [key for key in matched if key in followed]
    assert list(view.topics) == [topic_label(key, language, CATALOG) for key in own]
