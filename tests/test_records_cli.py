"""`outreach records`, `tasks` and `appointments` as a sales-ops person uses them, on a real SQLite store."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

RULES = str(ROOT / "rules")

GOOD_CSV = (
    "id,email,first_name,company,country,owner,stage,score,purchased\r\n"
    "L1,jo@example.org,Jo,Fjord AS,NO,anna,New,80,false\r\n"
    'L2,"Kim Lee <kim@example.net>",Kim,"ACME, Inc.",DE,ben,Qualified,12.5,yes\r\n'
    "L3,,Sam,,AT,anna,,,\r\n"
)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'o.db'}"


def run(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, [*args[:2], "--db", db, "--rules", RULES, *args[2:]])
    return result.exit_code, result.output


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def listed(db: str, *args: str) -> list[dict[str, object]]:
    code, out = run(db, "records", "list", "--json", *args)
    assert code == 0, out
    data: list[dict[str, object]] = json.loads(out)
    return data


def test_a_good_csv_is_imported_and_listed(db: str, tmp_path: Path) -> None:
    f = write(tmp_path, "leads.csv", "\ufeff" + GOOD_CSV)  # with a BOM and Windows line ends
    code, out = run(db, "records", "import", f, "--type", "lead")
    assert code == 0, out
    assert out.strip().endswith("leads.csv: 3 imported, 0 updated")
    records = listed(db)
    assert [r["id"] for r in records] == ["L1", "L2", "L3"]
    assert records[1]["email"] == "kim@example.net" and records[1]["company"] == "ACME, Inc."
    assert records[1]["purchased"] is True and records[0]["score"] == 80
    assert [r["id"] for r in listed(db, "--where", "country=DE")] == ["L2"]
    assert [r["id"] for r in listed(db, "--where", "purchased=false")] == ["L1"]
    assert [r["id"] for r in listed(db, "--where", "owner=anna", "--where", "stage=New")] == ["L1"]


def test_a_file_with_a_bad_row_imports_nothing_and_names_the_lines(db: str, tmp_path: Path) -> None:
    bad = GOOD_CSV + "L4,jo@@example.org,Al,,DE,anna,New,high,no\r\n"
    f = write(tmp_path, "leads.csv", bad)
    code, out = run(db, "records", "import", f, "--type", "lead")
    assert code == 1
    assert f"{f}:5: " in out and "invalid email" in out and "score" in out
    assert "nothing was imported" in out
    assert listed(db) == []
    code, out = run(db, "records", "import", f, "--type", "lead", "--skip-invalid")
    assert code == 0 and "3 imported, 0 updated, 1 bad row skipped" in out
    assert len(listed(db)) == 3


def test_an_unknown_column_rejects_the_file(db: str, tmp_path: Path) -> None:
    f = write(tmp_path, "leads.csv", "id,email,nickname\nL1,jo@example.org,Jojo\n")
    code, out = run(db, "records", "import", f, "--type", "lead")
    assert code == 1 and f"{f}:1: " in out and "nickname" in out
    assert listed(db) == []


def test_a_header_only_csv_imports_nothing_and_is_fine(db: str, tmp_path: Path) -> None:
    f = write(tmp_path, "empty.csv", "id,email\n")
    code, out = run(db, "records", "import", f, "--type", "lead")
    assert code == 0 and "0 imported, 0 updated" in out


def test_jsonl_import_and_update_by_email(db: str, tmp_path: Path) -> None:
    f = write(tmp_path, "a.jsonl", '{"id": "C1", "type": "contact", "email": "sam@example.com", "score": 3}\n\n')
    assert run(db, "records", "import", f)[0] == 0
    g = write(tmp_path, "b.jsonl", '{"type": "contact", "email": "sam@example.com", "score": 9}\n')
    code, out = run(db, "records", "import", g)
    assert code == 1 and "use --update" in out
    code, out = run(db, "records", "import", g, "--update")
    assert code == 0 and "0 imported, 1 updated" in out
    assert listed(db)[0]["score"] == 9


def test_set_convert_delete_show_and_the_activity_feed(db: str, tmp_path: Path) -> None:
    run(db, "records", "import", write(tmp_path, "l.csv", GOOD_CSV), "--type", "lead")
    code, out = run(db, "records", "set", "L1", "stage=Contacted", "score=90")
    assert code == 0 and "stage=Contacted" in out and "score=90" in out
    code, out = run(db, "records", "set", "L1", "score=lots")
    assert code == 2 and "expected a number" in out
    code, out = run(db, "records", "set", "L1", "nickname=x")
    assert code == 2 and "cannot be set" in out
    assert run(db, "records", "convert", "L1")[1].strip() == "record L1 is now a contact"
    code, out = run(db, "records", "convert", "L1")
    assert code == 1 and "only leads are converted" in out
    assert run(db, "records", "delete", "L3")[0] == 0
    assert [r["id"] for r in listed(db)] == ["L1", "L2"]
    code, out = run(db, "records", "show", "L1", "--json")
    shown = json.loads(out)
    assert shown["record"]["type"] == "contact" and shown["record"]["stage"] == "Contacted"
    assert [a["kind"] for a in shown["activity"]] == ["stage_changed", "updated", "converted"]
    code, out = run(db, "records", "show", "L1")
    assert code == 0 and "stage changed" in out and "converted" in out
    code, out = run(db, "records", "show", "nobody")
    assert code == 1 and "no record 'nobody'" in out


def test_records_list_by_view(db: str, tmp_path: Path) -> None:
    run(db, "records", "import", write(tmp_path, "l.csv", GOOD_CSV), "--type", "lead")
    # dach-qualified: stage Qualified, country in DE/AT/CH, not purchased: L2 has purchased=yes
    assert listed(db, "--view", "dach-qualified") == []
    run(db, "records", "set", "L2", "purchased=no")
    assert [r["id"] for r in listed(db, "--view", "dach-qualified")] == ["L2"]
    code, out = run(db, "records", "list", "--view", "nope")
    assert code == 2 and "no view 'nope'" in out


def test_tasks_and_appointments(db: str, tmp_path: Path) -> None:
    run(db, "records", "import", write(tmp_path, "l.csv", GOOD_CSV), "--type", "lead")
    code, out = run(db, "tasks", "add", "--record", "L1", "--subject", "Call Jo", "--type", "call", "--due", "4h",
                    "--owner", "anna")  # fmt: skip
    assert code == 0 and out.startswith("task 1 added to record L1, due ")
    code, out = run(db, "tasks", "add", "--record", "L1", "--subject", "x", "--owner", "zoe")
    assert code == 2 and "no user 'zoe'" in out
    code, out = run(db, "tasks", "list", "--json")
    assert [t["subject"] for t in json.loads(out)] == ["Call Jo"]
    assert run(db, "tasks", "complete", "1")[1].strip() == "task 1 completed"
    assert json.loads(run(db, "tasks", "list", "--json")[1]) == []
    assert len(json.loads(run(db, "tasks", "list", "--all", "--json")[1])) == 1
    code, out = run(db, "appointments", "add", "--record", "L1", "--starts", "2026-12-01T10:00:00+01:00",
                    "--subject", "Demo")  # fmt: skip
    assert code == 0 and "at 2026-12-01 09:00 UTC" in out
    code, out = run(db, "appointments", "add", "--record", "L1", "--starts", "someday")
    assert code == 2 and "neither a date" in out


# --- hostile data (issue 18, item 3) --------------------------------------------------------------------------

HOSTILE = "\x1b]0;owned\x07\x1b[2J[bold red]Boss[/] \u202eevil\x9b31m"


def test_records_show_and_list_escape_control_characters_and_rich_markup(db: str, tmp_path: Path) -> None:
    rows = [{"id": "L9", "type": "lead", "email": "jo@example.org", "first_name": HOSTILE, "company": "[/]",
             "owner": "anna"}]  # fmt: skip
    f = write(tmp_path, "h.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "records", "import", f)[0] == 0
    for args in (("records", "show", "L9"), ("records", "list", "--columns", "next_email")):
        code, out = run(db, *args)
        assert code == 0, out  # "[/]" would be a rich markup error
        assert not any(c in out for c in "\x1b\x07\x9b\u202e"), repr(out)
    code, out = run(db, "records", "show", "L9")
    assert "\\x1b]0;owned\\x07\\x1b[2J[bold red]Boss[/] \\u202eevil\\x9b31m" in out
    code, out = run(db, "records", "show", "L9", "--json")
    assert json.loads(out)["record"]["first_name"] == HOSTILE  # the same data, escaped as JSON does
    assert not any(c in out for c in "\x1b\x07\x9b\u202e")
    code, out = run(db, "records", "set", "L9", f"company={HOSTILE}")
    assert code == 0 and "\x1b" not in out and "company=\\x1b]0;owned" in out


def test_records_set_refuses_an_address_that_records_import_refuses(db: str, tmp_path: Path) -> None:
    run(db, "records", "import", write(tmp_path, "l.csv", GOOD_CSV), "--type", "lead")
    for bad in ("not-an-address", "jo@", "jo@localhost", "a b@example.org", "jo@example.org\r\nBcc: x@example.org"):
        code, out = run(db, "records", "set", "L1", f"email={bad}")
        assert code == 2 and "email: invalid email" in out, (bad, out)
        bad_row = write(tmp_path, "bad.jsonl", json.dumps({"id": "L1", "type": "lead", "email": bad}) + "\n")
        assert run(db, "records", "import", bad_row, "--update")[0] == 1, bad  # the same check
    assert listed(db)[0]["email"] == "jo@example.org"
    code, out = run(db, "records", "set", "L1", "email=Jo.Doe@EXAMPLE.org", "owner=ben")
    assert code == 0, out
    assert listed(db)[0]["email"] == "Jo.Doe@example.org"  # kept as an import keeps it: the domain lower-cased
    code, out = run(db, "records", "set", "L1", "owner=zoe")
    assert code == 2 and "owner: 'zoe' is not a user" in out
    code, out = run(db, "records", "set", "L1", "timezone=Mars/Olympus")
    assert code == 2 and "unknown time zone" in out


def test_the_database_and_var_are_made_readable_by_their_owner_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        f = write(tmp_path, "l.csv", GOOD_CSV)
        code, out = run("sqlite:///var/state/o.db", "records", "import", f, "--type", "lead")
    finally:
        os.umask(old)
    assert code == 0, out
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "var" / "state").stat().st_mode) == 0o700
    files = sorted(p.name for p in (tmp_path / "var" / "state").iterdir())
    assert "o.db" in files
    for name in files:  # the database, and its -wal and -shm while they are there
        assert stat.S_IMODE((tmp_path / "var" / "state" / name).stat().st_mode) == 0o600, name
