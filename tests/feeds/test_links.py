"""Canonical links: the one spelling of an article's URL that dedup and alerts rely on."""

import pytest

from bot.feeds.links import canonical_link, host_of


def test_tracking_parameters_are_removed_and_the_rest_kept_in_order() -> None:
    """utm_*, fbclid, gclid and friends go; the site's own parameters stay, in their order."""
    url = (
        "https://news.example/story?id=7&utm_source=tw&fbclid=abc&page=2"
        "&gclid=x&UTM_Campaign=y&msclkid=z&_ga=1.2&lang=ar"
    )
    assert canonical_link(url) == "https://news.example/story?id=7&page=2&lang=ar"


def test_a_query_made_only_of_tracking_disappears() -> None:
    """A link whose whole query is tracking loses the "?" too."""
    assert canonical_link("https://news.example/a?utm_medium=rss&igshid=1") == (
        "https://news.example/a"
    )


def test_kept_parameters_keep_their_spelling() -> None:
    """Percent-escapes, "+" and blank values of kept parameters are not re-encoded."""
    url = "https://news.example/s?q=%D8%B9%D8%A7%D8%AC%D9%84+x&empty=&flag"
    assert canonical_link(url) == url


def test_scheme_and_host_are_lower_cased_but_not_the_path() -> None:
    """HTTPS://News.Example/Path keeps its path's case: paths are case-sensitive."""
    assert canonical_link("HTTPS://News.EXAMPLE/Ar/Story") == "https://news.example/Ar/Story"


def test_fragment_is_dropped() -> None:
    """A #fragment only points inside the page, so two spellings are one article."""
    assert canonical_link("https://news.example/a#comments") == "https://news.example/a"


def test_hash_bang_fragment_is_kept() -> None:
    """A #! fragment names the content on single-page sites, so it is part of the identity."""
    assert canonical_link("https://news.example/#!/story/9") == "https://news.example/#!/story/9"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://news.example:80/a", "http://news.example/a"),
        ("https://news.example:443/a", "https://news.example/a"),
        ("https://news.example:8443/a", "https://news.example:8443/a"),
        ("http://news.example:443/a", "http://news.example:443/a"),
    ],
)
def test_only_the_default_port_is_dropped(url: str, expected: str) -> None:
    """:80 for http and :443 for https are dropped; any other port is kept."""
    assert canonical_link(url) == expected


def test_empty_path_becomes_slash() -> None:
    """https://news.example and https://news.example/ are the same page."""
    assert canonical_link("https://news.example") == "https://news.example/"
    assert canonical_link("https://news.example?id=1") == "https://news.example/?id=1"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("/ar/story/1", "https://news.example/ar/story/1"),
        ("story/1", "https://news.example/feeds/story/1"),
        ("//cdn.example/x", "https://cdn.example/x"),
        ("https://other.example/x", "https://other.example/x"),
    ],
)
def test_relative_link_is_resolved_against_the_base(link: str, expected: str) -> None:
    """A relative link in a feed is read relative to the feed's address."""
    assert canonical_link(link, base="https://news.example/feeds/rss.xml") == expected


def test_relative_link_without_base_is_refused() -> None:
    """Without a base, a relative or scheme-less link names no page."""
    assert canonical_link("/ar/story/1") is None
    assert canonical_link("//cdn.example/x") is None


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   \n",
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "mailto:desk@news.example",
        "data:text/html,<b>x</b>",
        "ftp://news.example/file",
        "file:///etc/passwd",
        "not a link",
        "http://",
        "https:///path-only",
        "http://news.example:port/",
        "http://bad host.example/",
    ],
)
def test_anything_but_an_http_link_is_refused(url: str | None) -> None:
    """Only http(s) links with a host are links the bot will ever show."""
    assert canonical_link(url) is None


def test_javascript_link_is_refused_even_with_a_base() -> None:
    """An absolute javascript: link is not rescued by resolving it against the feed."""
    assert canonical_link("javascript:alert(1)", base="https://news.example/") is None


def test_surrounding_whitespace_and_newlines_are_stripped() -> None:
    """Feeds wrap links in whitespace and newlines; the link is the same."""
    assert canonical_link("\n\t\t https://news.example/a \n   ") == "https://news.example/a"


def test_spaces_inside_a_link_are_escaped() -> None:
    """A literal space would cut the link short where it is shown, so it is percent-escaped."""
    assert canonical_link("https://news.example/a b?q=c d") == "https://news.example/a%20b?q=c%20d"


def test_unicode_host_is_kept_as_given_lower_cased() -> None:
    """IDN hosts are never converted between Unicode and punycode, only lower-cased."""
    assert canonical_link("http://www.詹姆斯.com/feed") == "http://www.詹姆斯.com/feed"
    assert canonical_link("http://XN--MGBH0FB.Example/") == "http://xn--mgbh0fb.example/"


def test_ipv6_host_keeps_its_brackets() -> None:
    """An IPv6 literal host stays a valid URL after the default port is dropped."""
    assert canonical_link("http://[2001:DB8::1]:80/a") == "http://[2001:db8::1]/a"


def test_canonical_link_is_stable() -> None:
    """Canonicalising a canonical link changes nothing, so stored keys keep matching."""
    once = canonical_link(" HTTPS://News.Example:443/a?b=1&utm_source=x#top ")
    assert once == "https://news.example/a?b=1"
    assert canonical_link(once) == once


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://News.Example:8443/a?b", "news.example"),
        ("  http://www.bbc.co.uk/urdu  ", "www.bbc.co.uk"),
        ("abc", ""),
        ("", ""),
    ],
)
def test_host_of_gives_the_lower_cased_host(url: str, host: str) -> None:
    """host_of scopes non-URL guids by publisher, so it must ignore case, port and path."""
    assert host_of(url) == host
