"""DKIM keys for the tests, made in process (no openssl, no subprocess): RSA from two primes found here with a seeded
random generator (the same key every run), Ed25519 from a fixed seed; and a DNS lookup for dkimpy's `verify`."""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import Callable, Mapping

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _probably_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random, e: int) -> int:
    while True:
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1  # the top two bits set: p * q has exactly 2 * bits
        if n % e != 1 and _probably_prime(n, rng):
            return n


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _pem(label: str, der: bytes) -> str:
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


@functools.cache
def rsa_numbers(bits: int = 2048, seed: int = 1) -> tuple[int, int, int, int, int]:
    """(n, e, d, p, q) of an RSA key of `bits` bits, the same for the same seed."""
    rng, e = random.Random(seed), 65537
    p, q = _prime(bits // 2, rng, e), _prime(bits // 2, rng, e)
    d = pow(e, -1, (p - 1) * (q - 1))
    return p * q, e, d, p, q


def rsa_der(n: int, e: int, d: int, p: int, q: int) -> bytes:
    """PKCS#1 RSAPrivateKey."""
    return _der(0x30, b"".join(_int(v) for v in (0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))))


def rsa_pem(bits: int = 2048, seed: int = 1, *, pkcs8: bool = True) -> str:
    """The key as `openssl genpkey` writes it (PKCS#8, BEGIN PRIVATE KEY) or as `openssl genrsa -traditional`
    (PKCS#1, BEGIN RSA PRIVATE KEY)."""
    inner = rsa_der(*rsa_numbers(bits, seed))
    if not pkcs8:
        return _pem("RSA PRIVATE KEY", inner)
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b""))
    return _pem("PRIVATE KEY", _der(0x30, _int(0) + algorithm + _der(0x04, inner)))


def ed25519_pem(seed: bytes = b"outreach test: an Ed25519 key!!!") -> str:
    """An Ed25519 key as `openssl genpkey -algorithm ed25519` writes it (PKCS#8, RFC 8410)."""
    assert len(seed) == 32
    return _pem("PRIVATE KEY", bytes.fromhex("302e020100300506032b657004220420") + seed)


def dns(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    """A `dnsfunc` for dkim.verify: the TXT records by name (`s1._domainkey.example.com`)."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii") if isinstance(name, bytes) else name
        value = records.get(key.rstrip(".").lower())
        return value.encode("ascii") if value is not None else None

    return lookup
