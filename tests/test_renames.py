"""Renaming a definition (`renamed_from`): the people in a sequence go on where they are, a sales process keeps its
reminders, old versions that name a renamed template still run; `plan` (and `plan --base`) shows a rename as a
rename; `validate` refuses an earlier name that is defined too, the definition's own, or taken twice; a RuleTest's
`apply` can rename."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.app import enrolling, scheduler
from outreach.app import rules as app_rules
from outreach.engine import sequences as seq
from outreach.mail import transport as mail_transport
from outreach.review import base as review
from outreach.review import plan
from outreach.rules import model, validate
from outreach.store import Store
from tests.conftest import ROOT, write_rule_test
from tests.worlds import MONDAY, PEOPLE, RULES, Row, seeded_store

NURTURE = ROOT / "rules" / "sequences" / "inbound-nurture.yaml"
RENAMED = "name: webinar-nurture\nrenamed_from: inbound-nurture"


def rules_with(tmp: Path, edits: dict[str, tuple[str, str]]) -> model.RuleSet:
    """The example rules (without their tests) with text replaced: {file under rules/: (old, new)}."""
    where = tmp / "renamed-rules"
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(ROOT / "rules", where, ignore=shutil.ignore_patterns("tests"))
    for name, (old, new) in edits.items():
        path = where / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{name} has no {old!r}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = validate.validate([str(where)])
    assert result.errors == [], result.errors
    assert result.ruleset is not None
    return result.ruleset


def renamed_nurture(tmp: Path, *more: tuple[str, str]) -> model.RuleSet:
    """The example rules with inbound-nurture renamed to webinar-nurture, and `more` edits of it (old, new)."""
    was = NURTURE.read_text(encoding="utf-8")
    text = was.replace("name: inbound-nurture", RENAMED, 1)
    for old, new in more:
        assert old in text
        text = text.replace(old, new, 1)
    return rules_with(tmp, {"sequences/inbound-nurture.yaml": (was, text)})


async def enroll(store: Store, ruleset: model.RuleSet, record_id: str, sequence: str, at: dt.datetime) -> int:
    got = await enrolling.enroll(store, ruleset, await store.get_record(record_id), ruleset.sequences[sequence],
                                 enrolled_by="anna", now=at)  # fmt: skip
    assert isinstance(got, seq.Enrollment), got
    return got.id


def by_id(found: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {e["id"]: e for e in found}


async def plan_of(store: Store, ruleset: model.RuleSet) -> plan.Plan:
    active = {k: (d.hash, d.body) for k, d in (await store.active_definitions()).items()}
    return plan.make_plan(ruleset, active, await store.enrollment_counts())


# --- the store, on both backends --------------------------------------------------------------------------------


@pytest.mark.store
async def test_a_renamed_sequence_keeps_its_people_where_they_are(backend: tuple[str, str | None],
                                                                   tmp_path: Path) -> None:  # fmt: skip
    store = await seeded_store(backend, PEOPLE)  # L1 Jo, L2 Kim (no first name), W1 Mila
    try:
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        ids = [await enroll(store, RULES, rid, "inbound-nurture", MONDAY) for rid in ("L1", "L2", "W1")]
        await sched.tick(MONDAY)  # the intros of Jo and Mila; Kim's blocks (no first name)
        before = by_id(await store.enrollments())
        assert [before[i]["status"] for i in ids] == ["active", "blocked", "active"]
        old_hash = RULES.sequences["inbound-nurture"].source.hash

        renamed = renamed_nurture(tmp_path)
        shown = await plan_of(store, renamed)
        [change] = shown.changes
        assert (change.action, change.kind, change.name, change.old_name) == ("rename", "Sequence",
                                                                              "webinar-nurture", "inbound-nurture")
        assert change.effects == ("sequence inbound-nurture renamed to webinar-nurture: its 3 live enrollments go "
                                  "on where they are, under the new name",)  # fmt: skip

        done = await app_rules.apply(store, renamed, now=MONDAY + dt.timedelta(hours=1))

        assert done["renamed"] == [("Sequence", "webinar-nurture")] and not done["removed"] and not done["added"]
        after = by_id(await store.enrollments())
        new_hash = renamed.sequences["webinar-nurture"].source.hash
        for i in ids:  # the same enrollments, where they were, under the new name, on the version that renames
            assert after[i] == {**before[i], "sequence": "webinar-nurture", "sequence_hash": new_hash}
        active = await store.active_definitions()
        assert ("Sequence", "inbound-nurture") not in active and active[("Sequence", "webinar-nurture")].hash == new_hash
        assert (await store.definition_body("Sequence", "webinar-nurture", old_hash) or {})["name"] == "inbound-nurture"
        assert (await plan_of(store, renamed)).changes == ()

        # two business days later Jo and Mila get the nudge, a reply in their thread; nobody starts again
        sched = scheduler.Scheduler(store, renamed, sched.transport)
        report = await sched.tick(MONDAY + dt.timedelta(days=2))
        assert report.queued == 2 and report.enrolled == 0
        sent = await store.outbox()
        assert sorted(m["step_id"] for m in sent) == ["intro", "intro", "nudge", "nudge"]
        assert all(m["subject"] == "Re: Quick question, Jo" for m in sent if m["step_id"] == "nudge"
                   and m["recipient"] == "jo@example.org")  # fmt: skip

        # once applied everywhere, `renamed_from` is taken out: an edit that changes nothing for the people in it
        settled = rules_with(tmp_path, {"sequences/inbound-nurture.yaml": (NURTURE.read_text(encoding="utf-8"),
                                        NURTURE.read_text(encoding="utf-8").replace("name: inbound-nurture",
                                                                                    "name: webinar-nurture"))})  # fmt: skip
        [change] = (await plan_of(store, settled)).changes
        final = settled.sequences["webinar-nurture"].source.hash
        assert change.effects == (f"sequence webinar-nurture: only its renamed_from changed; its 3 live enrollments "
                                  f"on {new_hash[:8]} move to {final[:8]}, which runs the same steps",)  # fmt: skip
        await app_rules.apply(store, settled, now=MONDAY + dt.timedelta(days=2, hours=1))
        assert [e["sequence_hash"] for e in await store.enrollments()] == [final, final, final]
    finally:
        await store.close()


@pytest.mark.store
async def test_a_rename_with_an_edit_pins_people_to_the_version_they_run(backend: tuple[str, str | None],
                                                                        tmp_path: Path) -> None:  # fmt: skip
    store = await seeded_store(backend, PEOPLE)
    try:
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        jo = await enroll(store, RULES, "L1", "inbound-nurture", MONDAY)
        await sched.tick(MONDAY)
        old_hash = RULES.sequences["inbound-nurture"].source.hash
        renamed = renamed_nurture(tmp_path, ("wait: 2 business days, thread: reply", "wait: 3 business days, "
                                                                                     "thread: reply"))  # fmt: skip

        [change] = (await plan_of(store, renamed)).changes
        assert change.action == "rename"
        assert change.effects[1].startswith("sequence webinar-nurture: 1 live enrollment stay on version "
                                            f"{old_hash[:8]} (on_edit: pin)")  # fmt: skip
        await app_rules.apply(store, renamed, now=MONDAY + dt.timedelta(hours=1))

        e = by_id(await store.enrollments())[jo]
        assert (e["sequence"], e["sequence_hash"], e["status"]) == ("webinar-nurture", old_hash, "active")
        # the pinned version is read under the new name: the nudge goes after 2 business days, not 3
        sched = scheduler.Scheduler(store, renamed, sched.transport)
        assert (await sched.tick(MONDAY + dt.timedelta(days=2))).queued == 1
    finally:
        await store.close()


@pytest.mark.store
async def test_a_version_pinned_before_a_template_was_renamed_sends_it_by_its_new_name(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    store = await seeded_store(backend, PEOPLE)
    try:
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        jo = await enroll(store, RULES, "L1", "inbound-nurture", MONDAY)
        await sched.tick(MONDAY)
        renamed = rules_with(tmp_path, {
            "templates/nurture.yaml": ("name: follow-up", "name: nudge-mail\nrenamed_from: follow-up"),
            "sequences/inbound-nurture.yaml": ("email: follow-up", "email: nudge-mail"),
        })  # fmt: skip
        shown = {c.name: c for c in (await plan_of(store, renamed)).changes}
        assert shown["nudge-mail"].action == "rename" and shown["nudge-mail"].old_name == "follow-up"
        await app_rules.apply(store, renamed, now=MONDAY + dt.timedelta(hours=1))

        # Jo stays on the version whose nudge step names `follow-up` (on_edit: pin); it sends `nudge-mail`
        sched = scheduler.Scheduler(store, renamed, sched.transport)
        report = await sched.tick(MONDAY + dt.timedelta(days=2))
        assert (report.queued, report.blocked) == (1, 0)
        e = by_id(await store.enrollments())[jo]
        assert e["sequence_hash"] == RULES.sequences["inbound-nurture"].source.hash
        assert [m["template"] for m in await store.outbox()] == ["intro", "nudge-mail"]
    finally:
        await store.close()


@pytest.mark.store
async def test_a_renamed_sales_process_keeps_its_reminders_where_they_are(backend: tuple[str, str | None],
                                                                         tmp_path: Path) -> None:  # fmt: skip
    overdue = Row(6, "P1", "lead", "pia@example.org", {"owner": "anna", "stage": "New",
                                                         "stage_entered_at": MONDAY - dt.timedelta(days=5)})  # fmt: skip
    store = await seeded_store(backend, (overdue,))
    try:
        tuesday = dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)  # the daily run
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        assert (await sched.tick(tuesday)).reminders == 1
        [state] = await store.reminder_states("partner-leads")

        renamed = rules_with(tmp_path, {"processes/partner-leads.yaml": (
            "name: partner-leads", "name: partner-pipeline\nrenamed_from: partner-leads")})  # fmt: skip
        [change] = (await plan_of(store, renamed)).changes
        assert change.effects == ("sales process partner-leads renamed to partner-pipeline: its reminders go on "
                                  "where they are",)  # fmt: skip
        await app_rules.apply(store, renamed, now=tuesday + dt.timedelta(hours=1))

        assert await store.reminder_states("partner-leads") == []
        assert [{**s, "process": "partner-leads"} for s in await store.reminder_states("partner-pipeline")] == [state]
        sched = scheduler.Scheduler(store, renamed, sched.transport)
        # the next day's run sends no first reminder again: the next one is a week after the first
        assert (await sched.tick(tuesday + dt.timedelta(days=1))).reminders == 0
        assert (await sched.tick(tuesday + dt.timedelta(days=7))).reminders == 1
    finally:
        await store.close()


# --- plan, plan --base, validate (pure) ------------------------------------------------------------------------


@pytest.mark.unit
def test_plan_shows_a_rename_as_a_rename_in_text_markdown_and_json(tmp_path: Path) -> None:
    renamed = renamed_nurture(tmp_path)
    active = {k: (s.hash, s.body) for k, s in RULES.live_definitions().items()}
    old, new = RULES.sequences["inbound-nurture"].source.hash, renamed.sequences["webinar-nurture"].source.hash
    shown = plan.make_plan(renamed, active, {("inbound-nurture", old): 2})

    text = plan.format_text(shown).splitlines()
    assert text[0] == f"> Sequence webinar-nurture (renamed from inbound-nurture; {old[:8]} -> {new[:8]})"
    assert "    --- Sequence/inbound-nurture (applied)" in text and "    +++ Sequence/webinar-nurture (rules)" in text
    assert ("    => sequence inbound-nurture renamed to webinar-nurture: its 2 live enrollments go on where they are, "
            "under the new name") in text  # fmt: skip
    assert text[-1] == "Plan: 0 to add, 0 to change, 0 to remove, 1 to rename (14 unchanged)."
    markdown = plan.format_markdown(shown)
    assert f"| > | Sequence | `webinar-nurture` (renamed from `inbound-nurture`) | `{new[:8]}` |" in markdown
    [change] = json.loads(plan.format_json(shown))["changes"]
    assert (change["action"], change["name"], change["old_name"]) == ("rename", "webinar-nurture", "inbound-nurture")
    assert "removed" not in plan.format_text(shown) and "stopped" not in plan.format_text(shown)


@pytest.mark.unit
def test_a_rename_of_something_never_applied_here_is_added_and_said_so(tmp_path: Path) -> None:
    renamed = renamed_nurture(tmp_path)
    active = {k: (s.hash, s.body) for k, s in RULES.live_definitions().items() if k[1] != "inbound-nurture"}
    [change] = plan.make_plan(renamed, active, {}).changes
    assert (change.action, change.name) == ("add", "webinar-nurture")
    assert change.effects[-1] == ("sequence webinar-nurture: renamed_from inbound-nurture, but no sequence of that "
                                  "name is applied here: added as a new one")  # fmt: skip


@pytest.mark.unit
def test_plan_base_shows_a_rename_with_the_timelines_before_and_after(tmp_path: Path) -> None:
    renamed = renamed_nurture(tmp_path)
    found = review.compare(RULES, renamed, ref="main", commit="0" * 40)
    [change] = found.changes
    assert (change.action, change.name, change.old_name) == ("rename", "webinar-nurture", "inbound-nurture")
    assert change.details == ("name: inbound-nurture → webinar-nurture", "renamed_from added: inbound-nurture")
    assert change.before == change.after  # the same steps at the same times
    text = review.format_text(found)
    assert text.startswith("> Sequence webinar-nurture (renamed from inbound-nurture; ")
    assert text.rstrip().endswith("0 to add, 0 to change, 0 to remove, 1 to rename (14 unchanged).")


@pytest.mark.unit
def test_model_renames_take_the_first_earlier_name_applied_and_only_once() -> None:
    wanted = {("Sequence", "c"): ("b", "a"), ("Sequence", "d"): ("a",)}
    assert model.renames(wanted, {("Sequence", "a")}) == {("Sequence", "a"): "c"}  # a database that skipped b
    assert model.renames(wanted, {("Sequence", "a"), ("Sequence", "b")}) == {("Sequence", "b"): "c",
                                                                            ("Sequence", "a"): "d"}  # fmt: skip
    assert model.renames(wanted, {("Sequence", "c"), ("Sequence", "a")}) == {("Sequence", "a"): "d"}
    assert model.renames(wanted, {("View", "a")}) == {}


# --- RuleTests ----------------------------------------------------------------------------------------------


RENAME_TEST = """
kind: RuleTest
name: renaming inbound-nurture while Jo is in it
start: 2026-11-23T08:00:00Z
until: 2026-12-05T00:00:00Z
records:
  - {id: L1, type: lead, email: jo@example.org, first_name: Jo, owner: anna}
events:
  - {at: 2026-11-23T08:00:00Z, enroll: {sequence: inbound-nurture, record: L1, as: anna}}
  - at: 2026-11-24T09:00:00Z
    apply:
      definitions:
        - kind: Sequence
          name: webinar-nurture
          renamed_from: inbound-nurture
          unsubscribe_link: {language: de}
          steps:
            - {id: intro, email: intro}
            - {id: nudge, email: follow-up, wait: 2 business days, thread: reply}
            - {id: call, task: Call the lead, task_type: call, wait: 1 business day, due_within: 4h}
            - {id: promo, email: promo, wait: 2 business days, thread: new}
  - {at: 2026-11-24T10:00:00Z, enroll: {sequence: webinar-nurture, record: L1, as: anna}}
expect:
  sent:
    - {at: 2026-11-23T08:00:00Z, to: jo@example.org, template: intro}
    - {at: 2026-11-25T08:00:00Z, to: jo@example.org, template: follow-up, thread: reply}
  tasks:
    - {record: L1, subject: Call the lead, at: 2026-11-26T08:00:00Z}
  enrollments:
    - {record: L1, sequence: webinar-nurture, status: active}
"""


@pytest.mark.store
def test_a_rule_test_can_rename_a_sequence_and_its_people_go_on(bare_rules: Path) -> None:
    # Jo is neither stopped nor enrolled again: the second enroll is refused (she is active in it already)
    write_rule_test(bare_rules, RENAME_TEST, "rename.yaml")
    result = CliRunner().invoke(cli.main, ["test", "--format", "json", str(bare_rules)])
    assert result.exit_code == 0, result.output
    [test] = json.loads(result.output)["tests"]
    assert test["notices"] == ["Tue 2026-11-24 10:00 UTC  enroll L1 in webinar-nurture refused: jo@example.org is "
                               "already active in webinar-nurture"]  # fmt: skip


@pytest.mark.acceptance
def test_an_event_after_the_rename_that_names_the_old_sequence_is_told_its_new_name(bare_rules: Path) -> None:
    write_rule_test(bare_rules, RENAME_TEST.replace("enroll: {sequence: webinar-nurture", "enroll: {sequence: "
                                                    "inbound-nurture"), "rename.yaml")  # fmt: skip
    result = CliRunner().invoke(cli.main, ["validate", str(bare_rules)])
    assert result.exit_code == 1
    assert ("unknown sequence 'inbound-nurture': it is renamed to 'webinar-nurture' (renamed_from) "
            "[events[2].enroll.sequence]") in result.output  # fmt: skip


@pytest.mark.unit
def test_the_kinds_that_hold_no_state_rename_too(tmp_path: Path) -> None:
    renamed = rules_with(tmp_path, {
        "views/dach-qualified.yaml": ("name: dach-qualified", "name: dach-leads\nrenamed_from: [dach, dach-qualified]"),
        "campaigns/spring-webinar.yaml": ("view: dach-qualified", "view: dach-leads"),
    })  # fmt: skip
    active = {k: (s.hash, s.body) for k, s in RULES.live_definitions().items()}
    shown = {c.name: c for c in plan.make_plan(renamed, active, {}).changes}
    assert shown["dach-leads"].action == "rename" and shown["dach-leads"].old_name == "dach-qualified"
    assert dataclasses.asdict(shown["spring-webinar"])["action"] == "change"


@pytest.mark.store
async def test_the_rename_plan_of_rules_md_is_real(backend: tuple[str, str | None], tmp_path: Path) -> None:
    """docs/rules.md shows `outreach plan` of inbound-nurture renamed while two people are in it."""
    page = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    shown = page.split("```text\n$ outreach plan rules/\n", 1)[1].split("```", 1)[0]
    store = await seeded_store(backend, PEOPLE)
    try:
        for rid in ("L1", "W1"):
            await enroll(store, RULES, rid, "inbound-nurture", MONDAY)
        assert plan.format_text(await plan_of(store, renamed_nurture(tmp_path))) + "\n" == shown
    finally:
        await store.close()
