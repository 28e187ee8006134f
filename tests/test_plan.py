"""`outreach plan` and `outreach apply`: what a rule change does, before and after it is applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from outreach import cli
from outreach.app import rules as app_rules
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
