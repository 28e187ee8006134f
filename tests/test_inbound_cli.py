"""`outreach inbound classify`: what the poller makes of messages saved as files, for people and for scripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.acceptance

INBOUND = FIXTURES / "inbound"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def test_a_bounce_is_shown_with_each_recipient_its_status_reason_permanence_the_original_and_why() -> None:
    code, out = run("inbound", "classify", str(INBOUND / "mixed-421-and-550.eml"))
    assert code == 0
    assert out.splitlines() == [
        f"{INBOUND / 'mixed-421-and-550.eml'}: bounce (permanent)",
        "  charlie@wonka.example.com  5.1.1  user_unknown  permanent",
        "  oompa@loompa.example.org  4.4.2  other  temporary",
        "  original Message-ID: <865a75c9d8f876d98c7505f0da8116d1@example.com>",
        "  why: Sendmail non-delivery report, Status: 5.1.1 (2 recipients); returns message "
        "<865a75c9d8f876d98c7505f0da8116d1@example.com> (taken for ours: no store)",
    ]


def test_json_gives_one_object_per_file_a_line_each() -> None:
    names = ["postfix-user-unknown.eml", "arf-complaint.eml", "reply-thunderbird.eml", "dsn-deliverable-2.1.5.eml",
             "gmail-dsn-delay.eml", "outlook-automatic-reply.eml"]  # fmt: skip
    code, out = run("inbound", "classify", "--json", *(str(INBOUND / n) for n in names))
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["kind"] for o in objects] == ["bounce", "complaint", "reply", "other", "delayed", "auto_reply"]
    assert all(set(o) == {"file", "kind", "recipients", "original_message_id", "why"} for o in objects)
    assert objects[0]["recipients"] == [
        {"address": "jo.old@customer.example.org", "status": "5.1.1", "reason": "user_unknown", "permanent": True}
    ]
    assert objects[0]["original_message_id"] == "<3c4d5e6f708192a3b4c5d6e7f8091a2b@example.com>"
    assert objects[1]["recipients"] == [
        {"address": "rosa@yahoo.example.com", "status": "", "reason": "complaint", "permanent": True}
    ]
    assert objects[4]["recipients"][0]["permanent"] is False
    assert objects[2]["file"] == str(INBOUND / "reply-thunderbird.eml")


def test_a_report_that_refers_to_nothing_is_shown_unverified() -> None:
    code, out = run("inbound", "classify", "--json", str(INBOUND / "forged-dsn-no-reference.eml"))
    assert code == 0
    (found,) = [json.loads(line) for line in out.splitlines()]
    assert found["kind"] == "bounce" and found["original_message_id"] is None
    assert found["why"].endswith("unverified: no reference to a message of ours")


def test_a_maildir_is_read_file_by_file_without_its_tmp(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.copy(INBOUND / "postfix-user-unknown.eml", maildir / "cur" / "1772442000.M1P1.host:2,S")
    shutil.copy(INBOUND / "reply-thunderbird.eml", maildir / "new" / "1772442001.M2P1.host")
    shutil.copy(INBOUND / "gmail-dsn-delay.eml", maildir / "tmp" / "being-delivered")
    code, out = run("inbound", "classify", "--json", str(maildir))
    assert code == 0
    assert [(Path(o["file"]).parent.name, o["kind"]) for o in map(json.loads, out.splitlines())] == [
        ("cur", "bounce"), ("new", "reply")]  # fmt: skip


def test_a_real_bounce_from_the_open_corpus() -> None:
    path = ROOT / "tests" / "data" / "flufl_bounce" / "qmail_03.txt"
    code, out = run("inbound", "classify", str(path))
    assert code == 0 and "userx@example.jp  5.1.1  user_unknown  permanent" in out


def test_help_shows_examples() -> None:
    code, out = run("inbound", "classify", "--help")
    assert code == 0 and "outreach inbound classify bounce.eml" in out and '"original_message_id"' in out
    code, out = run("--help")
    assert "inbound" in out and "classify messages as the IMAP poller would" in out
