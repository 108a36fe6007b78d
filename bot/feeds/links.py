"""Canonical article links: one spelling per story, so a link can be a dedup key.

Hosts are kept as the feed gives them (Unicode or punycode), lower-cased, never converted.
"""

import re
from urllib.parse import SplitResult, unquote_plus, urljoin, urlsplit, urlunsplit

# Matched case-insensitively against each parameter's decoded name.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",  # Google Display
        "gbraid",  # Google Ads, iOS
        "wbraid",
        "srsltid",  # Google Merchant Center
        "_ga",  # Google Analytics cross-domain
        "_gl",
        "msclkid",  # Microsoft Ads
        "mc_cid",  # Mailchimp
        "mc_eid",
        "igshid",  # Instagram
        "igsh",
        "yclid",  # Yandex
        "ysclid",
        "ttclid",  # TikTok
        "twclid",  # X/Twitter
        "ref_src",
        "ref_url",
        "li_fat_id",  # LinkedIn
        "mkt_tok",  # Marketo
        "_hsenc",  # HubSpot
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "vero_id",  # Vero
        "vero_conv",
        "rb_clickid",
        "at_medium",  # AT Internet (BBC's analytics)
        "at_campaign",
        "at_custom1",
        "at_custom2",
        "at_custom3",
        "at_custom4",
    }
)
# Whole families: utm_source, pk_campaign (Matomo/Piwik), mtm_kwd (Matomo).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "piwik_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that can never stand literally in a URL and would break it where it is shown.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_BAD_HOST = re.compile(r"[\s<>\"'`{}|\\^%]")


def canonical_link(url: str | None, base: str | None = None) -> str | None:
    """The canonical http(s) form of `url` (resolved against `base`), or None if it is not one."""
    if not url:
        return None
    url = url.strip()
    if not url:
        return None
    if base and not url.lower().startswith(("http://", "https://")):
        try:
            url = urljoin(base.strip(), url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # e.g. a port that is not a number, a bracketed non-IPv6 host
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or _BAD_HOST.search(host):
        return None
    netloc = _netloc(parts, host, None if port == _DEFAULT_PORTS[scheme] else port)
    path = _escape(parts.path) or "/"
    query = _strip_tracking(parts.query) if parts.query else ""
    # A hash-bang fragment names the content on single-page sites; any other fragment
    # is only a position within the page.
    fragment = _escape(parts.fragment) if parts.fragment.startswith("!") else ""
    return urlunsplit((scheme, netloc, path, query, fragment))


def host_of(url: str) -> str:
    """The lower-cased host of `url`, or "" when it has none."""
    try:
        return urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""


def _netloc(parts: SplitResult, host: str, port: int | None) -> str:
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{userinfo}@{netloc}" if userinfo else netloc


def _strip_tracking(query: str) -> str:
    # Rebuilt by hand so the kept parameters keep their exact spelling and order:
    # parse_qsl/urlencode would re-encode values and drop blank ones.
    kept = []
    for piece in query.split("&"):
        if not piece:
            continue
        name = unquote_plus(piece.partition("=")[0]).strip().lower()
        if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
            continue
        kept.append(_escape(piece))
    return "&".join(kept)


def _escape(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)


__all__ = ["TRACKING_PARAMS", "TRACKING_PREFIXES", "canonical_link", "host_of"]
