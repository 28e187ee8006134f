"""`outreach enroll` on many records: a summary (enrolled, refused by reason, when the first mails go), a line per
record only with --verbose or --record alone, and --format json (issue 19, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from tests import worlds

pytestmark = pytest.mark.acceptance

ROWS = ["id,type,email,first_name,country,owner"]
ROWS += [f"B{i},lead,lead{i}@example.org,Name{i},DE,anna" for i in range(30)]
ROWS += [
    "B30,lead,lead0@example.org,Twin,DE,anna",  # the address of B0
    "B31,lead,,Nomail,DE,anna",
    "D1,deal,deal@example.com,Dee,DE,anna",
    "A1,lead,austria@example.org,Au,AT,anna",
]
CSV = "\n".join(ROWS) + "\n"
MONDAY = "2026-11-23T08:00:00Z"
MIDWEEK = "2026-11-25T14:00:00Z"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    worlds.scratch(tmp_path, monkeypatch, CSV)
    assert run("apply", "rules")[0] == 0
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def test_many_records_get_a_summary_and_no_line_each(here: Path) -> None:
    assert run("enroll", "inbound-nurture", "--record", "B5", "--as", "anna", "--now", MONDAY)[0] == 0
    code, out = run("enroll", "inbound-nurture", "--where", "country=DE", "--as", "anna", "--now", MIDWEEK)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "inbound-nurture: 29 enrolled, 4 refused", out
    refusals = {line.strip() for line in lines if line.startswith("  refused")}
    assert refusals == {
        "refused 1: already active in the sequence",  # B5, enrolled before
        "refused 1: an address another record of this run has",  # B30
        "refused 1: no valid email address",  # B31
        "refused 1: not a module the sequence enrolls",  # D1, a deal
    }
    assert any(line.startswith("  first mails: 2026-11-2") for line in lines), out
    assert not any(line.startswith(("enrolled ", "refused B")) for line in lines), "no line per record by default"
    assert len(json.loads(run("enrollments", "list", "--json")[1])) == 30


def test_verbose_adds_a_line_per_record(here: Path) -> None:
    code, out = run("enroll", "inbound-nurture", "--where", "country=DE", "--as", "anna", "--now", MIDWEEK,
                    "--verbose", "--dry-run")  # fmt: skip
    assert code == 0
    assert "would enroll B0 (lead0@example.org): first mail " in out
    assert "refused B30: lead0@example.org is enrolled already in this run (record B0)" in out
    assert "inbound-nurture: 30 would enroll, 3 refused" in out
    assert json.loads(run("enrollments", "list", "--json")[1]) == []


def test_records_named_one_by_one_get_their_line_each(here: Path) -> None:
    code, out = run("enroll", "inbound-nurture", "--record", "B1", "--record", "Z9", "--as", "anna", "--now", MONDAY)
    assert code == 0
    assert "enrolled B1 (lead1@example.org): first mail 2026-11-23 08:00 UTC" in out
    assert "refused Z9: no record 'Z9'" in out
    assert out.endswith("inbound-nurture: 1 enrolled, 1 refused\n")  # the lines say why: no breakdown


def test_json_gives_the_summary_and_each_outcome(here: Path) -> None:
    code, out = run("enroll", "inbound-nurture", "--where", "country=AT", "--record", "D1", "--as", "anna",
                    "--now", MONDAY, "--json")  # fmt: skip
    assert code == 0
    body = json.loads(out)
    assert {k: body[k] for k in ("sequence", "dry_run", "enrolled", "refused")} == {
        "sequence": "inbound-nurture", "dry_run": False, "enrolled": 1, "refused": {"wrong_type": 1},
    }  # fmt: skip
    assert body["first_mail"] == body["last_mail"] == "2026-11-23T08:00:00+00:00"
    by_record = {r["record"]: r for r in body["records"]}
    assert by_record["A1"]["enrolled"] is True and isinstance(by_record["A1"]["enrollment"], int)
    assert by_record["D1"] == {"record": "D1", "enrolled": False, "refused": "wrong_type",
                               "reason": "record D1 is a deal; inbound-nurture enrolls lead, contact"}  # fmt: skip
    assert json.loads(run("enroll", "inbound-nurture", "--record", "A1", "--as", "anna", "--format", "json")[1])[
        "refused"] == {"already_active": 1}  # fmt: skip


def test_everyone_refused_exits_1(here: Path) -> None:
    assert run("enroll", "inbound-nurture", "--where", "country=AT", "--as", "anna")[0] == 0
    code, out = run("enroll", "inbound-nurture", "--where", "country=AT", "--as", "anna")
    assert code == 1 and "inbound-nurture: 0 enrolled, 1 refused" in out


FRIDAY = "2026-11-27T09:00:00Z"  # 10:00 in Berlin


def test_enroll_says_how_the_senders_daily_limit_spreads_the_first_mails_over_the_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 18, item 8: no "first mail now" for all when the limit lets 10 a day go; the rest wait, never blocked
    worlds.scratch(tmp_path, monkeypatch, CSV)
    settings = tmp_path / "rules" / "settings.yaml"
    settings.write_text(settings.read_text().replace("daily_limit: 300, title: Account", "daily_limit: 10, title: Account"))
    assert run("apply", "rules")[0] == 0
    code, out = run("enroll", "inbound-nurture", "--where", "country=DE", "--as", "anna", "--now", FRIDAY,
                    "--dry-run", "--verbose")  # fmt: skip
    assert code == 0, out
    assert "would enroll B0 (lead0@example.org): first mail 2026-11-27 09:00 UTC\n" in out
    # the eleventh waits for Monday's allowance (Friday's slots free on Saturday), the 21st for Tuesday's
    assert ("would enroll B19 (lead19@example.org): first mail 2026-11-30 07:00 UTC (due 2026-11-27 09:00 UTC; "
            "held back by the sender's daily limit)") in out  # fmt: skip
    assert "would enroll B29 (lead29@example.org): first mail 2026-12-01 07:00 UTC (due 2026-11-27 09:00 UTC" in out
    assert ("  anna's daily limit (10 in 24 hours, 0 queued in the last 24 hours) holds back 20 of 30 first mails: "
            "sent over 3 days, the last at 2026-12-01 07:00 UTC\n"
            "    2026-11-27 to 2026-12-01: 10 a day (3 days)\n") in out  # fmt: skip
    data = json.loads(run("enroll", "inbound-nurture", "--where", "country=DE", "--as", "anna", "--now", FRIDAY,
                          "--json")[1])  # fmt: skip
    (limit,) = data["limits"]
    assert limit == {"sender": "anna", "daily_limit": 10, "queued_last_24_hours": 0, "waiting_before": 0, "held": 20,
                     "last_mail": "2026-12-01T07:00:00+00:00",
                     "days": [{"day": "2026-11-27", "first_mails": 10}, {"day": "2026-11-30", "first_mails": 10},
                              {"day": "2026-12-01", "first_mails": 10}]}  # fmt: skip
    held = {r["record"]: r.get("held_until") for r in data["records"] if r["enrolled"]}
    assert sum(v is None for v in held.values()) == 10 and held["B29"] == "2026-12-01T07:00:00+00:00"
    # once enrolled, those waiting come first: a later run is told so
    code, out = run("enroll", "inbound-nurture", "--record", "A1", "--as", "anna", "--now", FRIDAY)
    assert code == 0, out
    assert "first mail 2026-12-02 07:00 UTC (due 2026-11-27 09:00 UTC; held back by the sender's daily limit)" in out
