"""Breaking-news markers on headlines, as outlets really write them."""

from __future__ import annotations

import pytest

from bot.text.breaking import read_headline

HEADLINE = "بوتين يشكر زعيم كوريا الشمالية"


@pytest.mark.parametrize(
    "title",
    [
        f"عاجل: {HEADLINE}",
        f"عاجل | {HEADLINE}",
        f"عاجل - {HEADLINE}",
        f"«عاجل» {HEADLINE}",
        f"(عاجل) {HEADLINE}",
        f"خبر عاجل: {HEADLINE}",
        f"عـاجـل: {HEADLINE}",
        f"عَاجِل: {HEADLINE}",
        f"عاجل {HEADLINE}",
        f"{HEADLINE} #عاجل",
        f"#عاجل {HEADLINE}",
        f"BREAKING: {HEADLINE}",
        f"Breaking News - {HEADLINE}",
    ],
)
def test_marked_titles_are_breaking_and_lose_the_marker(title: str) -> None:
    """Each way outlets mark breaking news is recognised and removed from the headline."""
    headline = read_headline(title)
    assert headline.breaking
    assert headline.text == HEADLINE


@pytest.mark.parametrize(
    "title",
    [
        "قرار عاجل من وزارة التعليم بشأن الامتحانات",
        "مساعدات عاجلة تصل إلى غزة",
        "الحكومة تطالب بتحرك عاجل",
        "عاجلا أم آجلا ستعود المفاوضات",
        "#عاجلة_الأخبار ليست وسما للعاجل",
        "Breakingviews: markets rally",
    ],
)
def test_urgent_words_that_are_not_markers_do_not_count(title: str) -> None:
    """«قرار عاجل», «مساعدات عاجلة» and the like are news about urgency, not breaking news."""
    headline = read_headline(title)
    assert not headline.breaking
    assert headline.text == title


def test_a_category_can_mark_breaking_news() -> None:
    """A feed that files the item under «عاجل» (or Breaking) makes it breaking."""
    assert read_headline(HEADLINE, ["سياسة", "عاجل"]).breaking
    assert read_headline(HEADLINE, ["Breaking News"]).breaking
    assert not read_headline(HEADLINE, ["سياسة"]).breaking


def test_the_marker_list_is_configurable() -> None:
    """An operator's own marker («هام») works, and the defaults then no longer apply."""
    assert read_headline(f"هام: {HEADLINE}", markers=["هام"]).text == HEADLINE
    assert not read_headline(f"عاجل: {HEADLINE}", markers=["هام"]).breaking


def test_a_title_that_is_only_the_marker_keeps_it() -> None:
    """A bare «عاجل» title is breaking in its category sense only, never emptied."""
    assert read_headline("عاجل").text == "عاجل"
