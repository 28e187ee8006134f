"""`outreach processes list|overdue` and the stage durations of `records show`, as a sales manager uses them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.mail import transport as mail_transport
from outreach.store import Store
from tests import worlds

pytestmark = pytest.mark.acceptance

# Saturday 21 November 2026: L2 and L3 enter New (2 days), L5 Qualified (2 weeks); L4 is Won (no max).
CSV = (
    "id,type,email,first_name,company,owner,stage,stage_entered_at\n"
    "L2,lead,kim@example.net,Kim,Fjord AS,anna,New,2026-11-21T10:00:00Z\n"
    "L3,lead,ola@example.com,Ola,Nordlys AS,ben,New,2026-11-21T12:00:00Z\n"
    "L4,lead,won@example.com,Wim,Won AG,anna,Won,2026-11-01T10:00:00Z\n"
    "L5,lead,lea@example.org,Lea,Alpen AG,anna,Qualified,2026-11-21T10:00:00Z\n"
    "C1,contact,sam@example.com,Sam,Jones & Co,anna,New,2026-11-01T10:00:00Z\n"
)
TUESDAY_NOON = "2026-11-24T12:00:00Z"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return worlds.scratch(tmp_path, monkeypatch, CSV)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


async def add_task(here: Path, record_id: str, when: dt.datetime) -> None:
    """A task created at a given time (the `tasks add` command uses the real clock)."""
    store = await Store.open(f"sqlite:///{here / 'var' / 'outreach.db'}")
    try:
        await store.add_task(record_id, "Call", now=when)
    finally:
        await store.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def test_processes_list_shows_stages_timing_and_how_many_are_overdue(here: Path) -> None:
    code, out = run("processes", "list", "--now", "2026-11-23T09:00:00Z")
    assert code == 0, out
    assert out == (
        "partner-leads (lead)\n"
        "  stages     New 2 days, Contacted 1 week, Qualified 2 weeks, Won (no max)\n"
        '  reminders  daily run "0 7 * * *" UTC; first the day after a record becomes overdue, then every 1 week; '
        "to record_owner; template overdue-reminder\n"
        "  overdue    0 records\n"
    )
    code, out = run("processes", "list", "--now", TUESDAY_NOON, "--json")
    (p,) = json.loads(out)
    assert p["overdue"] == 2 and p["stages"][3] == {"name": "Won", "max": None}
    assert p["follow_up"] == {"enabled": True, "every": "1 week", "at": "0 7 * * *", "timezone": "UTC",
                              "to": "record_owner", "template": "overdue-reminder", "digest": False}  # fmt: skip


def test_processes_overdue_lists_records_with_their_next_reminder_and_what_stopped_them(here: Path) -> None:
    code, out = run("processes", "overdue", "--now", "2026-11-23T09:00:00Z")
    assert (code, out) == (0, "partner-leads: no overdue records\n")
    assert run("run", "--once", "--now", "2026-11-24T07:00:00Z")[0] == 0  # reminds anna of L2, ben of L3
    assert sorted(m["To"] for m in mail_transport.read_all(here / "var" / "outbox")) == [
        "anna@example.com", "ben@example.com"]  # fmt: skip
    asyncio.run(add_task(here, "L3", at("2026-11-24T09:30:00")))  # ben creates a task on Tuesday morning
    code, out = run("processes", "overdue", "partner-leads", "--now", TUESDAY_NOON)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "partner-leads: 2 overdue records"
    assert lines[1].split() == ["record", "owner", "stage", "in", "stage", "overdue", "since", "next", "reminder",
                                "sent", "stopped"]  # fmt: skip
    assert lines[2].split() == ["L2", "anna", "New", "3", "days", "2026-11-23", "10:00", "UTC", "2026-12-01", "07:00",
                                "UTC", "1"]  # fmt: skip
    assert lines[3].split() == ["L3", "ben", "New", "3", "days", "2026-11-23", "12:00", "UTC", "1", "stopped:", "task",
                                "2026-11-24", "09:30", "UTC"]  # fmt: skip
    code, out = run("processes", "overdue", "partner-leads", "--now", "2026-11-24T09:00:00Z")  # before the task
    assert out.splitlines()[3].split()[8:] == ["2026-12-01", "07:00", "UTC", "1"]
    code, out = run("processes", "overdue", "--json", "--now", "2026-12-31T12:00:00Z")
    found = {r["record"]: r for r in json.loads(out)}
    assert set(found) == {"L2", "L3", "L5"}  # L4 is Won (no max), C1 is a contact: not in the process
    assert found["L3"]["stopped"] == "task" and found["L3"]["next_reminder"] is None
    assert found["L2"]["reminders_sent"] == 1 and found["L2"]["next_reminder"] == "2026-12-01T07:00:00+00:00"
    assert found["L5"]["overdue_since"] == "2026-12-05T10:00:00+00:00" and found["L5"]["reminders_sent"] == 0


def test_processes_overdue_refuses_an_unknown_process(here: Path) -> None:
    code, out = run("processes", "overdue", "partner-lead")
    assert code == 2 and "no sales process 'partner-lead' (processes: partner-leads)" in out


def test_records_show_has_the_stage_durations_of_the_record(here: Path) -> None:
    run("run", "--once", "--now", "2026-11-24T07:00:00Z")
    code, out = run("records", "show", "L2", "--now", TUESDAY_NOON)
    assert code == 0, out
    assert "stage durations" in out and "partner-leads" in out
    shown = json.loads(run("records", "show", "L2", "--now", TUESDAY_NOON, "--json")[1])
    (d,) = shown["stage_durations"]
    assert (d["process"], d["stage"], d["in_stage"], d["max"], d["overdue_since"], d["next_reminder"]) == (
        "partner-leads", "New", "3 days", "2 days", "2026-11-23T10:00:00+00:00", "2026-12-01T07:00:00+00:00")  # fmt: skip
    assert [e["kind"] for e in shown["activity"]] == ["reminder_sent"]
    assert "│ reminder " in out and "partner-leads / New: reminder 1" in out  # the activity names it
    # not overdue yet, never overdue, and not in the process at all
    (d,) = json.loads(run("records", "show", "L5", "--now", TUESDAY_NOON, "--json")[1])["stage_durations"]
    assert (d["overdue"], d["overdue_since"]) == (False, "2026-12-05T10:00:00+00:00")
    code, out = run("records", "show", "L5", "--now", TUESDAY_NOON)
    assert "│ not yet " in out
    (d,) = json.loads(run("records", "show", "L4", "--json")[1])["stage_durations"]
    assert (d["max"], d["overdue_since"]) == (None, None)
    assert json.loads(run("records", "show", "C1", "--json")[1])["stage_durations"] == []
    assert "stage durations" not in run("records", "show", "C1")[1]
