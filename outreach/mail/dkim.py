"""DKIM signatures (RFC 6376) on the mail outreach sends, with the keys Settings.dkim names.

A `Signer` holds one key per sending domain, each read once (through `credentials.read`, from a file or an
environment variable, never from the YAML) and checked when it is built: at the daemon's start and at SIGHUP, as
the transport's secrets are. A message is signed once, when it is built and queued: the outbox keeps the signed
bytes and the dispatcher sends them unchanged. Signing costs about 10 ms of CPU with an RSA-2048 key (dkimpy does
the private-key operation in pure Python: two 1024-bit modular exponentiations) and 0.2 ms with an Ed25519 key; a
tick that queues 500 steps spends about 5 s more on RSA signatures.

The signature (dkimpy does the canonicalization, hashing and RSA or Ed25519 signing):

- `c=relaxed/relaxed`: a relay that refolds a header or changes white space in the body keeps it valid;
- `a=rsa-sha256` for an RSA key, `a=ed25519-sha256` (RFC 8463) for an Ed25519 key;
- `d=` the domain of the entry: the From address's domain, or the nearest parent domain with a key (mail from
  anna@eu.example.com is signed by example.com's key when eu.example.com has none: DMARC's relaxed alignment
  accepts it);
- `h=`: From (twice: a second From added on the way breaks the signature), and, when the message has them,
  Reply-To, To, Subject, Date, Message-ID, In-Reply-To, References, List-Unsubscribe, List-Unsubscribe-Post,
  Auto-Submitted, MIME-Version, Content-Type, Content-Transfer-Encoding. The MIME headers are signed because they
  say how the signed body is read (a changed boundary or transfer encoding shows other text); the X-Outreach-*
  headers are not (they are ours, not the reader's);
- `t=` the time the message is built (its Date), when the caller gives it; no `x=` (expiry), no `l=` (the whole
  body is signed), no `i=`.

`dns_record` gives the TXT record to publish at `<selector>._domainkey.<domain>`, computed from the private key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Collection, Iterable
from typing import Any

import idna

from outreach.mail import credentials
from outreach.rules import model

# Signed when present, in this order; From is listed once more than it occurs (oversigned).
SIGNED_HEADERS = (
    "from", "reply-to", "to", "subject", "date", "message-id", "in-reply-to", "references", "list-unsubscribe",
    "list-unsubscribe-post", "auto-submitted", "mime-version", "content-type", "content-transfer-encoding",
)  # fmt: skip
OVERSIGNED = ("from",)
_SIGNED = tuple(name.encode("ascii") for name in SIGNED_HEADERS)
_OVERSIGNED = tuple(name.encode("ascii") for name in OVERSIGNED)
CANONICALIZATION = b"relaxed/relaxed"
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301); 2048 is what to generate
TXT_STRING = 255  # a TXT record is strings of at most 255 bytes each; a long value is split into several

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)\n-----END \1-----", re.S)
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # the OID 1.2.840.113549.1.1.1
# PKCS#8 of an Ed25519 key (RFC 8410): version 0 (or 1 with the public key after), the OID 1.3.101.112, the seed
_ED25519_ALGORITHM = bytes.fromhex("300506032b6570")
_ED25519_SEED = bytes.fromhex("04220420")


class KeyInvalid(credentials.MissingSecret):
    """A DKIM key Settings names is there but cannot sign: not a private key, encrypted, too short, or of a type
    DKIM has no algorithm for. The message names the domain.

    It is a MissingSecret too, so that what refuses to start or to reload on a missing secret (the daemon, SIGHUP,
    `outreach doctor`) refuses on an unusable key in the same way."""


@dataclasses.dataclass(frozen=True)
class Key:
    """A domain's private key, read and checked; `public` is what the DNS record publishes."""

    domain: str
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    bits: int
    public: bytes  # RSA: the DER SubjectPublicKeyInfo; Ed25519: the 32 bytes of the public key
    private: Any = dataclasses.field(repr=False, compare=False)  # dkimpy's RSA key (a dict), or nacl's SigningKey

    @property
    def key_type(self) -> str:
        """The k= tag: rsa or ed25519."""
        return self.algorithm.split("-")[0]

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def dns_record(key: Key) -> tuple[str, str]:
    """(the TXT record's name, its value): `s1._domainkey.example.com`, `v=DKIM1; k=rsa; p=MIIB...`."""
    return key.record_name, f"v=DKIM1; k={key.key_type}; p={base64.b64encode(key.public).decode('ascii')}"


def zone_text(value: str) -> str:
    """A TXT value as a zone file writes it: quoted strings of at most 255 characters, which DNS joins."""
    return " ".join(f'"{value[i : i + TXT_STRING]}"' for i in range(0, len(value), TXT_STRING))


def load_key(entry: model.DkimKey) -> Key:
    """The private key a Settings.dkim entry names, read once. credentials.MissingSecret when it is not there or
    cannot be read; KeyInvalid when it is not a key that can sign."""
    text = credentials.read(f"the DKIM key of {entry.domain}", env=entry.private_key_env, file=entry.private_key_file)
    if text is None:
        raise credentials.MissingSecret(f"the DKIM key of {entry.domain}: name private_key_file or private_key_env")
    return parse_key(entry.domain, entry.selector, text)


def parse_key(domain: str, selector: str, text: str) -> Key:
    """A key from its text: PEM (`BEGIN RSA PRIVATE KEY`, PKCS#1; `BEGIN PRIVATE KEY`, PKCS#8, RSA or Ed25519, as
    `openssl genpkey` writes them), or the base64 Ed25519 seed that dkimpy's dknewkey writes. KeyInvalid if not."""
    what = f"the DKIM key of {domain}"
    data = text.strip().replace("\r\n", "\n")
    found = _PEM.search(data)
    if found is None:
        try:
            seed = base64.b64decode(data, validate=True)
        except binascii.Error:
            seed = b""
        if len(seed) == 32:
            return _ed25519(domain, selector, seed)
        raise KeyInvalid(f"{what} is not a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE "
                         "KEY-----)")  # fmt: skip
    label, body = found.groups()
    if "ENCRYPTED" in label or "Proc-Type:" in body:
        raise KeyInvalid(f"{what} is encrypted: the daemon cannot ask for a passphrase; write it without one "
                         "(openssl pkey -in encrypted.pem -out dkim.pem) and keep the file readable by the service "
                         "only")  # fmt: skip
    if label not in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        raise KeyInvalid(f"{what} is a {label.lower()}, not a private key (-----BEGIN PRIVATE KEY-----)")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error:
        raise KeyInvalid(f"{what}: the PEM text is not valid base64") from None
    if label == "PRIVATE KEY" and der[2:5] in (b"\x02\x01\x00", b"\x02\x01\x01") and der[5:12] == _ED25519_ALGORITHM:
        if der[12:16] != _ED25519_SEED or len(der) < 48:
            raise KeyInvalid(f"{what}: the Ed25519 key is cut short")
        return _ed25519(domain, selector, der[16:48])
    return _rsa(domain, selector, der)


def _rsa(domain: str, selector: str, der: bytes) -> Key:
    from dkim import crypto  # type: ignore[import-untyped]  # dkimpy costs 0.1 s to import: only with keys

    what = f"the DKIM key of {domain}"
    try:
        pk = crypto.parse_private_key(der)
    except Exception:  # dkimpy's ASN.1 parser raises its own errors, IndexError or AssertionError on odd input
        raise KeyInvalid(f"{what} is neither an RSA nor an Ed25519 private key (DKIM signs with no other type)") \
            from None  # fmt: skip
    n, e, d = pk["modulus"], pk["publicExponent"], pk["privateExponent"]
    if n <= 0 or n != pk["prime1"] * pk["prime2"] or pow(pow(2, e, n), d, n) != 2:
        raise KeyInvalid(f"{what}: the RSA key is damaged (its numbers do not fit together)")
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise KeyInvalid(f"{what} has {bits} bits: receivers ignore RSA keys under {MIN_RSA_BITS} bits; generate "
                         "one of 2048 (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)")  # fmt: skip
    rsa_public = _der(0x30, _der_int(n) + _der_int(e))
    spki = _der(0x30, _der(0x30, _der(0x06, _RSA_ENCRYPTION) + _der(0x05, b"")) + _der(0x03, b"\x00" + rsa_public))
    return Key(domain, selector, "rsa-sha256", bits, spki, pk)


def _ed25519(domain: str, selector: str, seed: bytes) -> Key:
    try:
        import nacl.signing
    except ImportError:
        raise KeyInvalid(f"the DKIM key of {domain} is an Ed25519 key, which needs PyNaCl (pip install pynacl)") \
            from None  # fmt: skip
    signing = nacl.signing.SigningKey(seed)
    return Key(domain, selector, "ed25519-sha256", 256, bytes(signing.verify_key), signing)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # a leading 0 keeps it positive


def _ascii(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain


def signing_domain(sender_domain: str, domains: Collection[str]) -> str | None:
    """Which of `domains` signs mail from `sender_domain`: itself, else its nearest parent domain; None: none."""
    labels = _ascii(sender_domain).split(".")
    for i in range(max(len(labels) - 1, 1)):
        candidate = ".".join(labels[i:])
        if candidate in domains:
            return candidate
    return None


class Signer:
    """Signs messages with the key of their From domain (or its nearest parent domain with a key)."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = {key.domain: key for key in keys}

    def key_for(self, sender_domain: str) -> Key | None:
        """The key that signs mail from `sender_domain`: its own, else the nearest parent domain's; None: none."""
        domain = signing_domain(sender_domain, self.keys)
        return self.keys[domain] if domain is not None else None

    def sign(self, message: bytes, sender_domain: str, *, now: dt.datetime | None = None) -> bytes:
        """The message with a DKIM-Signature header in front; unchanged when no key signs for `sender_domain`.

        `message` is what `message.build` writes (CRLF line ends); `now`, the time it is built, is the signature's
        t= (none without it: nothing here reads the clock)."""
        key = self.key_for(sender_domain)
        if key is None:
            return message
        import dkim
        from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

        algorithm = key.algorithm.encode("ascii")
        signer = dkim.DKIM(message, signature_algorithm=algorithm, linesep=b"\r\n")
        present = {bytes(name).lower() for name, _value in signer.headers}
        include = [name for name in _SIGNED if name in present] + [name for name in _OVERSIGNED if name in present]
        policy = CanonicalizationPolicy.from_c_value(CANONICALIZATION)
        signer.hasher = hashlib.sha256
        body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(signer.body)).digest())
        fields = [(b"v", b"1"), (b"a", algorithm), (b"c", CANONICALIZATION), (b"d", key.domain.encode("ascii")),
                  (b"s", key.selector.encode("ascii"))]  # fmt: skip
        if now is not None:
            fields.append((b"t", str(int(now.timestamp())).encode("ascii")))
        # " : " between the names lets the header fold between them; b= is folded onto lines of its own
        fields += [(b"h", b" : ".join(include)), (b"bh", body_hash), (b"b", b"0" * 60)]
        header = signer.gen_header(fields, include, policy, b"DKIM-Signature", key.private)
        return b"DKIM-Signature: " + bytes(header) + message


def signer_for(settings: model.Settings) -> Signer | None:
    """The signer of Settings.dkim, every key read and checked now; None without Settings.dkim.
    credentials.MissingSecret (KeyInvalid among them) for the first key that cannot be used."""
    if not settings.dkim:
        return None
    return Signer(load_key(entry) for entry in settings.dkim)
