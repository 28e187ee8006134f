"""Reading a message that came back, for the classifier: its header fields and MIME parts, bounded in time and memory.

Pure: bytes in, a `Message` out; no I/O. It never raises on any input.

Why not `email.message_from_bytes`: the standard parser reads every line of every part in Python, recursing into
each attached message. On a 4.7 kB bounce it takes about 0.4 ms, most of the 0.5 ms the classifier may spend on a
message (10,000 real-size messages in under 5 s, bench/classify.py); on 100,000 empty parts in 0.9 MB it takes
about 1.7 s; on a few thousand nested `message/rfc822` parts it dies of recursion. The classifier needs much less:
the header fields of the message, of its parts and of an attached original, and the decoded text of a few parts.
This reader finds part boundaries with `bytes.find` (C speed), parses header blocks with one regular expression,
never parses the body of an attached message, and stops at `MAX_PARTS` parts, `MAX_DEPTH` levels of nesting and
`MAX_BYTES` of input: a message over a limit is read as far as the limit, and `Message.cut` says why.
tests/test_mail_mime.py compares what it reads with what the standard parser reads, part by part, on every message
of the test corpora. The decoding itself is the standard library's: binascii for base64 and quoted-printable, the
codecs for character sets.
"""

from __future__ import annotations

import binascii
import dataclasses
import html
import re
import urllib.parse

MAX_BYTES = 1 << 20  # of a message read (the IMAP poller fetches no more)
MAX_PARTS = 100  # MIME parts read, at every level together
MAX_DEPTH = 8  # multipart levels read
MAX_TEXT = 64 * 1024  # bytes of one part decoded as text

# The header fields the classifier reads (of a message, of its parts, of an attached original).
FIELDS = frozenset(
    {"from", "to", "cc", "subject", "message-id", "in-reply-to", "references", "return-path", "reply-to", "sender",
     "date", "x-failed-recipients", "auto-submitted", "x-autoreply", "x-autorespond", "precedence",
     "x-auto-response-suppress", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "content-type",
     "content-transfer-encoding", "x-mailman-version", "x-ml-server", "x-ml-name", "x-listserver",
     "x-sympa-version", "list-id", "x-amz-sns-message-id", "x-outreach-enrollment", "x-outreach-step",
     "x-outreach-sequence"}
)  # fmt: skip
# Fields the classifier does not read, as mail systems spell them: passed without lower-casing their names.
_SKIPPED = frozenset(
    {"Received", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "DKIM-Signature",
     "Authentication-Results", "Received-SPF", "X-Received", "X-Google-DKIM-Signature", "X-Google-Smtp-Source",
     "X-Gm-Message-State", "MIME-Version", "Mime-Version", "X-Mailer", "X-MS-Exchange-Organization-SCL",
     "X-Microsoft-Antispam", "X-MS-Has-Attach", "X-MS-TNEF-Correlator", "Thread-Topic", "Thread-Index",
     "Content-Language", "Accept-Language", "X-Originating-IP", "User-Agent", "X-Spam-Status", "X-Spam-Score",
     "X-Virus-Scanned", "Importance", "X-Priority", "Content-Disposition", "Content-Description", "Content-ID"}
)  # fmt: skip
# The block is split into fields in C: a message carries 2-4 kB of Received, DKIM and ARC fields, and a loop over its
# lines in Python cost more than the rest of reading it. A line that is neither a field nor a continuation is found
# first (a new line, then neither white space nor `name:`).
_NOT_A_FIELD = re.compile(r"\n(?![ \t]|[\x21-\x39\x3b-\x7e]+[ \t]*:)")
_FIELD_START = re.compile(r"\n(?![ \t])")
_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')
_RFC2231 = re.compile(r"^([^']*)'[^']*'(.*)$")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_TAG = re.compile(r"<[^<>]*>")
_BLOCK_BREAK = re.compile(r"\r?\n[ \t]*\r?\n")


@dataclasses.dataclass(eq=False)
class Part:
    """One MIME part (the message itself is the first): its header fields, content type, body and sub-parts.

    headers: the first value of each field of `FIELDS`, by lower-case name, unfolded (encoded-words stay encoded).
    content_type: lower case, `text/plain` when there is none. params: the content type's parameters, by lower-case
    name. body: the raw body, still transfer-encoded. parts: the parts of a multipart; for `message/rfc822` (and
    `message/global`) the attached message, whose own body is not read further.
    """

    headers: dict[str, str]
    content_type: str
    params: dict[str, str]
    body: bytes
    parts: list[Part] = dataclasses.field(default_factory=list)

    @property
    def charset(self) -> str:
        return self.params.get("charset", "").strip().lower()

    def payload(self, limit: int = MAX_TEXT) -> bytes:
        """The body with its Content-Transfer-Encoding undone, at most `limit` bytes of it."""
        encoding = self.headers.get("content-transfer-encoding", "").strip().lower()
        if encoding == "base64":
            return _base64(self.body[: limit * 3 // 2 + 8])[:limit]  # 4 characters a 3 bytes, and line breaks
        if encoding == "quoted-printable":
            return binascii.a2b_qp(self.body[: limit * 3])[:limit]
        return self.body[:limit]

    def text(self, limit: int = MAX_TEXT) -> str:
        """The body as text: decoded, in its character set (UTF-8 when it names none or an unknown one), LF line
        ends; HTML reduced to its text."""
        data = self.payload(limit)
        try:
            text = data.decode(self.charset or "utf-8", "replace")
        except (LookupError, ValueError, TypeError):  # an unknown or non-text codec name
            text = data.decode("utf-8", "replace")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.content_type == "text/html":
            text = _html_text(text)
        return text


@dataclasses.dataclass(eq=False)
class Message:
    """A message read: its parts depth first (the message itself first; an attached message is one part, its own
    parts are not read), and why reading stopped early (None: it did not)."""

    root: Part
    parts: list[Part]
    cut: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.root.headers


def read(data: bytes) -> Message | None:
    """The message in `data`; None when it has no header fields (it is no mail message)."""
    cut = None
    if len(data) > MAX_BYTES:
        data = data[:MAX_BYTES]
        cut = f"read up to {MAX_BYTES // 1024} KiB"
    headers, body = read_headers(data)
    if not headers:
        return None
    reader = _Reader()
    root = reader.part(headers, body, depth=0)
    return Message(root, reader.parts, cut or reader.cut)


def read_headers(data: bytes, *, every: bool = False) -> tuple[dict[str, str], bytes]:
    """The header fields at the start of `data` and the rest, the body: the first value of each field the classifier
    reads (`FIELDS`), or with `every` of every field, by lower-case name, unfolded.

    The header block ends at the first empty line, or, as in the standard parser, at the first line that is neither
    a field nor the continuation of one. A first line `From ...` (an mbox separator) is skipped.
    """
    end = _header_end(data)
    block = data[: end[0]] if end else data
    text = block.decode("latin-1")  # one byte, one character: nothing is lost, 8-bit values are decoded below
    start = 0
    if text.startswith("From "):  # an mbox separator
        start = text.find("\n") + 1 if "\n" in text else len(text)
        text = text[start:]
    body = data[end[1] :] if end else b""
    stop = _NOT_A_FIELD.search("\n" + text)
    if stop is not None:  # a line that is no field: the body starts there
        body = data[start + stop.start() :]
        text = text[: stop.start()]
    headers: dict[str, str] = {}
    for field in _FIELD_START.split(text):  # a field with its continuation lines
        name, colon, value = field.partition(":")
        if not colon or (name in _SKIPPED and not every):  # most fields of a message are these: no more work
            continue
        name = name.rstrip(" \t").lower()
        if name in headers or not (every or name in FIELDS):
            continue
        _store(headers, name, value)
    return headers, body


def _header_end(data: bytes) -> tuple[int, int] | None:
    """Where the first empty line is: (the start of the line break before it, the end of the empty line)."""
    found = [(at, at + size) for at, size in ((data.find(b"\n\n"), 2), (data.find(b"\n\r\n"), 3)) if at >= 0]
    if not found:
        return None
    start, end = min(found)
    return (start - 1 if data[start - 1 : start] == b"\r" else start), end


def fields(text: str, max_blocks: int = 1000) -> list[dict[str, str]]:
    """The blocks of header-like fields in `text` (a `message/delivery-status` body, a feedback report), split at
    empty lines: the first value of each field by lower-case name, unfolded; at most `max_blocks` blocks."""
    blocks: list[dict[str, str]] = []
    for chunk in _BLOCK_BREAK.split(text.strip("\r\n"), max_blocks)[:max_blocks]:
        found, _rest = read_headers(chunk.encode("utf-8", "surrogateescape"), every=True)
        if found:
            blocks.append(found)
    return blocks


def content_type(value: str) -> tuple[str, dict[str, str]]:
    """(`type/subtype` in lower case, its parameters by lower-case name) of a Content-Type value."""
    main, _, rest = value.partition(";")
    kind = main.strip().lower()
    if "/" not in kind or " " in kind:
        kind = "text/plain"
    params: dict[str, str] = {}
    for param in _PARAM.finditer(";" + rest):
        name, raw = param.group(1).lower(), param.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:])
        if name.endswith("*"):  # RFC 2231: charset'language'percent-encoded
            name = name.rstrip("*")
            encoded = _RFC2231.match(raw)
            raw = urllib.parse.unquote(encoded.group(2) if encoded else raw, errors="replace")
        params.setdefault(name, raw)
    return kind, params


def html_text(text: str) -> str:
    """The text of an HTML document, roughly: tags dropped, line breaks kept, entities decoded."""
    return _html_text(text)


# --- inside ----------------------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.cut: str | None = None

    def part(self, headers: dict[str, str], body: bytes, depth: int, default: str = "text/plain") -> Part:
        kind, params = content_type(headers["content-type"]) if "content-type" in headers else (default, {})
        part = Part(headers, kind, params, body)
        self.parts.append(part)
        if kind.startswith("multipart/"):
            if depth >= MAX_DEPTH:
                self.cut = self.cut or f"more than {MAX_DEPTH} levels of parts"
                return part
            boundary = params.get("boundary", "")
            child_default = "message/rfc822" if kind == "multipart/digest" else "text/plain"
            for chunk in self._split(body, boundary.encode("utf-8", "replace")):
                if len(self.parts) >= MAX_PARTS:
                    self.cut = self.cut or f"more than {MAX_PARTS} parts"
                    break
                child_headers, child_body = _part_headers(chunk)
                part.parts.append(self.part(child_headers, child_body, depth + 1, child_default))
        elif kind in ("message/rfc822", "message/global") and len(self.parts) < MAX_PARTS:
            inner_headers, inner_body = read_headers(part.payload(MAX_BYTES))
            if inner_headers:
                inner_kind, inner_params = content_type(inner_headers.get("content-type", "text/plain"))
                part.parts.append(Part(inner_headers, inner_kind, inner_params, inner_body))
        return part

    def _split(self, body: bytes, boundary: bytes) -> list[bytes]:
        """The parts of a multipart body: what lies between its delimiter lines. A body without a closing delimiter
        ends its last part; one without any delimiter has no parts."""
        if not boundary:
            return []
        delimiter = b"--" + boundary
        chunks: list[bytes] = []
        at = _delimiter(body, delimiter, 0)
        while at is not None and len(chunks) < MAX_PARTS:
            after = at + len(delimiter)
            if body.startswith(b"--", after):
                break  # the closing delimiter
            line_end = body.find(b"\n", after)
            if line_end < 0:
                break
            start = line_end + 1
            following = _delimiter(body, delimiter, start)
            if following is None:
                chunks.append(body[start:])
                break
            end = following - 1 if following > start else start  # the line break before a delimiter is its own
            if end > start and body[end - 1 : end] == b"\r":
                end -= 1
            chunks.append(body[start:end])
            at = following
        if len(chunks) >= MAX_PARTS:
            self.cut = self.cut or f"more than {MAX_PARTS} parts"
        return chunks


def _delimiter(body: bytes, delimiter: bytes, start: int) -> int | None:
    """Where the next delimiter line starts: `--boundary` at the start of a line, then white space, `--`, or the line
    end. None when there is none."""
    at = body.find(delimiter, start)
    while at >= 0:
        if at == 0 or body[at - 1 : at] == b"\n":
            tail = body[at + len(delimiter) : at + len(delimiter) + 2]
            if not tail or tail[:1] in (b" ", b"\t", b"\r", b"\n") or tail == b"--":
                return at
        at = body.find(delimiter, at + 1)
    return None


def _part_headers(chunk: bytes) -> tuple[dict[str, str], bytes]:
    """A part's header fields and body; a part that starts with an empty line has no fields."""
    if chunk.startswith((b"\n", b"\r\n")):
        return {}, chunk[2 if chunk.startswith(b"\r\n") else 1 :]
    return read_headers(chunk)


def _store(headers: dict[str, str], name: str, raw: str) -> None:
    value = raw.replace("\r", "").replace("\n", "").strip() if "\n" in raw else raw.strip()
    if not value.isascii():  # 8-bit bytes in a header: UTF-8 as a rule, else Windows-1252
        octets = value.encode("latin-1")
        try:
            value = octets.decode("utf-8")
        except UnicodeDecodeError:
            value = octets.decode("cp1252", "replace")
    headers[name] = value


def _base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):  # stray characters or bad padding: keep what decodes
        clean = _NOT_BASE64.sub(b"", data)
        clean = clean[: len(clean) - len(clean) % 4]
        try:
            return binascii.a2b_base64(clean)
        except (binascii.Error, ValueError):
            return b""


def _html_text(text: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>|</h\d>", "\n", text)
    return html.unescape(_TAG.sub(" ", text))
