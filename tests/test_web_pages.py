"""The unsubscribe pages: every language says every sentence, everything shown is escaped, the form posts back."""

from __future__ import annotations

import html
import html.parser

import pytest

from outreach.engine import unsubscribe
from outreach.web import pages

pytestmark = pytest.mark.unit

HOSTILE = '"><script>alert(1)</script>@example.org'


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_every_footer_language_has_a_page_in_it() -> None:
    assert set(unsubscribe.FOOTERS) <= set(pages.TEXTS)  # a footer link always leads to a page in its language
    for lang in ("en", "de", "fr", "es", "it", "ja"):
        assert len(set(pages.TEXTS[lang])) >= 5  # written out, not copied from English
        assert all(t.count("{email}") == 1 for t in (pages.TEXTS[lang][1], pages.TEXTS[lang][3], pages.TEXTS[lang][4]))


@pytest.mark.parametrize("lang", sorted(pages.TEXTS))
def test_the_confirmation_has_one_button_that_posts_back(lang: str) -> None:
    page = pages.confirm(lang, "jo@example.org", "/u/TOKEN")
    tags = _tags(page)
    assert ("html", {"lang": lang}) in tags
    assert [a for t, a in tags if t == "form"] == [{"method": "post", "action": "/u/TOKEN"}]
    assert [t for t, _ in tags if t in ("button", "input", "a", "script", "img", "link")] == ["button"]
    assert html.escape(pages.TEXTS[lang][2]) in page and "jo@example.org" in page


def test_an_unknown_language_gets_english() -> None:
    assert '<html lang="en">' in pages.confirm("xx", "jo@example.org", "/u/T")
    assert '<html lang="en">' in pages.not_found("xx")


def test_what_a_page_shows_is_escaped() -> None:
    for page in (pages.confirm("de", HOSTILE, '/u/"><x'), pages.done("ja", HOSTILE, already=False),
                 pages.done("fr", HOSTILE, already=True)):  # fmt: skip
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert [t for t, _ in _tags(page) if t == "script"] == []


def test_the_answer_says_whether_it_was_already_done() -> None:
    assert "ist abgemeldet" in pages.done("de", "jo@example.org", already=False)
    assert "war bereits abgemeldet" in pages.done("de", "jo@example.org", already=True)
    assert "<button" not in pages.done("de", "jo@example.org", already=False)
