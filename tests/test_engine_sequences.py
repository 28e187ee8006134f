"""The sequence engine's decisions, pure, on a virtual clock, with the example rules (Berlin, 08:00-18:00, DE-BE).

inbound-nurture: intro (immediately) -> nudge (2 business days, reply in thread)
-> call task (1 business day, due within 4h) -> promo (2 business days, new thread).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from outreach.engine import render, unsubscribe
from outreach.engine import sequences as seq
from outreach.rules import model, timing, validate
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> model.RuleSet:
    result = validate.validate([str(ROOT / "rules")])
    assert result.ruleset is not None
    return result.ruleset


@pytest.fixture(scope="module")
def nurture(rules: model.RuleSet) -> model.Sequence:
    return rules.sequences["inbound-nurture"]


UNSUBSCRIBE = "https://t.example.com/u/t0k3n"
JO = seq.Recipient("L1", "lead", "jo@example.org", "anna", None, {"first_name": "Jo", "email": "jo@example.org"})


def enrolled(rules: model.RuleSet, nurture: model.Sequence, at: str, who: seq.Recipient = JO) -> seq.Enrollment:
    return seq.enroll(1, who, nurture, rules.settings, enrolled_by="anna", now=utc(at))


def run_step(rules: model.RuleSet, nurture: model.Sequence, e: seq.Enrollment, who: seq.Recipient = JO
             ) -> tuple[seq.Decision, seq.Enrollment]:  # fmt: skip
    """Run the due step at its due time, as the loop would, and return the decision and the next state."""
    assert e.next_due_at is not None
    now = e.next_due_at
    decision = seq.decide(e, nurture, who, rules, now, unsubscribe_url=UNSUBSCRIBE)
    if isinstance(decision, seq.SendEmail):
        nxt = seq.after_step(e, nurture, who, rules.settings, now, message_id=f"<m{e.step_index}@example.com>",
                             subject=decision.rendered.subject)  # fmt: skip
    elif isinstance(decision, seq.CreateTask):
        nxt = seq.task_created(e)
    else:
        nxt = e
    return decision, nxt


# --- enrolling ------------------------------------------------------------------------------


def test_the_first_step_runs_at_enrollment_inside_the_send_window(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    assert enrolled(rules, nurture, "2026-11-23T08:00:00").next_due_at == utc("2026-11-23T08:00:00")  # 09:00 Berlin
    # enrolled Friday 18:30 Berlin: the first mail waits for Monday 08:00 Berlin
    assert enrolled(rules, nurture, "2026-11-27T17:30:00").next_due_at == utc("2026-11-30T07:00:00")


def test_refusals_each_say_why(rules: model.RuleSet, nurture: model.Sequence) -> None:
    def refuse(who: seq.Recipient, live: bool = False, unsub: dt.datetime | None = None) -> str | None:
        return seq.refusal(who, nurture, live_in_sequence=live, unsubscribed_at=unsub)

    assert refuse(JO) is None
    assert refuse(JO, live=True) == "jo@example.org is already active in inbound-nurture"
    assert refuse(JO, unsub=utc("2026-11-20T10:15:00")) == (
        "jo@example.org unsubscribed on 2026-11-20 10:15 UTC and cannot be enrolled"
    )
    assert refuse(dataclasses.replace(JO, type="deal")) == "record L1 is a deal; inbound-nurture enrolls lead, contact"
    assert refuse(dataclasses.replace(JO, deleted=True)) == "record L1 is deleted"
    assert refuse(dataclasses.replace(JO, email=None)) == "record L1 has no valid email address"


# --- a sequence's life ----------------------------------------------------------------------------


def test_a_whole_sequence_with_business_days_a_reply_thread_and_a_task(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    e = enrolled(rules, nurture, "2026-11-23T08:00:00")  # Monday
    intro, e = run_step(rules, nurture, e)
    assert isinstance(intro, seq.SendEmail)
    assert intro.to == "jo@example.org" and intro.sender.email == "anna@example.com"
    assert intro.rendered.subject == "Quick question, Jo" and intro.in_reply_to is None
    assert "Hi Jo," in intro.rendered.text and intro.rendered.html is not None
    assert e.next_due_at == utc("2026-11-25T08:00:00")  # 2 business days: Wednesday

    nudge, e = run_step(rules, nurture, e)
    assert isinstance(nudge, seq.SendEmail)
    assert nudge.in_reply_to == "<m0@example.com>" and nudge.rendered.subject == "Re: Quick question, Jo"
    assert e.next_due_at == utc("2026-11-26T08:00:00")  # 1 business day: Thursday

    call, e = run_step(rules, nurture, e)
    assert isinstance(call, seq.CreateTask)
    assert (call.subject, call.type, call.owner) == ("Call the lead", "call", "anna")
    assert call.due_at == utc("2026-11-26T12:00:00")
    assert e.awaiting_task and e.next_due_at is None
    assert seq.decide(e, nurture, JO, rules, utc("2026-12-31T12:00:00")) == seq.Wait(None)  # waits for the task

    e = seq.after_step(e, nurture, JO, rules.settings, utc("2026-11-27T16:00:00"))  # done Friday 17:00 Berlin
    assert e.next_due_at == utc("2026-12-01T16:00:00")  # 2 business days after completion: Tuesday

    promo, e = run_step(rules, nurture, e)
    assert isinstance(promo, seq.SendEmail)
    assert promo.in_reply_to is None and promo.rendered.subject == "What teams like yours do with Example"
    assert f"Unsubscribe: {UNSUBSCRIBE}" in promo.rendered.text
    assert e.status is seq.Status.COMPLETED and e.steps_done == 4 and e.ended_at == utc("2026-12-01T16:00:00")
    assert seq.decide(e, nurture, JO, rules, utc("2027-01-01T00:00:00")) == seq.Wait(None)


def test_nothing_happens_before_the_step_is_due(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = enrolled(rules, nurture, "2026-11-27T17:30:00")
    assert seq.decide(e, nurture, JO, rules, utc("2026-11-28T12:00:00")) == seq.Wait(utc("2026-11-30T07:00:00"))


def test_holidays_are_skipped(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = enrolled(rules, nurture, "2026-12-23T09:00:00")  # Wednesday before Christmas, 10:00 Berlin
    _, e = run_step(rules, nurture, e)
    # 2 business days: the 24th, then not the 25th, 26th (holidays) or the weekend: Monday the 28th
    assert e.next_due_at == utc("2026-12-28T09:00:00")


def without_a_window(rules: model.RuleSet, nurture: model.Sequence) -> tuple[model.RuleSet, model.Sequence]:
    """The example rules on a Monday-Friday calendar (DE-BE holidays) without a send window, and inbound-nurture
    with a plain `1 day` wait before its second step."""
    calendars = dict(rules.settings.calendars)
    calendars["default"] = dataclasses.replace(calendars["default"], send_window=None)
    ruleset = dataclasses.replace(rules, settings=dataclasses.replace(rules.settings, calendars=calendars))
    daily = dataclasses.replace(nurture.steps[1], wait=timing.parse_duration("1 day"))
    return ruleset, dataclasses.replace(nurture, steps=(nurture.steps[0], daily, *nurture.steps[2:]))


def test_without_a_send_window_a_plain_day_after_friday_goes_out_on_monday(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    # issue 18, item 5: sequence mail goes out on working days only, windowed or not
    ruleset, daily = without_a_window(rules, nurture)
    e = seq.enroll(1, JO, daily, ruleset.settings, enrolled_by="anna", now=utc("2026-11-27T10:00:00"))  # Friday
    assert e.next_due_at == utc("2026-11-27T10:00:00")
    decision, e = run_step(ruleset, daily, e)
    assert isinstance(decision, seq.SendEmail)
    assert e.next_due_at == utc("2026-11-29T23:00:00")  # not Saturday 11:00: Monday 00:00 Berlin
    # enrolled on a Saturday, the first mail waits for Monday too
    saturday = seq.enroll(2, JO, daily, ruleset.settings, enrolled_by="anna", now=utc("2026-11-28T10:00:00"))
    assert saturday.next_due_at == utc("2026-11-29T23:00:00")
    # a step found due on a Sunday (retried, or the daemon was down) waits for Monday
    retried = seq.retry(seq.block(e, "x"), utc("2026-11-29T12:00:00"))
    assert seq.decide(retried, daily, JO, ruleset, utc("2026-11-29T12:00:00")) == seq.Wait(utc("2026-11-29T23:00:00"))


def test_without_a_send_window_a_plain_day_that_ends_on_a_holiday_waits_for_the_next_working_day(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    ruleset, daily = without_a_window(rules, nurture)
    e = seq.enroll(1, JO, daily, ruleset.settings, enrolled_by="anna", now=utc("2026-12-24T09:00:00"))  # Thursday
    _, e = run_step(ruleset, daily, e)
    # 25 and 26 December are holidays in Berlin, then the weekend: Monday 28 December, 00:00 Berlin
    assert e.next_due_at == utc("2026-12-27T23:00:00")


def test_the_recipients_time_zone_sets_the_window(rules: model.RuleSet, nurture: model.Sequence) -> None:
    ny = dataclasses.replace(JO, timezone="America/New_York")
    e = seq.enroll(1, ny, nurture, rules.settings, enrolled_by="anna", now=utc("2026-11-23T08:00:00"))
    assert e.next_due_at == utc("2026-11-23T13:00:00")  # 08:00 in New York


# --- what blocks, what stops -------------------------------------------------------------------------


def test_a_missing_merge_field_blocks_with_its_name(rules: model.RuleSet, nurture: model.Sequence) -> None:
    nameless = dataclasses.replace(JO, fields={"email": "jo@example.org"})
    e = enrolled(rules, nurture, "2026-11-23T08:00:00", nameless)
    assert seq.decide(e, nurture, nameless, rules, utc("2026-11-23T08:00:00")) == seq.Block(
        "missing merge field record.first_name"
    )
    blocked = seq.block(e, "missing merge field record.first_name")
    assert blocked.status is seq.Status.BLOCKED and seq.decide(
        blocked, nurture, JO, rules, utc("2027-01-01")
    ) == seq.Wait(None)
    again = seq.retry(blocked, utc("2026-11-24T09:00:00"))
    assert again.status is seq.Status.ACTIVE
    assert isinstance(seq.decide(again, nurture, JO, rules, utc("2026-11-24T09:00:00")), seq.SendEmail)


def test_a_line_break_in_merge_data_never_reaches_a_header(rules: model.RuleSet, nurture: model.Sequence) -> None:
    hostile = dataclasses.replace(JO, fields={"first_name": "Jo\r\nBcc: all@example.net"})
    e = enrolled(rules, nurture, "2026-11-23T08:00:00", hostile)
    decision = seq.decide(e, nurture, hostile, rules, utc("2026-11-23T08:00:00"))
    assert isinstance(decision, seq.Block) and "line break" in decision.reason


def test_an_unknown_sender_blocks(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = dataclasses.replace(enrolled(rules, nurture, "2026-11-23T08:00:00"), enrolled_by="zoe")
    assert seq.decide(e, nurture, JO, rules, utc("2026-11-23T08:00:00")) == seq.Block(
        "the sender 'zoe' is not a user in Settings.users"
    )
    by_owner = dataclasses.replace(nurture, sender=model.Sender(model.SenderKind.RECORD_OWNER))
    ownerless = dataclasses.replace(JO, owner=None)
    decision = seq.decide(e, by_owner, ownerless, rules, utc("2026-11-23T08:00:00"))
    assert decision == seq.Block("the sequence sends as the record owner and record L1 has no owner")


def test_a_template_removed_while_people_wait_blocks_not_crashes(rules: model.RuleSet, nurture: model.Sequence) -> None:
    without = dataclasses.replace(rules, templates={k: v for k, v in rules.templates.items() if k != "intro"})
    e = enrolled(rules, nurture, "2026-11-23T08:00:00")
    assert seq.decide(e, nurture, JO, without, utc("2026-11-23T08:00:00")) == seq.Block(
        "template 'intro' no longer exists"
    )


def test_a_stop_ends_a_live_enrollment_once(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = enrolled(rules, nurture, "2026-11-23T08:00:00")
    stopped = seq.stop(e, "replied", utc("2026-11-24T10:00:00"))
    assert (stopped.status, stopped.reason, stopped.next_due_at) == (seq.Status.STOPPED, "replied", None)
    assert stopped.ended_at == utc("2026-11-24T10:00:00") and not stopped.awaiting_task
    assert seq.stop(stopped, "later", utc("2026-11-25T10:00:00")) == stopped  # an ended one stays as it ended
    by_hand = seq.stop(seq.block(e, "x"), "stopped by anna", utc("2026-11-24T10:00:00"))
    assert by_hand.status is seq.Status.STOPPED and by_hand.reason == "stopped by anna"


# --- edits -----------------------------------------------------------------------------------------


def edited(nurture: model.Sequence, on_edit: model.OnEdit, steps: tuple[model.Step, ...]) -> model.Sequence:
    return dataclasses.replace(nurture, on_edit=on_edit, steps=steps,
                               source=dataclasses.replace(nurture.source, hash="new" * 21 + "x"))  # fmt: skip


def test_pinned_enrollments_stay_on_their_version(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = dataclasses.replace(enrolled(rules, nurture, "2026-11-23T08:00:00"), step_index=1, steps_done=1)
    new = edited(nurture, model.OnEdit.PIN, nurture.steps[::-1])
    assert seq.follow_edit(e, nurture, new) == e


def test_next_step_moves_them_after_the_step_they_finished_by_id(rules: model.RuleSet, nurture: model.Sequence) -> None:
    intro, nudge, call, promo = nurture.steps
    e = dataclasses.replace(enrolled(rules, nurture, "2026-11-23T08:00:00"), step_index=2, steps_done=2)  # nudge done
    reordered = edited(nurture, model.OnEdit.NEXT_STEP, (intro, nudge, promo))  # the call step is gone
    moved = seq.follow_edit(e, nurture, reordered)
    assert moved.version == reordered.source.hash and moved.step_index == 2  # promo, after nudge
    inserted = edited(nurture, model.OnEdit.NEXT_STEP, (dataclasses.replace(intro, id="welcome"), intro, nudge,
                                                         call, promo))  # fmt: skip
    assert seq.follow_edit(e, nurture, inserted).step_index == 3  # still after nudge
    renamed = edited(nurture, model.OnEdit.NEXT_STEP, (intro, dataclasses.replace(nudge, id="bump"), call, promo))
    assert seq.follow_edit(e, nurture, renamed).step_index == 2  # no such step: the same position


def test_a_template_with_an_unsubscribe_link_needs_one(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = dataclasses.replace(enrolled(rules, nurture, "2026-11-23T08:00:00"), step_index=3, steps_done=3)
    assert seq.decide(e, nurture, JO, rules, utc("2026-11-23T08:00:00")) == seq.Block(
        "missing merge field unsubscribe_url"
    )


def test_a_step_run_after_the_window_closed_waits_for_it_to_open(rules: model.RuleSet, nurture: model.Sequence) -> None:
    e = enrolled(rules, nurture, "2026-11-23T08:00:00")  # due Monday 09:00 Berlin
    late = utc("2026-11-23T17:30:00")  # the daemon was down until 18:30 Berlin
    assert seq.decide(e, nurture, JO, rules, late) == seq.Wait(utc("2026-11-24T07:00:00"))  # Tuesday 08:00 Berlin
    retried = seq.retry(seq.block(e, "x"), utc("2026-11-28T22:00:00"))  # retried on a Saturday night
    assert seq.decide(retried, nurture, JO, rules, utc("2026-11-28T22:00:00")) == seq.Wait(utc("2026-11-30T07:00:00"))


# --- the unsubscribe footer --------------------------------------------------------------------


def test_a_rule_with_an_unsubscribe_link_adds_the_footer_in_its_language(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    assert nurture.unsubscribe_language == "de"
    decision, _ = run_step(rules, nurture, enrolled(rules, nurture, "2026-11-23T08:00:00"))

    assert isinstance(decision, seq.SendEmail)
    assert decision.rendered.text.endswith(
        f"\n\n--\nSie möchten diese E-Mails nicht mehr erhalten? Abmelden: {UNSUBSCRIBE}\n"
    )
    assert decision.rendered.text.count(UNSUBSCRIBE) == 1


def test_the_footer_is_not_added_twice_nor_without_a_link_nor_without_the_rule(
    rules: model.RuleSet, nurture: model.Sequence
) -> None:
    promo = dataclasses.replace(enrolled(rules, nurture, "2026-11-23T08:00:00"), step_index=3, steps_done=3)
    shown = seq.decide(promo, nurture, JO, rules, utc("2026-11-23T08:00:00"), unsubscribe_url=UNSUBSCRIBE)
    assert isinstance(shown, seq.SendEmail)
    assert shown.rendered.text.count(UNSUBSCRIBE) == 1  # the template shows the link itself
    assert "Abmelden" not in shown.rendered.text

    e = enrolled(rules, nurture, "2026-11-23T08:00:00")
    unsigned = seq.decide(e, nurture, JO, rules, utc("2026-11-23T08:00:00"), unsubscribe_url=None)
    assert isinstance(unsigned, seq.SendEmail) and "Abmelden" not in unsigned.rendered.text

    plain = dataclasses.replace(nurture, unsubscribe_language=None)
    without = seq.decide(e, plain, JO, rules, utc("2026-11-23T08:00:00"), unsubscribe_url=UNSUBSCRIBE)
    assert isinstance(without, seq.SendEmail) and UNSUBSCRIBE not in without.rendered.text


@pytest.mark.parametrize(("language", "words"), [("en", "Unsubscribe"), ("fr", "Se désabonner"), ("ja", "配信停止")])
def test_the_html_footer_goes_before_the_end_of_the_body_with_an_escaped_link(language: str, words: str) -> None:
    url = "https://t.example.com/u/a&b"
    html = "<html><body><p>Hi</p></BODY></html>"
    out = unsubscribe.add_footer(render.Rendered("s", "Hi\n", html), language, url)

    assert out.html is not None
    assert out.html.startswith("<html><body><p>Hi</p><p style=")
    assert out.html.endswith(f'<a href="https://t.example.com/u/a&amp;b">{words}</a></p></BODY></html>')
    assert out.text == f"Hi\n\n--\n{unsubscribe.FOOTERS[language][0]} {words}: {url}\n"


def test_a_template_cannot_change_what_the_next_message_sees(rules: model.RuleSet, nurture: model.Sequence) -> None:
    intro = rules.templates[nurture.steps[0].template or ""]
    meddling = dataclasses.replace(intro, text="{{ sender.update({'name': 'Mallory'}) }}" + intro.text)
    changed = dataclasses.replace(rules, templates={**rules.templates, intro.name: meddling})
    e = enrolled(rules, nurture, "2026-11-23T08:00:00")

    blocked = seq.decide(e, nurture, JO, changed, utc("2026-11-23T08:00:00"))
    after = seq.decide(e, nurture, JO, rules, utc("2026-11-23T08:00:00"))

    assert blocked == seq.Block("a template tried to change sender; merge values are read-only")
    assert isinstance(after, seq.SendEmail) and "Mallory" not in after.rendered.text
    assert after.sender.name == "Anna Berger"


def _template(text: str, html: str | None = None) -> model.Template:
    return model.Template(model.Source("t.yaml", 1, "h"), "t", "Hi {{ record.first_name }}", text, html)


def test_merge_fields_are_read_before_dict_methods_and_the_sandbox_still_guards_the_rest() -> None:
    merge = render.context({"first_name": "Jo", "items": "three chairs", "company": "<b>ACME</b>"}, sender=None,
                           owner=None, organization=None, unsubscribe_url=None)  # fmt: skip
    out = render.render(_template("{{ record.items }} for {{ record.company }}", "<p>{{ record.company }}</p>"),
                        merge)  # fmt: skip
    assert (out.subject, out.text) == ("Hi Jo", "three chairs for <b>ACME</b>")
    assert out.html == "<p>&lt;b&gt;ACME&lt;/b&gt;</p>"  # the html part still escapes merge data
    with pytest.raises(render.RenderError, match=r"^missing merge field record\.title$"):
        render.render(_template("{{ record.title }}"), merge)
    with pytest.raises(render.RenderError, match=r"cannot be rendered: .*unsafe"):
        render.render(_template("{{ record.__class__.__mro__ }}"), merge)
    assert render.render(_template("{{ record.get('first_name') }}"), merge).text == "Jo"  # methods still work


def test_jinja_globals_are_there_for_the_templates_that_name_them_and_a_template_cannot_change_the_merge() -> None:
    merge = render.context({"first_name": "Jo"}, sender=None, owner=None, organization=None, unsubscribe_url=None)
    counted = _template("{% for i in range(3) %}{{ i }}{% endfor %} {% set ns = namespace(n=0) %}"
                        "{% set ns.n = ns.n + 2 %}{{ ns.n }}")  # fmt: skip
    assert render.render(counted, merge).text == "012 2"
    # a template's own variables shadow a merge name for that template only
    assert render.render(_template("{% set record = 'x' %}{{ record }}"), merge).text == "x"
    assert render.render(_template("{{ record.first_name }}"), merge).text == "Jo"
    assert set(merge) == {"record", "sender", "owner", "organization"}
    # a merge value named like a global wins over it, as with Jinja's own render
    shadowed = {**merge, "range": "my range"}
    assert render.render(_template("{{ range }}"), shadowed).text == "my range"


def test_enrollments_made_and_changed_without_init_equal_the_dataclass_s_own() -> None:
    at = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
    made = seq.Enrollment(7, "L1", "jo@example.org", "s", "h1", "anna", seq.Status.ACTIVE, 0, 0, at, at)
    values = [getattr(made, f.name) for f in dataclasses.fields(seq.Enrollment)]
    assert seq.enrollment_from(values) == made and hash(seq.enrollment_from(values)) == hash(made)
    changed = seq.evolve(made, step_index=1, reason="x")
    assert changed == dataclasses.replace(made, step_index=1, reason="x") and made.step_index == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.step_index = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field colour"):
        seq.evolve(made, colour="red")
    with pytest.raises(ValueError):
        seq.enrollment_from(values[:-1])
