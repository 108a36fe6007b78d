"""Fetched feed bytes to typed entries: pick the encoding, refuse hostile DTDs, run feedparser
(on bytes only, never a URL or a path) and turn its HTML into clean one-line text.
"""

import calendar
import codecs
import html
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import chardet
import feedparser
import nh3

from bot.feeds.links import canonical_link

TITLE_LIMIT = 1_000
SUMMARY_LIMIT = 4_000
CATEGORY_LIMIT = 200
# A feed that tags every entry with hundreds of keywords is noise, not information.
MAX_CATEGORIES = 50
# More than any real feed carries (the busiest wires list a few hundred); a document with
# tens of thousands is a dump or an attack. Feeds list the newest first: the rest are
# dropped, and the count reported (ParsedFeed.dropped).
MAX_ENTRIES = 2_000
# The longest link kept, in UTF-8 bytes: the link and URL columns hold 2,048 characters,
# and PostgreSQL's index on an article's link at most 2,704 bytes (an Arabic letter takes
# two). A longer link is dropped, not cut: a cut link leads nowhere.
LINK_BYTES = 2_048


class FeedError(Exception):
    """A document that is not a usable feed; str(e) is a one-line reason for an operator."""


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One entry of a feed, as clean text."""

    guid: str | None  # the entry's id as given (stripped); None when missing or blank
    link: str | None  # canonical http(s) link; a permalink guid stands in for a missing one
    title: str  # clean one-line text, "" when the entry has none (the caller picks a fallback)
    summary: str  # clean one-line text of the description (else the content), may be ""
    categories: tuple[str, ...]  # clean text, deduplicated ignoring case, in document order
    published: datetime | None  # aware UTC; None when missing or unreadable


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A feed document, with what was wrong with it when it was still usable."""

    title: str  # clean one-line text, "" when missing
    link: str | None  # canonical link of the site's home page
    entries: tuple[ParsedEntry, ...]  # in document order; entries with nothing to show dropped
    # One line for the operator: malformed XML that feedparser still read, or encoding labels
    # that had to be overridden. None for a clean document.
    warning: str | None
    dropped: int = 0  # entries past MAX_ENTRIES, not read


def parse_feed(
    data: bytes, headers: Mapping[str, str] | None = None, url: str | None = None
) -> ParsedFeed:
    """Parse a fetched RSS/Atom document; raise FeedError when it is hostile or not a feed."""
    http = {key.lower(): value for key, value in (headers or {}).items()}
    text, note = _decode(data, _charset(http.get("content-type", "")))
    # Leading blank lines before <?xml are common and would push expat onto the slow,
    # lenient parser.
    text = text.lstrip(" \t\r\n\ufeff")
    if not text:
        raise FeedError("empty document")
    _refuse_dtd(text)
    # We decoded the bytes ourselves, so feedparser gets UTF-8 and an XML media type: it then
    # neither second-guesses the charset nor flags the server's Content-Type. No
    # Content-Location: feedparser would resolve every permalink-by-default guid against it
    # ("12345" -> "https://site/feed/12345"), losing the id as given; links are resolved
    # against `url` below instead, and an absolute xml:base still applies.
    response_headers = {"content-type": "application/xml; charset=utf-8"}
    if http.get("content-language"):
        response_headers["content-language"] = http["content-language"]
    try:
        result = _feedparser(text, response_headers)
    except (ValueError, OverflowError):
        # feedparser's lenient parser (used for malformed XML) crashes on a character
        # reference to a surrogate or past U+10FFFF; such references are worth one retry.
        try:
            result = _feedparser(_CHARREF.sub(_fix_charref, text), response_headers)
        except (ValueError, OverflowError) as exc:
            raise FeedError(f"unreadable document ({_describe(exc)})") from exc
    return _feed(result, url, note)


def storable_link(link: str | None) -> str | None:
    """The link if it fits in LINK_BYTES of UTF-8, else None."""
    if link is None:
        return None
    try:
        size = len(link.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no database stores it
        return None
    return link if size <= LINK_BYTES else None


def clean_text(value: str, limit: int) -> str:
    """An HTML fragment as one line of plain text of at most `limit` characters."""
    return _clean(value, limit, is_html=True)


def _feedparser(text: str, response_headers: dict[str, str]) -> Any:
    # A bytes argument would first be tried as a file name: only a stream is always a document.
    return feedparser.parse(
        io.BytesIO(text.encode("utf-8")),
        response_headers=response_headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )


_CHARREF = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _fix_charref(match: re.Match[str]) -> str:
    digits = (match[1] or match[2]).lstrip("0")
    code = int(digits or "0", 16 if match[1] else 10) if len(digits) <= 8 else -1
    if not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return match[0]


# --- encoding -------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# A BOM-less document in an ASCII-incompatible encoding still starts with "<" (XML spec, F.1).
_MARKERS = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),  # "<?xm" in EBCDIC
)
# WHATWG: browsers read these labels as windows-125x, and so do the sites that declare them.
_WHATWG = {"iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254"}
# Labels that only an ASCII-compatible document could have spelled out are lies when they
# name one of these; the rest are codecs, not charsets.
_NOT_CHARSETS = frozenset(
    {
        "utf-16",
        "utf-16-be",
        "utf-16-le",
        "utf-32",
        "utf-32-be",
        "utf-32-le",
        "utf-7",
        "cp037",
        "cp273",
        "cp424",
        "cp500",
        "cp875",
        "cp1026",
        "cp1140",
        "unicode-escape",
        "raw-unicode-escape",
        "idna",
        "punycode",
        "undefined",
    }
)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_CHARDET_SAMPLE = 64 * 1024


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    name = _WHATWG.get(name, "utf-8" if name == "utf-8-sig" else name)
    return None if name in _NOT_CHARSETS else name


def _decode(data: bytes, http_charset: str | None) -> tuple[str, str | None]:
    """The document as text, and a note for the operator when its labels could not be trusted."""
    for prefix, codec in _BOMS:
        if data.startswith(prefix):
            return _decode_lossy(data[len(prefix) :], codec)
    for prefix, codec in _MARKERS:
        if data.startswith(prefix):
            return _decode_lossy(data, codec)
    if data.isascii():
        return data.decode("ascii"), None
    prolog = _XML_ENCODING.match(data[:1024].lstrip())
    declared: dict[str, str] = {}  # codec -> label as written; the HTTP header's comes first
    for label in (http_charset, prolog[1].decode() if prolog else None):
        if label and (name := _codec(label)):
            declared.setdefault(name, label)
    # Valid UTF-8 outside ASCII is almost never an accident, while a wrong label is common:
    # trust the bytes (a prolog that says windows-1252 over UTF-8 "€" would give "â‚¬").
    try:
        return data.decode("utf-8"), _override(declared, "utf-8")
    except UnicodeDecodeError:
        pass
    for codec in declared:
        if codec != "utf-8":
            try:
                return data.decode(codec), None
            except UnicodeDecodeError:
                pass
    if not declared or "utf-8" in declared:  # UTF-8 is XML's default
        text = data.decode("utf-8", "replace")
        broken = text.count("\ufffd")
        wide = len(text) - len(text.encode("ascii", "ignore"))
        # A few broken sequences in a UTF-8 document (a cut multi-byte letter) are kept as
        # U+FFFD; bytes that are mostly invalid mean another encoding.
        if broken * 10 <= wide:
            return text, f"{broken} invalid UTF-8 sequence(s) replaced"
    guessed = chardet.detect(data[:_CHARDET_SAMPLE])["encoding"]
    guess = _codec(guessed)
    if guess:
        try:
            text = data.decode(guess)
        except UnicodeDecodeError:
            pass
        else:
            return text, _override(declared, guess) or f"no encoding declared; read as {guessed}"
    codec = next(iter(declared), guess or "utf-8")
    text = data.decode(codec, "replace")
    return text, f"bytes invalid in {declared.get(codec, codec)} replaced"


def _decode_lossy(data: bytes, codec: str) -> tuple[str, str | None]:
    try:
        return data.decode(codec), None
    except UnicodeDecodeError:
        return data.decode(codec, "replace"), f"bytes invalid in {codec} replaced"


def _override(declared: dict[str, str], used: str) -> str | None:
    if not declared or used in declared:
        return None
    return f"declared {', '.join(declared.values())} but read as {used}"


# --- hostile documents ----------------------------------------------------------------------

_MISC = re.compile(r"\s*+(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)
_NON_SPACE = re.compile(r"\S")
# Quoted literals may hold "[" or ">"; possessive loops keep a crafted DOCTYPE linear.
_DOCTYPE = re.compile(r"""<!DOCTYPE(?:[^>\["']++|"[^"]*+"|'[^']*+')*+(?P<end>[>\[])?""", re.I)


def _refuse_dtd(text: str) -> None:
    """Raise FeedError for entity declarations or an internal DTD subset before the root.

    Only the prolog is read: an XML parser expands entities only from a DTD, and the DTD
    can only come before the root element.
    """
    pos = 0
    while True:
        while match := _MISC.match(text, pos):
            pos = match.end()
        start = _NON_SPACE.search(text, pos)
        if start is None or not text.startswith("<!", pos := start.start()):
            return
        if text[pos : pos + 8].upper() == "<!ENTITY":
            raise FeedError("refused: the document declares XML entities")
        doctype = _DOCTYPE.match(text, pos)
        if doctype is None or doctype["end"] is None:
            return  # not a DOCTYPE, or an unterminated one: no parser reads a DTD from it
        if doctype["end"] == "[":
            raise FeedError("refused: the document has an internal DTD subset")
        pos = doctype.end()


# --- text -----------------------------------------------------------------------------------

# Zero-width and directional controls: a feed's unbalanced RLO or isolate would bleed into the
# rest of our message, and a ZWSP or RLM inside a word would defeat matching. ZWNJ and ZWJ stay:
# Persian and Urdu words and emoji sequences need them. C0/C1 controls XML forbids anyway.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
# Block elements and line breaks separate words even when the markup has no space.
_BREAK = re.compile(
    r"<(?=/?(?:br|p|div|li|dt|dd|h[1-6]|tr|td|th|table|blockquote|pre|hr|section|article"
    r"|header|footer|figure|figcaption|ul|ol|dl|img)\b)",
    re.I,
)
_HIDDEN = {"script", "style", "template"}
# nh3's cost grows with the markup; this much HTML yields more text than any limit needs.
_RAW_PER_CHAR = 8
_TRIM = " ,،;؛:-–—"


def _clean(value: str, limit: int, *, is_html: bool) -> str:
    if limit <= 0:
        return ""
    cut = False
    if is_html and "<" in value:
        raw_limit = max(limit * _RAW_PER_CHAR, 1024)
        if len(value) > raw_limit:
            value, cut = value[:raw_limit], True
        # Unescape only after nh3: text that shows a literal "<b>" arrives as "&lt;b&gt;" and
        # must not become a tag for nh3 to remove.
        value = nh3.clean(_BREAK.sub(" <", value), tags=set(), clean_content_tags=_HIDDEN)
        value = html.unescape(value)
    elif is_html and "&" in value:
        value = html.unescape(value)
    text = " ".join(_INVISIBLE.sub("", value).split())
    return _truncate(text, limit, cut_short=cut)


def _truncate(text: str, limit: int, cut_short: bool = False) -> str:
    """Fit `text` in `limit` characters, ending with "…" when it is not whole."""
    if len(text) <= limit and not cut_short:
        return text
    head = text[: limit - 1]
    # The last word is likely partial; drop it unless that would lose half the room.
    floor = limit // 2 if len(text) >= limit else 0
    if (space := head.rfind(" ")) > floor:
        head = head[:space]
    return head.rstrip(_TRIM) + "…"


# --- feedparser's dicts to dataclasses ------------------------------------------------------

# What no database text holds (PostgreSQL refuses NUL; no UTF-8 encodes a lone surrogate),
# yet a leniently read guid may carry: only these go, so every other guid keeps its identity.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

_DATE_KEYS = ("published_parsed", "updated_parsed", "created_parsed")


def _feed(result: Any, url: str | None, note: str | None) -> ParsedFeed:
    problem = _describe(_get(result, "bozo_exception")) if _get(result, "bozo") else None
    raw_entries = _get(result, "entries") or []
    if not _get(result, "version") and not raw_entries:
        raise FeedError(
            f"not an RSS or Atom feed ({problem})" if problem else "not an RSS or Atom feed"
        )
    info = _get(result, "feed") or {}
    dropped = max(len(raw_entries) - MAX_ENTRIES, 0)
    entries = tuple(
        entry for raw in raw_entries[:MAX_ENTRIES] if (entry := _entry(raw, url)) is not None
    )
    warning = "; ".join(part for part in (note, problem) if part) or None
    return ParsedFeed(
        title=_field(info, "title", TITLE_LIMIT),
        link=storable_link(canonical_link(_str(_get(info, "link")), url)),
        entries=entries,
        warning=warning,
        dropped=dropped,
    )


def _entry(raw: Any, base: str | None) -> ParsedEntry | None:
    guid = _UNSTORABLE.sub("", _str(_get(raw, "id"))).strip() or None
    link = _link(raw, guid, base)
    title = _field(raw, "title", TITLE_LIMIT)
    summary = _summary(raw)
    if not (title or summary or link or guid):
        return None
    return ParsedEntry(
        guid=guid,
        link=link,
        title=title,
        summary=summary,
        categories=_categories(raw),
        published=_published(raw),
    )


def _link(raw: Any, guid: str | None, base: str | None) -> str | None:
    # feedparser copies a permalink guid into "link"; "links" has only the real <link>s.
    for item in _get(raw, "links") or []:
        if (_get(item, "rel") or "alternate") == "alternate" and (
            link := canonical_link(_str(_get(item, "href")), base)
        ):
            return storable_link(link)
    # guidislink is false when the guid was marked isPermaLink="false"; a relative guid
    # ("abc") is an id, not a path on the feed's site, so no base.
    if guid and _get(raw, "guidislink") and guid.lower().startswith(("http://", "https://")):
        return storable_link(canonical_link(guid))
    return None


def _field(raw: Any, key: str, limit: int) -> str:
    value = _str(_get(raw, key))
    if not value:
        return ""
    detail = _get(raw, f"{key}_detail") or {}
    return _clean(value, limit, is_html=_is_html(_get(detail, "type")))


def _summary(raw: Any) -> str:
    if _get(raw, "summary_detail"):
        return _field(raw, "summary", SUMMARY_LIMIT)
    for content in _get(raw, "content") or []:
        if value := _str(_get(content, "value")):
            return _clean(value, SUMMARY_LIMIT, is_html=_is_html(_get(content, "type")))
    return _field(raw, "summary", SUMMARY_LIMIT)


def _categories(raw: Any) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for tag in _get(raw, "tags") or []:
        # Category terms are untyped; reading them as HTML repairs "Q&amp;A" double escaping.
        term = _clean(
            _str(_get(tag, "term")) or _str(_get(tag, "label")), CATEGORY_LIMIT, is_html=True
        )
        if term:
            seen.setdefault(term.casefold(), term)
            if len(seen) >= MAX_CATEGORIES:
                break
    return tuple(seen.values())


def _published(raw: Any) -> datetime | None:
    for key in _DATE_KEYS:
        parsed = _get(raw, key)
        if parsed:
            try:
                # feedparser's struct_time is UTC; timegm also rolls a leap second over.
                return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                continue
    return None


def _is_html(content_type: Any) -> bool:
    # Missing type: feedparser's default for untyped content is HTML.
    return not isinstance(content_type, str) or "html" in content_type


def _get(mapping: Any, key: str) -> Any:
    # dict.get, not FeedParserDict.get: that one maps legacy aliases, warns (DeprecationWarning)
    # when "updated_parsed" falls back to "published_parsed", and costs several calls a lookup.
    return dict.get(mapping, key) if isinstance(mapping, dict) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _describe(exc: Any) -> str | None:
    if exc is None:
        return None
    message = exc.getMessage() if hasattr(exc, "getMessage") else str(exc)
    name = "XML error" if hasattr(exc, "getMessage") else type(exc).__name__
    return " ".join(f"{name}: {message}".split())[:300]


__all__ = [
    "LINK_BYTES",
    "MAX_ENTRIES",
    "FeedError",
    "ParsedEntry",
    "ParsedFeed",
    "clean_text",
    "parse_feed",
    "storable_link",
]
