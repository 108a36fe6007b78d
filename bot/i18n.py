"""Gettext catalogs from ``locales/``: Arabic first, English second.

The catalogs ship as ``.po`` files inside the package and are compiled in memory the first
time a language is asked for, so every install (wheel, sdist, editable, a bare checkout)
speaks Arabic without a build step. The English source strings need no catalog; Arabic
does: :func:`require_catalogs` refuses to go on without it rather than fall back quietly.
"""

from __future__ import annotations

import gettext
from functools import cache
from importlib.resources import files
from io import BytesIO

DOMAIN = "messages"
LANGUAGES = ("ar", "en")
DEFAULT_LANGUAGE = "ar"
# The language of the source strings: a missing catalog for it changes nothing.
SOURCE_LANGUAGE = "en"
# The word every alert begins with: a catalog that leaves it in English is no catalog.
PROBE = "BREAKING"


class CatalogError(Exception):
    """A catalog that should be there cannot be read; ``str()`` is one line."""


@cache
def translator(language: str) -> gettext.NullTranslations:
    """The catalog of a language, or the English source strings when it has none."""
    try:
        return load_catalog(language)
    except CatalogError:
        return gettext.NullTranslations()


def load_catalog(language: str) -> gettext.GNUTranslations:
    """The ``.po`` catalog of a language, compiled in memory; :class:`CatalogError` if it
    is missing or unreadable."""
    # Babel's catalog reader is only needed here: keep it off the import path of the CLI.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = files("locales").joinpath(language, "LC_MESSAGES", f"{DOMAIN}.po")
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        compiled = BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        return gettext.GNUTranslations(compiled)
    except (OSError, ValueError, SyntaxError) as exc:
        raise CatalogError(f"cannot read the {language!r} catalog {path}: {exc}") from None


def require_catalogs() -> None:
    """Raise :class:`CatalogError` unless every language's catalog but the source's loads
    and translates the alerts' label."""
    for language in LANGUAGES:
        if language == SOURCE_LANGUAGE:
            continue
        if load_catalog(language).gettext(PROBE) == PROBE:
            raise CatalogError(f"the {language!r} catalog does not translate {PROBE!r}")
