"""The classifier's MIME reader (outreach/mail/mime.py) against the standard library's parser, and its bounds.

It reads what `email.message_from_bytes` reads on every message of the test corpora (the part structure, the
header fields the classifier looks at, the decoded text of each text part), and it stops where the standard parser
would spend seconds or die: at 100 parts, 8 levels, 1 MiB, and one level into attached messages.
"""

from __future__ import annotations

import email
import email.message
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.mail import mime
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.unit

FILES = sorted((FIXTURES / "inbound").glob("*.eml")) + sorted((ROOT / "tests" / "data" / "flufl_bounce").glob("*.txt"))
HEADERS = ("from", "to", "subject", "message-id", "in-reply-to", "references", "content-type", "return-path",
           "auto-submitted", "x-failed-recipients")  # fmt: skip


def stdlib_parts(msg: email.message.Message) -> list[email.message.Message]:
    """The standard parser's parts, depth first, not descending into attached messages (as mime.read lists them)."""
    out: list[email.message.Message] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        out.append(part)
        if part.get_content_type().startswith("multipart/") and part.is_multipart():
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, email.message.Message)]))
    return out


def normal(value: object) -> str:
    return " ".join(str(value).split())


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_it_reads_what_the_standard_parser_reads(path: Path) -> None:
    data = path.read_bytes()
    ours = mime.read(data)
    theirs = email.message_from_bytes(data)
    if ours is None:  # no header fields: the standard parser finds none either
        assert not theirs.keys() or path.name == "not-a-mail-message.eml"
        return
    for name in HEADERS:
        value = theirs.get(name)
        if value is not None and "\ufffd" not in str(value):
            assert normal(ours.headers.get(name)) == normal(value), name
    parts = stdlib_parts(theirs)
    assert [p.content_type for p in ours.parts] == [p.get_content_type() for p in parts]
    for mine, std in zip(ours.parts, parts, strict=True):
        if mine.content_type == "text/plain":
            payload = std.get_payload(decode=True)
            assert isinstance(payload, bytes)
            assert mine.payload(len(payload) + 1) == payload[: len(payload) + 1]
        if mine.content_type in ("message/rfc822", "message/global") and mine.parts:
            inner = std.get_payload()
            assert isinstance(inner, list) and inner
            assert normal(mine.parts[0].headers.get("message-id")) == normal(inner[0].get("message-id"))


def test_100000_empty_parts_in_0_9_mb_are_read_up_to_100_parts_in_a_few_milliseconds() -> None:
    data = b"Content-Type: multipart/mixed; boundary=bndry\n\n" + b"--bndry\n\n" * 100_000 + b"--bndry--\n"
    start = time.process_time()
    read = mime.read(data)
    assert time.process_time() - start < 0.2  # the standard parser: about 1.7 s
    assert read is not None and len(read.parts) == mime.MAX_PARTS
    assert read.cut == f"more than {mime.MAX_PARTS} parts"


def test_nested_multiparts_are_read_to_eight_levels() -> None:
    data = b""
    for level in range(20):
        data += f"Content-Type: multipart/mixed; boundary=b{level}\n\n--b{level}\n".encode()
    read = mime.read(data + b"\nhello\n")
    assert read is not None and len(read.parts) == mime.MAX_DEPTH + 1
    assert read.cut == f"more than {mime.MAX_DEPTH} levels of parts"


def test_an_attached_message_is_read_one_level_down_only() -> None:
    nested = b"Content-Type: message/rfc822\n\n" * 5000 + b"Subject: deep\n\nbody\n"
    read = mime.read(b"Subject: top\n" + nested)
    assert read is not None and read.parts == [read.root]
    assert read.root.parts[0].content_type == "message/rfc822"  # the attached message's own body is not read


def test_a_message_over_1_mib_is_read_up_to_1_mib() -> None:
    read = mime.read(b"Subject: big\n\n" + b"x" * (3 << 20))
    assert read is not None and len(read.root.body) < mime.MAX_BYTES
    assert read.cut == "read up to 1024 KiB"


@pytest.mark.parametrize(
    ("encoding", "body", "text"),
    [("base64", b"SGVsbG8sIHfDtnJsZCE=\n", "Hello, wörld!"), ("base64", b"SGVsbG8s!!IHfDtnJsZCE", "Hello, wö"),
     ("quoted-printable", b"Gr=C3=BC=C3=9Fe,=\n Welt", "Grüße, Welt"), ("8bit", "Grüße".encode(), "Grüße")],
)  # fmt: skip
def test_transfer_encodings_and_charsets_are_undone(encoding: str, body: bytes, text: str) -> None:
    data = f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {encoding}\n\n".encode() + body
    read = mime.read(data)
    assert read is not None and read.root.text().startswith(text)


def test_an_unknown_or_non_text_charset_is_read_as_utf_8() -> None:
    for charset in ("x-unknown", "base64_codec", "rot13"):
        read = mime.read(f"Content-Type: text/plain; charset={charset}\n\nGrüße".encode())
        assert read is not None and read.root.text() == "Grüße"


def test_8bit_header_values_are_utf_8_or_else_windows_1252() -> None:
    headers, _ = mime.read_headers("Subject: Grüße\n\n".encode() + b"")
    assert headers["subject"] == "Grüße"
    headers, _ = mime.read_headers(b"Subject: Gr\xfc\xdfe\n\n")
    assert headers["subject"] == "Grüße"


def test_the_header_block_ends_at_an_empty_line_or_the_first_line_that_is_no_field() -> None:
    headers, body = mime.read_headers(b"From x Mon Jan 1\nSubject: a\n b\nnot a field\nX: y\n\nbody")
    assert headers == {"subject": "a b"}
    assert body.startswith(b"not a field")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_any_bytes_are_read_without_an_exception(data: bytes) -> None:
    read = mime.read(data)
    if read is not None:
        for part in read.parts:
            part.text()
