"""The gettext catalogs: complete Arabic, the same placeholders, Arabic's six plural forms."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parents[1] / "locales"
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def catalog(language: str) -> Catalog:
    """The .po catalog of a language."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def test_every_message_has_an_arabic_translation_with_the_same_placeholders() -> None:
    """No message shows up untranslated in Arabic, and none loses or invents a placeholder."""
    problems = []
    for message in catalog("ar"):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = sorted(PLACEHOLDER.findall(ids[0]))
        for string in strings:
            if not string or sorted(PLACEHOLDER.findall(string)) != expected:
                problems.append(ids[0])
    assert problems == []


@pytest.mark.parametrize(
    ("count", "form"), [(0, 0), (1, 1), (2, 2), (3, 3), (10, 3), (11, 4), (99, 4), (100, 5)]
)
def test_arabic_plural_forms_follow_cldr(count: int, form: int) -> None:
    """The Arabic header picks CLDR's form for 0, 1, 2, few (3-10), many (11-99) and other."""
    ar = catalog("ar")
    assert ar.num_plurals == 6
    # gettext's own reading of the header's C expression, as the runtime uses it.
    assert gettext.c2py(ar.plural_expr)(count) == form
