"""The breaking-news alert as readers see it: Arabic first, escaped, within Telegram's limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.delivery.render import (
    HEADLINE_MAX,
    MAX_TAGS,
    SOURCE_MAX,
    TAG_MAX,
    AlertView,
    alert_view,
    hashtag,
    render_alert,
)
from storage.alerts import AlertRecord
from tests.fakebotapi import parse_html, utf16_length

RIYADH = ZoneInfo("Asia/Riyadh")
STORY = AlertView(
    headline="«بوتين» يشكر زعيم كوريا الشمالية علي المساعدة",
    summary=(
        "أعرب الرئيس الروسي عن امتنانه للزعيم الكوري الشمالي. وجاء ذلك في بيان للكرملين. "
        "وأكدت كوريا الشمالية إرسال جنودها."
    ),
    source="اليوم السابع",
    published=datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
    link="https://news.example/kursk?id=1&lang=ar",
    topics=("روسيا", "كوريا الشمالية"),
)


def test_an_arabic_alert_opens_with_the_label_and_is_valid_telegram_html() -> None:
    """Arabic readers see «عاجل» first, the bold headline, two sentences, source, local
    time, a «اقرأ المزيد» link and the topics as hashtags."""
    text = render_alert(STORY, language="ar", zone=RIYADH)
    plain, entities = parse_html(text)
    assert plain.startswith("عاجل | «بوتين» يشكر")
    assert "وجاء ذلك في بيان للكرملين." in plain and "إرسال جنودها" not in plain
    assert "المصدر: اليوم السابع" in plain and "17:05" in plain  # Riyadh is UTC+3
    assert "اقرأ المزيد" in plain and "#كوريا_الشمالية" in plain
    kinds = {entity["type"] for entity in entities}
    assert kinds == {"bold", "text_link"}
    (link,) = [entity for entity in entities if entity["type"] == "text_link"]
    assert link["url"] == STORY.link


def test_english_readers_get_the_english_alert() -> None:
    """A reader who chose English gets the English label and words."""
    plain, _ = parse_html(render_alert(STORY, language="en", zone=RIYADH))
    assert plain.startswith("BREAKING | ")
    assert "Source: اليوم السابع" in plain and "Read more" in plain


def test_feed_text_is_escaped_not_markup() -> None:
    """Tags, ampersands and quotes from a feed are shown as text and never break the HTML."""
    hostile = AlertView(
        headline='<script>alert(1)</script> & "quoted" <b>',
        summary="a < b && c > d",
        source="<i>Agency</i>",
        published=STORY.published,
        link='https://x.example/?a=1&b="2"',
    )
    plain, entities = parse_html(render_alert(hostile, language="ar", zone=RIYADH))
    assert '<script>alert(1)</script> & "quoted" <b>' in plain
    assert "a < b && c > d" in plain and "<i>Agency</i>" in plain
    assert {entity["type"] for entity in entities} == {"bold", "text_link"}


def test_a_huge_summary_is_shortened_to_fit_telegram() -> None:
    """An alert never passes 4,096 characters: the summary is cut between words, the
    headline, source and link stay."""
    long = AlertView(
        headline=STORY.headline,
        summary=" ".join(["كلمة🙂"] * 3000),  # one sentence, emoji count twice in UTF-16
        source=STORY.source,
        published=STORY.published,
        link=STORY.link,
        topics=STORY.topics,
    )
    text = render_alert(long, language="ar", zone=RIYADH)
    plain, _ = parse_html(text)
    assert utf16_length(plain) <= 4096
    assert plain.startswith("عاجل | ") and "اقرأ المزيد" in plain and "…" in plain


def test_topic_labels_become_clean_hashtags() -> None:
    """Spaces and punctuation in a topic label become underscores or disappear."""
    assert hashtag("كوريا الشمالية") == "#كوريا_الشمالية"
    assert hashtag("«حماس»") == "#حماس"
    assert hashtag("!!") == ""


def _story(**changes: Any) -> AlertView:
    """The story with some of its parts replaced."""
    return replace(STORY, **changes)


def test_a_huge_headline_is_cut_with_an_ellipsis() -> None:
    """A 1,000-emoji headline (2,000 UTF-16 units) is cut with «…» to a bounded length, and
    the alert keeps its source, link and tags within Telegram's 4,096."""
    text = render_alert(_story(headline="🚨" * 1000), language="ar", zone=RIYADH)
    plain, entities = parse_html(text)
    assert utf16_length(plain) <= 4096
    (bold,) = [entity for entity in entities if entity["type"] == "bold"]
    headline = plain.encode("utf-16-le")[
        2 * bold["offset"] : 2 * (bold["offset"] + bold["length"])
    ]
    assert headline.decode("utf-16-le").endswith("🚨…")
    assert bold["length"] <= HEADLINE_MAX
    assert "المصدر: اليوم السابع" in plain and "اقرأ المزيد" in plain and "#روسيا" in plain


def test_a_reader_sees_a_few_tags_at_most() -> None:
    """Six hundred matched topics give the first few distinct hashtags, not 5,542
    characters that Telegram refuses."""
    labels = [f"موضوع {n}" for n in range(600)]
    plain, _ = parse_html(render_alert(_story(topics=labels), language="ar", zone=RIYADH))
    tags = [word for word in plain.split() if word.startswith("#")]
    assert tags == ["#موضوع_0", "#موضوع_1", "#موضوع_2"][:MAX_TAGS]
    assert utf16_length(plain) <= 4096


def test_the_same_hashtag_is_shown_once_and_a_long_one_is_cut() -> None:
    """Labels that make the same hashtag show it once; a very long label becomes a hashtag
    of bounded length."""
    labels = ["كوريا الشمالية", "«كوريا» الشمالية", "كلمة " * 200]
    plain, _ = parse_html(render_alert(_story(topics=labels), language="ar", zone=RIYADH))
    tags = [word for word in plain.split() if word.startswith("#")]
    assert tags[0] == "#كوريا_الشمالية" and len(tags) == 2
    assert tags[1].startswith("#كلمة_كلمة") and utf16_length(tags[1]) <= TAG_MAX


def test_a_long_source_name_is_cut_with_an_ellipsis() -> None:
    """A feed named with a thousand characters is cut, the time after it still shown."""
    plain, _ = parse_html(render_alert(_story(source="وكالة " * 200), language="ar", zone=RIYADH))
    line = next(line for line in plain.splitlines() if line.startswith("المصدر: "))
    source = line.removeprefix("المصدر: ").split(" · ")[0]
    assert source.endswith("…") and utf16_length(source) <= SOURCE_MAX
    assert line.endswith("17:05")


@pytest.mark.parametrize(
    "link",
    [
        "https://news.example/" + "a" * 3000,  # longer than any link Telegram keeps
        "http://localhost/story",  # Telegram: "Wrong HTTP URL" (a host without a dot)
        "javascript:alert(1)",
        "ftp://news.example/story",
        "https://news.example/a b",
        "https://[::1/story",
        "",
    ],
)
def test_a_link_telegram_would_refuse_is_dropped(link: str) -> None:
    """A link Telegram would refuse (and with it the whole message) is left out; the rest
    of the alert is sent."""
    plain, entities = parse_html(render_alert(_story(link=link), language="ar", zone=RIYADH))
    assert not [entity for entity in entities if entity["type"] == "text_link"]
    assert "اقرأ المزيد" not in plain and plain.startswith("عاجل | ")


def test_a_link_with_arabic_and_escapes_is_kept() -> None:
    """An ordinary article link, Arabic path and query included, stays as «اقرأ المزيد»."""
    link = "https://www.aljazeera.net/news/2026/11/25/روسيا-تعلن?id=1&b=2"
    _, entities = parse_html(render_alert(_story(link=link), language="ar", zone=RIYADH))
    (entity,) = [entity for entity in entities if entity["type"] == "text_link"]
    assert entity["url"] == link


def test_a_reader_is_shown_only_the_matched_topics_they_follow() -> None:
    """Of the topics a story matched, a reader's alert names only those the reader follows,
    in the order they were matched."""
    record = AlertRecord(
        id=1,
        title="روسيا وأوكرانيا وغزة",
        summary="",
        categories=(),
        link=None,
        source="وكالة",
        published=STORY.published,
        topics=("russia", "ukraine", "gaza"),
        by_editor=False,
    )
    assert alert_view(record, language="ar", followed={"gaza", "russia"}).topics == [
        "روسيا",
        "غزة",
    ]
    assert alert_view(record, language="en", followed={"ukraine"}).topics == ["Ukraine"]
    assert alert_view(record, language="ar").topics == []
