"""The RuleTest runner's recording transport reads a sent message's headers without parsing all of it: they must
read as the email package's full parse reads them."""

from __future__ import annotations

import datetime as dt

import pytest

from outreach.mail import message
from outreach.review.ruletests import Recorded

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "subject",
    [
        "Quick question, Jo",
        "Grüße aus Köln, Jürgen \u2013 über unsere Angebote für das nächste Quartal und was sie für Sie bedeuten",
        "A long plain subject " + "that goes on and on " * 8,
        "日本語の件名です。ご確認ください。" * 3,
        "=?utf-8?q?looks_encoded?= but is typed text",
    ],
)
def test_the_recording_transport_reads_headers_as_the_email_package_does(subject: str) -> None:
    """The runner reads a few headers without parsing the whole message; they must read as a full parse does."""
    data = message.build(sender=("Anna Bérger", "anna@example.com"), to="jo@example.org", subject=subject,
                         text="Hi\n", html=None, message_id="<m1@example.com>",
                         date=dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC), in_reply_to="<m0@example.com>")  # fmt: skip
    recorded = Recorded(dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC), "anna@example.com", ("jo@example.org",), data)
    for name in ("Subject", "From", "Message-ID", "In-Reply-To"):
        assert recorded.header(name) == str(recorded.message[name]), name
    assert recorded.header("Subject") == subject
    assert recorded.header("X-Not-There") == ""
