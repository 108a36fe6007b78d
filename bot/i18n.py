"""Gettext catalogs from ``locales/``: Arabic first, English second."""

from __future__ import annotations

import gettext
from functools import cache
from importlib.resources import files

DOMAIN = "messages"
LANGUAGES = ("ar", "en")
DEFAULT_LANGUAGE = "ar"


@cache
def translator(language: str) -> gettext.NullTranslations:
    """The compiled catalog for a language (English source strings when none is compiled)."""
    return gettext.translation(
        DOMAIN, localedir=str(files("locales")), languages=[language], fallback=True
    )
