"""Story grouping: the same event from several outlets is one story, lookalikes are not."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.text.stories import StoryGrouper

SET = Path(__file__).resolve().parents[1] / "data" / "stories" / "stories.jsonl"
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def minutes(count: int) -> datetime:
    """A moment some minutes after noon."""
    return NOON + timedelta(minutes=count)


def test_an_explosion_in_idlib_and_one_in_aleppo_the_same_hour_are_two_stories() -> None:
    """Places decide: the same template in another town starts another story."""
    grouper = StoryGrouper()
    idlib = grouper.add("1", "انفجار سيارة مفخخة وسط إدلب يوقع قتلى وجرحى", "", minutes(0))
    aleppo = grouper.add("2", "انفجار سيارة مفخخة وسط حلب يوقع قتلى وجرحى", "", minutes(10))
    assert not aleppo.joined
    assert aleppo.story_id != idlib.story_id == "1"
    assert (
        grouper.explain(
            ("انفجار سيارة مفخخة وسط إدلب", ""), ("انفجار سيارة مفخخة وسط حلب", ""), NOON
        ).rule
        == "different places"
    )


def test_two_spellings_of_one_leader_from_two_outlets_are_one_story() -> None:
    """«بوتين» and «بوتن», Latin and Arabic-Indic digits: one story, explained."""
    grouper = StoryGrouper()
    grouper.add("1", "بوتين يوقع مرسوما باستدعاء 150 ألف مجند للخدمة العسكرية", "", minutes(0))
    placed = grouper.add("2", "بوتن يوقع مرسوما باستدعاء ١٥٠ ألف مجند", "", minutes(20))
    assert placed.joined and placed.story_id == "1"
    explanation = placed.explanation
    assert explanation.rule == "joined" and explanation.compared_with == "1"
    assert "putin" in explanation.shared_entities
    shared = [term for term, _ in explanation.shared_terms]
    assert "150" in shared and "@putin" in shared
    assert explanation.score >= 0.3


def test_the_same_leader_in_another_event_is_another_story() -> None:
    """A shared name with different event words is not enough."""
    grouper = StoryGrouper()
    grouper.add("1", "بوتين يلتقي نظيره الصيني شي جين بينغ في الكرملين", "", minutes(0))
    placed = grouper.add("2", "بوتين يوقع مرسوما باستدعاء 150 ألف مجند", "", minutes(30))
    assert not placed.joined and placed.story_id == "2"


def test_an_update_from_the_same_outlet_joins_its_story() -> None:
    """One outlet's second article with a new toll is a development of the same story."""
    grouper = StoryGrouper()
    grouper.add("1", "مقتل 5 أشخاص بانفجار سيارة مفخخة في مدينة إدلب", "", minutes(0))
    placed = grouper.add(
        "2", "ارتفاع حصيلة انفجار السيارة المفخخة في إدلب إلى 9 قتلى", "", minutes(90)
    )
    assert placed.joined and placed.story_id == "1"


def test_outside_the_window_the_same_story_starts_again() -> None:
    """An article older than the window no longer attracts new ones, and is forgotten."""
    grouper = StoryGrouper(window=timedelta(hours=36))
    grouper.add("1", "زلزال بقوة 5.2 درجة يضرب ملاطية شرقي تركيا", "", minutes(0))
    later = grouper.add(
        "2", "زلزال بقوة 5.2 درجة يضرب ملاطية شرقي تركيا", "", NOON + timedelta(hours=37)
    )
    assert not later.joined and later.story_id == "2"
    assert grouper.story_of("1") is None and len(grouper) == 1


def test_forget_before_drops_old_articles() -> None:
    """forget_before removes what was published before the moment, nothing after it."""
    grouper = StoryGrouper()
    grouper.add("1", "الذهب يسجل مستوى قياسيا جديدا", "", minutes(0))
    grouper.add("2", "زلزال بقوة 6.1 درجة يضرب شمال شرق اليابان", "", minutes(60))
    grouper.forget_before(minutes(30))
    assert grouper.story_of("1") is None and grouper.story_of("2") == "2"
    assert not grouper.add("3", "الذهب يسجل مستوى قياسيا جديدا", "", minutes(61)).joined


def test_quakes_of_other_magnitudes_in_other_countries_are_other_stories() -> None:
    """The same template with another magnitude and place is a lookalike, not a development."""
    grouper = StoryGrouper()
    grouper.add("1", "زلزال بقوة 5.2 درجة يضرب تركيا", "", minutes(0))
    assert not grouper.add("2", "زلزال بقوة 6.1 درجة يضرب اليابان", "", minutes(30)).joined


def pairwise(records: list[dict[str, str]], found: dict[str, str]) -> tuple[float, ...]:
    """Precision, recall and recall over pairs from different outlets."""
    truth = [(a, b) for a, b in itertools.combinations(records, 2) if a["story"] == b["story"]]
    grouped = [
        (a, b) for a, b in itertools.combinations(records, 2) if found[a["id"]] == found[b["id"]]
    ]
    right = sum(a["story"] == b["story"] for a, b in grouped)
    across = [(a, b) for a, b in truth if a["outlet"] != b["outlet"]]
    found_across = sum(found[a["id"]] == found[b["id"]] for a, b in across)
    return right / len(grouped), right / len(truth), found_across / len(across)


def test_the_labelled_set_is_grouped_as_the_issue_asks() -> None:
    """On the labelled set (benchmarks/stories.py prints the same figures): the held-out
    stories with precision ≥ .97, recall ≥ .90 and recall across outlets ≥ .85, and the
    stories tuned on with precision ≥ .97."""
    records = [json.loads(line) for line in SET.read_text("utf-8").splitlines()]
    records.sort(key=lambda record: record["published"])
    grouper = StoryGrouper()
    found = {
        r["id"]: grouper.add(
            r["id"], r["title"], r["summary"], datetime.fromisoformat(r["published"])
        ).story_id
        for r in records
    }
    precision, recall, across = pairwise([r for r in records if r["split"] == "heldout"], found)
    assert precision >= 0.97 and recall >= 0.90 and across >= 0.85
    assert pairwise([r for r in records if r["split"] == "train"], found)[0] >= 0.97


def test_talks_under_two_words_from_two_outlets_are_one_story() -> None:
    """«مفاوضات» and «محادثات» are one concept: the articles join and the concept is named."""
    grouper = StoryGrouper()
    grouper.add("1", "استئناف مفاوضات جدة بين الجيش السوداني وقوات الدعم السريع", "", minutes(0))
    placed = grouper.add("2", "جولة جديدة من محادثات جدة بشأن السودان", "", minutes(15))
    assert placed.joined and placed.story_id == "1"
    assert "~talks" in [term for term, _ in placed.explanation.shared_terms]


def test_floods_and_torrents_in_one_country_are_one_story() -> None:
    """«فيضانات» and «سيول», «مقتل» and «قتلى»: synonyms join, and only with the place."""
    grouper = StoryGrouper()
    grouper.add("1", "مقتل 12 شخصا في فيضانات تضرب شمال إيطاليا", "", minutes(0))
    placed = grouper.add("2", "سيول في إيطاليا توقع 12 قتيلا", "", minutes(40))
    assert placed.joined and placed.story_id == "1"
    assert "italy" in placed.explanation.shared_entities
    assert not grouper.add("3", "سيول في اليابان توقع 12 قتيلا", "", minutes(50)).joined


def test_a_drone_attack_reworded_joins_its_story() -> None:
    """«هجوم بالمسيرات» and «طائرات مسيرة» on one city are one event."""
    grouper = StoryGrouper()
    grouper.add("1", "روسيا تشن هجوما واسعا بالمسيرات على العاصمة الأوكرانية كييف", "", minutes(0))
    title = "مقتل ثلاثة أشخاص في هجوم روسي بطائرات مسيرة على كييف"
    placed = grouper.add("2", title, "", minutes(15))
    assert placed.joined and placed.story_id == "1"
    shared = [term for term, _ in placed.explanation.shared_terms]
    assert "~drone" in shared and "@kyiv" in shared


def test_a_leader_named_by_office_is_the_leader() -> None:
    """«الرئيس الأوكراني» names Zelensky, so his visit joins the story that names him."""
    grouper = StoryGrouper()
    grouper.add("1", "زيلنسكي يصل إلى واشنطن للقاء ترمب", "", minutes(0))
    placed = grouper.add("2", "الرئيس الأوكراني يلتقي ترامب في واشنطن", "", minutes(25))
    assert placed.joined and "zelensky" in placed.explanation.shared_entities


def test_a_country_acting_is_not_a_place_that_differs() -> None:
    """«واشنطن ترفع الرسوم» and «ترامب … مع بكين»: capitals as governments are no place veto."""
    grouper = StoryGrouper()
    explanation = grouper.explain(
        ("واشنطن ترفع الرسوم الجمركية على الواردات الصينية", ""),
        ("الرئيس الأمريكي ترامب يفرض رسوما جمركية على السلع الصينية ويتحدى بكين", ""),
        NOON,
    )
    assert explanation.rule != "different places"
    assert "china" in explanation.shared_entities


def test_the_same_decree_by_two_leaders_is_two_stories() -> None:
    """Shared event words under disjoint actors (Syria, Kuwait) do not make one story."""
    grouper = StoryGrouper()
    explanation = grouper.explain(
        ("الرئيس السوري أحمد الشرع يصدر مرسوما بتشكيل هيئة", ""),
        ("أمير الكويت يصدر مرسوما بتشكيل حكومة جديدة", ""),
        NOON,
    )
    assert explanation.rule == "different actors"


def test_indirect_talks_are_not_direct_talks() -> None:
    """A negated word («غير مباشرة») is not the word itself."""
    grouper = StoryGrouper()
    explanation = grouper.explain(
        ("خامنئي: لا مفاوضات مباشرة مع الولايات المتحدة", ""),
        ("مسقط تحتضن جولة محادثات غير مباشرة بين طهران وواشنطن", ""),
        NOON,
    )
    assert "مباشر" not in [term for term, _ in explanation.shared_terms]


def test_numbers_are_compared_only_when_they_count_the_same_thing() -> None:
    """A budget's 1.3 trillion and its deficit's 2.3% are no different magnitudes; two
    quakes of 5.2 and 6.1 degrees are."""
    grouper = StoryGrouper()
    budget = grouper.explain(
        ("الكويت تعلن ميزانية بإنفاق 1.3 تريليون دينار", ""),
        ("الكويت تقر ميزانية العام المقبل بعجز 2.3% من الناتج", ""),
        NOON,
    )
    assert budget.rule != "different magnitudes"
    quakes = grouper.explain(
        ("زلزال بقوة 5.2 يضرب شمال البلاد", ""), ("زلزال بقوة 6.1 درجة يضرب شمال البلاد", ""), NOON
    )
    assert quakes.rule == "different magnitudes"


def test_two_companies_fined_by_one_regulator_are_two_stories() -> None:
    """Google's fine and Apple's, both from Brussels the same day, are two events."""
    grouper = StoryGrouper()
    grouper.add("1", "المفوضية الأوروبية تفرض غرامة على غوغل بسبب الاحتكار", "", minutes(0))
    placed = grouper.add("2", "المفوضية الأوروبية تفرض غرامة على آبل بسبب متجرها", "", minutes(40))
    assert not placed.joined


def test_talks_in_two_venues_with_one_party_in_common_are_two_stories() -> None:
    """A party both name (the United States) is not where the talks are held: talks in
    Jeddah and talks in Oman are two stories; a dateline («سيول: …») is not a venue."""
    grouper = StoryGrouper()
    grouper.add("1", "جدة تستضيف محادثات بين السودان والولايات المتحدة", "", minutes(0))
    assert not grouper.add(
        "2", "عمان تستضيف محادثات بين إيران والولايات المتحدة", "", minutes(30)
    ).joined
    grouper.add("3", "كوريا الشمالية تطلق صاروخا باليستيا باتجاه اليابان", "", minutes(40))
    assert grouper.add("4", "سيول: كوريا الشمالية أطلقت صاروخا باليستيا", "", minutes(50)).joined


def test_gaza_city_and_khan_younis_are_two_places() -> None:
    """Strikes on Gaza City and on Khan Younis the same hour are two stories."""
    grouper = StoryGrouper()
    grouper.add("1", "قصف إسرائيلي على خيام نازحين في خان يونس", "", minutes(0))
    assert not grouper.add("2", "قصف إسرائيلي على منزل في مدينة غزة", "", minutes(20)).joined


def test_a_player_and_his_club_alone_do_not_make_one_story() -> None:
    """The same player and club in a contract and in a match are two events."""
    grouper = StoryGrouper()
    grouper.add("1", "محمد صلاح يوقع عقدا جديدا مع ليفربول", "", minutes(0))
    assert not grouper.add("2", "محمد صلاح يقود ليفربول إلى فوز كبير", "", minutes(60)).joined
