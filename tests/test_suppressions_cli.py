"""`outreach suppressions list|add|remove` as an operator uses them, on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outreach import cli
from tests import worlds

pytestmark = pytest.mark.acceptance

CSV = (
    "id,type,email,first_name,company,country,owner,source\n"
    "L1,lead,Jo@example.org,Jo,Fjord AS,NO,anna,\n"
    "L2,lead,kim@example.net,Kim,,DE,ben,\n"
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory with the example rules, L1 and L2 imported and enrolled in inbound-nurture."""
    worlds.scratch(tmp_path, monkeypatch, CSV)
    assert run("apply", "rules")[0] == 0
    assert run("enroll", "inbound-nurture", "--record", "L1", "--record", "L2", "--as", "anna")[0] == 0
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def enrollments() -> dict[str, tuple[str, str | None]]:
    code, out = run("enrollments", "list", "--json")
    assert code == 0, out
    return {e["record_id"]: (e["status"], e["reason"]) for e in json.loads(out)}


def listed(*args: str) -> dict[str, Any]:
    code, out = run("suppressions", "list", "--json", *args)
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    return data


def activity(record_id: str, kind: str) -> list[dict[str, Any]]:
    code, out = run("records", "show", record_id, "--json")
    assert code == 0, out
    return [e for e in json.loads(out)["activity"] if e["kind"] == kind]


def test_add_suppresses_the_address_and_stops_its_live_sequences(here: Path) -> None:
    code, out = run("suppressions", "add", "JO@example.org")

    assert code == 0, out
    assert out == "suppressed jo@example.org (manual); stopped 1 live sequence of L1\n"
    assert enrollments() == {"L1": ("stopped", "suppressed"), "L2": ("active", None)}
    (entry,) = listed()["suppressions"]
    assert (entry["email"], entry["reason"], entry["source"]) == ("jo@example.org", "manual", "cli")
    assert [e["data"] for e in activity("L1", "suppressed")] == [{"email": "jo@example.org", "reason": "manual"}]
    code, out = run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    assert code == 1 and "unsubscribed on" in out  # kept off every sequence from now on

    code, out = run("suppressions", "add", "jo@example.org", "--reason", "bounced")
    assert code == 0 and "jo@example.org is already suppressed (manual since " in out and "nothing changed" in out
    assert [e["reason"] for e in listed()["suppressions"]] == ["manual"]


def test_add_with_a_reason_and_an_address_no_record_has(here: Path) -> None:
    code, out = run("suppressions", "add", "info@kranich.example.de", "--reason", "complaint")
    assert code == 0 and out == "suppressed info@kranich.example.de (complaint); no record has this address\n"
    assert enrollments() == {"L1": ("active", None), "L2": ("active", None)}
    assert [(e["email"], e["reason"]) for e in listed()["suppressions"]] == [("info@kranich.example.de", "complaint")]


@pytest.mark.parametrize("bad", ["jo@@example.org", "not-an-address", "jo@example"])
def test_add_refuses_a_bad_address(here: Path, bad: str) -> None:
    code, out = run("suppressions", "add", bad)
    assert code == 2
    assert f"Invalid value for EMAIL: invalid email {bad!r}" in out
    assert listed() == {"total": 0, "suppressions": []}


def test_add_refuses_an_unknown_reason(here: Path) -> None:
    code, out = run("suppressions", "add", "jo@example.org", "--reason", "spam")
    assert code == 2 and "'spam' is not one of 'manual', 'unsubscribed', 'bounced', 'complaint'" in out
    assert listed()["total"] == 0


def test_remove_needs_a_reason_and_keeps_it_in_the_activity(here: Path) -> None:
    assert run("suppressions", "add", "jo@example.org", "--reason", "complaint")[0] == 0

    code, out = run("suppressions", "remove", "jo@example.org")
    assert code == 2 and "Missing option '--reason'" in out
    code, out = run("suppressions", "remove", "jo@example.org", "--reason", "  ")
    assert code == 2 and "Invalid value for --reason" in out
    assert listed()["total"] == 1  # still on the list

    code, out = run("suppressions", "remove", "Jo@Example.org", "--reason", "opted in again on the webinar form")
    assert code == 0, out
    assert out.startswith("removed jo@example.org from the suppression list (complaint, since ")
    assert "; the reason is kept in the activity of L1\n" in out
    assert "note: jo@example.org had asked for no more mail" in out  # a complaint: the operator is reminded
    assert listed()["total"] == 0
    assert [e["data"] for e in activity("L1", "unsuppressed")] == [
        {"email": "jo@example.org", "reason": "opted in again on the webinar form", "was": "complaint"}
    ]
    assert enrollments()["L1"] == ("stopped", "suppressed")  # nothing restarts by itself


def test_remove_of_an_address_not_on_the_list_exits_1(here: Path) -> None:
    code, out = run("suppressions", "remove", "kim@example.net", "--reason", "typo")
    assert code == 1
    assert "Error: kim@example.net is not on the suppression list" in out
    assert activity("L2", "unsuppressed") == []


def test_list_shows_columns_newest_first_and_filters(here: Path) -> None:
    for email, reason in (("jo@example.org", "manual"), ("kim@example.net", "bounced"),
                          ("info@kranich.example.de", "bounced")):  # fmt: skip
        assert run("suppressions", "add", email, "--reason", reason)[0] == 0

    code, out = run("suppressions", "list")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["email", "reason", "since", "source"]
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["info@kranich.example.de", "bounced"], ["kim@example.net", "bounced"], ["jo@example.org", "manual"],
    ]  # fmt: skip
    assert all(line.endswith("UTC  cli") for line in lines[1:4])
    assert lines[4] == "3 suppressed addresses"

    assert [e["email"] for e in listed("--reason", "bounced")["suppressions"]] == [
        "info@kranich.example.de", "kim@example.net"
    ]
    assert [e["email"] for e in listed("--search", "EXAMPLE.NET")["suppressions"]] == ["kim@example.net"]
    limited = listed("--limit", "1")
    assert limited["total"] == 3 and [e["email"] for e in limited["suppressions"]] == ["info@kranich.example.de"]
    code, out = run("suppressions", "list", "--limit", "1")
    assert out.splitlines()[-1] == "3 suppressed addresses (the newest 1; --limit shows more)"
    code, out = run("suppressions", "list", "--search", "nobody")
    assert code == 0 and out == "0 suppressed addresses\n"
    code, out = run("suppressions", "list", "--reason", "lost")
    assert code == 2 and "'lost' is not one of" in out
