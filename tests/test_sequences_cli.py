"""`outreach enroll`, `run --once`, `enrollments`, `preview`, `sequences` and `outbox`, as a rep uses them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.mail import links
from outreach.mail import transport as mail_transport
from tests import worlds

pytestmark = pytest.mark.acceptance

CSV = (
    "id,type,email,first_name,company,country,owner,source\n"
    "L1,lead,jo@example.org,Jo,Fjord AS,NO,anna,\n"
    "L2,lead,kim@example.net,,,DE,ben,\n"
    "D1,deal,deal@example.com,Dee,,DE,anna,\n"
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory with the example rules and a database; var/outbox lands here."""
    worlds.scratch(tmp_path, monkeypatch, CSV)
    assert run("apply", "rules")[0] == 0
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def test_enroll_says_when_the_first_mail_goes_and_refuses_with_reasons(here: Path) -> None:
    code, out = run("enroll", "inbound-nurture", "--record", "L1", "--record", "D1", "--record", "X9", "--as", "anna")
    assert code == 0
    assert "enrolled L1 (jo@example.org): first mail " in out
    assert "refused D1: record D1 is a deal; inbound-nurture enrolls lead, contact" in out
    assert "refused X9: no record 'X9'" in out
    assert "inbound-nurture: 1 enrolled, 2 refused" in out
    code, out = run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    assert code == 1 and "jo@example.org is already active in inbound-nurture" in out
    code, out = run("enroll", "inbound-nurture", "--record", "L2", "--as", "zoe")
    assert code == 2 and "no user 'zoe'" in out


def test_a_dry_run_enrolls_no_one(here: Path) -> None:
    code, out = run("enroll", "inbound-nurture", "--where", "country=DE", "--as", "ben", "--dry-run", "--verbose")
    assert code == 0 and "would enroll L2" in out and "would enroll D1" not in out
    assert json.loads(run("enrollments", "list", "--json")[1]) == []


def test_enroll_needs_the_applied_version(here: Path) -> None:
    path = here / "rules" / "sequences" / "inbound-nurture.yaml"
    path.write_text(path.read_text().replace("2 business days, thread: reply", "3 business days, thread: reply"))
    code, out = run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    assert code == 1 and "run `outreach apply` first" in out


def test_run_once_sends_into_the_maildir_and_records_show_has_the_widget(here: Path) -> None:
    run("enroll", "inbound-nurture", "--record", "L1", "--record", "L2", "--as", "anna",
        "--now", "2026-11-23T19:00:00Z")  # fmt: skip
    code, out = run("run", "--once", "--now", "2026-11-23T19:00:00Z")  # 20:00 in Berlin: outside the window
    assert code == 0, out
    assert not (here / "var" / "outbox").exists()
    code, out = run("run", "--once", "--now", "2026-11-24T08:00:00Z")  # Tuesday 09:00 in Berlin
    assert code == 0, out
    mail = mail_transport.read_all(here / "var" / "outbox")
    assert [m["To"] for m in mail] == ["jo@example.org"]
    statuses = {e["record_id"]: (e["status"], e["reason"]) for e in json.loads(run("enrollments", "list", "--json")[1])}
    assert statuses == {"L1": ("active", None), "L2": ("blocked", "missing merge field record.first_name")}
    shown = json.loads(run("records", "show", "L1", "--json")[1])
    assert shown["sequences"]["counts"] == {"active": 1, "blocked": 0, "completed": 0}
    assert shown["sequences"]["enrollments"][0]["last_step"] == "intro"
    out = run("records", "show", "L1")[1]
    assert "sequence mail" in out and "Quick question, Jo" in out
    cols = json.loads(run("records", "list", "--columns", "running_sequences,next_email", "--json")[1])
    by_id = {r["id"]: r for r in cols}
    assert by_id["L1"]["running_sequences"] == ["inbound-nurture"]
    assert by_id["L1"]["next_email"] == "2026-11-26T08:00:00+00:00"  # 2 business days after Tuesday's intro
    out = run("outbox", "list")[1]
    assert "sent" in out and "jo@example.org" in out
    assert run("run", "--now", "2026-11-24T08:00:00Z")[0] == 2  # --now needs --once


def test_enrollments_list_says_why_an_active_enrollment_is_held_back(here: Path) -> None:
    settings = here / "rules" / "settings.yaml"
    settings.write_text(
        settings.read_text().replace("mailbox: anna, daily_limit: 300", "mailbox: anna, daily_limit: 1")
    )
    assert run("apply", "rules")[0] == 0
    assert run("records", "set", "L2", "first_name=Kim")[0] == 0
    tuesday = "2026-11-24T08:00:00Z"  # 09:00 in Berlin
    assert (
        run("enroll", "inbound-nurture", "--record", "L1", "--record", "L2", "--as", "anna", "--now", tuesday)[0] == 0
    )
    assert run("run", "--once", "--now", tuesday)[0] == 0

    code, out = run("enrollments", "list")

    assert code == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert rows == [
        ["1", "L1", "inbound-nurture", "active", "1", "next step 2026-11-26 08:00 UTC"],
        ["2", "L2", "inbound-nurture", "active", "0",
         "waiting: daily limit of anna reached (1/1); next step 2026-11-25 08:00 UTC"],
    ]  # fmt: skip


def test_stop_and_retry(here: Path) -> None:
    run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    code, out = run("enrollments", "stop", "--record", "L1", "--sequence", "inbound-nurture", "--as", "anna")
    assert code == 0 and "stopped" in out and "stopped by anna" in out
    code, out = run("enrollments", "retry", "1")
    assert code == 1 and "is stopped, not blocked" in out
    code, out = run("enrollments", "stop", "--record", "L1", "--sequence", "inbound-nurture")
    assert code == 1 and "no such live enrollment" in out
    code, out = run("enrollments", "stop", "1", "--as", "anna")
    assert code == 1 and "enrollment 1 is stopped already; nothing to stop" in out
    code, out = run("enrollments", "stop", "1", "--as", "zoe")
    assert code == 2 and "no user 'zoe'" in out
    code, out = run("enrollments", "stop")
    assert code == 2


def test_preview_shows_every_step_and_a_missing_merge_field(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OUTREACH_SECRET", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    code, out = run("preview", "inbound-nurture", "--record", "L1", "--as", "anna", "--start", "2026-11-23T08:00:00Z")
    assert code == 0, out
    assert "step 1 intro at Mon 2026-11-23 08:00 UTC" in out and "subject: Quick question, Jo" in out
    assert "step 2 nudge at Wed 2026-11-25 08:00 UTC" in out and "subject: Re: Quick question, Jo" in out
    assert "task for anna: Call the lead (call)" in out
    assert "4 steps, 0 problems" in out
    # No secret set: the links are signed, as the daemon signs them, with the secret it keeps in var/.
    tokens = re.findall(r"^  Unsubscribe: http://127\.0\.0\.1:8025/u/([A-Za-z0-9_-]{48})$", out, re.M)
    assert len(tokens) == 1, out
    keys, created = links.state_keys(here / "var")
    assert not created and links.verify(keys, tokens[0]).kind == links.UNSUBSCRIBE
    monkeypatch.setenv("OUTREACH_SECRET", "a-preview-secret-of-at-least-32-bytes")
    code, out = run("preview", "inbound-nurture", "--record", "L1", "--as", "anna", "--start", "2026-11-23T08:00:00Z")
    assert code == 0, out
    token = re.findall(r"^  Unsubscribe: http://127\.0\.0\.1:8025/u/([A-Za-z0-9_-]{48})$", out, re.M)[0]
    assert links.verify(links.Keys.parse("a-preview-secret-of-at-least-32-bytes"), token).kind == links.UNSUBSCRIBE
    code, out = run("preview", "inbound-nurture", "--record", "L2", "--as", "anna", "--start", "2026-11-23T08:00:00Z")
    assert code == 1 and "BLOCKED: missing merge field record.first_name" in out
    code, out = run("preview", "inbound-nurture", "--record", "D1", "--as", "anna", "--start", "2026-11-23T08:00:00Z")
    assert code == 1 and "would be refused: record D1 is a deal" in out
    code, out = run("preview", "inbound-nurture", "--record", "L1", "--start", "tomorrow")
    assert code == 2 and "--start" in out
    monkeypatch.setenv("OUTREACH_SECRET", "too-short")
    code, out = run("preview", "inbound-nurture", "--record", "L1", "--as", "anna")
    assert code == 1 and "a tracking secret of 9 bytes is too short" in out and "Traceback" not in out


def test_preview_and_simulate_show_a_template_past_the_render_limits_as_blocked(here: Path) -> None:
    """What once hung them or ended in a traceback: the template passes `validate` (its numbers come from the
    record), and the step it sends is shown blocked with the reason, at once."""
    path = here / "rules" / "templates" / "nurture.yaml"
    text = path.read_text()
    greeting = "  Hi {{ record.first_name }},\n\n  thanks"
    huge_range = "{% for i in range(record.first_name | length * 1000000000) %}{% endfor %}"
    path.write_text(text.replace(greeting, f"  {huge_range}\n\n  thanks"))
    assert run("validate", "rules")[0] == 0
    code, out = run("preview", "inbound-nurture", "--record", "L1", "--as", "anna", "--start", "2026-11-23T08:00:00Z")
    assert code == 1 and "Traceback" not in out
    assert ("BLOCKED: template intro went past a limit: range(2000000000) would have 2000000000 items (a "
            "template's ranges have at most 100000)") in out  # fmt: skip
    path.write_text(text.replace(greeting, "  {{ 9 ** (record.first_name | length * 100000000) }}\n\n  thanks"))
    record = '{"id": "J1", "type": "lead", "email": "jo@example.org", "owner": "ben", "first_name": "Jo"}'
    code, out = run("simulate", "inbound-nurture", "--rules", "rules", "--start", "2026-11-23T08:00:00Z",
                    "--record-json", record)  # fmt: skip
    assert code == 0 and "Traceback" not in out, out
    reason = "template intro went past a limit: the number would have more than 4300 digits"
    assert f"inbound-nurture blocked ({reason})" in out


def test_sequences_list_and_stats(here: Path) -> None:
    run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    out = run("sequences", "list")[1]
    rows = {cells[0]: cells[1:] for line in out.splitlines() if line.startswith("│")
            for cells in [[cell.strip() for cell in line.split("│")[1:-1]]]}  # fmt: skip
    assert rows == {"inbound-nurture": ["4", "1", "1", "0", "0", "0"], "welcome": ["2", "0", "0", "0", "0", "0"]}
    stats = json.loads(run("sequences", "stats", "inbound-nurture", "--json")[1])
    assert stats["enrolled"] == 1 and stats["active"] == 1 and stats["enrolled_by"] == ["anna"]
    assert stats["steps"] == ["intro", "nudge", "call", "promo"] and stats["reply_rate"] is None
    run("records", "convert", "L1")
    stats = json.loads(run("sequences", "stats", "inbound-nurture", "--json")[1])
    assert stats["stopped"] == 1 and stats["reply_rate"] is None  # a conversion is neither a reply nor the end


def test_outbox_requeue_refuses_a_message_that_is_not_unknown_or_failed(here: Path) -> None:
    code, out = run("outbox", "requeue", "99")
    assert code == 1 and "no message 99 in state unknown or failed: left alone" in out
