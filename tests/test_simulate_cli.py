"""`outreach simulate --process`: the overdue moment and every reminder, with weekdays, in UTC and local time;
`outreach simulate --campaign`: a campaign's mail, follow-ups, skips and triggers for a sample of its recipients."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

RULES = str(ROOT / "rules")


def simulate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--process", "partner-leads", *args])
    return result.exit_code, result.output


def test_overdue_on_monday_is_reminded_tuesday_at_seven_utc_and_again_the_next_tuesday() -> None:
    code, out = simulate("--stage", "New", "--entered", "2026-11-21T10:00:00Z", "--until", "2026-12-02")

    assert code == 0, out
    assert out.splitlines() == [
        'partner-leads: a lead in New from Sat 2026-11-21 10:00 UTC; daily run "0 7 * * *" UTC, then every 1 week',
        "  Sat 2026-11-21 10:00 UTC  Sat 11:00 CET    enters New (max 2 days)",
        "  Mon 2026-11-23 10:00 UTC  Mon 11:00 CET    overdue in New",
        "  Tue 2026-11-24 07:00 UTC  Tue 08:00 CET    reminder 1 to the record's owner (overdue-reminder)",
        "  Tue 2026-12-01 07:00 UTC  Tue 08:00 CET    reminder 2 to the record's owner (overdue-reminder)",
        "until Wed 2026-12-02 00:00 UTC: 2 reminders",
    ]


def test_the_local_time_of_the_utc_run_moves_with_daylight_saving_time_in_berlin() -> None:
    code, out = simulate("--stage", "New", "--entered", "2027-03-13T10:00:00Z", "--until", "2027-04-01")

    assert code == 0, out
    reminders = [line for line in out.splitlines() if "reminder " in line]
    assert [line.split("  reminder")[0].rstrip() for line in reminders] == [
        "  Tue 2027-03-16 07:00 UTC  Tue 08:00 CET",
        "  Tue 2027-03-23 07:00 UTC  Tue 08:00 CET",
        "  Tue 2027-03-30 07:00 UTC  Tue 09:00 CEST",  # clocks went forward on Sunday 28 March
    ]


def test_another_local_zone_can_be_shown() -> None:
    code, out = simulate("--stage", "New", "--entered", "2026-11-21T10:00:00", "--until", "2026-11-25",
                         "--timezone", "America/New_York")  # fmt: skip
    assert code == 0, out
    assert "  Tue 2026-11-24 07:00 UTC  Tue 02:00 EST    reminder 1" in out


def test_a_stage_without_max_is_never_overdue() -> None:
    code, out = simulate("--stage", "Won", "--entered", "2026-11-21T10:00:00Z")
    assert code == 0, out
    assert "enters Won (no max)" in out and "overdue" not in out and out.endswith(": 0 reminders\n")


def test_unknown_names_and_bad_times_are_usage_errors() -> None:
    code, out = simulate("--stage", "Lost", "--entered", "2026-11-21T10:00:00Z")
    assert code == 2 and "partner-leads has no stage 'Lost' (its stages: New, Contacted, Qualified, Won)" in out
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--process", "nope", "--stage", "New",
                                           "--entered", "2026-11-21"])  # fmt: skip
    assert result.exit_code == 2 and "no SalesProcess 'nope'" in result.output
    code, out = simulate("--stage", "New", "--entered", "next monday")
    assert code == 2 and "'next monday' is not an ISO 8601 date and time" in out
    code, out = simulate("--stage", "New", "--entered", "2026-11-21", "--until", "2026-11-20")
    assert code == 2 and "--until must be after --entered" in out


# --- --campaign ----------------------------------------------------------------------------------------------


def campaign(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--campaign", "spring-webinar", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def write(where: Path, name: str, text: str) -> str:
    path = where / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return str(path)


LEADS = """
    # three leads of the view dach-qualified; Noemi has no address
    - {id: L1, type: lead, email: lena@example.at, first_name: Lena, country: AT, stage: Qualified, owner: ben}
    - {id: L2, type: lead, email: max@example.de, first_name: Max, country: DE, stage: Qualified, owner: anna}
    - {id: L3, type: lead, first_name: Noemi, country: CH, stage: Qualified, owner: ben}
"""

OPENS = """
    # Lena opens the invitation the next morning; Max registers
    - {at: 2027-03-03T09:00:00Z, open: {record: L1, campaign: spring-webinar}}
    - {at: 2027-03-04T10:00:00Z, set: {record: L2, registered: true}}
"""


def test_a_campaign_shows_its_mail_each_follow_up_the_skipped_and_the_triggers_fired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "webinar-leads.yaml", LEADS)
    write(tmp_path, "webinar-opens.yaml", OPENS)

    code, out = campaign("--records", "webinar-leads.yaml", "--events", "webinar-opens.yaml")

    assert code == 0, out
    invite = '"Webinar on 9 March: outreach rules as code"'
    assert out.splitlines() == [
        "spring-webinar: a lead campaign of anna to the view dach-qualified, sent Tue 2027-03-02 18:00 UTC; "
        "3 records from webinar-leads.yaml",
        "  Tue 2027-03-02 18:00 UTC  Tue 19:00 CET    campaign mail webinar-invite to lena@example.at (L1) from "
        f"anna@example.com: {invite}",
        "  Tue 2027-03-02 18:00 UTC  Tue 19:00 CET    campaign mail webinar-invite to max@example.de (L2) from "
        f"anna@example.com: {invite}",
        "  Tue 2027-03-02 18:00 UTC  Tue 19:00 CET    campaign mail: L3 skipped: no valid email",
        "  Wed 2027-03-03 09:00 UTC  Wed 10:00 CET    L1 opens the spring-webinar mail  [webinar-opens.yaml:2]",
        '  Wed 2027-03-03 09:00 UTC  Wed 10:00 CET    campaign mail opened by L1: interest = "warm"',
        '  Wed 2027-03-03 09:00 UTC  Wed 10:00 CET    campaign mail opened by L1: task "Send product details" for '
        "ben, due Fri 2027-03-05 09:00 UTC",
        '  Wed 2027-03-03 09:00 UTC  Wed 10:00 CET    campaign mail opened by L1: call "Intro call" for ben, due '
        "Sat 2027-03-06 09:00 UTC",
        "  Thu 2027-03-04 10:00 UTC  Thu 11:00 CET    set L2 registered = true  [webinar-opens.yaml:3]",
        "  Fri 2027-03-05 18:00 UTC  Fri 19:00 CET    follow-up 1 webinar-reminder to lena@example.at (L1) from "
        'anna@example.com: "Tomorrow: the outreach webinar"',
        "  Mon 2027-03-08 08:00 UTC  Mon 09:00 CET    follow-up 2 webinar-last-call to lena@example.at (L1) from "
        'anna@example.com: "Last seats for the webinar"',
        "  Mon 2027-03-08 08:00 UTC  Mon 09:00 CET    follow-up 2: L2 (max@example.de) skipped: excepted",
        "until Tue 2027-03-09 08:00 UTC:",
        "  campaign mail  webinar-invite     to everyone          2 sent, 0 bounced, 1 opened, 0 clicked; "
        "skipped: no valid email 1",
        "  follow-up 1    webinar-reminder   to who opened it     1 sent, 0 bounced, 0 opened, 0 clicked",
        "  follow-up 2    webinar-last-call  to who received it   1 sent, 0 bounced, 0 opened, 0 clicked; "
        "skipped: excepted 1",
    ]
    assert out == _cli_md_output("outreach simulate --campaign spring-webinar --records webinar-leads.yaml "
                                 "--events webinar-opens.yaml")  # fmt: skip


def _cli_md_output(command: str) -> str:
    """What docs/cli.md shows `command` printed."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    after = text.split(f"$ {command}\n", 1)[1]
    return after.split("\n```", 1)[0] + "\n"


def _database(tmp_path: Path) -> str:
    """A database of six leads of the view and one outside it: L2 unsubscribed, L4 deleted, L5 without an
    address, L6 the same address as L1 in capitals."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    write(tmp_path, "leads.csv", """
        id,type,email,first_name,country,owner,stage
        L1,lead,lena@example.at,Lena,AT,ben,Qualified
        L2,lead,ute@example.de,Ute,DE,ben,Qualified
        L3,lead,kai@example.ch,Kai,CH,anna,Qualified
        L4,lead,bo@example.de,Bo,DE,anna,Qualified
        L5,lead,,Noemi,CH,ben,Qualified
        L6,lead,LENA@example.at,Lena,AT,ben,Qualified
        L7,lead,eva@example.fr,Eva,FR,ben,Qualified
    """)  # fmt: skip
    runner = CliRunner()
    for args in (["records", "import", str(tmp_path / "leads.csv"), "--type", "lead"],
                 ["suppressions", "add", "ute@example.de", "--reason", "unsubscribed"],
                 ["records", "delete", "L4"]):  # fmt: skip
        result = runner.invoke(cli.main, [*args, "--rules", RULES, "--db", url])
        assert result.exit_code == 0, result.output
    return url


def test_without_records_a_sample_of_the_databases_records_shows_who_is_skipped_and_why(tmp_path: Path) -> None:
    url = _database(tmp_path)

    code, out = campaign("--db", url, "--until", "2027-03-03T00:00:00Z")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == ("spring-webinar: a lead campaign of anna to the view dach-qualified, sent Tue 2027-03-02 "
                        "18:00 UTC; the 6 records it picks now in the database")  # fmt: skip
    mine = [line.split("CET    ", 1)[1] for line in lines if "campaign mail" in line and "CET" in line]
    assert mine == [
        'campaign mail webinar-invite to lena@example.at (L1) from anna@example.com: "Webinar on 9 March: outreach '
        'rules as code"',
        'campaign mail webinar-invite to kai@example.ch (L3) from anna@example.com: "Webinar on 9 March: outreach '
        'rules as code"',
        "campaign mail: L2 (ute@example.de) skipped: suppressed: unsubscribed",
        "campaign mail: L4 (bo@example.de) skipped: deleted",
        "campaign mail: L5 skipped: no valid email",
        "campaign mail: L6 (LENA@example.at) skipped: same address twice",
    ]
    assert lines[-3].startswith("  campaign mail  webinar-invite     to everyone          2 sent, 0 bounced, 0 opened")
    assert lines[-3].endswith("skipped: deleted 1, no valid email 1, same address twice 1, suppressed 1")
    assert "L7" not in out  # not in the view


def test_the_sample_is_the_first_records_by_id_and_the_heading_says_of_how_many(tmp_path: Path) -> None:
    url = _database(tmp_path)

    code, out = campaign("--db", url, "--sample", "2", "--json")

    assert code == 0, out
    data = json.loads(out)
    assert data["heading"].endswith("; the first 2 of the 6 records it picks now in the database (by id)")
    assert (data["recipients"], data["picked"]) == (2, 6)
    assert data["start"] == "2027-03-02T18:00:00+00:00" and data["until"] == "2027-03-09T08:00:00+00:00"
    assert [s["step"] for s in data["steps"]] == [0, 1, 2]
    first = data["steps"][0]
    shown = (first["template"], first["to"], first["status"], first["sent"], first["skipped_by_reason"])
    assert shown == ("webinar-invite", "everyone", "sent", 1, {"suppressed": 1})
    assert data["steps"][1]["to"] == "opened" and data["steps"][2]["sent"] == 1
    assert any(t["what"].startswith("campaign mail: L2 (ute@example.de) skipped") for t in data["timeline"])


def test_a_database_without_a_recipient_says_the_campaign_sends_nothing(tmp_path: Path) -> None:
    code, out = campaign("--db", f"sqlite:///{tmp_path / 'empty.db'}")

    assert code == 0, out
    assert "the 0 records it picks now in the database" in out.splitlines()[0]
    assert "  nobody: the campaign picks no record, and completes with 0 sent" in out
    assert "  campaign mail  webinar-invite     to everyone          0 sent" in out


def test_a_bad_record_or_an_event_that_cannot_happen_is_an_error_at_its_file_and_line(tmp_path: Path) -> None:
    leads = write(tmp_path, "leads.yaml", """
        - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified}
        - {id: L2, type: lead, email: max@example.de, colour: blue}
    """)  # fmt: skip
    code, out = campaign("--records", leads)
    assert code == 2
    assert f"{leads}:2:" in out and "'colour'" in out and "[[1].colour]" in out

    leads = write(tmp_path, "leads.yaml", LEADS)
    early = write(tmp_path, "early.yaml", """
        - {at: 2027-03-02T17:00:00Z, open: {record: L1, campaign: spring-webinar}}
    """)  # fmt: skip
    code, out = campaign("--records", leads, "--events", early, "--start", "2027-03-02T16:00:00Z")
    assert code == 2
    assert f"{early}:1: open: nothing of campaign spring-webinar was sent to L1 before 2027-03-02T17:00:00" in out


def test_campaign_usage_errors() -> None:
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--campaign", "spring"])
    assert result.exit_code == 2 and "no Campaign 'spring' in " in result.output
    assert "(campaigns: spring-webinar)" in result.output
    code, out = campaign("--record-json", "{}")
    assert code == 2 and "--record-json: only with SEQUENCE, not --campaign" in out
    code, out = campaign("--stage", "New")
    assert code == 2 and "--stage: only with --process, not --campaign" in out
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "inbound-nurture", "--start",
                                           "2026-11-27T15:00:00Z", "--sample", "3"])  # fmt: skip
    assert result.exit_code == 2 and "--sample: only with --campaign, not SEQUENCE" in result.output
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--process", "partner-leads",
                                           "--campaign", "spring-webinar"])  # fmt: skip
    assert result.exit_code == 2 and "not --process NAME and --campaign NAME" in result.output
    code, out = campaign("--until", "2027-03-01T00:00:00Z")
    assert code == 2 and "--until must be after --start" in out
