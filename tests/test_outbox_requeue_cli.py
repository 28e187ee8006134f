"""`outreach outbox requeue` picks messages by ids, state, age and domain, says what it would send again, asks,
and then queues them again with a fresh count of attempts (issue 20, item 5)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from tests import worlds

pytestmark = pytest.mark.acceptance

CSV = "id,type,email,first_name,owner\n" + "".join(
    f"L{i},lead,p{i}@{'example.org' if i < 3 else 'other.net'},P{i},anna\n" for i in range(5)
)
MONDAY = "2026-11-23T08:00:00Z"


def run(*args: str, answer: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args), input=answer)
    return result.exit_code, result.output


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Five messages queued and sent to the maildir, then marked as a crash and the relay left them: L0 and L3
    unknown, L1 failed after 8 attempts, L2 and L4 sent."""
    worlds.scratch(tmp_path, monkeypatch, CSV)
    assert run("apply", "rules")[0] == 0
    for i in range(5):
        assert run("enroll", "inbound-nurture", "--record", f"L{i}", "--as", "anna", "--now", MONDAY)[0] == 0
    assert run("run", "--once", "--now", MONDAY, "--no-web")[0] == 0
    with sqlite3.connect(tmp_path / "var" / "outreach.db") as db:
        db.execute("UPDATE outbox SET state = 'unknown' WHERE record_id IN ('L0', 'L3')")
        db.execute("UPDATE outbox SET state = 'failed', attempts = 8, last_error = '550 no' WHERE record_id = 'L1'")
        db.execute("UPDATE outbox SET created_at = '2026-11-20 08:00:00.000000' WHERE record_id = 'L3'")
    return tmp_path


def states() -> dict[str, tuple[str, int]]:
    return {m["record_id"]: (m["state"], m["attempts"]) for m in json.loads(run("outbox", "list", "--json")[1])}


def test_a_dry_run_says_what_it_would_send_again_and_sends_nothing(here: Path) -> None:
    before = states()
    code, out = run("outbox", "requeue", "--state", "unknown", "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == ("2 messages to send again (2 unknown), queued 2026-11-20 08:00 UTC to "
                                   "2026-11-23 08:00 UTC, to example.org 1, other.net 1")  # fmt: skip
    assert "may arrive twice" in out
    assert states() == before
    far = run("outbox", "requeue", "--state", "unknown", "--since", "36500 days", "--dry-run")[1]  # a duration ago
    assert far.startswith("2 messages to send again"), far
    future = run("outbox", "requeue", "--state", "unknown", "--since", "2100-01-01T00:00:00Z", "--dry-run")[1]
    assert future.startswith("no message to send again"), future  # a time is taken as it is, never mirrored


def test_filters_combine_and_the_answer_no_changes_nothing(here: Path) -> None:
    code, out = run("outbox", "requeue", "--to-domain", "EXAMPLE.org", "--since", "2026-11-22T00:00:00Z",
                    answer="n\n")  # fmt: skip
    assert code == 1  # aborted
    assert out.startswith("2 messages to send again (1 unknown, 1 failed)"), out
    assert states()["L0"][0] == "unknown" and states()["L1"][0] == "failed"


def test_yes_queues_them_again_with_a_fresh_count_and_the_daemon_sends_them(here: Path) -> None:
    code, out = run("outbox", "requeue", "--state", "failed", "--state", "unknown", "--since", "2026-11-22T00:00:00Z",
                    "--yes")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "2 messages queued again", out
    got = states()
    assert got["L0"] == ("queued", 0) and got["L1"] == ("queued", 0)
    assert got["L3"][0] == "unknown"  # queued before --since
    assert run("run", "--once", "--now", MONDAY, "--no-web")[0] == 0
    assert states()["L1"][0] == "sent"


def test_ids_that_cannot_be_sent_again_are_named_and_the_others_go(here: Path) -> None:
    ids = {m["record_id"]: str(m["id"]) for m in json.loads(run("outbox", "list", "--json")[1])}
    code, out = run("outbox", "requeue", ids["L2"], ids["L3"], "--yes")
    assert code == 0
    assert f"no message {ids['L2']} in state unknown or failed: left alone" in out  # L2 was sent
    assert "1 message queued again" in out and states()["L3"][0] == "queued"
    code, out = run("outbox", "requeue", ids["L2"])
    assert code == 1 and "no message to send again" in out
    code, out = run("outbox", "requeue")
    assert code == 2 and "say which messages" in out
