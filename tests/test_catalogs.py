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
# The number ngettext chooses a plural form by, as every plural message names it.
COUNT = "{count}"
# Arabic's forms for zero, one and two say the number in words: «لا محادثات»,
# «محادثة واحدة», «محادثتان»; the forms for 3-10, 11-99 and 100+ keep the numeral.
WORDED_FORMS = frozenset({0, 1, 2})


def catalog(language: str) -> Catalog:
    """The .po catalog of a language."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def test_every_message_has_an_arabic_translation_with_the_same_placeholders() -> None:
    """No message shows up untranslated in Arabic, and none loses or invents a placeholder;
    only the plural forms for zero, one and two may say their number in words."""
    ar = catalog("ar")
    problems = []
    for message in ar:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = sorted(PLACEHOLDER.findall(ids[-1]))  # a plural's: the numbered form's
        if isinstance(message.id, tuple) and len(strings) != ar.num_plurals:
            problems.append((ids[0], "forms"))
        for form, string in enumerate(strings):
            allowed = [expected]
            if isinstance(message.id, tuple) and form in WORDED_FORMS:
                allowed.append(_without_count(expected))
            if not string or sorted(PLACEHOLDER.findall(string)) not in allowed:
                problems.append((ids[0], form))
    assert problems == []


def test_arabic_says_one_and_two_in_words_without_the_count() -> None:
    """«محادثة واحدة» and «محادثتان»: the forms for one and two never repeat the number
    («1 محادثة», «2 محادثتان»), since the noun's form already says it."""
    numbered = [
        (message.id[0], form)
        for message in catalog("ar")
        if isinstance(message.id, tuple) and COUNT in PLACEHOLDER.findall(message.id[1])
        for form in (1, 2)
        if form < len(message.string) and COUNT in message.string[form]
    ]
    assert numbered == []


def _without_count(placeholders: list[str]) -> list[str]:
    """The placeholders but the number ngettext chooses the form by, when the message has it."""
    rest = list(placeholders)
    if COUNT in rest:
        rest.remove(COUNT)
    return rest


@pytest.mark.parametrize(
    ("count", "form"), [(0, 0), (1, 1), (2, 2), (3, 3), (10, 3), (11, 4), (99, 4), (100, 5)]
)
def test_arabic_plural_forms_follow_cldr(count: int, form: int) -> None:
    """The Arabic header picks CLDR's form for 0, 1, 2, few (3-10), many (11-99) and other."""
    ar = catalog("ar")
    assert ar.num_plurals == 6
    # gettext's own reading of the header's C expression, as the runtime uses it.
    assert gettext.c2py(ar.plural_expr)(count) == form
