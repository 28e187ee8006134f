"""RuleTests' `apply` event: a changed rule set replaces the one under test, and what it does to people enrolled."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


def write(rules: Path, text: str) -> Path:
    return write_rule_test(rules, text, "edit.yaml")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


# L1 is enrolled on Monday 23 November 2026 at 08:00 UTC (09:00 in Berlin, inside the send window). The
# example's inbound-nurture: intro at once, follow-up (a reply) 2 business days later, a call task 1 business day
# after that, then the promo 2 business days after the task is completed. The edit applied on Tuesday waits
# 3 business days for the follow-up, has no call step and sends the promo 1 business day later.
EDIT = """
kind: RuleTest
name: an edit of inbound-nurture and the people enrolled
start: 2026-11-23T08:00:00Z
until: 2026-12-05T00:00:00Z
records:
  - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
  - {id: L2, type: lead, email: kim@example.org, first_name: Kim, owner: anna}
events:
  - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
  - at: 2026-11-24T09:00:00Z
    apply:
      definitions:
        - kind: Sequence
          name: inbound-nurture
          on_edit: ON_EDIT
          unsubscribe_link: {language: de}
          steps:
            - {id: intro, email: intro}
            - {id: nudge, email: follow-up, wait: 3 business days, thread: reply}
            - {id: promo, email: promo, wait: 1 business day, thread: new}
"""


def edit_test(on_edit: str, rest: str) -> str:
    """The edit above with `on_edit`, and `rest` (more events, then `expect:`) at the indentation of `events:`."""
    return EDIT.replace("ON_EDIT", on_edit) + textwrap.dedent(rest).lstrip("\n")


@pytest.mark.store
def test_pinned_enrollments_keep_their_version_and_a_new_enrollment_gets_the_edited_one(rules: Path) -> None:
    # L1 keeps the old version: the follow-up 2 business days after the intro, then the call task.
    # L2, enrolled after the apply, runs the new one: follow-up 3 business days later, no call, the promo.
    write(rules, edit_test("pin", """
          - {at: 2026-11-24T10:00:00Z, enroll: {sequence: inbound-nurture, record: L2, as: anna}}
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
            - {at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up}
            - {at: 2026-11-24T10:00:00Z, to: kim@example.org, template: intro}
            - {at: 2026-11-27T10:00:00Z, to: kim@example.org, template: follow-up}
            - {at: 2026-11-30T10:00:00Z, to: kim@example.org, template: promo}
          tasks:
            - {record: L1, subject: Call the lead, at: 2026-11-26T08:00:00Z}
          enrollments:
            - {record: L1, sequence: inbound-nurture, status: active}
            - {record: L2, sequence: inbound-nurture, status: completed}
    """))  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_pinned_enrollment_does_not_take_the_edited_wait(rules: Path) -> None:
    # the same test expecting L1 on the new version fails: it is pinned
    write(rules, edit_test("pin", """
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
            - {at: 2026-11-26T08:00:00Z, to: jo@example.org, template: follow-up}
    """))  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 1
    assert "+ Wed 2026-11-25 08:00 UTC  follow-up to jo@example.org" in out
    assert "- Thu 2026-11-26 08:00 UTC  follow-up to jo@example.org" in out


@pytest.mark.store
def test_next_step_moves_an_enrollment_after_its_next_step_matching_steps_by_id(rules: Path) -> None:
    # L1's next step (the follow-up) still runs on the old version, 2 business days after the intro; then it
    # moves onto the new version after `nudge`: the call step is gone, the promo goes 1 business day later.
    write(rules, edit_test("next_step", """
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
            - {at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up, thread: reply}
            - {at: 2026-11-26T08:00:00Z, to: jo@example.org, template: promo, thread: new}
          enrollments:
            - {record: L1, sequence: inbound-nurture, status: completed}
    """))  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 0, out


@pytest.mark.store
def test_next_step_creates_no_task_for_a_step_the_edit_removed(rules: Path) -> None:
    write(rules, edit_test("next_step", """
        expect:
          tasks:
            - {record: L1, subject: Call the lead}
    """))  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 1
    assert "- task for L1: 'Call the lead' (its tasks: none)" in out


@pytest.mark.store
def test_removing_a_sequence_stops_its_enrollments_and_sends_nothing_more(rules: Path) -> None:
    write(rules, """
        kind: RuleTest
        name: a removed sequence stops its enrollments
        start: 2026-11-23T08:00:00Z
        until: 2026-12-05T00:00:00Z
        records:
          - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
        events:
          - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
          - at: 2026-11-24T09:00:00Z
            apply:
              remove:
                - {kind: Sequence, name: inbound-nurture}
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
          enrollments:
            - {record: L1, sequence: inbound-nurture, status: stopped, reason: sequence removed}
    """)  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_template_edit_shows_at_the_next_send(rules: Path) -> None:
    # the promo goes 2 business days after the call task is completed (Thursday): Monday, with the new subject
    write(rules, """
        kind: RuleTest
        name: the promo goes out with the subject of its edited template
        start: 2026-11-23T08:00:00Z
        until: 2026-12-05T00:00:00Z
        records:
          - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
        events:
          - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
          - {at: 2026-11-26T12:00:00Z, complete_task: {record: L1}}
          - at: 2026-11-27T09:00:00Z
            apply:
              definitions:
                - kind: Template
                  name: promo
                  subject: "Jo, three stories from {{ record.country | default('Europe') }}"
                  text: |
                    Hi {{ record.first_name | default('there') }}, ...
                    Unsubscribe: {{ unsubscribe_url }}
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro, subject: "Quick question, Jo"}
            - {at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up}
            - {at: 2026-11-30T12:00:00Z, to: jo@example.org, template: promo, subject: "Jo, three stories from Europe"}
          enrollments:
            - {record: L1, sequence: inbound-nurture, status: completed}
    """)  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_sequence_added_by_an_apply_can_be_enrolled_after_it_but_not_before(rules: Path) -> None:
    added = """
        kind: RuleTest
        name: a new sequence
        start: 2026-11-23T08:00:00Z
        records:
          - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
        events:
          - at: 2026-11-23T09:00:00Z
            apply:
              definitions:
                - {kind: Sequence, name: short, steps: [{id: hello, email: intro}]}
          - {at: 2026-11-23T10:00:00Z, enroll: {sequence: short, record: L1, as: anna}}
        expect:
          sent:
            - {at: 2026-11-23T10:00:00Z, to: jo@example.org, template: intro}
          enrollments:
            - {record: L1, sequence: short, status: completed}
    """
    write(rules, added)
    code, out = run("test", str(rules))
    assert code == 0, out

    path = write(rules, added.replace(
        "- at: 2026-11-23T09:00:00Z", "- {at: 2026-11-23T08:00:00Z, enroll: {sequence: short, record: L1, as: anna}}\n"
        "          - at: 2026-11-23T09:00:00Z"))  # fmt: skip
    code, out = run("validate", str(rules))
    assert code == 1
    assert f"{path}:7:51: error: unknown sequence 'short' [events[0].enroll.sequence]" in out


# --- bad input: reported by `outreach validate`, with the RuleTest file's line and column -----------------------

BAD = """
    kind: RuleTest
    name: a bad apply
    start: 2026-11-23T08:00:00Z
    records:
      - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
    events:
      - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
      - at: 2026-11-24T09:00:00Z
        apply:
    APPLY
    expect:
      sent: []
"""


def bad(rules: Path, apply: str) -> Path:
    body = textwrap.indent(textwrap.dedent(apply).strip("\n"), " " * 6)
    return write(rules, textwrap.dedent(BAD).replace("APPLY", body))


@pytest.mark.acceptance
def test_an_unknown_kind_inline_is_an_error_at_its_line_and_column(rules: Path) -> None:
    path = bad(rules, """
          definitions:
            - {kind: Sequense, name: x, steps: [{id: a, email: intro}]}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    assert (f"{path}:11:18: error: the text 'Sequense' is not one of: Settings, Template, Sequence, View, "
            "SalesProcess; did you mean 'Sequence'? [events[1].apply.definitions[0].kind]") in out  # fmt: skip


@pytest.mark.acceptance
def test_a_rule_test_inline_is_an_error(rules: Path) -> None:
    path = bad(rules, """
          definitions:
            - {kind: RuleTest, name: inner, start: 2026-11-23T08:00:00Z, expect: {sent: []}}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    assert f"{path}:11:18: error: the text 'RuleTest' is not one of: Settings, Template, Sequence" in out


@pytest.mark.acceptance
def test_a_schema_error_inside_an_inline_definition_is_reported_at_its_line_and_column(rules: Path) -> None:
    path = bad(rules, """
          definitions:
            - kind: Sequence
              name: inbound-nurture
              steps:
                - {id: intro, email: intro}
                - {id: nudge, email: follow-up, wait: 2 bussiness days}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 1, out
    assert errors[0].startswith(f"{path}:15:51: error: ")
    assert errors[0].endswith("[events[1].apply.definitions[0].steps[1].wait]")


@pytest.mark.acceptance
def test_a_semantic_error_of_an_inline_definition_is_reported_at_its_line(rules: Path) -> None:
    path = bad(rules, """
          definitions:
            - kind: Sequence
              name: inbound-nurture
              steps:
                - {id: intro, email: intro}
                - {id: nudge, email: folow-up, wait: 2 business days}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    assert (f"{path}:15:34: error: unknown template 'folow-up'; did you mean 'follow-up'? "
            "[events[1].apply.definitions[0].steps[1].email]") in out  # fmt: skip

    code, out = run("test", str(rules))  # `outreach test` refuses to run as well
    assert code == 1
    assert "no RuleTest ran" in out


@pytest.mark.acceptance
def test_removing_what_a_rule_still_uses_is_an_error_at_the_apply_naming_the_rule(rules: Path) -> None:
    path = bad(rules, """
          remove:
            - {kind: Template, name: promo}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    sequence = rules / "sequences" / "inbound-nurture.yaml"
    assert (f"{path}:9:5: error: after this apply, {sequence}:15:24: unknown template 'promo' "
            "[steps[3].email] [events[1].apply]") in out  # fmt: skip


@pytest.mark.acceptance
def test_removing_a_definition_the_rule_set_does_not_have_is_an_error(rules: Path) -> None:
    path = bad(rules, """
          remove:
            - {kind: Sequence, name: inbound-nurtur}
    """)  # fmt: skip

    code, out = run("validate", str(rules))

    assert code == 1
    assert (f"{path}:11:34: error: there is no Sequence 'inbound-nurtur' to remove; did you mean 'inbound-nurture'? "
            "(Sequence definitions: inbound-nurture, welcome) [events[1].apply.remove[0].name]") in out  # fmt: skip


@pytest.mark.acceptance
def test_an_apply_with_neither_definitions_nor_remove_is_an_error(rules: Path) -> None:
    path = bad(rules, "{}")

    code, out = run("validate", str(rules))

    assert code == 1
    assert f"{path}:10:7: error: needs one of `definitions`, `remove` [events[1].apply]" in out


@pytest.mark.store
def test_the_next_rule_test_runs_on_the_rule_set_as_written_not_as_changed_by_an_apply_before(rules: Path) -> None:
    # the RuleTests of a run share one store: the first removes inbound-nurture, the second still has it
    write(rules, """
        kind: RuleTest
        name: a removed sequence
        start: 2026-11-23T08:00:00Z
        records:
          - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
        events:
          - at: 2026-11-23T08:00:00Z
            apply:
              remove:
                - {kind: Sequence, name: inbound-nurture}
        expect:
          sent: []
        ---
        kind: RuleTest
        name: the sequence is back
        start: 2026-11-23T08:00:00Z
        until: 2026-11-24T00:00:00Z
        records:
          - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
        events:
          - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
        expect:
          sent:
            - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
          enrollments:
            - {record: L1, sequence: inbound-nurture, status: active}
    """)  # fmt: skip

    code, out = run("test", str(rules))

    assert code == 0, out
    assert out.splitlines()[-1] == "2 RuleTests, 0 failed"


@pytest.mark.store
def test_the_example_of_testing_rules_md_is_the_first_test_of_rules_tests_edits_yaml_and_passes(rules: Path) -> None:
    text = (ROOT / "docs" / "testing-rules.md").read_text(encoding="utf-8")
    section = text.split("## Testing a rule change on people already enrolled\n", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    example = (RULES / "tests" / "edits.yaml").read_text(encoding="utf-8").split("---\n")[0]
    written = [line.split("  #")[0].rstrip() for line in example.splitlines() if not line.lstrip().startswith("#")]
    assert [line.split("  #")[0].rstrip() for line in block.splitlines()] == written
    (rules / "tests" / "edit.yaml").write_text(block, encoding="utf-8")

    code, out = run("test", str(rules))

    assert code == 0, out
