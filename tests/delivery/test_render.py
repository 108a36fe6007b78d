"""The breaking-news alert as readers see it: Arabic first, escaped, within Telegram's limit."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.delivery.render import AlertView, hashtag, render_alert
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
