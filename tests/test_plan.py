"""`outreach plan` and `outreach apply`: what a rule change does, before and after it is applied."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from outreach import cli
from outreach.app import campaigns as app_campaigns
from outreach.app import rules as app_rules
from outreach.engine import campaigns as engine_campaigns
from outreach.review import base as review
from outreach.review import plan
from outreach.rules import validate
from outreach.store import Store, migrate, tables
from tests.conftest import ROOT
from tests.worlds import NOW


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


def ruleset(path: Path) -> validate.model.RuleSet:
    result = validate.validate([str(path)])
    assert result.ruleset is not None
    return result.ruleset


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.unit
def test_everything_is_added_to_an_empty_store(rules: Path) -> None:
    p = plan.make_plan(ruleset(rules), {}, {})
    assert [c.action for c in p.changes] == ["add"] * 15 and p.unchanged == 0
    assert [c.kind for c in p.changes][:2] == ["Settings", "Template"]
    assert "RuleTest" not in {c.kind for c in p.changes}  # tests are run, not applied
    assert plan.format_text(p).endswith("Plan: 15 to add, 0 to change, 0 to remove (0 unchanged).")


@pytest.mark.unit
def test_a_pinned_sequence_change_keeps_live_enrollments_on_their_version(rules: Path) -> None:
    before = ruleset(rules)
    active = {k: (v[0], v[1]) for k, v in app_rules.definitions(before).items()}
    old = before.sequences["inbound-nurture"].source.hash
    edit(
        rules / "sequences" / "inbound-nurture.yaml",
        "wait: 2 business days, thread: reply",
        "wait: 3 business days, thread: reply",
    )
    after = ruleset(rules)
    new = after.sequences["inbound-nurture"].source.hash
    p = plan.make_plan(after, active, {("inbound-nurture", old): 132, ("other", "x"): 5})
    (change,) = p.changes
    assert (change.action, change.kind, change.name) == ("change", "Sequence", "inbound-nurture")
    assert "-  wait: 2 business days\n+  wait: 3 business days" in change.diff
    assert change.effects == (
        f"sequence inbound-nurture: 132 live enrollments stay on version {old[:8]} (on_edit: pin); "
        f"new enrollments use {new[:8]}",
    )


@pytest.mark.unit
def test_next_step_moves_them_after_their_next_step(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    old = before.sequences["inbound-nurture"].source.hash
    edit(rules / "sequences" / "inbound-nurture.yaml", "on_edit: pin", "on_edit: next_step")
    p = plan.make_plan(ruleset(rules), active, {("inbound-nurture", old): 3})
    assert "3 live enrollments on version" in p.changes[0].effects[0]
    assert "after their next step (on_edit: next_step)" in p.changes[0].effects[0]


@pytest.mark.unit
def test_removing_a_sequence_says_how_many_will_be_stopped(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    old = before.sequences["inbound-nurture"].source.hash
    active[("Sequence", "old-promo")] = ("feed" * 16, {"kind": "Sequence", "name": "old-promo"})
    p = plan.make_plan(before, active, {("old-promo", "feed" * 16): 17, ("inbound-nurture", old): 2})
    (change,) = p.changes
    assert (change.action, change.name) == ("remove", "old-promo")
    assert change.effects == ("sequence old-promo removed: 17 live enrollments will be stopped",)


@pytest.mark.unit
def test_a_template_change_counts_the_enrollments_whose_next_send_it_changes(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    seq = before.sequences["inbound-nurture"].source.hash
    edit(
        rules / "templates" / "nurture.yaml", "Would a 20-minute call next week help you", "Would a short call help you"
    )
    p = plan.make_plan(ruleset(rules), active, {("inbound-nurture", seq): 40})
    (change,) = p.changes
    assert change.effects == (
        "template intro changed: applies to the next send of 40 live enrollments (sequences inbound-nurture)",
    )
    assert "-  Would a 20-minute call next week help you" in change.diff  # whole template lines, as written


@pytest.mark.unit
def test_markdown_and_json_carry_the_same_plan(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    edit(rules / "templates" / "campaigns.yaml", "a few seats are left", "only a few seats are left")
    p = plan.make_plan(ruleset(rules), active, {})
    md = plan.format_markdown(p)
    assert md.startswith("### outreach plan\n\nPlan: 0 to add, 1 to change, 0 to remove (14 unchanged).")
    assert "| ~ | Template | `webinar-last-call` |" in md and "```diff" in md
    assert "used by campaign spring-webinar when it sends" in md
    data = json.loads(plan.format_json(p))
    assert data["has_changes"] and data["changes"][0]["name"] == "webinar-last-call"


@pytest.mark.unit
def test_the_semantic_diff_names_items_by_their_id() -> None:
    old = {"steps": [{"id": "a", "email": "x"}, {"id": "b", "task": "Call"}], "stages": [{"name": "New"}]}
    new = {"steps": [{"id": "b", "task": "Call", "due_within": "4h"}, {"id": "a", "email": "y"}],
           "stages": [{"name": "New", "max": "1 week"}, {"name": "Won"}]}  # fmt: skip
    assert review.describe("Sequence", old, new) == [
        "step 1 (b) due_within added: 4h",
        "step 2 (a) email: x → y",
        "steps order: a, b → b, a",
        "stage New max added: 1 week",
        "added stage Won",
    ]


# --- the commands, on a real SQLite store ---------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


@pytest.mark.acceptance
def test_plan_apply_plan_round_trip_with_terraform_exit_codes(rules: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    code, out = run("plan", "--db", db, str(rules))
    assert code == 2 and "Plan: 15 to add" in out
    code, out = run("apply", "--db", db, str(rules))
    assert code == 0 and "Applied: 15 to add" in out
    code, out = run("plan", "--db", db, str(rules))
    assert code == 0 and "No changes: 15 definitions" in out
    edit(rules / "views" / "dach-qualified.yaml", "[DE, AT, CH]", "[DE, AT, CH, LI]")
    code, out = run("plan", "--db", db, "--format", "json", str(rules))
    assert code == 2 and json.loads(out)["changes"][0]["name"] == "dach-qualified"


@pytest.mark.acceptance
def test_apply_of_a_removed_sequence_stops_its_enrollments(rules: Path, tmp_path: Path) -> None:
    import asyncio

    db = f"sqlite:///{tmp_path / 'o.db'}"
    assert run("apply", "--db", db, str(rules))[0] == 0
    seq_hash = ruleset(rules).sequences["inbound-nurture"].source.hash

    async def enroll() -> None:
        store = await Store.open(db)
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(tables.records).values(
                    id="L1", type="lead", email="jo@example.org", fields={}, created_at=NOW, updated_at=NOW
                )
            )
            await conn.execute(sa.insert(tables.enrollments).values(
                record_id="L1", email="jo@example.org", sequence="inbound-nurture", sequence_hash=seq_hash,
                enrolled_by="anna", status="active", step_index=1, steps_done=1, started_at=NOW))  # fmt: skip
        await store.close()

    asyncio.run(enroll())
    (rules / "sequences" / "inbound-nurture.yaml").unlink()
    shutil.rmtree(rules / "tests")  # its RuleTests name the removed sequence
    code, out = run("plan", "--db", db, str(rules))
    assert code == 2 and "sequence inbound-nurture removed: 1 live enrollment will be stopped" in out
    assert run("apply", "--db", db, str(rules))[0] == 0

    async def status() -> tuple[str, str]:
        store = await Store.open(db)
        async with store.engine.connect() as conn:
            row = (await conn.execute(sa.select(tables.enrollments.c.status, tables.enrollments.c.reason))).one()
        await store.close()
        return row[0], row[1]

    assert asyncio.run(status()) == ("stopped", "sequence removed")


@pytest.mark.acceptance
def test_an_invalid_rule_set_is_not_applied(rules: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    edit(rules / "sequences" / "inbound-nurture.yaml", "email: promo", "email: promotion")
    code, out = run("apply", "--db", db, str(rules))
    assert code == 1 and "unknown template 'promotion'" in out
    assert not (tmp_path / "o.db").exists()


@pytest.mark.acceptance
def test_db_upgrade_and_current(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    code, out = run("db", "upgrade", "--db", db, "--rules", str(tmp_path / "none"))
    head = migrate.head()
    assert code == 0 and f"database at revision {head}" in out
    code, out = run("db", "current", "--db", db, "--rules", str(tmp_path / "none"))
    assert code == 0 and f"revision {head} (head {head})" in out


@pytest.mark.acceptance
def test_a_bad_database_url_is_one_line(rules: Path) -> None:
    code, out = run("plan", "--db", "postgresql://nobody@127.0.0.1:1/nothing", str(rules))
    assert code == 1
    assert out.startswith("Error: cannot connect to postgresql://nobody@127.0.0.1:1/nothing:")
    assert len(out.strip().splitlines()) == 1


@pytest.mark.unit
def test_the_url_comes_from_db_then_environment_then_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.cli import options

    settings = ruleset(ROOT / "rules").settings
    assert options.database_url(None, settings) == "sqlite:///var/outreach.db"
    monkeypatch.setenv("OUTREACH_DB", "sqlite:///from-env.db")
    assert options.database_url(None, settings) == "sqlite:///from-env.db"
    assert options.database_url("sqlite:///from-flag.db", settings) == "sqlite:///from-flag.db"


@pytest.mark.acceptance
def test_a_usage_error_of_plan_exits_1_so_that_2_always_means_changes(tmp_path: Path) -> None:
    assert run("plan", "--format", "xml", str(ROOT / "rules"))[0] == 1
    code, out = run("plan", str(tmp_path / "nothing-here"))
    assert code == 1 and "no rule directory" in out


# --- campaigns: what applying does to their runs --------------------------------------------------------------

WEBINAR_AT = dt.datetime(2027, 3, 2, 18, 0, tzinfo=dt.UTC)  # the example campaign's send_at, 10:00 in California


def webinar_run(status: str = "scheduled", send_at: dt.datetime = WEBINAR_AT, digest: str = "old",
                name: str = "spring-webinar") -> engine_campaigns.Run:  # fmt: skip
    return engine_campaigns.Run(name, digest, "lead", "anna", engine_campaigns.RunStatus(status), send_at,
                                reason="stopped by anna" if status == "stopped" else None)  # fmt: skip


def campaign_effects(p: plan.Plan) -> tuple[str, ...]:
    (change,) = [c for c in p.changes if c.kind == "Campaign"]
    return change.effects


@pytest.mark.unit
def test_plan_says_a_change_inside_the_freeze_stops_the_campaign(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    edit(rules / "campaigns" / "spring-webinar.yaml", "after: 3 days", "after: 4 days")
    after = ruleset(rules)
    runs = {"spring-webinar": webinar_run()}
    p = plan.make_plan(after, active, {}, runs=runs, now=WEBINAR_AT - dt.timedelta(minutes=10))
    assert campaign_effects(p) == (
        "campaign spring-webinar will be stopped: its definition changed 10 min before its send time "
        "2027-03-02T18:00:00+00:00, inside limits.campaign_freeze (15 minutes): start it again to send it",
    )
    assert "=> campaign spring-webinar will be stopped: its definition changed 10 min" in plan.format_text(p)
    early = plan.make_plan(after, active, {}, runs=runs, now=WEBINAR_AT - dt.timedelta(minutes=20))
    assert campaign_effects(early) == (
        "campaign spring-webinar: scheduled to send 2027-03-02T10:00:00-08:00 (changed more than "
        "limits.campaign_freeze, 15 minutes, before it)",
    )
    # Without the store's runs, the plan says what may happen.
    assert "within limits.campaign_freeze" in campaign_effects(plan.make_plan(after, active, {}))[0]


@pytest.mark.unit
def test_plan_says_what_applying_does_to_a_campaign_in_each_state(rules: Path) -> None:
    before = ruleset(rules)
    active = dict(app_rules.definitions(before))
    edit(rules / "campaigns" / "spring-webinar.yaml", "send_at: 2027-03-02T10:00:00-08:00",
         "send_at: 2027-03-03T10:00:00-08:00")  # fmt: skip
    after = ruleset(rules)
    now = WEBINAR_AT - dt.timedelta(days=1)

    def said(status: str) -> str:
        (effect,) = campaign_effects(plan.make_plan(after, active, {}, runs={"spring-webinar": webinar_run(status)},
                                                    now=now))  # fmt: skip
        return effect

    assert said("scheduled") == ("campaign spring-webinar: rescheduled from 2027-03-02T18:00:00+00:00 to "
                                 "2027-03-03T10:00:00-08:00")  # fmt: skip
    assert said("stopped") == ("campaign spring-webinar stays stopped (stopped by anna): its owner starts it again "
                               "(`outreach campaigns start spring-webinar`)")  # fmt: skip
    assert said("deleted").startswith("campaign spring-webinar was deleted and stays so")
    assert said("sent").startswith("campaign spring-webinar is sent: the mail already rendered stays as it is")
    # Added with a send_at that has passed: it goes at once.
    late = plan.make_plan(after, {}, {}, runs={}, now=WEBINAR_AT + dt.timedelta(days=2))
    assert campaign_effects(late) == ("campaign spring-webinar: send_at 2027-03-03T10:00:00-08:00 is in the past: it "
                                      "goes out as soon as it is applied",)  # fmt: skip


@pytest.mark.unit
def test_plan_says_apply_would_refuse_a_slot_the_store_already_fills(rules: Path) -> None:
    """Five lead campaigns the store has scheduled at the webinar's minute (limits.campaigns_per_slot: 5): adding
    the webinar makes six, and apply would refuse the rules."""
    others = {f"promo-{i}": webinar_run(name=f"promo-{i}", send_at=WEBINAR_AT + dt.timedelta(seconds=i))
              for i in range(5)}  # fmt: skip
    p = plan.make_plan(ruleset(rules), {}, {}, runs=others, now=WEBINAR_AT - dt.timedelta(days=1))
    assert p.refusals == (
        "apply would refuse these rules and apply nothing: 6 lead campaigns are scheduled for "
        "2027-03-02T18:00:00+00:00 (promo-0, promo-1, promo-2, promo-3, promo-4, spring-webinar); "
        "limits.campaigns_per_slot allows 5",
    )
    assert f"! {p.refusals[0]}\nPlan: 15 to add" in plan.format_text(p)
    assert "**Apply would refuse these rules:**" in plan.format_markdown(p)
    assert json.loads(plan.format_json(p))["refusals"] == list(p.refusals)
    # One of them stopped: room for the webinar.
    others["promo-0"] = dataclasses.replace(others["promo-0"], status=engine_campaigns.RunStatus.STOPPED)
    assert plan.make_plan(ruleset(rules), {}, {}, runs=others, now=WEBINAR_AT - dt.timedelta(days=1)).refusals == ()


@pytest.mark.store
async def test_plan_reads_the_runs_through_the_application_layer(backend: tuple[str, str | None], rules: Path) -> None:
    url, schema = backend
    before = ruleset(rules)
    store = await Store.open(url, fields=before.settings.fields, upgrade=True, schema=schema)
    try:
        await app_rules.apply(store, before, now=WEBINAR_AT - dt.timedelta(days=1))
        edit(rules / "campaigns" / "spring-webinar.yaml", "after: 3 days", "after: 4 days")
        active = {k: (d.hash, d.body) for k, d in (await store.active_definitions()).items()}
        runs = await app_campaigns.runs(store)
        assert runs["spring-webinar"].status is engine_campaigns.RunStatus.SCHEDULED
        p = plan.make_plan(ruleset(rules), active, {}, runs=runs, now=WEBINAR_AT - dt.timedelta(minutes=5))
        assert campaign_effects(p)[0].startswith("campaign spring-webinar will be stopped: its definition changed 5 min")
    finally:
        await store.close()


@pytest.mark.acceptance
def test_plan_before_apply_says_what_the_freeze_and_the_slot_limit_will_do(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    from outreach.cli import options

    clock = [WEBINAR_AT - dt.timedelta(days=1, seconds=-10)]  # 18:00:10 the day before
    monkeypatch.setattr(options, "now", lambda: clock[0])
    db = f"sqlite:///{tmp_path / 'o.db'}"
    edit(rules / "settings.yaml", "campaigns_per_slot: 5", "campaigns_per_slot: 1")
    flash = "kind: Campaign\nname: {}\nmodule: lead\nowner: anna\nto: {{view: dach-qualified}}\ntemplate: webinar-invite\n"
    (rules / "campaigns" / "flash.yaml").write_text(flash.format("flash"), encoding="utf-8")  # no send_at: at once
    assert run("apply", "--db", db, str(rules))[0] == 0

    # A second campaign sent as it is applied, in the same minute: the slot of the first, which the store holds.
    (rules / "campaigns" / "flash-2.yaml").write_text(flash.format("flash-2"), encoding="utf-8")
    clock[0] += dt.timedelta(seconds=20)
    code, out = run("plan", "--db", db, str(rules))
    assert code == 2
    assert ("! apply would refuse these rules and apply nothing: 2 lead campaigns are scheduled for "
            "2027-03-01T18:00:00+00:00 (flash, flash-2); limits.campaigns_per_slot allows 1") in out  # fmt: skip
    code, out = run("apply", "--db", db, str(rules))
    assert code == 1 and "nothing was applied: 2 lead campaigns are scheduled for" in out
    (rules / "campaigns" / "flash-2.yaml").unlink()

    # Ten minutes before the webinar goes, an edit would stop it: plan says so, and apply does it.
    edit(rules / "campaigns" / "spring-webinar.yaml", "after: 3 days", "after: 4 days")
    clock[0] = WEBINAR_AT - dt.timedelta(minutes=10)
    code, out = run("plan", "--db", db, str(rules))
    assert code == 2 and "=> campaign spring-webinar will be stopped: its definition changed 10 min before" in out
    code, out = run("apply", "--db", db, str(rules))
    assert code == 0 and "=> campaign spring-webinar will be stopped" in out

    async def status() -> str:
        store = await Store.open(db)
        try:
            return str((await app_campaigns.runs(store))["spring-webinar"].status)
        finally:
            await store.close()

    import asyncio

    assert asyncio.run(status()) == "stopped"
