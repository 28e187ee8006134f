"""The import's fast path for plain addresses must say exactly what email-validator says."""

from __future__ import annotations

import email_validator
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from outreach.app import importing as records

pytestmark = pytest.mark.unit

ATOM = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
plain = st.from_regex(
    rf"[{ATOM}]{{1,20}}(\.[{ATOM}]{{1,10}}){{0,2}}@([A-Za-z0-9]([A-Za-z0-9-]{{0,8}}[A-Za-z0-9])?\.){{1,3}}[A-Za-z]{{2,8}}",
    fullmatch=True,
)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def slow(text: str) -> str | None:
    try:
        return email_validator.validate_email(text, check_deliverability=False, allow_display_name=True).normalized
    except email_validator.EmailNotValidError:
        return None


@SETTINGS
@given(plain)
@example("Jo.Smith@Example.ORG")
@example("o'brien+sales@sub.example.co.uk")
@example("x@a-b.example.museum")
def test_every_address_the_fast_path_accepts_email_validator_accepts_the_same_way(text: str) -> None:
    fast = records.plain_email(text)
    if fast is not None:
        assert fast == slow(text)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | plain.map(lambda s: s + " "))
@example("jo@mail.local")
@example("jo@localhost.localhost")
@example("jo@example.test")
@example("a" * 65 + "@example.org")
@example("jo@ab--cd.example")
@example("jo@123.example")
def test_the_fast_path_never_accepts_what_email_validator_refuses(text: str) -> None:
    fast = records.plain_email(text)
    if fast is not None:
        assert slow(text) == fast


def test_the_fast_path_handles_the_common_case_and_leaves_the_rest() -> None:
    assert records.plain_email("Jo.Smith@Example.ORG") == "Jo.Smith@example.org"
    for text in ("Jo <jo@x.org>", "jo@bücher.de", '"jo smith"@x.org', "jo@mail.local", "a..b@x.org"):
        assert records.plain_email(text) is None
