"""Whether a later headline of a story develops it (a reply to readers) or only confirms it
(an edit of their alert): Arabic examples both ways."""

from __future__ import annotations

import pytest

from bot.text.developments import develops

BLAST = [
    "عاجل: مقتل 5 أشخاص في انفجار بمدينة إدلب",
    "قالت مصادر محلية إن انفجارا هز وسط المدينة صباح اليوم.",
]


@pytest.mark.parametrize(
    ("later", "reason"),
    [
        ("ارتفاع حصيلة قتلى انفجار إدلب إلى 12", "figures"),
        ("عاجل | 9 قتلى في انفجار إدلب", "figures"),
        ("الأمم المتحدة تدين انفجار إدلب", "reaction"),
        ("تركيا تندد بالهجوم في إدلب وتتوعد", "reaction"),
        ("بيان للخارجية السورية بشأن انفجار إدلب", "reaction"),
        ("أردوغان: انفجار إدلب عمل إرهابي", "actor"),
    ],
)
def test_a_later_headline_that_adds_news_is_a_development(later: str, reason: str) -> None:
    """A rising toll, a reaction or a new actor (leader, organisation) develops the story."""
    found = develops(later, BLAST)
    assert found is not None and found.reason == reason


@pytest.mark.parametrize(
    "later",
    [
        "انفجار يهز إدلب ومقتل 5 أشخاص",
        "عاجل: مقتل خمسة في انفجار وسط إدلب",
        "مصادر: انفجار في مدينة ادلب يوقع قتلى",
        "إدلب.. 5 قتلى بانفجار صباح اليوم الساعة 09:30",
        "مقتل 5 أشخاص في انفجار بإدلب عام 2026",
    ],
)
def test_a_later_headline_that_only_repeats_the_story_confirms_it(later: str) -> None:
    """Another outlet's wording of the same facts (same toll, a time of day, a year,
    spelling variants) only confirms it."""
    assert develops(later, BLAST) is None


def test_a_smaller_number_without_a_rise_is_no_development() -> None:
    """A detail counted lower than the story's figures (two cars, not a new toll) is not a
    development; said to be rising, it is."""
    assert develops("احتراق 2 من السيارات في انفجار إدلب", BLAST) is None
    rising = develops("ارتفاع عدد الجرحى في انفجار إدلب إلى 3", BLAST)
    assert rising is not None and rising.reason == "figures"


def test_a_reaction_already_reported_does_not_develop_again() -> None:
    """Once the story holds a condemnation, another outlet's condemnation only confirms."""
    told = [*BLAST, "الأمم المتحدة تدين انفجار إدلب"]
    assert develops("الأمم المتحدة تدين الانفجار في إدلب", told) is None


def test_the_reason_names_the_evidence() -> None:
    """The decision says which figures made it a development."""
    found = develops("ارتفاع حصيلة قتلى انفجار إدلب إلى 12", BLAST)
    assert found is not None and found.evidence == ("12",)
