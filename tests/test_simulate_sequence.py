"""`outreach simulate SEQUENCE`: one record enrolled at --start, run by the RuleTest runner, as a timeline."""

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
FRIDAY = "2026-11-27T15:00:00Z"  # 16:00 in Berlin


def simulate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def write(where: Path, name: str, text: str) -> str:
    path = where / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return str(path)


def test_a_friday_enrollment_skips_the_weekend_and_waits_for_its_call_task() -> None:
    code, out = simulate("inbound-nurture", "--start", FRIDAY)

    assert code == 0, out
    assert out.splitlines() == [
        "inbound-nurture for the sample record SAMPLE (a lead, email sample@example.org, owner anna), "
        "enrolled by anna Fri 2026-11-27 15:00 UTC",
        "  Fri 2026-11-27 15:00 UTC  Fri 16:00 CET    enrolled in inbound-nurture by anna",
        "  Fri 2026-11-27 15:00 UTC  Fri 16:00 CET    step 1 intro: mail intro to sample@example.org from "
        'anna@example.com, new thread: "Quick question, Sam"',
        # two business days after Friday: Tuesday, not Sunday
        "  Tue 2026-12-01 15:00 UTC  Tue 16:00 CET    step 2 nudge: mail follow-up to sample@example.org from "
        'anna@example.com, reply: "Re: Quick question, Sam"',
        '  Wed 2026-12-02 15:00 UTC  Wed 16:00 CET    step 3 call: task "Call the lead" (call) for anna, '
        "due Wed 2026-12-02 19:00 UTC",
        "until Thu 2026-12-03 15:00 UTC: 2 mails, 1 task; inbound-nurture still active: "
        'waiting for the task "Call the lead" to be completed',
    ]


def test_completing_the_call_task_sends_the_promo_two_business_days_later_and_completes(tmp_path: Path) -> None:
    events = write(tmp_path, "done.yaml", """
        - {at: 2026-12-03T10:00:00Z, complete_task: {}}
    """)  # fmt: skip

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", events)

    assert code == 0, out
    lines = out.splitlines()
    assert (
        f"  Thu 2026-12-03 10:00 UTC  Thu 11:00 CET    the open sequence task of SAMPLE completed  [{events}:1]"
        in lines
    )
    assert lines[-3].startswith("  Mon 2026-12-07 10:00 UTC  Mon 11:00 CET    step 4 promo: mail promo to sample@")
    assert lines[-2] == "  Mon 2026-12-07 10:00 UTC  Mon 11:00 CET    inbound-nurture completed"
    assert lines[-1] == "until Tue 2026-12-08 10:00 UTC: 3 mails, 1 task; inbound-nurture completed"


def test_a_reply_stops_the_sequence_and_no_later_mail_is_listed(tmp_path: Path) -> None:
    events = write(tmp_path, "reply.yaml", """
        # Sam answers the intro on Monday
        - {at: 2026-11-30T09:30:00Z, reply: {}}
    """)  # fmt: skip

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", events)

    assert code == 0, out
    lines = out.splitlines()
    assert lines[3:] == [
        f"  Mon 2026-11-30 09:30 UTC  Mon 10:30 CET    reply from sample@example.org  [{events}:2]",
        "  Mon 2026-11-30 09:30 UTC  Mon 10:30 CET    inbound-nurture stopped (replied)",
        "until Tue 2026-12-01 09:30 UTC: 1 mail, 0 tasks; inbound-nurture stopped (replied)",
    ]
    assert "follow-up" not in out and "task" not in out.split("reply from")[1].split("until")[0]


def test_a_hard_bounce_blocks_the_enrollment(tmp_path: Path) -> None:
    events = write(tmp_path, "bounce.yaml", "- {at: 2026-11-27T15:05:00Z, bounce: {status: 5.1.1}}\n")

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", events)

    assert code == 0, out
    assert "  Fri 2026-11-27 15:05 UTC  Fri 16:05 CET    bounce of the latest mail to sample@example.org (5.1.1)" in out
    assert "  Fri 2026-11-27 15:05 UTC  Fri 16:05 CET    inbound-nurture blocked (bounced: 5.1.1" in out
    assert out.splitlines()[-1].startswith("until Sat 2026-11-28 15:05 UTC: 1 mail, 0 tasks; inbound-nurture blocked")


def test_a_record_without_the_merge_field_of_the_intro_is_blocked_at_once() -> None:
    record = {"id": "J1", "type": "lead", "email": "jo@example.org", "owner": "ben"}

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--record-json", json.dumps(record))

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(
        "inbound-nurture for record J1 from --record-json (a lead, email jo@example.org, owner ben)"
    )
    assert lines[2] == (
        "  Fri 2026-11-27 15:00 UTC  Fri 16:00 CET    inbound-nurture blocked (missing merge field record.first_name)"
    )
    assert lines[-1] == (
        "until Sat 2026-11-28 15:00 UTC: 0 mails, 0 tasks; inbound-nurture blocked "
        "(missing merge field record.first_name)"
    )


def test_a_record_file_with_a_stage_shows_the_owners_reminders_too_and_sends_as_who_enrolls(tmp_path: Path) -> None:
    record = write(tmp_path, "jo.yaml", """
        id: L7
        type: lead
        email: jo@example.org
        first_name: Jo
        owner: ben
        stage: New
    """)  # fmt: skip

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--record", record, "--as", "anna",
                         "--until", "2026-12-02T00:00:00Z")  # fmt: skip

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        f"inbound-nurture for record L7 from {record} (a lead, email jo@example.org, owner ben, stage New), "
        "enrolled by anna Fri 2026-11-27 15:00 UTC"
    )
    assert 'mail intro to jo@example.org from anna@example.com, new thread: "Quick question, Jo"' in lines[2]
    # New allows 2 days: overdue on Sunday, the owner is reminded at Monday's 07:00 UTC run
    assert lines[3] == (
        "  Mon 2026-11-30 07:00 UTC  Mon 08:00 CET    reminder (partner-leads): mail overdue-reminder to "
        'ben@example.com from sales@example.com, new thread: "Overdue: jo@example.org is still in New"'
    )
    assert lines[-1] == (
        "until Wed 2026-12-02 00:00 UTC: 3 mails, 0 tasks; inbound-nurture still active: "
        "step 3 call is due Wed 2026-12-02 15:00 UTC"
    )


def test_welcome_goes_at_once_on_a_sunday_night_and_completes_three_days_later() -> None:
    code, out = simulate("welcome", "--start", "2026-11-22T22:30:00Z", "--timezone", "America/New_York")

    assert code == 0, out
    assert out.splitlines()[1:] == [
        "  Sun 2026-11-22 22:30 UTC  Sun 17:30 EST    enrolled in welcome by anna",
        "  Sun 2026-11-22 22:30 UTC  Sun 17:30 EST    step 1 welcome: mail welcome to sample@example.org from "
        'anna@example.com, new thread: "Welcome to Example, Sam"',
        "  Wed 2026-11-25 22:30 UTC  Wed 17:30 EST    step 2 check-in: mail check-in to sample@example.org from "
        'anna@example.com, reply: "Re: Welcome to Example, Sam"',
        "  Wed 2026-11-25 22:30 UTC  Wed 17:30 EST    welcome completed",
        "until Thu 2026-11-26 22:30 UTC: 2 mails, 0 tasks; welcome completed",
    ]


def test_nothing_is_read_from_or_written_to_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "user.db"
    monkeypatch.setenv("OUTREACH_DB", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)

    code, out = simulate("welcome", "--start", "2026-11-22T22:30:00Z")

    assert code == 0, out
    assert not db.exists() and not (tmp_path / "var").exists()


# --- events that are wrong --------------------------------------------------------------------------------------


def test_events_out_of_order_or_of_an_unknown_kind_are_errors_with_file_line_col(tmp_path: Path) -> None:
    events = write(tmp_path, "events.yaml", """
        - {at: 2026-12-02T09:00:00Z, reply: {}}
        - {at: 2026-12-01T09:00:00Z, convert: {}}
    """)  # fmt: skip
    unknown = write(tmp_path, "unknown.yaml", "- {at: 2026-11-30T09:00:00Z, replied: {}}\n")

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", events)
    assert code == 2
    assert "Traceback" not in out
    assert (f"{events}:2:8: error: events must be in time order; this one is before the previous "
            "(2026-12-02T09:00:00+00:00) [events[1].at]") in out  # fmt: skip
    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", unknown)
    assert code == 2 and f"{unknown}:1:30: error: unknown key 'replied'" in out


def test_an_event_before_start_or_about_another_record_is_an_error(tmp_path: Path) -> None:
    events = write(tmp_path, "events.yaml", """
        - {at: 2026-11-20T09:00:00Z, set: {score: 3}}
        - {at: 2026-11-28T09:00:00Z, convert: {record: L9}}
    """)  # fmt: skip

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", events)

    assert code == 2
    assert f"{events}:1:8: error: the event is before --start (Fri 2026-11-27 15:00 UTC) [events[0].at]" in out
    assert f"{events}:2:48: error: unknown record 'L9': the events are about the simulated record SAMPLE" in out


def test_a_reply_before_anything_was_sent_is_an_error_at_its_line(tmp_path: Path) -> None:
    events = write(tmp_path, "events.yaml", """
        # the sample lead replies on Saturday; the intro waits for Monday's send window
        - {at: 2026-11-28T09:00:00Z, reply: {}}
    """)  # fmt: skip

    code, out = simulate("inbound-nurture", "--start", "2026-11-27T18:00:00Z", "--events", events)

    assert code == 2
    assert f"{events}:2: reply: nothing was sent to SAMPLE before 2026-11-28T09:00:00+00:00" in out


def test_an_events_file_that_is_not_a_list_or_not_yaml_is_an_error(tmp_path: Path) -> None:
    mapping = write(tmp_path, "map.yaml", "at: 2026-11-28T09:00:00Z\nreply: {}\n")
    broken = write(tmp_path, "broken.yaml", "- {at: 2026-11-28T09:00:00Z, reply: {}\n")

    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", mapping)
    assert code == 2 and f"{mapping}:1:1: error: the events file holds a list of events" in out
    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--events", broken)
    assert code == 2 and f"{broken}:2:1: error: YAML syntax error" in out


# --- bad input ------------------------------------------------------------------------------------------------------


def test_an_unknown_sequence_lists_the_known_ones() -> None:
    code, out = simulate("nurture", "--start", FRIDAY)
    assert code == 2 and "no Sequence 'nurture' in " in out and "(sequences: inbound-nurture, welcome)" in out


def test_record_and_record_json_together_are_a_usage_error(tmp_path: Path) -> None:
    record = write(tmp_path, "r.yaml", "{id: R1, type: lead, email: r@example.org, owner: anna}\n")
    code, out = simulate("welcome", "--start", FRIDAY, "--record", record, "--record-json", "{}")
    assert code == 2 and "give --record FILE or --record-json JSON, not both" in out


def test_a_missing_or_malformed_record_file_is_a_usage_error(tmp_path: Path) -> None:
    code, out = simulate("welcome", "--start", FRIDAY, "--record", str(tmp_path / "none.yaml"))
    assert code == 2 and "'--record'" in out and "does not exist" in out

    broken = write(tmp_path, "broken.yaml", "id: C1\ntype: lead\n  email: [sam\n")
    code, out = simulate("welcome", "--start", FRIDAY, "--record", broken)
    assert code == 2 and f"{broken}:3:8: error: YAML syntax error" in out and "Traceback" not in out

    listed = write(tmp_path, "list.yaml", "- {id: C1, type: lead}\n")
    code, out = simulate("welcome", "--start", FRIDAY, "--record", listed)
    assert code == 2 and f"{listed}:1:1: error: the record must be one mapping" in out

    code, out = simulate("welcome", "--start", FRIDAY, "--record-json", '{"id": "C1", "type": lead}')
    assert code == 2 and "--record-json:1:22: error: not JSON: Expecting value" in out


def test_a_record_is_checked_like_a_ruletest_record_with_file_line_col(tmp_path: Path) -> None:
    record = write(tmp_path, "r.yaml", """
        id: R1
        type: lead
        email: r@example.org
        owner: zed
        score: high
        colour: blue
    """)  # fmt: skip

    code, out = simulate("welcome", "--start", FRIDAY, "--record", record)

    assert code == 2
    assert f"{record}:4:8: error: unknown user 'zed'" in out
    assert f"{record}:5:8: error: score is a number field: expected a number, got the text 'high' [score]" in out
    assert f"{record}:6:1: error: unknown record field 'colour'" in out


def test_a_record_of_a_type_the_sequence_does_not_enroll_is_refused_as_the_scheduler_refuses() -> None:
    record = {"id": "K1", "type": "contact", "email": "k@example.org", "owner": "anna"}
    code, out = simulate("welcome", "--start", FRIDAY, "--record-json", json.dumps(record))
    assert code == 2 and "the scheduler refuses to enroll it: record K1 is a contact; welcome enrolls lead" in out


def test_a_record_without_owner_needs_as() -> None:
    record = json.dumps({"id": "K1", "type": "lead", "email": "k@example.org", "first_name": "Kim"})
    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--record-json", record)
    assert code == 2 and "record K1 has no owner: say who enrolls it with --as USER" in out
    code, out = simulate("inbound-nurture", "--start", FRIDAY, "--record-json", record, "--as", "ben")
    assert code == 0 and "enrolled in inbound-nurture by ben" in out and "to k@example.org from ben@example.com" in out
    # welcome sends as the record's owner: enrolled by ben, it has nobody to send as
    code, out = simulate("welcome", "--start", FRIDAY, "--record-json", record, "--as", "ben")
    assert code == 0 and out.splitlines()[-1].endswith(
        "welcome blocked (the sequence sends as the record owner and record K1 has no owner)"
    )


def test_bad_times_zones_and_mixed_forms_are_usage_errors() -> None:
    cases = [
        (["welcome", "--start", FRIDAY, "--until", "2026-11-26"], "--until must be after --start"),
        (["welcome", "--start", "friday"], "'friday' is not an ISO 8601 date and time"),
        (["welcome", "--start", FRIDAY, "--timezone", "Mars/Base"], "--timezone: unknown time zone 'Mars/Base'"),
        (["welcome", "--start", FRIDAY, "--as", "zed"], "--as: 'zed' is not a user in Settings.users"),
        (["welcome", "--process", "partner-leads", "--stage", "New", "--entered", FRIDAY],
         "give one of SEQUENCE, --process NAME or --campaign NAME, not SEQUENCE and --process NAME"),
        ([], "give SEQUENCE (with --start), --process NAME (with --stage and --entered) or --campaign NAME"),
        (["welcome"], "SEQUENCE needs --start TIME"),
        (["welcome", "--start", FRIDAY, "--stage", "New"], "--stage: only with --process, not SEQUENCE"),
        (["--process", "partner-leads", "--stage", "New", "--entered", FRIDAY, "--start", FRIDAY],
         "--start: only with SEQUENCE or --campaign, not --process"),
        (["--process", "partner-leads", "--stage", "New"], "--process needs --stage and --entered"),
    ]  # fmt: skip
    for args, message in cases:
        code, out = simulate(*args)
        assert code == 2, (args, out)
        assert message in out, (args, out)
        assert "Traceback" not in out
