"""Signed unsubscribe links: ours verify, forged or damaged ones do not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from outreach.app.sending import unsubscribe_links
from outreach.engine import sequences as seq
from outreach.mail import links
from outreach.rules import model, validate
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

KEY = b"s3cret-for-tests"


def test_a_token_we_made_verifies_to_its_address_and_source() -> None:
    token = links.sign(KEY, "Jo@Example.org", "e17")
    assert links.verify(KEY, token) == ("jo@example.org", "e17")


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another MAC
    lambda t: links.sign(b"other-key", "jo@example.org", "e17"),  # signed by someone else
    lambda t: links._b64(b"kim@example.net\ne17") + "." + t.split(".")[1],  # the MAC of another payload
    lambda t: "not a token",
    lambda t: "",
])  # fmt: skip
def test_a_forged_or_damaged_token_is_refused(mangle: object) -> None:
    token = links.sign(KEY, "jo@example.org", "e17")
    with pytest.raises(links.BadToken):
        links.verify(KEY, mangle(token))  # type: ignore[operator]


def test_the_daemon_signs_links_only_with_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    ruleset = validate.validate([str(ROOT / "rules")]).ruleset
    assert ruleset is not None and ruleset.settings.tracking is not None
    e = seq.Enrollment(17, "L1", "jo@example.org", "s", "h", "anna", seq.Status.ACTIVE, 0, 0, None,
                       dt.datetime(2026, 11, 23, tzinfo=dt.UTC))  # fmt: skip
    monkeypatch.delenv("OUTREACH_SECRET", raising=False)
    assert unsubscribe_links(ruleset)(e) is None
    monkeypatch.setenv("OUTREACH_SECRET", KEY.decode())
    url = unsubscribe_links(ruleset)(e)
    assert url is not None and url.startswith("https://t.example.com/u/")
    assert links.verify(KEY, url.rsplit("/", 1)[1]) == ("jo@example.org", "e17")


def test_a_secret_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-a-file\n")
    tracking = model.Tracking("https://t.example.com", secret_file=str(tmp_path / "key"))
    assert links.secret(tracking) == b"from-a-file"
    assert links.secret(model.Tracking("https://t.example.com", secret_file=str(tmp_path / "nope"))) is None
