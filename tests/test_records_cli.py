"""`outreach records`, `tasks` and `appointments` as a sales-ops person uses them, on a real SQLite store."""

from __future__ import annotations

import json
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
