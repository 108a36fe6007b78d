"""parse_feed on the real and edge-case feeds in tests/data, and on hostile or broken documents."""

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.feeds.parse import (
    CATEGORY_LIMIT,
    SUMMARY_LIMIT,
    TITLE_LIMIT,
    FeedError,
    ParsedFeed,
    clean_text,
    parse_feed,
)
from tests.corpus import FEEDS, feed_documents

FEED_URL = "https://news.example/feeds/rss.xml"
ARABIC_LETTER = re.compile("[\u0621-\u064a]")
ARABIC_SCRIPT = re.compile("[\u0600-\u06ff]")
# ٹ ں ک ہ ۂ ی ے: letters of Urdu that Arabic does not use.
URDU_LETTER = re.compile("[\u0679\u06ba\u06a9\u06c1\u06c2\u06cc\u06d2]")
HEBREW_LETTER = re.compile("[\u05d0-\u05ea]")
# UTF-8 Arabic read as windows-1252/latin-1 starts every letter with Ø or Ù.
MOJIBAKE = re.compile("[ØÙÃâ]")
INVISIBLE = re.compile("[\x00-\x1f\x7f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _document(name: str) -> Path:
    """A feed document of the corpus by file name; the test fails, naming it, if it is missing."""
    path = next((path for path in feed_documents() if path.name == name), None)
    if path is None:
        pytest.fail(f"{name} is not in {FEEDS}/real or {FEEDS}/edge")
    return path


def _manifest_counts() -> dict[str, int]:
    """Item counts by file name, read from the "items" column of both manifests."""
    counts: dict[str, int] = {}
    for manifest in sorted(FEEDS.glob("*/MANIFEST.md")):
        column = None
        for line in manifest.read_text(encoding="utf-8").splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if "items" in cells:
                column = cells.index("items")
            elif column is not None and cells[0].startswith("`") and len(cells) > column:
                number = re.match(r"\d+", cells[column])
                if number and cells[0].endswith(".xml`"):
                    counts[cells[0].strip("`")] = int(number.group())
    return counts


# The manifests count what feedparser returns; parse_feed differs where it is right to.
COUNT_CHANGES = {
    # The document ends inside "<item><title><![CD": feedparser yields one empty entry, with
    # no title, summary, link or guid; it would be an empty alert, so it is dropped.
    "feedparser_illformed_rss_incomplete_cdata.xml": 0,
}


def _parse(name: str) -> ParsedFeed:
    return parse_feed(_document(name).read_bytes(), url=FEED_URL)


def _titles(feed: ParsedFeed) -> list[str]:
    return [entry.title for entry in feed.entries]


# --- every document of the corpus -------------------------------------------------------------


def test_the_feed_corpus_is_present() -> None:
    """The feed corpus is in tests/data/feeds, so the tests over it cannot pass vacuously."""
    assert len(feed_documents()) >= 20, f"the feed corpus is missing from {FEEDS}"


@pytest.mark.parametrize("path", feed_documents(), ids=lambda path: path.name)
def test_every_feed_document_parses_into_clean_entries(path: Path) -> None:
    """Each feed of the corpus parses, and every field is clean, capped, canonical and UTC."""
    feed = parse_feed(path.read_bytes(), {"Content-Type": "application/rss+xml"}, FEED_URL)
    assert len(feed.title) <= TITLE_LIMIT
    assert feed.link is None or feed.link.startswith(("http://", "https://"))
    assert feed.warning is None or "\n" not in feed.warning
    for entry in feed.entries:
        assert entry.title or entry.summary or entry.link or entry.guid
        assert len(entry.title) <= TITLE_LIMIT
        assert len(entry.summary) <= SUMMARY_LIMIT
        for text in (entry.title, entry.summary, *entry.categories):
            assert text == text.strip()
            assert "  " not in text
            assert not INVISIBLE.search(text)
        assert all(0 < len(category) <= CATEGORY_LIMIT for category in entry.categories)
        assert len({category.casefold() for category in entry.categories}) == len(entry.categories)
        assert entry.link is None or entry.link.startswith(("http://", "https://"))
        assert entry.guid is None or entry.guid == entry.guid.strip() != ""
        assert entry.published is None or entry.published.utcoffset() == timedelta(0)


@pytest.mark.parametrize("name", sorted(_manifest_counts()))
def test_item_counts_match_the_manifests(name: str) -> None:
    """Each feed yields as many entries as its manifest lists (or the documented change)."""
    expected = COUNT_CHANGES.get(name, _manifest_counts()[name])
    assert len(_parse(name).entries) == expected


def test_the_manifests_were_read() -> None:
    """The manifest reader finds every listed feed, so the count test cannot pass vacuously."""
    counts = _manifest_counts()
    assert len(counts) >= 20, f"the manifests in {FEEDS} list {len(counts)} feeds"
    assert counts.get("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml") == 38


# --- Arabic-script outlets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "aljazeera-arabic_tiktok-feedgen_2025-04-19.xml",
        "ennahar-tv_tiktok-feedgen_2024-12-05.xml",
        "derived_aljazeera-arabic_windows-1256.xml",
        "derived_aljazeera-arabic_iso-8859-6.xml",
    ],
)
def test_arabic_outlets_give_arabic_titles_without_mojibake(name: str) -> None:
    """Headlines of the Arabic outlets are Arabic text, never Ø/Ù mojibake."""
    feed = _parse(name)
    arabic = [title for title in _titles(feed) if ARABIC_LETTER.search(title)]
    assert len(arabic) >= len(feed.entries) - 1  # Ennahar has one "No Title" placeholder
    for entry in feed.entries:
        assert not MOJIBAKE.search(entry.title + entry.summary)


@pytest.mark.parametrize(
    "name",
    ["derived_aljazeera-arabic_windows-1256.xml", "derived_aljazeera-arabic_iso-8859-6.xml"],
)
def test_legacy_arabic_encodings_give_the_same_entries_as_utf8(name: str) -> None:
    """The windows-1256 and ISO-8859-6 copies read exactly like the UTF-8 original."""
    original = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    legacy = _parse(name)
    assert legacy.entries == original.entries
    assert legacy.warning is None


def test_charset_from_the_http_header_wins_over_the_prolog() -> None:
    """A windows-1256 body labelled only by its HTTP header (the prolog lies) reads as Arabic."""
    path = _document("derived_aljazeera-arabic_windows-1256.xml")
    body = path.read_bytes().replace(b"encoding='windows-1256'", b"encoding='iso-8859-1'", 1)
    assert body != path.read_bytes()
    feed = parse_feed(body, {"Content-Type": "text/xml; charset=windows-1256"}, FEED_URL)
    original = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    assert _titles(feed) == _titles(original)


def test_iso_8859_6_from_the_http_header_is_honoured() -> None:
    """An ISO-8859-6 body with no encoding in its prolog is read by the HTTP charset."""
    path = _document("derived_aljazeera-arabic_iso-8859-6.xml")
    body = re.sub(rb"encoding=['\"][^'\"]+['\"]", b"", path.read_bytes(), count=1)
    feed = parse_feed(body, {"content-type": "application/rss+xml; charset=ISO-8859-6"})
    original = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    assert _titles(feed) == _titles(original)


def test_wrong_utf8_header_does_not_hide_a_windows_1256_prolog() -> None:
    """A server's default "charset=utf-8" over windows-1256 bytes loses to the bytes' prolog."""
    path = _document("derived_aljazeera-arabic_windows-1256.xml")
    feed = parse_feed(path.read_bytes(), {"content-type": "text/xml; charset=utf-8"})
    original = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    assert _titles(feed) == _titles(original)


def test_undeclared_windows_1256_is_recognised_as_arabic() -> None:
    """windows-1256 Arabic with no label at all is detected, not read as Latin mojibake."""
    path = _document("derived_aljazeera-arabic_windows-1256.xml")
    body = re.sub(rb"encoding=['\"][^'\"]+['\"]", b"", path.read_bytes(), count=1)
    feed = parse_feed(body)
    original = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    assert _titles(feed) == _titles(original)
    assert feed.warning is not None


def test_one_broken_byte_does_not_turn_utf8_arabic_into_mojibake() -> None:
    """A UTF-8 feed with one cut letter keeps its Arabic and marks the spot with U+FFFD."""
    path = _document("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    body = path.read_bytes()
    cut = body.index("مستوطنون".encode())
    feed = parse_feed(body[:cut] + body[cut + 1 :])
    assert feed.entries[0].title.startswith("\ufffd")
    assert "يقتحمون جبل العرمة" in feed.entries[0].title
    assert _titles(feed)[1:] == _titles(_parse(path.name))[1:]
    assert feed.warning is not None


@pytest.mark.parametrize(
    "name",
    [
        "bbc-urdu_rss_2018-10-24.xml",
        "bbc-urdu_atom_2014-03-17.xml",
        "voa-urdu_rss_2014-03-16.xml",
    ],
)
def test_urdu_feeds_give_urdu_text(name: str) -> None:
    """BBC and VOA Urdu headlines keep their Urdu letters (ی ک ہ ے and others)."""
    feed = _parse(name)
    assert URDU_LETTER.search(feed.title)
    titles = _titles(feed)
    assert all(ARABIC_SCRIPT.search(title) for title in titles)
    # Some headlines are a single shared word (BBC's "موسم", weather): most are not.
    assert sum(bool(URDU_LETTER.search(title)) for title in titles) >= 0.9 * len(titles)


def test_cdata_titles_lose_their_padding() -> None:
    """BBC wraps titles in CDATA with spaces; the title is trimmed and single-spaced."""
    feed = _parse("bbc-urdu_rss_2018-10-24.xml")
    assert feed.title == "BBC News اردو - پاکستان کے لیے امریکی امداد کی بہار و خزاں"
    assert feed.link == "http://www.bbcurdu.com/"


def test_hashtag_breaking_marker_survives_cleaning() -> None:
    """The trailing #عاجل hashtag Al Jazeera uses reaches the caller intact."""
    feed = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml")
    assert sum("#عاجل" in title for title in _titles(feed)) == 3


def test_escaped_image_markup_is_not_in_the_summary() -> None:
    """Al Jazeera's description holds an escaped <img>; the summary is only the words."""
    entry = _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml").entries[0]
    assert (
        entry.summary
        == "مستوطنون يقتحمون جبل العرمة في نابلس بالضفة الغربية #فيديو #الضفة_الغربية"
    )
    assert entry.link == "https://tiktok.com/@aljazeera/video/7494669185608469778"


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("voa-urdu_rss_2014-03-16.xml", datetime(2014, 3, 16, 21, 51, 37, tzinfo=UTC)),
        ("bbc-urdu_rss_2018-10-24.xml", datetime(2018, 1, 5, 16, 51, tzinfo=UTC)),
        (
            "aljazeera-arabic_tiktok-feedgen_2025-04-19.xml",
            datetime(2025, 4, 18, 22, 30, tzinfo=UTC),
        ),
    ],
)
def test_published_times_are_aware_utc(name: str, first: datetime) -> None:
    """Dates with any offset (VOA's -0400) become the same instant in UTC."""
    feed = _parse(name)
    assert feed.entries[0].published == first
    assert all(entry.published is not None for entry in feed.entries)
    assert all(entry.published.tzinfo is UTC for entry in feed.entries if entry.published)


def test_atom_dates_are_read() -> None:
    """BBC Urdu's Atom entries carry their update time as an aware UTC datetime."""
    feed = _parse("bbc-urdu_atom_2014-03-17.xml")
    assert feed.entries[0].published == datetime(2014, 3, 16, 8, 22, 25, tzinfo=UTC)


def test_categories_are_kept_in_order() -> None:
    """VOA's <category> elements become the entry's categories, in document order."""
    entry = _parse("voa-urdu_rss_2014-03-16.xml").entries[0]
    assert entry.categories == ("خبریں", "دنیا")


# --- edge cases -------------------------------------------------------------------------------


def test_x80_in_windows_1256_is_the_euro_sign() -> None:
    """Byte 0x80 of a windows-1256 document decodes to €."""
    feed = _parse("feedparser_x80_windows-1256.xml")
    assert feed.title == "€"
    assert feed.warning is None


def test_utf8_bytes_behind_a_lying_prolog_are_read_as_utf8() -> None:
    """A prolog that says windows-1252 over UTF-8 bytes gives "Euro €", with a warning."""
    feed = _parse("miniflux_windows-1252-incorrect-prolog.xml")
    assert feed.title == "Euro €"
    assert feed.warning is not None
    assert "windows-1252" in feed.warning


def test_crazy_html_title_leaks_no_script() -> None:
    """An escaped HTML page as a title keeps its words and loses script, comments and tags."""
    (entry,) = _parse("feedparser_wellformed_sanitize_entry_title_crazy.xml").entries
    assert entry.title.startswith("Crazy HTML -- Can Your Regex Parse This?")
    assert "I will execute here, too, if you mouse over me" in entry.title
    for leak in ("executeMe", "alert", "function", "<script", "<", ">", "onload", "/*"):
        assert leak not in entry.title


def test_non_url_guid_stays_as_given() -> None:
    """<guid isPermaLink="false">abc</guid> under an xml:base stays "abc" and is not a link."""
    (entry,) = _parse("feedparser_wellformed_rss_item_guid_not_permalink_not_url.xml").entries
    assert entry.guid == "abc"
    assert entry.link is None


def test_bare_guid_is_not_resolved_against_the_feed_url() -> None:
    """A permalink-by-default guid that is not a URL stays an id, not a made-up link."""
    entry = _parse("picofeed_rss_20_fallback_on_invalid_item_values.xml").entries[0]
    assert entry.guid == "b67e7afb-80be-4b23-8c42-67b970e2baa7"
    assert entry.link is None


def test_link_wrapped_in_whitespace_is_canonical() -> None:
    """A <link> padded with newlines and tabs becomes the bare canonical URL."""
    entries = _parse("picofeed_rss_20_fallback_on_invalid_item_values.xml").entries
    assert entries[2].link == "https://en.wikipedia.org/wiki/Doctor_Zhivago_(novel)"
    assert entries[2].title == ""  # whitespace only: the caller picks a fallback


def test_entry_with_only_a_description_keeps_it() -> None:
    """An item with no title, link or guid is kept for its description."""
    entry = _parse("picofeed_rss_20_fallback_on_invalid_item_values.xml").entries[1]
    assert entry.title == ""
    assert entry.summary.startswith("Осенью 1865 года, потеряв все свои деньги в казино")


def test_ampersand_in_link_is_a_plain_ampersand() -> None:
    """&amp; in a <link> gives a=1&b=2, even in a document missing its final ">"."""
    feed = _parse("feedparser_illformed_rss_item_link_corrupted_ampersands.xml")
    assert feed.entries[0].link == "http://link/get?a=1&b=2"
    assert feed.warning is not None


def test_double_encoded_utf8_is_repaired() -> None:
    """UTF-8 read as Latin-1 and re-encoded (&#226;&#128;&#166;) comes out as "…"."""
    (entry,) = _parse("feedparser_encoding_double-encoded-html.xml").entries
    assert entry.summary == "…"


def test_nbsp_entity_becomes_a_plain_space() -> None:
    """&#160; in a title collapses with its neighbours into one ordinary space."""
    feed = _parse("feedparser_entities_160.xml")
    assert feed.title == "testing entity"


def test_undeclared_legacy_encoding_is_guessed() -> None:
    """An undeclared windows-1255 document reads as Hebrew, with a warning saying so."""
    feed = _parse("feedparser_illformed_chardet_windows1255.xml")
    assert HEBREW_LETTER.search(feed.entries[0].summary)
    assert feed.warning is not None


def test_invalid_bytes_after_a_utf8_bom_do_not_break_the_rest() -> None:
    """A BOM'd document with a stray invalid byte keeps its valid text and is flagged."""
    feed = _parse("feedparser_encoding_bozo_invalid-bytes-with-bom.xml")
    assert feed.title.startswith("Valid UTF8: Ѩ")
    assert feed.warning is not None


@pytest.mark.parametrize(
    "name",
    [
        "feedparser_entities_160.xml",
        "feedparser_illformed_undeclared_namespace.xml",
        "feedparser_illformed_rss_incomplete_cdata.xml",
    ],
)
def test_broken_but_usable_feed_is_used_with_a_warning(name: str) -> None:
    """A malformed document that is still a feed is parsed, and the problem reported."""
    feed = _parse(name)
    assert feed.warning
    assert "\n" not in feed.warning


def test_impossible_character_reference_in_a_broken_feed_is_replaced() -> None:
    """&#xD800; in malformed XML (which crashes feedparser's lenient parser) becomes U+FFFD."""
    document = (
        b'<rss version="2.0"><channel><title>a &#xD800; b</title>'
        b"<item><title>\xd8\xae\xd8\xa8\xd8\xb1</title><link>https://news.example/1</link>"
        b"</item></channel></rss"
    )
    feed = parse_feed(document)
    assert feed.title == "a \ufffd b"
    assert [entry.title for entry in feed.entries] == ["خبر"]
    assert feed.warning is not None


def test_well_formed_feed_has_no_warning() -> None:
    """A clean feed carries no warning, so operators are not trained to ignore them."""
    assert _parse("aljazeera-arabic_tiktok-feedgen_2025-04-19.xml").warning is None


# --- hostile documents ------------------------------------------------------------------------

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "lollollollollollollollollollol">'
    + "".join(
        f'<!ENTITY {chr(98 + level)} "{("&" + chr(97 + level) + ";") * 10}">' for level in range(9)
    )
    + ']><rss version="2.0"><channel><title>&j;</title></channel></rss>'
)
EXTERNAL = (
    '<?xml version="1.0"?>\n<!DOCTYPE rss [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
    '<rss version="2.0"><channel><title>&xxe;</title></channel></rss>'
)
PARAMETER = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd">'
    '%remote;]><rss version="2.0"/>'
)
HIDDEN_AFTER_COMMENT = (
    '<?xml version="1.0"?><!-- <rss> is below --><?pi x?>\n'
    '<!DOCTYPE rss SYSTEM "x>y" [<!ENTITY a "x">]><rss version="2.0"/>'
)
BARE_ENTITY = '<?xml version="1.0"?>\n<!ENTITY a "x">\n<rss version="2.0"/>'


@pytest.mark.parametrize(
    "document",
    [
        LAUGHS.encode(),
        EXTERNAL.encode(),
        PARAMETER.encode(),
        HIDDEN_AFTER_COMMENT.encode(),
        BARE_ENTITY.encode(),
        LAUGHS.encode("utf-16"),  # with a BOM
        LAUGHS.encode("utf-16-be"),  # without one
        LAUGHS.replace("DOCTYPE", "doctype").encode(),
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "parameter-entity",
        "dtd-after-comment",
        "bare-entity",
        "utf-16-bom",
        "utf-16-no-bom",
        "lower-case",
    ],
)
def test_entity_declarations_are_refused_quickly(document: bytes) -> None:
    """Billion laughs and external entities are refused before any XML parser sees them."""
    started = time.perf_counter()
    with pytest.raises(FeedError, match="refused"):
        parse_feed(document, {"Content-Type": "application/rss+xml"}, FEED_URL)
    assert time.perf_counter() - started < 0.5


def test_netscape_public_doctype_is_accepted() -> None:
    """The RSS 0.91 Netscape DOCTYPE has no internal subset, so the feed is read."""
    document = (
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        b'"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        b'<rss version="0.91"><channel><title>Caf\xe9</title><link>http://n.example/</link>'
        b"<item><title>One</title><link>http://n.example/1</link></item></channel></rss>"
    )
    feed = parse_feed(document)
    assert feed.title == "Café"
    assert [entry.link for entry in feed.entries] == ["http://n.example/1"]


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"   \n\t",
        b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Hi</p></body></html>",
        b"just some words, not XML",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        b"<?xml version='1.0'?><catalog><book id='1'/></catalog>",
    ],
    ids=["empty", "blank", "html-page", "plain-text", "json", "other-xml"],
)
def test_documents_that_are_not_feeds_raise_feed_error(document: bytes) -> None:
    """An HTML page, empty body, text, JSON or other XML is an error with a one-line reason."""
    with pytest.raises(FeedError) as raised:
        parse_feed(document, {"Content-Type": "text/html"}, FEED_URL)
    assert str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_path_given_as_bytes_is_not_opened(tmp_path: Path) -> None:
    """Bytes that spell a file's path are a (broken) document, never read from disk."""
    feed_file = tmp_path / "feed.xml"
    feed_file.write_text('<rss version="2.0"><channel><title>secret</title></channel></rss>')
    with pytest.raises(FeedError):
        parse_feed(str(feed_file).encode())


def test_a_url_given_as_bytes_is_not_fetched() -> None:
    """Bytes that spell a URL are a document, so nothing is fetched."""
    started = time.perf_counter()
    with pytest.raises(FeedError):
        parse_feed(b"http://127.0.0.1:9/feed.xml")
    assert time.perf_counter() - started < 0.5


# --- fields, on small inline feeds ------------------------------------------------------------

ITEMS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>صحيفة &amp; أخبار</title>
  <link>https://News.Example/?utm_source=rss</link>
  <item>
    <title>\u200f<![CDATA[عاجل: <b>انفجار</b> في   المدينة]]>\u200f</title>
    <link>/ar/story/1?utm_source=rss&amp;id=1&amp;fbclid=x</link>
    <description><![CDATA[<p>الفقرة الأولى</p><p>الفقرة&nbsp;الثانية<br>سطر</p>
      <script>alert("x")</script><style>p{color:red}</style>]]></description>
    <category>سياسة</category><category>سياسة</category><category>Q&amp;amp;A</category>
    <pubDate>Thu, 24 Sep 2026 01:00:00 +0300</pubDate>
  </item>
  <item>
    <title>بلا رابط</title>
    <guid>https://news.example/ar/story/2</guid>
    <content:encoded><![CDATA[<div>نص <i>كامل</i></div>]]></content:encoded>
    <pubDate>الخميس، 24 سبتمبر 2026 01:00 م</pubDate>
  </item>
  <item>
    <title>رابط غير دائم</title>
    <guid isPermaLink="false">https://news.example/?p=3</guid>
  </item>
  <item><title> </title><description>  </description></item>
  <item><title>javascript</title><link>javascript:alert(1)</link></item>
</channel>
</rss>
"""


def test_feed_title_and_homepage_are_clean() -> None:
    """The feed's title is unescaped text and its homepage a canonical link."""
    feed = parse_feed(ITEMS.encode(), url=FEED_URL)
    assert feed.title == "صحيفة & أخبار"
    assert feed.link == "https://news.example/"


def test_html_title_loses_tags_and_bidi_marks() -> None:
    """Markup, RLM marks and runs of spaces disappear from a headline; the words stay."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[0]
    assert entry.title == "عاجل: انفجار في المدينة"


def test_relative_entry_link_is_resolved_and_untracked() -> None:
    """A relative item link is resolved against the feed URL and loses its tracking."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[0]
    assert entry.link == "https://news.example/ar/story/1?id=1"


def test_summary_separates_blocks_and_drops_script_and_style() -> None:
    """Paragraphs and line breaks become spaces; script and style text never shows."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[0]
    assert entry.summary == "الفقرة الأولى الفقرة الثانية سطر"


def test_categories_are_deduplicated_and_unescaped() -> None:
    """A repeated category appears once and a double-escaped one reads naturally."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[0]
    assert entry.categories == ("سياسة", "Q&A")


def test_offset_date_becomes_utc() -> None:
    """A +0300 pubDate is stored as the same instant in UTC."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[0]
    assert entry.published == datetime(2026, 9, 23, 22, 0, tzinfo=UTC)


def test_arabic_date_is_left_to_the_caller() -> None:
    """An Arabic-language pubDate cannot be read, so published is None (not a guess)."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[1]
    assert entry.published is None


def test_permalink_guid_stands_in_for_a_missing_link() -> None:
    """An item without <link> links to its guid when that guid is a permalink URL."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[1]
    assert entry.link == "https://news.example/ar/story/2"
    assert entry.summary == "نص كامل"  # from content:encoded when there is no description


def test_non_permalink_guid_is_not_used_as_link() -> None:
    """isPermaLink="false" means the guid is an id, even when it looks like a URL."""
    entry = parse_feed(ITEMS.encode(), url=FEED_URL).entries[2]
    assert entry.guid == "https://news.example/?p=3"
    assert entry.link is None


def test_empty_items_are_dropped_and_javascript_links_refused() -> None:
    """An item with nothing to show is dropped; a javascript: link is no link."""
    entries = parse_feed(ITEMS.encode(), url=FEED_URL).entries
    assert [entry.title for entry in entries] == [
        "عاجل: انفجار في المدينة",
        "بلا رابط",
        "رابط غير دائم",
        "javascript",
    ]
    assert entries[-1].link is None


def test_atom_text_title_shows_markup_literally() -> None:
    """An Atom type="text" title that shows "<b>" keeps it: only HTML titles lose tags."""
    document = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title type="html">A &amp;lt;b&amp;gt; B'
        " &lt;i&gt;C&lt;/i&gt;</title><entry><id>urn:uuid:1</id>"
        '<title type="text">x &lt;b&gt; y</title></entry></feed>'
    )
    feed = parse_feed(document.encode())
    assert feed.title == "A <b> B C"  # escaped text stays text, a real tag is dropped
    assert feed.entries[0].title == "x <b> y"
    assert feed.entries[0].link is None  # a urn: id is not a link


def test_utf16_feed_is_read() -> None:
    """A UTF-16 document (with its BOM) parses like any other."""
    document = (
        '<?xml version="1.0" encoding="UTF-16"?><rss version="2.0"><channel><title>عاجل</title>'
        "<item><title>خبر</title><guid>1</guid></item></channel></rss>"
    ).encode("utf-16")
    feed = parse_feed(document)
    assert feed.title == "عاجل"
    assert feed.entries[0].guid == "1"
    assert feed.warning is None


def test_blank_lines_before_the_prolog_are_harmless() -> None:
    """Leading blank lines (a common CMS bug) do not make a valid feed "broken"."""
    document = b"\n\n  " + ITEMS.encode()
    feed = parse_feed(document, url=FEED_URL)
    assert feed.warning is None
    assert len(feed.entries) == 4


def test_long_title_is_cut_at_a_word_with_an_ellipsis() -> None:
    """A huge title is capped at the limit, ends on a whole word and shows "…"."""
    words = " ".join(["كلمة"] * 400)
    document = f'<rss version="2.0"><channel><item><title>{words}</title></item></channel></rss>'
    title = parse_feed(document.encode()).entries[0].title
    assert len(title) <= TITLE_LIMIT
    assert title.endswith("كلمة…")


# --- clean_text -------------------------------------------------------------------------------


def test_clean_text_keeps_escaped_markup_as_text() -> None:
    """HTML that displays "<b>" (as &lt;b&gt;) keeps showing it instead of losing it as a tag."""
    assert clean_text("<p>use &lt;b&gt; for bold &amp; more</p>", 100) == (
        "use <b> for bold & more"
    )


def test_clean_text_drops_invisible_controls_but_keeps_zwnj() -> None:
    """RLM, LRE/PDF, isolates and ZWSP go; ZWNJ, which Urdu and Persian words need, stays."""
    value = "\u202bعاجل\u202c\u200f \u2067خبر\u2069\u200b\u00a0\u2003می\u200cخواهم"
    assert clean_text(value, 100) == "عاجل خبر می\u200cخواهم"


def test_clean_text_cut_never_exceeds_the_limit() -> None:
    """The cut text, ellipsis included, fits the limit and does not end mid-word."""
    assert clean_text("alpha beta gamma delta", 12) == "alpha beta…"
    assert clean_text("abcdefghijklmnop", 5) == "abcd…"
    assert clean_text("short", 100) == "short"


def test_clean_text_of_huge_html_is_marked_as_cut() -> None:
    """Markup too long to clean whole is cut, and the text says so with "…"."""
    value = "<div>" + "<p>word</p>" * 20_000 + "</div>"
    text = clean_text(value, 200)
    assert len(text) <= 200
    assert text.endswith("word…")
