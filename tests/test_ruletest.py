"""`outreach test`: RuleTests run on a virtual clock with the real scheduler and store, and a diff when they fail."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from outreach import cli
from tests.conftest import ROOT, write_rule_test

# Tiers: a test that runs RuleTests is `store` (each runs on an SQLite store in memory); one that stops at the
# errors of a RuleTest file or of the command line is `acceptance` (the CLI alone).

RULES = ROOT / "rules"


@pytest.fixture
def rules(bare_rules: Path) -> Path:
    return bare_rules


def write(rules: Path, text: str, name: str = "t.yaml") -> Path:
    return write_rule_test(rules, text, name)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["test", *args])
    return result.exit_code, result.output


PASSING = """
    kind: RuleTest
    name: the intro goes at once and the follow-up two business days later
    start: 2026-11-23T08:00:00Z
    until: 2026-11-26T00:00:00Z
    records:
      - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
    events:
      - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
    expect:
      sent:
        - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro, from: anna@example.com}
        - {at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up, thread: reply,
           subject: "Re: Quick question, Jo"}
      enrollments:
        - {record: L1, sequence: inbound-nurture, status: active}
"""

FAILING = """
    kind: RuleTest
    name: the follow-up goes two days after a Friday intro
    start: 2026-11-27T15:00:00Z
    records:
      - {id: C1, type: lead, email: sam@example.org, first_name: Sam, owner: ben}
    events:
      - {at: 2026-11-27T15:00:00Z, enroll: {sequence: inbound-nurture, record: C1, as: ben}}
      - {at: 2026-12-02T09:00:00Z, reply: {record: C1}}
    expect:
      sent:
        - {at: 2026-11-27T15:00:00Z, to: sam@example.org, template: intro}
        - {at: 2026-11-29T15:00:00Z, to: sam@example.org, template: follow-up}
      enrollments:
        - {record: C1, sequence: inbound-nurture, status: completed}
"""


@pytest.mark.store
def test_the_example_rules_tests_all_pass() -> None:
    code, out = run(str(RULES))

    assert code == 0, out
    assert out.splitlines()[-1].endswith(" RuleTests, 0 failed")
    assert "FAIL" not in out


@pytest.mark.store
def test_a_passing_rule_test_prints_ok_and_exits_0(rules: Path) -> None:
    write(rules, PASSING)

    code, out = run(str(rules))

    assert code == 0, out
    assert out.splitlines() == [
        f"ok    {rules}/tests/t.yaml:1  the intro goes at once and the follow-up two business days later",
        "1 RuleTest, 0 failed",
    ]


@pytest.mark.store
def test_a_failing_rule_test_shows_expected_and_actual_aligned_by_time_with_file_and_line(rules: Path) -> None:
    path = write(rules, FAILING)

    code, out = run(str(rules))

    assert code == 1
    assert out.splitlines() == [
        f"FAIL  {path}:1  the follow-up goes two days after a Friday intro",
        "      sent (- expected, not sent; + sent, not expected):",
        "        Fri 2026-11-27 15:00 UTC  intro to sam@example.org from ben@example.com, new: 'Quick question, Sam'",
        f"      - Sun 2026-11-29 15:00 UTC  follow-up to sam@example.org   [{path}:12]",
        "      + Tue 2026-12-01 15:00 UTC  follow-up to sam@example.org from ben@example.com, reply: "
        "'Re: Quick question, Sam'",
        "      enrollments:",
        f"      - C1 in inbound-nurture: completed (it is stopped (replied))   [{path}:14]",
        "1 RuleTest, 1 failed",
    ]


@pytest.mark.store
def test_sent_is_exhaustive_a_mail_nobody_expected_fails_the_test(rules: Path) -> None:
    text = "\n".join(
        line for line in PASSING.splitlines() if "template: follow-up" not in line and "Re: Quick" not in line
    )
    write(rules, text)

    code, out = run(str(rules))

    assert code == 1
    assert "      + Wed 2026-11-25 08:00 UTC  follow-up to jo@example.org from anna@example.com, reply: " in out


@pytest.mark.store
def test_a_window_matches_any_time_inside_it(rules: Path) -> None:
    text = PASSING.replace(
        "{at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up",
        "{at: {after: 2026-11-25T07:00:00Z, before: 2026-11-25T09:00:00Z}, to: jo@example.org, template: follow-up",
    )
    write(rules, text)

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_json_lists_each_test_with_its_diff_and_what_was_sent(rules: Path) -> None:
    write(rules, PASSING, "a.yaml")
    write(rules, FAILING, "b.yaml")

    code, out = run("--format", "json", str(rules))

    assert code == 1
    data = json.loads(out)
    assert (data["total"], data["failed"]) == (2, 1)
    ok, bad = data["tests"]
    assert ok["passed"] is True and ok["diff"] == []
    assert [s["template"] for s in ok["sent"]] == ["intro", "follow-up"]
    assert bad["passed"] is False
    assert [(d["sign"], d["kind"], d["at"]) for d in bad["diff"]] == [
        ("-", "sent", "2026-11-29T15:00:00+00:00"),
        ("+", "sent", "2026-12-01T15:00:00+00:00"),
        ("-", "enrollment", None),
    ]
    assert bad["diff"][0]["where"].endswith("b.yaml:12")


@pytest.mark.store
def test_junit_xml_has_a_testcase_per_rule_test_and_a_failure_with_the_diff(rules: Path) -> None:
    write(rules, PASSING, "a.yaml")
    write(rules, FAILING, "b.yaml")

    code, out = run("--format", "junit", str(rules))

    assert code == 1
    root = ElementTree.fromstring(out.encode())
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "the intro goes at once and the follow-up two business days later",
        "the follow-up goes two days after a Friday intro",
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "- Sun 2026-11-29 15:00 UTC  follow-up" in (failure.text or "")


@pytest.mark.store
def test_a_junit_failure_has_the_expectation_as_its_type_and_the_first_difference_as_its_message(
    rules: Path,
) -> None:
    path = write(rules, FAILING, "b.yaml")

    code, out = run("--format", "junit", str(rules))

    assert code == 1
    failure = ElementTree.fromstring(out.encode()).find("./testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("type") == "expect.sent"
    assert failure.get("message") == (
        f"expected, not sent: Sun 2026-11-29 15:00 UTC  follow-up to sam@example.org [{path}:12] (and 2 more)"
    )
    assert "+ Tue 2026-12-01 15:00 UTC  follow-up" in (failure.text or "")  # the whole diff stays in the text


@pytest.mark.store
def test_junit_xml_stays_xml_when_a_test_name_holds_a_character_xml_forbids(rules: Path) -> None:
    write(rules, FAILING.replace("name: the follow-up goes", 'name: "a bell \\a: the follow-up goes').replace(
        "Friday intro\n", 'Friday intro"\n'))  # fmt: skip

    code, out = run("--format", "junit", str(rules))

    assert code == 1
    case = ElementTree.fromstring(out.encode()).find("./testsuite/testcase")
    assert case is not None and case.get("name", "").startswith("a bell \\x07: the follow-up")


@pytest.mark.acceptance
def test_junit_xml_of_rules_that_do_not_validate_is_one_testcase_with_the_errors_at_file_line_col(
    rules: Path,
) -> None:
    write(rules, PASSING)
    sequence = rules / "sequences" / "inbound-nurture.yaml"
    sequence.write_text(sequence.read_text(encoding="utf-8").replace("email: intro,", "email: intr,"), "utf-8")

    result = CliRunner().invoke(cli.main, ["test", "--format", "junit", str(rules)])

    assert result.exit_code == 1
    root = ElementTree.fromstring(result.stdout.encode())  # the report; the errors also go to stderr
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == str(rules)
    (case,) = suite.findall("testcase")
    assert (case.get("file"), case.get("line")) == (str(sequence), "12")
    error = case.find("error")
    assert error is not None and error.get("type") == "validation"
    assert (
        error.get("message")
        == f"{sequence}:12:24: error: unknown template 'intr'; did you mean 'intro'? [steps[0].email]"
    )
    assert (error.text or "").endswith(f"{rules}: 1 error(s); no RuleTest ran")
    assert f"{sequence}:12:24: error: unknown template 'intr'" in result.stderr


@pytest.mark.store
def test_a_rule_test_file_runs_against_the_rules_option(rules: Path) -> None:
    path = write(rules, PASSING)

    code, out = run("--rules", str(rules), str(path))

    assert code == 0, out
    assert out.splitlines()[-1] == "1 RuleTest, 0 failed"


@pytest.mark.acceptance
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("sequence: inbound-nurture, record: L1", "sequence: inbound-nurtur, record: L1"),
         "unknown sequence 'inbound-nurtur'"),
        (("record: L1, as: anna", "record: L9, as: anna"), "unknown record 'L9'"),
        (("template: intro, from", "template: intr, from"), "intr"),
    ],
)  # fmt: skip
def test_a_rule_test_naming_an_unknown_sequence_record_or_template_is_an_error_at_its_line(
    rules: Path, change: tuple[str, str], message: str
) -> None:
    path = write(rules, PASSING.replace(*change))

    code, out = run(str(rules))

    assert code == 1
    assert message in out
    assert f"{path}:" in out and "no RuleTest ran" in out


@pytest.mark.acceptance
def test_events_out_of_time_order_are_an_error_at_the_later_event(rules: Path) -> None:
    text = PASSING.replace(
        "events:\n", "events:\n      - {at: 2026-11-24T08:00:00Z, set: {record: L1, stage: Contacted}}\n"
    )
    path = write(rules, text)

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:9:" in out and "events must be in time order" in out


@pytest.mark.acceptance
def test_an_event_before_start_is_an_error(rules: Path) -> None:
    path = write(rules, PASSING.replace("{at: 2026-11-23T08:00:00Z, enroll", "{at: 2026-11-22T08:00:00Z, enroll"))

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:8:" in out and "outside the test's run" in out


@pytest.mark.acceptance
def test_a_rule_test_that_expects_nothing_is_an_error(rules: Path) -> None:
    write(rules, PASSING.split("expect:")[0] + "expect: {tasks: []}\n")

    code, out = run(str(rules))

    assert code == 1
    assert "a RuleTest must expect something" in out


@pytest.mark.store
def test_an_open_of_a_campaign_that_sent_the_record_nothing_is_an_error(rules: Path) -> None:
    shutil.copytree(RULES / "campaigns", rules / "campaigns")
    shutil.copytree(RULES / "views", rules / "views")
    path = write(rules, PASSING.replace(
        "events:\n", "events:\n      - {at: 2026-11-23T08:00:00Z, open: {record: L1, campaign: spring-webinar}}\n"))  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"error: {path}:8: open: nothing of campaign spring-webinar was sent to L1 before 2026-11-23T08:00:00+00:00" \
        in out  # fmt: skip


@pytest.mark.store
def test_a_reply_before_anything_was_sent_is_an_error(rules: Path) -> None:
    path = write(rules, PASSING.replace(
        "events:\n", "events:\n      - {at: 2026-11-23T07:00:00Z, reply: {record: L1}}\n").replace(
        "start: 2026-11-23T08:00:00Z", "start: 2026-11-23T07:00:00Z"))  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:8: reply: nothing was sent to L1 before 2026-11-23T07:00:00+00:00" in out


@pytest.mark.acceptance
def test_usage_errors_exit_2(rules: Path, tmp_path: Path) -> None:
    path = write(rules, PASSING)

    assert run("--format", "xml", str(rules))[0] == 2
    assert run(str(tmp_path / "nowhere"))[0] == 2
    assert run("--rules", str(rules), str(rules))[0] == 2
    assert run(str(rules), str(path))[0] == 2


@pytest.mark.store
def test_the_failing_example_of_testing_rules_md_prints_the_diff_shown_there(
    rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "docs" / "testing-rules.md").read_text(encoding="utf-8")
    section = text.split("## A failing RuleTest and its diff")[1]
    example = section.split("```yaml\n")[1].split("```")[0]
    shown = section.split("```text\n")[1].split("```")[0]
    write(rules, example, "nurture.yaml")
    monkeypatch.chdir(rules.parent)

    code, out = run("rules/")

    assert code == 1
    assert out == shown


@pytest.mark.store
def test_the_junit_examples_of_testing_rules_md_are_what_outreach_test_writes(
    rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "docs" / "testing-rules.md").read_text(encoding="utf-8")
    example = text.split("## A failing RuleTest and its diff")[1].split("```yaml\n")[1].split("```")[0]
    failing, invalid = (block.split("```")[0] for block in text.split("\n## In CI\n")[1].split("```xml\n")[1:3])
    write(rules, example, "nurture.yaml")
    monkeypatch.chdir(rules.parent)

    def junit() -> str:
        result = CliRunner().invoke(cli.main, ["test", "--format", "junit", "rules/"])
        assert result.exit_code == 1
        return re.sub(r' time="[0-9.]+"', ' time="0.450"', result.stdout)  # the page shows one run's seconds

    assert junit() == failing
    sequence = rules / "sequences" / "inbound-nurture.yaml"
    yaml = sequence.read_text(encoding="utf-8")
    sequence.write_text(yaml.replace("wait: 2 business days, thread: reply", "wait: 2 busines days, thread: reply"))
    assert junit() == re.sub(r' time="[0-9.]+"', ' time="0.450"', invalid)


@pytest.mark.store
def test_a_record_imported_long_overdue_is_reminded_at_start_and_one_made_overdue_when_the_daemon_looks_again(
    rules: Path,
) -> None:
    write(rules, """
        kind: RuleTest
        name: reminders catch up
        start: 2026-11-25T12:00:00Z
        until: 2026-12-03T00:00:00Z
        records:
          - {id: P1, type: lead, email: p1@partner.example, owner: ben, stage: New,
             stage_entered_at: 2026-11-10T10:00:00Z}
          - {id: P2, type: lead, email: p2@partner.example, owner: anna, stage: New}
        events:
          - {at: 2026-11-25T12:02:00Z, set: {record: P2, stage_entered_at: 2026-11-01T10:00:00Z}}
        expect:
          sent:
            - {at: 2026-11-25T12:00:00Z, to: ben@example.com, template: overdue-reminder}
            # changed two minutes after the reminders looked: they look again five minutes after that look
            - {at: 2026-11-25T12:05:00Z, to: anna@example.com, template: overdue-reminder}
            # weekly, counted from the day of the first reminder
            - {at: 2026-12-02T07:00:00Z, to: ben@example.com, template: overdue-reminder}
            - {at: 2026-12-02T07:00:00Z, to: anna@example.com, template: overdue-reminder}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_sequence_that_enrolls_by_a_time_criterion_enrolls_at_the_daemons_hourly_full_scan(rules: Path) -> None:
    (rules / "sequences" / "late.yaml").write_text(textwrap.dedent("""
        kind: Sequence
        name: late
        applies_to: [lead]
        sender: record_owner
        calendar: anytime
        enroll_when: {all: [{field: source, eq: fair}, {field: created_at, older_than: 150m}]}
        steps:
          - {id: welcome, email: welcome, wait: immediately}
    """), encoding="utf-8")  # fmt: skip
    write(rules, """
        kind: RuleTest
        name: enrolled at the first hourly scan after it is 150 minutes old
        start: 2026-11-25T12:00:00Z
        records:
          - {id: F1, type: lead, email: f1@example.org, owner: anna, source: fair}
        expect:
          sent:
            - {at: 2026-11-25T15:00:00Z, to: f1@example.org, template: welcome}
          enrollments:
            - {record: F1, sequence: late, status: completed}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out
