"""What the commands print: tables with a header row whose ids and addresses stay whole, piped output not wrapped,
counts with the right plural, `--format json` (and `--json`) on every list and show command, and `outbox show`."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from outreach import cli
from outreach.cli import output
from tests import worlds
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

LONG = "someone.with.a.rather.long.address.for.a.table@subdomain.example-company.example.org"
CSV = (
    "id,type,email,first_name,company,country,owner,source\n"
    "L1,lead,jo@example.org,Jo,Fjord AS,NO,anna,\n"
    f"L2,lead,{LONG},Kim,,DE,ben,\n"
    "D1,deal,deal@example.com,Dee,,DE,anna,\n"
)
TUESDAY = "2026-11-24T08:00:00Z"  # 09:00 in Berlin, in the send window


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example rules applied, three records imported; L1 and L2 enrolled in inbound-nurture and their intros
    sent into var/outbox."""
    for name in ("OUTREACH_SECRET", "OUTREACH_DB", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    worlds.scratch(tmp_path, monkeypatch, CSV)
    assert run("apply", "rules").exit_code == 0
    enrolled = run("enroll", "inbound-nurture", "--record", "L1", "--record", "L2", "--as", "anna", "--now", TUESDAY)
    assert enrolled.exit_code == 0, enrolled.output
    assert run("run", "--once", "--now", TUESDAY).exit_code == 0
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def text(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def as_json(*args: str) -> Any:
    """The command's JSON, which `--format json` and `--json` print alike (but for the random keys of signed
    links in a preview)."""
    result = run(*args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    alias = run(*args, "--json")
    assert (alias.exit_code, _LINK.sub("", alias.stdout)) == (result.exit_code, _LINK.sub("", result.stdout))
    return json.loads(result.stdout)


_LINK = re.compile(r"/u/[A-Za-z0-9_-]{48}")


def header(out: str) -> list[str]:
    """The names of a table's header row."""
    line = next(line for line in out.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.split("┃")[1:-1]]


def test_piped_records_list_prints_a_long_address_whole_on_one_line_under_headers(here: Path) -> None:
    out = text("records", "list")

    assert header(out) == ["id", "type", "email", "owner", "stage", "in stage since"]
    (line,) = [line for line in out.splitlines() if "L2" in line]
    assert LONG in line
    assert max(len(line) for line in out.splitlines()) > 80  # wider than a terminal's default: not wrapped


def test_in_a_narrow_terminal_ids_and_addresses_stay_whole_and_free_text_folds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("NO_COLOR", "1")
    subject = "a subject of many words that cannot all fit on one line of a narrow terminal"
    output.print_tables(output.table(["id", "recipient", "subject"], [["1234567", LONG, subject]], free=["subject"]))

    lines = screen.getvalue().splitlines()
    assert any(LONG in line and "1234567" in line for line in lines)
    assert not any(subject in line for line in lines)  # folded
    assert "".join(line.split("│")[3].strip() + " " for line in lines if line.startswith("│")).split() == \
        subject.split()  # fmt: skip


def test_records_list_says_first_n_of_m_when_the_limit_cut_it(here: Path) -> None:
    assert "3 records" in text("records", "list").splitlines()[0]
    assert "first 2 of 3 records" in text("records", "list", "--limit", "2").splitlines()[0]
    assert text("records", "list", "--limit", "3").splitlines()[0].strip() == "3 records"
    assert text("records", "list", "--type", "deal").splitlines()[0].strip() == "1 record"


def test_the_lists_have_headers(here: Path) -> None:
    assert header(text("enrollments", "list")) == ["id", "record", "sequence", "status", "steps done", "details"]
    out = text("outbox", "list")
    assert header(out) == ["id", "state", "sent or queued", "recipient", "subject", "last error"]
    assert any(LONG in line for line in out.splitlines())
    assert header(text("sequences", "list")) == [
        "sequence", "steps", "enrolled", "active", "blocked", "completed", "stopped",
    ]  # fmt: skip
    assert header(text("tasks", "list")) == ["id", "record", "subject", "type", "due", "owner", "done"]
    assert header(text("records", "show", "L2")) == ["field", "value"]


def test_counts_have_the_right_plural() -> None:
    out = text("validate", "--summary", str(ROOT / "rules"))
    assert "1 records" not in out and "1 record, 2 events" in out
    assert "2 users, 11 custom fields" in out
    assert (output.plural(1, "record"), output.plural(20000, "record")) == ("1 record", "20,000 records")
    assert output.plural(3, "address", "addresses") == "3 addresses"


def test_data_in_a_table_is_shown_as_text_never_as_markup_or_terminal_control() -> None:
    # issue 18, item 3: ESC/OSC sequences, C1 controls and bidi overrides written out; rich markup is text
    from rich.console import Console

    hostile = "\x1b]8;;https://evil.example\x1b\\[link=https://evil.example]x[/link]\x9b2J\u202e[/]"
    table = output.table(["field", "value"], [["first_name", hostile], ["notes", "one\ntwo"]], title="record [b]L1",
                         free=["value"])  # fmt: skip
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    console.print(table)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b]8" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert "\\x1b]8;;https://evil.example\\x1b\\[link=https://evil.example]x[/link]\\x9b2J\\u202e[/]" in shown
    assert "record [b]L1" in shown and "one" in shown and "two" in shown  # a line break in a cell stays
    assert output.visible("a\r\nb\tc\x7f") == "a\\r\\nb\\tc\\x7f"
    assert output.json_safe(json.dumps("\x9b\u2066x\u00e9", ensure_ascii=False)) == '"\\u009b\\u2066x\u00e9"'


def test_every_list_and_show_command_prints_json(here: Path) -> None:
    assert [r["id"] for r in as_json("records", "list")] == ["D1", "L1", "L2"]
    assert as_json("records", "show", "L2")["record"]["email"] == LONG
    enrolled = as_json("enrollments", "list")
    assert [(e["record_id"], e["status"], e["steps_done"]) for e in enrolled] == [
        ("L1", "active", 1),
        ("L2", "active", 1),
    ]
    by_name = {s["sequence"]: s for s in as_json("sequences", "list")}
    assert by_name["inbound-nurture"]["active"] == 2 and by_name["inbound-nurture"]["steps"][0] == "intro"
    assert by_name["welcome"]["enrolled"] == 0
    assert as_json("sequences", "stats", "inbound-nurture")["enrolled"] == 2
    sent = as_json("outbox", "list")
    assert [(m["id"], m["state"], m["recipient"]) for m in sent] == [(1, "sent", "jo@example.org"), (2, "sent", LONG)]
    assert sent[0]["sent_at"] == "2026-11-24T08:00:00+00:00"
    assert as_json("tasks", "list") == []
    assert as_json("suppressions", "list") == {"total": 0, "suppressions": []}
    assert [p["name"] for p in as_json("processes", "list")] == ["partner-leads"]
    assert as_json("processes", "overdue") == []
    assert [d["sent_today"] for d in as_json("status")["daemons"]] == [2]


def test_preview_prints_every_step_as_json_and_exits_1_on_a_problem(here: Path) -> None:
    planned = as_json("preview", "inbound-nurture", "--record", "D1", "--as", "anna", "--start", TUESDAY)
    assert planned["refusal"] == "record D1 is a deal; inbound-nurture enrolls lead, contact"
    assert planned["problems"] == 1
    assert run("preview", "inbound-nurture", "--record", "D1", "--as", "anna", "--json").exit_code == 1
    steps = planned["steps"]
    assert [(s["number"], s["step"], s["kind"]) for s in steps] == [
        (1, "intro", "email"), (2, "nudge", "email"), (3, "call", "task"), (4, "promo", "email"),
    ]  # fmt: skip
    assert steps[0]["at"] == "2026-11-24T08:00:00+00:00" and steps[0]["subject"] == "Quick question, Dee"
    assert steps[0]["from"] == "anna@example.com" and steps[0]["to"] == "deal@example.com"
    assert steps[2]["owner"] == "anna" and steps[2]["due_at"].startswith("2026-")


def test_simulate_prints_its_timeline_as_json() -> None:
    rules = str(ROOT / "rules")
    told = as_json("simulate", "inbound-nurture", "--start", "2026-11-27T15:00:00Z", "--rules", rules)
    assert (told["sequence"], told["record"], told["mails"], told["tasks"]) == ("inbound-nurture", "SAMPLE", 2, 1)
    assert told["timeline"][0] == {"at": "2026-11-27T15:00:00+00:00", "what": "enrolled in inbound-nurture by anna"}
    assert told["outcome"].startswith("still active")
    reminded = as_json("simulate", "--process", "partner-leads", "--stage", "New", "--entered", "2026-11-21T10:00:00Z",
                       "--until", "2026-12-02", "--rules", rules)  # fmt: skip
    assert reminded["reminders"] == 2 and reminded["timeline"][1]["what"] == "overdue in New"


def test_json_and_another_format_together_are_a_usage_error(here: Path) -> None:
    result = run("outbox", "list", "--json", "--format", "text")
    assert result.exit_code == 2 and "--json means --format json" in result.output
    assert run("validate", "--json", str(ROOT / "rules")).stdout == "[]\n"
    assert json.loads(run("plan", "--json", "rules").stdout)["has_changes"] is False
    assert run("plan", "--json", "--format", "markdown", "rules").exit_code == 1  # plan's usage errors exit 1


def test_outbox_show_prints_the_message_as_stored_and_its_state_on_stderr(here: Path) -> None:
    with sqlite3.connect(here / "var" / "outreach.db") as db:
        (stored,) = db.execute("SELECT message FROM outbox WHERE id = 2").fetchone()
    db.close()

    result = run("outbox", "show", "2")

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == stored
    assert f"To: {LONG}\r\n".encode() in stored
    assert result.stderr == "message 2: sent 2026-11-24 08:00 UTC, 1 attempt, queued 2026-11-24 08:00 UTC\n"
    shown = as_json("outbox", "show", "2")
    assert shown["message"].encode() == stored
    assert (shown["id"], shown["state"], shown["attempts"], shown["last_error"]) == (2, "sent", 1, None)
    assert (shown["recipient"], shown["enrollment_id"], shown["step_id"]) == (LONG, 2, "intro")


def test_outbox_show_of_an_unknown_message_is_an_error(here: Path) -> None:
    result = run("outbox", "show", "99")
    assert result.exit_code == 1 and result.output == "Error: no message 99\n"
