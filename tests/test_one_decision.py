"""One code path decides what a step does: `outreach preview`, `outreach simulate`, a RuleTest and the daemon
(`outreach run`) are each asked about the same steps of the same rule set, as a user asks them, and say the same.

The rule set has tracking but no secret set (the daemon signs with the one it keeps in its state directory, the
RuleTests and simulate with their own, preview with the daemon's). The records are those whose mail the transport
would refuse (a line separator pasted into a name, an address whose local part needs SMTPUTF8), one without the
field the subject needs, and one that is fine; the fine one's second step replies in the thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.review import ruletests
from outreach.rules import validate

pytestmark = pytest.mark.acceptance

START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
NEXT_DAY = START + dt.timedelta(days=1)
RULES = """
kind: Settings
timezone: UTC
calendars: {default: {workdays: [mon, tue, wed, thu, fri, sat, sun]}}
organization: {name: Example GmbH, email: sales@example.com}
users: [{id: anna, name: Anna Berger, email: anna@example.com}]
record_fields: {first_name: string}
transport: {type: maildir, maildir: out}
tracking: {base_url: "https://t.example.com", secret_env: OUTREACH_FOUR_PATHS_SECRET}
---
kind: Template
name: hello
subject: "Hello {{ record.first_name }}"
text: "Hi {{ record.first_name }}, ..."
---
kind: Template
name: again
subject: "Hello {{ record.first_name }}"
text: "Once more, {{ record.first_name }}."
---
kind: Sequence
name: greet
applies_to: [lead]
unsubscribe_link: {language: en}
steps:
  - {id: hello, email: hello, wait: immediately}
  - {id: again, email: again, wait: 1 day, thread: reply}
"""
RECORDS: dict[str, dict[str, Any]] = {
    "R1": {"email": "jo@example.org", "first_name": "Jo"},
    "R2": {"email": "kim@example.org", "first_name": "Kim\u2028Bcc: all@example.net"},  # pasted from a word processor
    "R3": {"email": "jörg@example.de", "first_name": "Jörg"},  # a non-ASCII local part: SMTPUTF8, not sent
    "R4": {"email": "noname@example.org"},  # the subject needs record.first_name
}
ASKED = [("R1", 1), ("R1", 2), ("R2", 1), ("R3", 1), ("R4", 1)]  # (record, step): what every path is asked


def _record(rid: str) -> dict[str, Any]:
    return {"id": rid, "type": "lead", "owner": "anna", **RECORDS[rid]}


def _ruletest() -> str:
    records = "".join(f"  - {json.dumps(_record(rid), ensure_ascii=True)}\n" for rid in RECORDS)
    events = "".join(f"  - {{at: {START.isoformat()}, enroll: {{sequence: greet, record: {rid}, as: anna}}}}\n"
                     for rid in RECORDS)  # fmt: skip
    return (f"kind: RuleTest\nname: four paths\nstart: {START.isoformat()}\nuntil: {(NEXT_DAY + dt.timedelta(hours=1)).isoformat()}\n"
            f"records:\n{records}events:\n{events}expect:\n  enrollments:\n"
            "    - {record: R1, sequence: greet, status: completed}\n")  # fmt: skip


def outreach(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli.main, list(args))
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert result.exit_code in ok and not unexpected, f"outreach {' '.join(args)}: {result.output} {result.exception!r}"
    return result.output


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(textwrap.dedent(RULES).lstrip(), encoding="utf-8")
    (tmp_path / "rules" / "test.yaml").write_text(_ruletest(), encoding="utf-8")
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(_record(rid)) + "\n" for rid in RECORDS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTREACH_FOUR_PATHS_SECRET", raising=False)
    monkeypatch.delenv("OUTREACH_DB", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    outreach("records", "import", "records.jsonl")  # preview reads them, and the daemon enrolls them
    outreach("apply", "rules")
    return tmp_path


Said = dict[tuple[str, int], tuple[Any, ...]]  # (record, step) -> ("email", at, subject) | ("blocked", reason)


def preview_says() -> Said:
    said: Said = {}
    for rid in RECORDS:
        shown = json.loads(outreach("preview", "greet", "--record", rid, "--as", "anna", "--start",
                                    START.isoformat(), "--format", "json", ok=(0, 1)))  # fmt: skip
        for step in shown["steps"]:
            at = dt.datetime.fromisoformat(step["at"])
            said[(rid, step["number"])] = (("email", at, step["subject"]) if step["kind"] == "email"
                                           else ("blocked", step["reason"]))  # fmt: skip
    return said


_SIMULATED_MAIL = re.compile(r"^step (\d+) \S+: mail .*?, (?:new thread|reply): (\".*\")$")


def simulate_says() -> Said:
    said: Said = {}
    for rid in RECORDS:
        shown = json.loads(outreach("simulate", "greet", "--start", START.isoformat(), "--until",
                                    (NEXT_DAY + dt.timedelta(hours=1)).isoformat(), "--record-json",
                                    json.dumps(_record(rid)), "--as", "anna", "--format", "json"))  # fmt: skip
        for line in shown["timeline"]:
            mail = _SIMULATED_MAIL.match(line["what"])
            if mail:
                said[(rid, int(mail.group(1)))] = ("email", dt.datetime.fromisoformat(line["at"]),
                                                   json.loads(mail.group(2)))  # fmt: skip
        if shown["outcome"].startswith("blocked ("):
            said[(rid, shown["mails"] + 1)] = ("blocked", shown["outcome"].removeprefix("blocked (")[:-1])
    return said


def ruletest_says(world: Path) -> Said:
    ruleset = validate.validate([str(world / "rules")]).ruleset
    assert ruleset is not None
    [result] = asyncio.run(ruletests.run_all(ruleset.tests.values(), ruleset))
    assert result.error is None, result.error
    said: Said = {}
    for rid in RECORDS:
        mine = sorted((s for s in result.actual.sent if s.record == rid), key=lambda s: s.at)
        for n, sent in enumerate(mine, 1):
            said[(rid, n)] = ("email", sent.at, sent.subject)
        status, reason = result.actual.enrollments[(rid, "greet")]
        if status == "blocked":
            said[(rid, len(mine) + 1)] = ("blocked", reason)
    return said


def daemon_says() -> Said:
    outreach("enroll", "greet", *(x for rid in RECORDS for x in ("--record", rid)), "--as", "anna", "--now",
             START.isoformat())  # fmt: skip
    outreach("run", "--once", "--now", START.isoformat())
    outreach("run", "--once", "--now", NEXT_DAY.isoformat())
    said: Said = {}
    by_enrollment: dict[int, str] = {}
    for e in json.loads(outreach("enrollments", "list", "--json")):
        by_enrollment[e["id"]] = e["record_id"]
        if e["status"] == "blocked":
            said[(e["record_id"], e["steps_done"] + 1)] = ("blocked", e["reason"])
    sent = sorted(json.loads(outreach("outbox", "list", "--json")), key=lambda m: m["id"])
    for m in sent:
        rid = by_enrollment[m["enrollment_id"]]
        step = sum(1 for x in sent if x["enrollment_id"] == m["enrollment_id"] and x["id"] <= m["id"])
        said[(rid, step)] = ("email", dt.datetime.fromisoformat(m["created_at"]), m["subject"])
    return said


def test_preview_simulate_a_ruletest_and_the_daemon_say_the_same_of_each_step(world: Path) -> None:
    paths = {"preview": preview_says(), "simulate": simulate_says(), "RuleTest": ruletest_says(world),
             "daemon": daemon_says()}  # fmt: skip

    header = "Subject header: has a line break, NUL or control character; merge data may not add headers"
    smtputf8 = "To header: 'jörg@example.de' is not a valid address (local-part contains non-ASCII characters))"
    expected = {
        ("R1", 1): ("email", START, "Hello Jo"),
        ("R1", 2): ("email", NEXT_DAY, "Re: Hello Jo"),
        ("R2", 1): ("blocked", header),
        ("R3", 1): ("blocked", smtputf8),
        ("R4", 1): ("blocked", "missing merge field record.first_name"),
    }
    for path, said in paths.items():
        assert {k: said.get(k) for k in ASKED} == expected, f"{path} says otherwise"
