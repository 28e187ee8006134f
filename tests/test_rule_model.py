"""The rule model that validation builds: typed, immutable, hashed, and only when the set is clean."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest

from outreach.rules import criteria, model, timing, validate
from outreach.rules.diagnostics import Code
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.unit

SETTINGS = (FIXTURES / "base" / "settings.yaml").read_text(encoding="utf-8")


def ruleset() -> model.RuleSet:
    result = validate.validate([str(ROOT / "rules")])
    assert result.ruleset is not None, result.diagnostics
    return result.ruleset


def test_the_example_sequence_is_parsed_into_typed_steps() -> None:
    seq = ruleset().sequences["inbound-nurture"]
    assert [s.id for s in seq.steps] == ["intro", "nudge", "call", "promo"]
    intro, nudge, call, promo = seq.steps
    assert intro.kind is model.StepKind.EMAIL and intro.wait == timing.Duration()
    assert nudge.wait == timing.Duration(business_days=2) and nudge.thread is model.Thread.REPLY
    assert call.kind is model.StepKind.TASK and call.task == "Call the lead" and call.task_type == "call"
    assert call.due_within == timing.Duration(seconds=4 * 3600)
    assert promo.thread is model.Thread.NEW
    assert seq.sender == model.Sender(model.SenderKind.ENROLLING_USER)
    assert seq.unsubscribe_language == "de"
    assert seq.enroll_when == criteria.All(
        (
            criteria.Leaf("source", criteria.Op.EQ, "webinar"),
            criteria.Leaf("country", criteria.Op.IN, ("DE", "AT", "CH", "NO")),
        )
    )


def test_the_example_campaign_keeps_its_triggers_and_follow_ups() -> None:
    c = ruleset().campaigns["spring-webinar"]
    assert c.send_at == dt.datetime(2027, 3, 2, 18, 0, tzinfo=dt.UTC)
    assert c.to.view == "dach-qualified"
    assert [type(a).__name__ for a in c.triggers.opened] == ["FieldUpdate", "TaskAction", "CallAction"]
    assert c.triggers.bounced == (model.FieldUpdate("email_status", "bounced"),)
    first, second = c.follow_ups
    assert first.to == "opened" and first.after == timing.Duration(seconds=3 * 86400)
    assert first.except_ == criteria.Leaf("registered", criteria.Op.EQ, True)
    assert second.at == dt.datetime(2027, 3, 8, 8, 0, tzinfo=dt.UTC)


def test_the_example_process_and_settings() -> None:
    rs = ruleset()
    p = rs.processes["partner-leads"]
    assert [(s.name, s.max) for s in p.stages][:2] == [("New", timing.Duration(seconds=2 * 86400)),
                                                      ("Contacted", timing.Duration(seconds=7 * 86400))]  # fmt: skip
    assert p.stages[-1].max is None
    assert p.follow_up.every == timing.Duration(seconds=7 * 86400) and p.follow_up.at == "0 7 * * *"
    s = rs.settings
    assert s.calendars["default"].holiday_country == "DE" and s.calendars["default"].workdays == frozenset(range(5))
    assert s.users["anna"].daily_limit == 300
    assert s.mailboxes["anna"].password_file == "/run/credentials/outreach.service/anna-imap"
    assert s.record_fields["next_appointment_at"] is criteria.FieldType.DATETIME
    assert s.calendar("default").send_window == timing.parse_window("08:00-18:00")


def test_rule_tests_are_parsed_with_times_and_typed_fields() -> None:
    t = ruleset().tests["nurture stops when the lead replies"]
    assert t.start == dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
    assert t.records[1].fields["stage_entered_at"] == dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
    assert [e.kind for e in t.events] == ["enroll", "reply"]
    assert t.expect.sent is not None and len(t.expect.sent) == 4
    assert t.expect.enrollments[0].reason == "replied"


def test_the_model_is_immutable() -> None:
    rs = ruleset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rs.sequences["inbound-nurture"].steps[0].wait = timing.Duration(seconds=1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        rs.sequences["new"] = rs.sequences["inbound-nurture"]  # type: ignore[index]
    with pytest.raises(TypeError):
        rs.settings.users["eve"] = rs.settings.users["anna"]  # type: ignore[index]


def test_content_hash_is_sha256_of_canonical_json_and_ignores_layout() -> None:
    a = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": "kind: Template\nname: t\nsubject: Hi\ntext: Hello\n"})
    b = validate.validate_texts(
        {"s.yaml": SETTINGS, "x.yaml": "# a comment\nkind: Template\ntext: Hello\nsubject: 'Hi'\nname: t\n"}
    )
    c = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": "kind: Template\nname: t\nsubject: Hi!\ntext: Hello\n"})
    assert a.ruleset and b.ruleset and c.ruleset
    ha, hb, hc = (r.templates["t"].source.hash for r in (a.ruleset, b.ruleset, c.ruleset))
    assert ha == hb != hc
    assert ha == model.content_hash({"kind": "Template", "name": "t", "subject": "Hi", "text": "Hello"})
    assert len(ha) == 64


def test_no_ruleset_comes_back_when_there_is_any_error() -> None:
    r = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": "kind: Template\nname: t\nsubject: Hi\n"})
    assert r.ruleset is None and [d.code for d in r.errors] == [Code.SCHEMA_REQUIRED]


def test_a_rule_set_without_settings_is_an_error() -> None:
    r = validate.validate_texts({"t.yaml": "kind: Template\nname: t\nsubject: Hi\ntext: x\n"})
    assert [d.code for d in r.errors] == [Code.SETTINGS_MISSING]


def test_a_second_settings_document_is_an_error() -> None:
    r = validate.validate_texts({"a.yaml": SETTINGS, "b.yaml": SETTINGS})
    assert [(d.file, d.code) for d in r.errors] == [("b.yaml", Code.SETTINGS_DUPLICATE)]
    assert "a.yaml:2" in r.errors[0].message


def test_broken_settings_do_not_cascade_into_every_other_document() -> None:
    broken = SETTINGS.replace("record_fields:", "record_feilds:")
    seq = "kind: Sequence\nname: s2\nenroll_when: {field: source, eq: webinar}\nsteps: [{id: a, email: intro}]\n"
    r = validate.validate_texts(
        {"s.yaml": broken, "q.yaml": seq, "t.yaml": (FIXTURES / "base" / "base.yaml").read_text()}
    )
    assert [d.code for d in r.errors] == [Code.SCHEMA_UNKNOWN_KEY]
    assert "did you mean 'record_fields'?" in r.errors[0].message


def test_all_errors_of_a_run_are_reported_not_only_the_first() -> None:
    docs = (
        "kind: Template\nname: a\nsubject: '{{ record.nope }}'\ntext: x\n---\n"
        "kind: Sequence\nname: q\nsteps: [{id: a, email: missing}]\n---\n"
        "kind: Sequence\nname: r\nsteps: [{id: a, email: a, wait: 3 fortnights}, {id: b, emial: a}]\n"
    )
    r = validate.validate_texts({"s.yaml": SETTINGS, "d.yaml": docs})
    # every schema error of a document, and the reference errors of every document that passed the schema
    assert sorted(str(d.code) for d in r.errors) == [
        "duration-invalid", "merge-field-unknown", "ref-template", "schema-unknown-key", "step-kind",
    ]  # fmt: skip


def test_jinja_errors_point_at_the_file_line_of_the_template_line() -> None:
    text = "kind: Template\nname: a\nsubject: Hi\ntext: |\n  line one\n  line two {{ record.first_name }\n  three\n"
    r = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": text})
    (err,) = r.errors
    assert (err.line, err.code) == (6, Code.TEMPLATE_SYNTAX)


def test_merge_field_errors_in_quoted_one_line_subjects_point_at_the_value() -> None:
    text = 'kind: Template\nname: a\nsubject: "Hi {{ owner.nickname }}"\ntext: x\n'
    r = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": text})
    (err,) = r.errors
    assert (err.line, err.column, err.code) == (3, 17, Code.MERGE_FIELD_UNKNOWN)
    assert "owner.nickname" in err.message


def test_validate_texts_and_validate_agree(tmp_path: object) -> None:
    texts = {str(p): p.read_text(encoding="utf-8") for p in sorted((ROOT / "rules").rglob("*.yaml"))}
    a = validate.validate_texts(texts)
    b = validate.validate([str(ROOT / "rules")])
    assert a.ruleset is not None and b.ruleset is not None
    assert {k: v.source.hash for k, v in a.ruleset.sequences.items()} == {
        k: v.source.hash for k, v in b.ruleset.sequences.items()
    }


def test_a_template_used_by_a_broken_sequence_is_not_reported_unused() -> None:
    docs = (
        "kind: Template\nname: a\nsubject: Hi\ntext: x\n---\n"
        "kind: Sequence\nname: q\nsteps: [{id: a, email: a, wait: 2 bussiness days}]\n"
    )
    r = validate.validate_texts({"s.yaml": SETTINGS, "d.yaml": docs})
    assert [str(d.code) for d in r.diagnostics] == ["duration-invalid"]


def _example_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the example rule set with one change in one file."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    text = (rules / file).read_text(encoding="utf-8")
    assert text.count(old) == 1
    (rules / file).write_text(text.replace(old, new), encoding="utf-8")
    return rules


def test_one_missing_brace_in_a_sequence_file_is_one_error(tmp_path: Path) -> None:
    """The sequence's tests, and the templates only it sends, follow from the syntax error: not reported."""
    rules = _example_with(tmp_path, "sequences/inbound-nurture.yaml", "wait: immediately}", "wait: immediately")
    r = validate.validate([str(rules)])
    assert [(d.file, d.line, d.column, str(d.severity), str(d.code), d.message) for d in r.diagnostics] == [
        (str(rules / "sequences" / "inbound-nurture.yaml"), 13, 5, "error", "yaml-syntax",
         "YAML syntax error: while parsing a flow mapping; did not find expected ',' or '}'"),
    ]  # fmt: skip
    texts = {str(p): p.read_text(encoding="utf-8") for p in sorted(rules.rglob("*.yaml"))}
    assert validate.validate_texts(texts).diagnostics == r.diagnostics


def test_a_broken_file_hides_only_the_names_written_in_it(tmp_path: Path) -> None:
    """A reference to a name the unreadable file does not mention is still unknown, and a template it does
    not name is still unused."""
    rules = _example_with(tmp_path, "sequences/inbound-nurture.yaml", "wait: immediately}", "wait: immediately")
    (rules / "templates" / "spare.yaml").write_text("kind: Template\nname: spare\nsubject: Hi\ntext: x\n")
    (rules / "tests" / "typo.yaml").write_text(
        "kind: RuleTest\nname: typo\nstart: 2026-11-23T08:00:00Z\nrecords: [{id: L1, type: lead, email: a@example.org}]\n"
        "events: [{at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurtur, record: L1, as: anna}}]\n"
        "expect: {sent: []}\n"
    )
    r = validate.validate([str(rules)])
    assert [(d.file.removeprefix(str(rules) + "/"), str(d.code)) for d in r.diagnostics] == [
        ("sequences/inbound-nurture.yaml", "yaml-syntax"),
        ("templates/spare.yaml", "template-unused"),
        ("tests/typo.yaml", "ref-sequence"),
    ]


def test_a_settings_file_that_cannot_be_read_is_not_also_missing(tmp_path: Path) -> None:
    rules = _example_with(tmp_path, "settings.yaml", "timezone: Europe/Berlin", "timezone: [Europe/Berlin")
    r = validate.validate([str(rules)])
    assert [(d.file, str(d.code)) for d in r.diagnostics] == [(str(rules / "settings.yaml"), "yaml-syntax")]


def test_a_template_file_that_cannot_be_read_hides_its_templates(tmp_path: Path) -> None:
    rules = _example_with(tmp_path, "templates/nurture.yaml", "name: intro", "name: intro\n\tbad: tab")
    r = validate.validate([str(rules)])
    broken = str(rules / "templates" / "nurture.yaml")
    assert [(d.file, str(d.code)) for d in r.diagnostics] == [(broken, "yaml-syntax")]


def test_an_unused_template_is_a_warning_and_the_set_still_validates() -> None:
    r = validate.validate_texts({"s.yaml": SETTINGS, "t.yaml": "kind: Template\nname: t\nsubject: Hi\ntext: x\n"})
    assert r.ruleset is not None
    assert [(str(d.code), str(d.severity)) for d in r.diagnostics] == [("template-unused", "warning")]


def test_html_parts_render_escaped_and_text_parts_as_they_are() -> None:
    from outreach.rules import templates

    value = {"company": "Smith & <b>Sons</b>"}
    html = templates.environment(html=True).from_string("<p>{{ record.company }}</p>").render(record=value)
    text = templates.environment().from_string("{{ record.company }}").render(record=value)
    assert html == "<p>Smith &amp; &lt;b&gt;Sons&lt;/b&gt;</p>"
    assert text == "Smith & <b>Sons</b>"
