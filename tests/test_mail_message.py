"""Building one message: headers, parts, threading, List-Unsubscribe, and no way for merge data into a header."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.mail import message
from outreach.rules import model
from tests import mail_oracle

pytestmark = pytest.mark.unit

BERLIN_WINTER = dt.timezone(dt.timedelta(hours=1))
DATE = dt.datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN_WINTER)
MESSAGE_ID = "<3f2a9c0e5b7d4e1f8a6b2c4d6e8f0a1b@mail.example.com>"
UNSUBSCRIBE_URL = "https://t.example.com/u/eyJlIjoxN30.Zx9kQ3mN"


def build(**changes: Any) -> bytes:
    args: dict[str, Any] = {
        "sender": ("Ana Rep", "ana@example.com"),
        "to": "jo@customer.example.org",
        "subject": "Quick question",
        "text": "Hi Jo,\n\nhow is it going?\n",
        "html": "<p>Hi Jo,</p><p>how is it going?</p>",
        "message_id": MESSAGE_ID,
        "date": DATE,
    }
    args.update(changes)
    return message.build(**args)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def content(part: MIMEPart) -> str:
    """A text part as a reader sees it, with the CRLF line ends of the wire turned back into newlines."""
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def raw_header(data: bytes, name: str) -> str:
    """A header as written (unfolded), not decoded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found = re.search(rf"^{name}: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE)
    assert found, f"no {name} header"
    return found.group(1).replace("\r\n", "")


def test_a_message_with_html_is_multipart_alternative_with_both_parts_and_every_header() -> None:
    data = build(
        reply_to="replies@example.com",
        extra_headers={"X-Outreach-Enrollment": "17", "X-Outreach-Step": "nudge"},
    )
    msg = parse(data)

    assert str(msg["From"]) == "Ana Rep <ana@example.com>"
    assert str(msg["To"]) == "jo@customer.example.org"
    assert str(msg["Reply-To"]) == "replies@example.com"
    assert str(msg["Subject"]) == "Quick question"
    assert msg["Date"].datetime == DATE
    assert raw_header(data, "Date") == "Mon, 02 Mar 2026 09:30:00 +0100"
    assert str(msg["Message-ID"]) == MESSAGE_ID
    assert str(msg["X-Outreach-Enrollment"]) == "17"
    assert str(msg["X-Outreach-Step"]) == "nudge"
    assert str(msg["MIME-Version"]) == "1.0"
    for absent in ("In-Reply-To", "References", "List-Unsubscribe", "List-Unsubscribe-Post", "Cc", "Bcc"):
        assert msg[absent] is None, absent

    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert (plain.get_content_type(), plain.get_content_charset()) == ("text/plain", "utf-8")
    assert (html.get_content_type(), html.get_content_charset()) == ("text/html", "utf-8")
    assert content(plain) == "Hi Jo,\n\nhow is it going?\n"
    assert content(html) == "<p>Hi Jo,</p><p>how is it going?</p>\n"
    assert not msg.defects and not plain.defects and not html.defects


def test_a_message_without_html_is_a_single_text_part() -> None:
    msg = parse(build(html=None))

    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert content(msg) == "Hi Jo,\n\nhow is it going?\n"


def test_a_user_from_the_rule_model_can_be_the_sender() -> None:
    ana = model.User(id="ana", name="Ana Rep", email="ana@example.com")

    assert parse(build(sender=ana))["From"] == "Ana Rep <ana@example.com>"


def test_a_sender_without_a_name_is_a_bare_address() -> None:
    assert raw_header(build(sender=("", "ana@example.com")), "From") == "ana@example.com"


def test_non_ascii_display_name_subject_and_body_round_trip_and_the_bytes_stay_ascii() -> None:
    data = build(
        sender=("Jürgen Groß", "jg@example.de"),
        subject="Grüße aus Köln - 10 % Rabatt",
        text="Schöne Grüße,\nJürgen\n",
        html="<p>Schöne Grüße</p>",
        extra_headers={"X-Outreach-Step": "nachfassen-mueller"},
    )
    msg = parse(data)

    assert data.isascii()
    assert raw_header(data, "From").startswith("=?utf-8?")
    assert raw_header(data, "From").endswith("?= <jg@example.de>")
    assert raw_header(data, "Subject").startswith("=?utf-8?")
    assert msg["From"].addresses[0].display_name == "Jürgen Groß"
    assert msg["From"].addresses[0].addr_spec == "jg@example.de"
    assert str(msg["Subject"]) == "Grüße aus Köln - 10 % Rabatt"
    assert str(msg["X-Outreach-Step"]) == "nachfassen-mueller"
    plain, html = msg.iter_parts()
    assert plain["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert content(plain) == "Schöne Grüße,\nJürgen\n"
    assert content(html) == "<p>Schöne Grüße</p>\n"


def test_display_names_with_commas_and_quotes_stay_one_address() -> None:
    msg = parse(build(sender=('Groß, Jürgen "JG"', "jg@example.de"), to="o'brien+sales@example.org"))

    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ('Groß, Jürgen "JG"', "jg@example.de")
    assert msg["To"].addresses[0].addr_spec == "o'brien+sales@example.org"


def test_an_internationalized_domain_is_sent_in_its_ascii_form() -> None:
    data = build(to="jo@bücher.example", sender=("Ana", "ana@straße.example"))

    assert parse(data)["To"] == "jo@xn--bcher-kva.example"
    assert parse(data)["From"].addresses[0].domain == "xn--strae-oqa.example"  # IDNA 2008 keeps the ß


def test_a_reply_threads_with_in_reply_to_and_references_ending_in_the_parent() -> None:
    parent = "<parent@mail.example.com>"
    earlier = ["<first@mail.example.com>", "<second@mail.example.com>"]

    msg = parse(build(in_reply_to=parent, references=[*earlier, parent, earlier[0]]))

    assert str(msg["In-Reply-To"]) == parent
    assert str(msg["References"]).split() == [*earlier, parent]


def test_a_reply_to_a_first_message_references_just_that_message() -> None:
    msg = parse(build(in_reply_to="<parent@mail.example.com>"))

    assert str(msg["References"]) == "<parent@mail.example.com>"


def test_unsubscribe_adds_list_unsubscribe_and_the_one_click_post_header() -> None:
    data = build(unsubscribe=(UNSUBSCRIBE_URL, "mailto:unsubscribe@example.com?subject=17"))

    assert raw_header(data, "List-Unsubscribe") == f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@example.com?subject=17>"
    assert raw_header(data, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"


def test_unsubscribe_without_mailto_has_the_https_url_alone_and_a_bare_address_becomes_mailto() -> None:
    assert raw_header(build(unsubscribe=(UNSUBSCRIBE_URL, None)), "List-Unsubscribe") == f"<{UNSUBSCRIBE_URL}>"
    with_address = build(unsubscribe=(UNSUBSCRIBE_URL, "unsubscribe@example.com"))
    assert raw_header(with_address, "List-Unsubscribe").endswith(", <mailto:unsubscribe@example.com>")


@pytest.mark.parametrize(
    ("url", "mailto"),
    [("javascript:alert(1)", None), ("https://t.example.com/u/a b", None), ("https://t.example.com/ü", None),
     (UNSUBSCRIBE_URL, "mailto:a@b.example>, <https://evil.example")],
)  # fmt: skip
def test_an_unsubscribe_target_that_is_not_a_plain_url_is_refused(url: str, mailto: str | None) -> None:
    with pytest.raises(message.HeaderError) as error:
        build(unsubscribe=(url, mailto))
    assert error.value.header == "List-Unsubscribe"


def test_long_message_ids_and_unsubscribe_urls_are_folded_only_between_them_never_encoded() -> None:
    long_ids = [f"<{n}{'a' * 70}.{'b' * 30}@mail.example.com>" for n in range(3)]
    long_url = "https://t.example.com/u/" + "Zx9kQ3mN" * 30

    data = build(in_reply_to=long_ids[-1], references=long_ids[:-1], unsubscribe=(long_url, "u@example.com"))

    assert b"=?" not in data.split(b"\r\n\r\n", 1)[0]
    assert raw_header(data, "References") == " ".join(long_ids)
    assert raw_header(data, "In-Reply-To") == long_ids[-1]
    assert raw_header(data, "List-Unsubscribe") == f"<{long_url}>, <mailto:u@example.com>"
    assert str(parse(data)["References"]).split() == long_ids


def test_every_line_ends_in_crlf() -> None:
    data = build(text="one\ntwo\r\nthree\rfour\n", unsubscribe=(UNSUBSCRIBE_URL, None), in_reply_to="<p@example.com>")

    assert data.endswith(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in data.split(b"\r\n"))


def test_lines_longer_than_998_characters_in_the_body_are_encoded_so_no_line_exceeds_998() -> None:
    words = "lorem ipsum " * 300  # 3,600 characters on one line
    token = "x" * 3000  # no space to break at
    html = "<table>" + "<tr><td>cell</td></tr>" * 400 + "</table>"  # one line, as HTML often is

    data = build(text=f"{words}\n{token}\n", html=html, subject="s" * 1500)
    msg = parse(data)

    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    plain, html_part = msg.iter_parts()
    assert content(plain) == f"{words}\n{token}\n"
    assert content(html_part) == html + "\n"
    assert str(msg["Subject"]) == "s" * 1500


def test_building_the_same_message_twice_gives_the_same_bytes() -> None:
    assert build() == build()
    assert build(message_id="<other@mail.example.com>") != build()


HOSTILE = "Hi\r\nBcc: everyone@example.net"


@pytest.mark.parametrize(
    ("header", "changes"),
    [
        ("Subject", {"subject": HOSTILE}),
        ("Subject", {"subject": "Hi\nBcc: everyone@example.net"}),
        ("Subject", {"subject": "Hi\rthere"}),
        ("Subject", {"subject": "Hi\0there"}),
        ("Subject", {"subject": "Hi\u2028there"}),
        ("From", {"sender": ("Ana\r\nBcc: everyone@example.net", "ana@example.com")}),
        ("From", {"sender": ("Ana\n", "ana@example.com")}),
        ("From", {"sender": ("Ana", "ana@example.com\r\nBcc: everyone@example.net")}),
        ("To", {"to": "jo@example.org\nBcc: everyone@example.net"}),
        ("Reply-To", {"reply_to": "replies@example.com\r\n"}),
        ("X-Outreach-Step", {"extra_headers": {"X-Outreach-Step": HOSTILE}}),
        ("X-Outreach-Step", {"extra_headers": {"X-Outreach-Step": "nudge\0"}}),
        ("In-Reply-To", {"in_reply_to": "<p@example.com>\r\nBcc: everyone@example.net"}),
        ("References", {"references": ["<p@example.com>\nBcc: everyone@example.net"]}),
        ("Message-ID", {"message_id": "<a@example.com>\r\n"}),
        ("List-Unsubscribe", {"unsubscribe": (UNSUBSCRIBE_URL + "\r\nBcc: x@example.net", None)}),
    ],
)
def test_a_line_break_or_nul_in_any_header_value_raises_and_builds_nothing(
    header: str, changes: dict[str, Any]
) -> None:
    built = None
    with pytest.raises(message.HeaderError) as error:
        built = build(**changes)

    assert built is None
    assert error.value.header == header
    assert header in str(error.value)


@pytest.mark.parametrize(
    "address",
    ["jo", "jo@", "@example.org", "", "Jo <jo@example.org>", "jo@example.org, eve@example.net", "j o@example.org",
     "jo@example..org", "jö@example.org"],
)  # fmt: skip
@pytest.mark.parametrize("header", ["From", "To", "Reply-To"])
def test_an_invalid_address_raises_naming_the_header(header: str, address: str) -> None:
    changes: dict[str, dict[str, Any]] = {
        "From": {"sender": ("Ana", address)},
        "To": {"to": address},
        "Reply-To": {"reply_to": address},
    }

    with pytest.raises(message.HeaderError) as error:
        build(**changes[header])

    assert error.value.header == header


@pytest.mark.parametrize("name", ["Bcc", "cc", "From", "Subject", "Content-Type", "MIME-Version", "Resent-To",
                                  "X Outreach", "X-Outreach:Step", ""])  # fmt: skip
def test_an_extra_header_may_not_replace_or_add_structural_headers_or_have_a_bad_name(name: str) -> None:
    with pytest.raises(message.HeaderError):
        build(extra_headers={name: "1"})


@pytest.mark.parametrize("message_id", ["a@example.com", "<a@b@example.com>", "<no-at-sign>", "<a b@example.com>"])
def test_a_malformed_message_id_is_refused(message_id: str) -> None:
    with pytest.raises(message.HeaderError):
        build(message_id=message_id)
    with pytest.raises(message.HeaderError):
        build(in_reply_to=message_id)


def test_a_date_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build(date=DATE.replace(tzinfo=None))


def test_new_message_id_joins_token_and_domain() -> None:
    assert message.new_message_id("mail.example.com", "3f2a9c0e") == "<3f2a9c0e@mail.example.com>"
    assert message.new_message_id("bücher.example", "t1") == "<t1@xn--bcher-kva.example>"
    for domain, token in [("example.com", "a b"), ("example.com", "a@b"), ("exa mple.com", "t"), ("x.com\r\n", "t")]:
        with pytest.raises(message.HeaderError):
            message.new_message_id(domain, token)


@dataclasses.dataclass(frozen=True)
class Rep:
    name: str
    email: str


# Any text without control characters is fair merge data for a header; a body takes any text.
header_text = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\x85\u2028\u2029"), max_size=120
)


def words(text: str) -> str:
    return " ".join(text.split())


ascii_words = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@settings(max_examples=150, deadline=None)
@given(subject=header_text, name=header_text, step=ascii_words, body=st.text())
def test_any_merge_text_round_trips_and_every_line_stays_ascii_crlf_and_short(
    subject: str, name: str, step: str, body: str
) -> None:
    data = build(sender=Rep(name, "ana@example.com"), subject=subject, text=body, html=body,
                 extra_headers={"X-Outreach-Step": step})  # fmt: skip
    msg = parse(data)

    assert data.isascii()
    assert all(len(line) <= 998 and b"\r" not in line and b"\n" not in line for line in data.split(b"\r\n"))
    # Headers keep words, not runs of white space (RFC 5322 unfolding); CPython's address parser (gh-128110)
    # also puts a space between adjacent encoded-words of a display name, so names are compared without spaces.
    assert words(str(msg["Subject"])) == words(subject)
    assert words(str(msg["X-Outreach-Step"])) == words(step)
    assert "".join(msg["From"].addresses[0].display_name.split()) == "".join(name.split())
    assert msg["From"].addresses[0].addr_spec == "ana@example.com"
    for part in msg.iter_parts():
        assert part.get_content().encode().splitlines() == (body.encode().splitlines() or [b""])


def test_an_extra_header_takes_printable_ascii_only() -> None:
    with pytest.raises(message.HeaderError, match="X-Outreach-Step header: an extra header takes printable ASCII only"):
        build(extra_headers={"X-Outreach-Step": "schöner schritt"})


# --- the same message as the standard email package's EmailMessage builds it ------------------------------------

local_part = st.from_regex(r"[a-z0-9][a-z0-9.+_'-]{0,20}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s)
addresses = st.one_of(
    st.builds("{}@{}".format, local_part, st.sampled_from(["example.org", "mail.example.co.uk", "bücher.example"])),
    st.sampled_from(['"jo doe"@example.org', "jo@localhost", "o'brien+x@example.org"]),
)
message_ids = st.builds("<{}@{}>".format, st.from_regex(r"[A-Za-z0-9.$-]{1,90}", fullmatch=True),
                        st.sampled_from(["example.com", "mail.example.com"]))  # fmt: skip


def seen_by_a_reader(data: bytes) -> dict[str, object]:
    """What a mail reader takes from a message: decoded headers, addresses, the parts' types and texts."""
    msg = parse(data)
    seen: dict[str, object] = {
        name: words(str(msg[name])) for name in ("To", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
                                                 "References", "List-Unsubscribe", "List-Unsubscribe-Post",
                                                 "X-Outreach-Step", "MIME-Version") if msg[name] is not None
    }  # fmt: skip
    (sender,) = msg["From"].addresses
    seen["From"] = ("".join(sender.display_name.split()), sender.addr_spec)
    seen["type"] = msg.get_content_type()
    seen["parts"] = [(p.get_content_type(), p.get_content_charset(), content(p)) for p in (msg.iter_parts()
                     if msg.is_multipart() else [msg])]  # fmt: skip
    seen["defects"] = [type(d).__name__ for p in msg.walk() for d in p.defects]
    return seen


@settings(max_examples=300, deadline=None)
@given(
    subject=header_text, name=header_text, to=addresses, body=st.text(), html=st.none() | st.text(),
    reply=st.none() | message_ids, refs=st.lists(message_ids, max_size=4), step=ascii_words,
    unsubscribe=st.booleans(),
)  # fmt: skip
def test_a_reader_sees_the_same_message_as_the_standard_email_package_builds(
    subject: str, name: str, to: str, body: str, html: str | None, reply: str | None, refs: list[str], step: str,
    unsubscribe: bool,
) -> None:  # fmt: skip
    args: dict[str, Any] = {
        "sender": (name, "ana@example.com"), "to": to, "subject": subject, "text": body, "html": html,
        "message_id": MESSAGE_ID, "date": DATE, "in_reply_to": reply, "references": refs,
        "extra_headers": {"X-Outreach-Step": step}, "unsubscribe": (UNSUBSCRIBE_URL, None) if unsubscribe else None,
    }  # fmt: skip

    ours = message.build(**args)

    assert ours.isascii()
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))
    assert seen_by_a_reader(ours) == seen_by_a_reader(mail_oracle.build_with_email_message(**args))


def test_text_that_looks_like_an_encoded_word_reaches_the_reader_as_written() -> None:
    msg = parse(build(subject="Price =?utf-8?q?free?= today", sender=("=?utf-8?q?Boss?=", "ana@example.com")))

    assert str(msg["Subject"]) == "Price =?utf-8?q?free?= today"
    assert msg["From"].addresses[0].display_name == "=?utf-8?q?Boss?="


def test_a_long_ascii_subject_is_folded_at_spaces_and_unfolds_to_exactly_what_was_written() -> None:
    subject = "A  rather long subject line, " * 8 + "the end"
    data = build(subject=subject, html=None)

    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert raw_header(data, "Subject") == subject


@pytest.mark.parametrize("body", [
    "Schöne Grüße, Jürgen, wie geht es Ihnen heute?\n",  # a few non-ASCII letters: quoted-printable is shorter
    "今後このメールの配信を希望されない場合\n" * 4,  # every character non-ASCII: base64 is shorter
    "ababab\u00e9\n",  # both as long: quoted-printable, as the email package chooses
])  # fmt: skip
def test_a_non_ascii_part_takes_the_shorter_of_quoted_printable_and_base64_as_the_email_package_does(
    body: str,
) -> None:
    data = body.encode()
    qp, b64 = binascii.b2a_qp(data, istext=True), base64.encodebytes(data)
    assert message._base64_length(len(data)) == len(b64)
    part = parse(build(text=body, html=None))
    assert part["Content-Transfer-Encoding"] == ("quoted-printable" if len(qp) <= len(b64) else "base64")
    assert content(part) == body
