"""Tracking decided: which links of a message are rewritten, where the pixel goes, and which hits look automated."""

from __future__ import annotations

import datetime as dt

import pytest

from outreach.engine import render, tracking

pytestmark = pytest.mark.unit

SENT = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
LATER = SENT + dt.timedelta(hours=2)
UNSUB = "https://t.example.com/u/TOKEN"
HTML = (
    '<html><body><p>See <a href="https://www.example.com/pricing?a=1&amp;b=2">pricing</a>, '
    "<a class=x href='http://example.org/x'>x</a>, <a href=\"mailto:anna@example.com\">mail</a>, "
    f'<a href="{UNSUB}">unsubscribe</a>.</p></body></html>'
)
MESSAGE = render.Rendered("Hi", "Text https://www.example.com/pricing stays", HTML)


def click(n: int) -> str:
    return f"https://t.example.com/c/T{n}"


def test_links_of_the_html_part_go_through_signed_click_urls_and_their_targets_are_kept() -> None:
    done = tracking.instrument(MESSAGE, click=click, pixel=None, keep=UNSUB)
    assert done.urls == ("https://www.example.com/pricing?a=1&b=2", "http://example.org/x")  # as the reader meant
    html = done.rendered.html
    assert html is not None
    assert 'href="https://t.example.com/c/T0"' in html and "href='https://t.example.com/c/T1'" in html
    assert "pricing?a=1" not in html
    assert 'href="mailto:anna@example.com"' in html and f'href="{UNSUB}"' in html  # never rewritten
    assert done.rendered.text == MESSAGE.text and done.rendered.subject == "Hi"  # the text part keeps its links


def test_the_pixel_goes_before_the_end_of_the_body() -> None:
    done = tracking.instrument(MESSAGE, click=None, pixel="https://t.example.com/o/P", keep=UNSUB)
    assert done.urls == ()
    html = done.rendered.html
    assert html is not None and html.endswith('<img src="https://t.example.com/o/P" width="1" height="1" alt="" '
                                              'style="display:block;border:0"></body></html>')  # fmt: skip
    assert "https://www.example.com/pricing" in html


def test_a_message_without_html_is_left_alone() -> None:
    plain = render.Rendered("Hi", "Go to https://www.example.com", None)
    assert tracking.instrument(plain, click=click, pixel="https://t/o/P") == tracking.Instrumented(plain, ())


def test_links_past_the_limit_stay_as_written() -> None:
    many = "".join(f'<a href="https://e.example/{i}">{i}</a>' for i in range(tracking.MAX_TRACKED_LINKS + 5))
    done = tracking.instrument(render.Rendered("s", "t", many), click=click, pixel=None)
    assert len(done.urls) == tracking.MAX_TRACKED_LINKS
    assert f'href="https://e.example/{tracking.MAX_TRACKED_LINKS}"' in (done.rendered.html or "")


def test_a_hostile_url_cannot_break_out_of_its_attribute() -> None:
    done = tracking.instrument(render.Rendered("s", "t", '<a href="https://e.example/&quot;onmouseover=x">a</a>'),
                               click=lambda n: 'https://t/c/"><script>', pixel=None)  # fmt: skip
    assert done.urls == ('https://e.example/"onmouseover=x',)
    assert "<script>" not in (done.rendered.html or "") and "&#34;&gt;&lt;script&gt;" in (done.rendered.html or "")


BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


@pytest.mark.parametrize(("hit", "why"), [
    (tracking.Hit("GET", BROWSER, LATER, SENT), None),
    (tracking.Hit("GET", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", LATER, SENT), None),  # Gmail: a person
    (tracking.Hit("HEAD", BROWSER, LATER, SENT), "a HEAD request"),
    (tracking.Hit("GET", "", LATER, SENT), "no user agent"),
    (tracking.Hit("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", LATER, SENT), "barracuda"),
    (tracking.Hit("GET", "python-requests/2.31", LATER, SENT), "python-requests"),
    (tracking.Hit("GET", "Mozilla/5.0 (compatible; BingPreview/1.0b)", LATER, SENT), "preview"),
    (tracking.Hit("GET", BROWSER, SENT + dt.timedelta(seconds=3), SENT), "within 10 s of delivery"),
    (tracking.Hit("GET", BROWSER, LATER, None), "before the message was sent"),
    (tracking.Hit("GET", BROWSER, LATER, SENT, other_links_clicked=2), "several links"),
])  # fmt: skip
def test_a_hit_looks_automated_or_not(hit: tracking.Hit, why: str | None) -> None:
    found = tracking.automated(hit)
    assert found is None if why is None else (found is not None and why in found)
