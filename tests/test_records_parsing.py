"""Reading record import files: CSV and JSON Lines become typed rows, or errors that name the line."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import tracemalloc
from typing import Any

import pytest

from outreach.app import importing as records
from outreach.rules import model
from outreach.rules.criteria import FieldType

pytestmark = pytest.mark.unit

SETTINGS = model.Settings(
    source=model.Source("rules/settings.yaml", 1, ""),
    record_fields={
        "company": FieldType.STRING,
        "score": FieldType.NUMBER,
        "vip": FieldType.BOOLEAN,
        "renewal_at": FieldType.DATETIME,
    },
    modules=("partner",),
)
UTC = dt.UTC


def read(path: pathlib.Path, *, default_type: str | None = None, owners: Any = None) -> list[Any]:
    return list(
        records.read_rows(
            str(path),
            fields=SETTINGS.fields,
            modules=SETTINGS.all_modules,
            default_type=default_type,
            owners=owners,
        )
    )


def write(tmp_path: pathlib.Path, name: str, text: str, *, encoding: str = "utf-8") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def errors(items: list[Any]) -> list[tuple[int, str]]:
    return [(e.line, e.message) for e in items if isinstance(e, records.RowError)]


# --- Good files ---------------------------------------------------------------------------------


def test_csv_values_become_the_types_their_fields_declare(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "leads.csv",
        "id,type,email,owner,stage,stage_entered_at,created_at,timezone,company,score,vip,renewal_at\n"
        "L1,lead,Jo@Example.COM,ana,new,2026-01-05T10:00:00+01:00,2026-01-01,Europe/Berlin,Acme,42,yes,2027-03-02T10:00:00Z\n"
        "L2,contact,,,,,,,,4.5,FALSE,\n"
        "L3,partner,kim@example.org,,,,,,,-3,1,2027-03-02\n",
    )
    rows = read(path, owners={"ana"})
    assert rows == [
        records.Row(
            line=2,
            id="L1",
            type="lead",
            email="Jo@example.com",
            fields={
                "owner": "ana",
                "stage": "new",
                "stage_entered_at": dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                "created_at": dt.datetime(2026, 1, 1, tzinfo=UTC),
                "timezone": "Europe/Berlin",
                "company": "Acme",
                "score": 42,
                "vip": True,
                "renewal_at": dt.datetime(2027, 3, 2, 10, 0, tzinfo=UTC),
            },
        ),
        records.Row(line=3, id="L2", type="contact", email=None, fields={"score": 4.5, "vip": False}),
        records.Row(
            line=4,
            id="L3",
            type="partner",
            email="kim@example.org",
            fields={"score": -3, "vip": True, "renewal_at": dt.datetime(2027, 3, 2, tzinfo=UTC)},
        ),
    ]
    assert type(rows[0].fields["score"]) is int
    assert type(rows[1].fields["score"]) is float
    assert rows[0].fields["stage_entered_at"].utcoffset() == dt.timedelta(0)


def test_jsonl_values_keep_their_json_types_and_datetimes_are_parsed(tmp_path: pathlib.Path) -> None:
    lines = [
        {
            "id": "L1",
            "type": "lead",
            "email": "Jo@Example.COM",
            "owner": "ana",
            "stage_entered_at": "2026-01-05T10:00:00+01:00",
            "created_at": "2026-01-01",
            "timezone": "Europe/Berlin",
            "company": "Acme",
            "score": 42,
            "vip": True,
            "renewal_at": "2027-03-02T10:00:00Z",
        },
        {"id": "L2", "type": "contact", "score": 4.5, "vip": False, "company": None, "stage": ""},
    ]
    path = write(tmp_path, "leads.jsonl", json.dumps(lines[0]) + "\n\n  \n" + json.dumps(lines[1]) + "\n")
    rows = read(path)
    assert rows == [
        records.Row(
            line=1,
            id="L1",
            type="lead",
            email="Jo@example.com",
            fields={
                "owner": "ana",
                "stage_entered_at": dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                "created_at": dt.datetime(2026, 1, 1, tzinfo=UTC),
                "timezone": "Europe/Berlin",
                "company": "Acme",
                "score": 42,
                "vip": True,
                "renewal_at": dt.datetime(2027, 3, 2, 10, 0, tzinfo=UTC),
            },
        ),
        # null and "" are absent, as empty CSV cells are; blank lines are skipped but counted
        records.Row(line=4, id="L2", type="contact", email=None, fields={"score": 4.5, "vip": False}),
    ]


def test_the_same_record_reads_the_same_from_csv_and_jsonl(tmp_path: pathlib.Path) -> None:
    csv_path = write(tmp_path, "a.csv", "id,type,email,score,vip,created_at\nL1,lead,jo@x.com,3,true,2026-01-01\n")
    jsonl_path = write(
        tmp_path,
        "a.ndjson",
        '{"id": "L1", "type": "lead", "email": "jo@x.com", "score": 3, "vip": true, "created_at": "2026-01-01"}\n',
    )
    (from_csv,) = read(csv_path)
    (from_jsonl,) = read(jsonl_path)
    assert without_line(from_csv) == without_line(from_jsonl)


def without_line(row: records.Row) -> tuple[Any, ...]:
    return (row.id, row.type, row.email, dict(row.fields))


def test_a_byte_order_mark_does_not_become_part_of_the_first_column(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "excel.csv", "\ufeffid,type,email\nL1,lead,jo@x.com\n")
    assert read(path) == [records.Row(2, "L1", "lead", "jo@x.com", {})]
    jsonl = write(tmp_path, "excel.jsonl", '\ufeff{"id": "L1", "type": "lead"}\n')
    assert read(jsonl) == [records.Row(1, "L1", "lead", None, {})]


def test_windows_line_ends_are_not_part_of_the_values(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "windows.csv", "id,type,company\r\nL1,lead,Acme\r\nL2,lead,Initech\r\n")
    assert read(path) == [
        records.Row(2, "L1", "lead", None, {"company": "Acme"}),
        records.Row(3, "L2", "lead", None, {"company": "Initech"}),
    ]
    jsonl = write(tmp_path, "windows.jsonl", '{"id": "L1", "type": "lead"}\r\n\r\n{"id": "L2", "type": "lead"}\r\n')
    assert [(r.line, r.id) for r in read(jsonl)] == [(1, "L1"), (3, "L2")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_quoted_value_may_span_lines_and_later_rows_keep_their_line_numbers(
    tmp_path: pathlib.Path, newline: str
) -> None:
    text = newline.join(
        [
            "id,type,company",
            'L1,lead,"Acme',
            "Rocket Division",
            'Desert Office"',
            "L2,lead,Initech",
            "",
            "L3,lead,Umbrella",
            "",
        ]
    )
    path = write(tmp_path, "multiline.csv", text)
    rows = read(path)
    assert [(r.line, r.id) for r in rows] == [(2, "L1"), (5, "L2"), (7, "L3")]
    assert rows[0].fields["company"] == newline.join(["Acme", "Rocket Division", "Desert Office"])


def test_a_csv_with_only_a_header_yields_nothing(tmp_path: pathlib.Path) -> None:
    assert read(write(tmp_path, "empty.csv", "id,type,email\n")) == []
    assert read(write(tmp_path, "empty-no-newline.csv", "id,type,email")) == []


def test_rows_of_empty_cells_are_skipped_like_blank_lines(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "sheet.csv", "id,type,email\nL1,lead,\n,,\n\nL2,lead,\n")
    assert [(r.line, r.id) for r in read(path)] == [(2, "L1"), (5, "L2")]


def test_an_email_with_a_display_name_is_reduced_to_the_address(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "names.csv", 'id,type,email\nL1,lead,"Jo Park <Jo.Park@Example.COM>"\n')
    assert read(path) == [records.Row(2, "L1", "lead", "Jo.Park@example.com", {})]


def test_a_row_without_an_email_is_imported_but_cannot_be_mailed(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "noemail.jsonl", '{"id": "L1", "type": "lead", "company": "Acme"}\n')
    assert read(path) == [records.Row(1, "L1", "lead", None, {"company": "Acme"})]


def test_rows_without_an_id_are_allowed(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "noid.csv", "type,email\nlead,jo@x.com\nlead,kim@x.com\n")
    assert [(r.id, r.email) for r in read(path)] == [(None, "jo@x.com"), (None, "kim@x.com")]


def test_text_from_the_command_line_converts_as_a_csv_cell_does() -> None:
    assert records.convert_text(FieldType.NUMBER, "82") == 82
    assert records.convert_text(FieldType.NUMBER, "8.5") == 8.5
    assert records.convert_text(FieldType.BOOLEAN, "Yes") is True
    assert records.convert_text(FieldType.DATETIME, "2027-03-02T10:00:00-08:00") == dt.datetime(
        2027, 3, 2, 18, tzinfo=UTC
    )
    assert records.convert_text(FieldType.STRING, " as typed ") == " as typed "
    with pytest.raises(ValueError, match="expected a number, got the text 'high'"):
        records.convert_text(FieldType.NUMBER, "high")


# --- Row errors ---------------------------------------------------------------------------------


def test_an_invalid_email_is_an_error_on_its_line(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "bad.csv", "id,type,email\nL1,lead,jo@x.com\nL2,lead,jo@@x\nL3,lead,kim@x.com\n")
    items = read(path)
    assert [r.id for r in items if isinstance(r, records.Row)] == ["L1", "L3"]
    ((line, message),) = errors(items)
    assert line == 3
    assert message.startswith("invalid email 'jo@@x': ")


def test_a_later_row_with_an_id_already_used_is_an_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "dup.csv", "id,type\nL1,lead\nL7,lead\nL2,lead\nL7,contact\n")
    items = read(path)
    assert [r.id for r in items if isinstance(r, records.Row)] == ["L1", "L7", "L2"]
    assert errors(items) == [(5, "duplicate id 'L7' (first on line 3)")]


def test_wrong_values_name_the_field_and_the_line(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "types.csv",
        "id,type,score,vip,renewal_at,timezone\n"
        "L1,lead,high,,,\n"
        "L2,lead,,maybe,,\n"
        "L3,lead,,,next week,\n"
        "L4,lead,,,2027-02-30,\n"
        "L5,lead,,,2027-03-02T10:00:00,\n"
        "L6,lead,nan,,,Mars/Olympus\n"
        "L7,lead,99999999999999999999,,,\n",
    )
    found = errors(read(path))
    assert found[0] == (2, "score: expected a number, got the text 'high'")
    assert found[1] == (3, "vip: expected true or false (or yes/no, 1/0), got the text 'maybe'")
    assert found[2][0] == 4 and found[2][1].startswith("renewal_at: expected a date and time with a UTC offset")
    assert found[3][0] == 5 and found[3][1].startswith("renewal_at: '2027-02-30' is not a valid date")
    assert found[4][0] == 6 and "got the text '2027-03-02T10:00:00'" in found[4][1]
    line, message = found[5]
    assert line == 7
    assert "score: expected a finite number" in message and "timezone: unknown time zone 'Mars/Olympus'" in message
    assert found[6] == (8, "score: the number 99999999999999999999 is too large: integers go up to 9223372036854775807")


def test_jsonl_values_must_already_have_the_json_type_of_their_field(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "types.jsonl",
        '{"id": "L1", "type": "lead", "score": "12"}\n'
        '{"id": "L2", "type": "lead", "vip": 1}\n'
        '{"id": "L3", "type": "lead", "renewal_at": 1767225600}\n'
        '{"id": 4, "type": "lead"}\n'
        '{"id": "L5", "type": "lead", "score": 1e999}\n',
    )
    assert errors(read(path)) == [
        (1, "score: expected a number, got the text '12'"),
        (2, "vip: expected true or false, got the number 1"),
        (
            3,
            "renewal_at: expected a date and time as text (2027-03-02T10:00:00Z or 2027-03-02), got the number 1767225600",
        ),
        (4, "id: expected text, got the number 4"),
        (5, "score: expected a finite number, got inf"),
    ]


def test_every_problem_of_a_row_is_in_its_one_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "many.csv", "id,type,email,score\nL1,prospect,jo@@x,high\n")
    ((line, message),) = errors(read(path))
    assert line == 2
    parts = message.split("; ")
    assert parts[0] == "type 'prospect' is not a module (lead, contact, deal, partner)"
    assert parts[1].startswith("invalid email 'jo@@x'")
    assert parts[-1] == "score: expected a number, got the text 'high'"


def test_a_type_that_is_not_a_module_is_an_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "t.csv", "id,type\nL1,leads\n")
    assert errors(read(path)) == [
        (2, "type 'leads' is not a module (lead, contact, deal, partner); did you mean 'lead'?")
    ]


def test_a_row_without_a_type_needs_a_default_type(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "notype.csv", "id,type\nL1,\nL2,contact\n")
    items = read(path)
    assert errors(items) == [
        (2, "no type: give the row a type (lead, contact, deal, partner) or import with --type MODULE")
    ]
    rows = read(path, default_type="lead")
    assert [(r.id, r.type) for r in rows] == [("L1", "lead"), ("L2", "contact")]  # the row's own type wins
    no_column = write(tmp_path, "nocolumn.jsonl", '{"id": "L1"}\n')
    assert [r.type for r in read(no_column, default_type="deal")] == ["deal"]
    assert errors(read(no_column))[0][0] == 1


def test_a_default_type_that_is_not_a_module_is_refused_at_once(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "a.csv", "id\nL1\n")
    with pytest.raises(records.ImportFileError, match="default type 'prospect' is not a module"):
        records.read_rows(str(path), fields=SETTINGS.fields, modules=SETTINGS.all_modules, default_type="prospect")


def test_an_owner_must_be_a_known_user_when_users_are_given(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "owners.csv", "id,type,owner\nL1,lead,ana\nL2,lead,bob\n")
    assert errors(read(path, owners=["ana", "bobby"])) == [(3, "owner: 'bob' is not a user; did you mean 'bobby'?")]
    assert errors(read(path)) == []  # no users given: any owner


def test_a_row_with_too_many_or_too_few_values_is_an_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "shape.csv", "id,type,company\nL1,lead,Acme, Inc\nL2,lead\nL3,lead,Initech\n")
    items = read(path)
    assert [line for line, _ in errors(items)] == [2, 3]
    assert "the row has 4 values but the header names 3 columns" in errors(items)[0][1]
    assert [r.id for r in items if isinstance(r, records.Row)] == ["L3"]


def test_a_jsonl_line_that_is_not_an_object_is_an_error_on_that_line(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "mixed.jsonl",
        '{"id": "L1", "type": "lead"}\n[1, 2]\n{"id": "L3", "type": \n"just text"\n{"id": "L5", "type": "lead"}\n',
    )
    items = read(path)
    assert [r.id for r in items if isinstance(r, records.Row)] == ["L1", "L5"]
    found = errors(items)
    assert found[0] == (2, "expected a JSON object ({...}), got a list")
    assert found[1][0] == 3 and found[1][1].startswith("not a JSON object: ")
    assert found[2] == (4, "expected a JSON object ({...}), got the text 'just text'")


def test_unknown_keys_in_a_jsonl_line_reject_that_line(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path, "extra.jsonl", '{"id": "L1", "type": "lead", "nickname": "Jo"}\n{"id": "L2", "type": "lead"}\n'
    )
    items = read(path)
    assert errors(items) == [(1, "unknown field 'nickname': declare it in Settings.record_fields")]
    assert [r.id for r in items if isinstance(r, records.Row)] == ["L2"]


# --- The file as a whole --------------------------------------------------------------------------


def test_an_unknown_csv_column_rejects_the_whole_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "extra.csv", "id,type,nickname,scor\nL1,lead,Jo,3\nL2,lead,Kim,4\n")
    assert errors(read(path)) == [
        (
            1,
            "unknown fields 'nickname', 'scor' (did you mean 'score'?): declare them in Settings.record_fields; "
            "the file was not imported",
        )
    ]
    assert len(read(path)) == 1


def test_a_header_column_named_twice_rejects_the_whole_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "twice.csv", "id,email,type,email\nL1,a@x.com,lead,b@x.com\n")
    assert errors(read(path)) == [(1, "column 'email' appears twice (columns 2 and 4); the file was not imported")]


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "latin1.csv", "id,type,company\nL1,lead,Acme\nL2,lead,Café\n", encoding="latin-1")
    with pytest.raises(records.ImportFileError, match=r"line 3 is not UTF-8 text \(byte 0xe9") as exc:
        read(path)
    assert exc.value.line == 3
    jsonl = write(tmp_path, "latin1.jsonl", '{"id": "L1", "type": "lead"}\n{"company": "Café"}\n', encoding="latin-1")
    with pytest.raises(records.ImportFileError, match="line 2 is not UTF-8"):
        read(jsonl)


def test_a_line_not_utf8_after_a_multiline_value_is_named_by_its_own_line(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "m.csv", 'id,type,company\nL1,lead,"A\nB"\nL2,lead,Café\n', encoding="latin-1")
    with pytest.raises(records.ImportFileError, match="line 4 is not UTF-8"):
        read(path)


def test_a_quote_left_open_refuses_the_file_naming_the_row_where_it_opens(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "open.csv", 'id,type,company\nL1,lead,Acme\nL2,lead,"Initech\nL3,lead,Umbrella\n')
    with pytest.raises(records.ImportFileError, match=r"line 3: .* double quote that is never closed"):
        read(path)
    long = write(tmp_path, "long.csv", 'id,type,company\nL1,lead,"Initech\n' + "L9,lead,Umbrella\n" * 20_000)
    with pytest.raises(records.ImportFileError, match=r"line 2: .* \(is a double quote left open\?\)"):
        read(long)
    stray = write(tmp_path, "stray.csv", 'id,type,company\nL1,lead,"Acme" Inc\n')
    with pytest.raises(records.ImportFileError, match=r"line 2: .* a quote inside a value is written twice"):
        read(stray)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "bom-only.csv", "blank.jsonl"])
def test_an_empty_file_is_refused(tmp_path: pathlib.Path, name: str) -> None:
    text = {"bom-only.csv": "\ufeff", "blank.jsonl": "\n\n"}.get(name, "")
    path = write(tmp_path, name, text)
    with pytest.raises(records.ImportFileError, match="the file is empty"):
        read(path)


def test_a_csv_whose_first_line_is_data_is_refused_for_its_missing_header(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "noheader.csv", "L1,lead,jo@x.com\nL2,lead,kim@x.com\n")
    with pytest.raises(records.ImportFileError, match="missing header: line 1 must name the columns"):
        read(path)
    blank = write(tmp_path, "blankfirst.csv", "\nid,type\nL1,lead\n")
    with pytest.raises(records.ImportFileError, match="missing header: line 1 is blank"):
        read(blank)


def test_a_semicolon_separated_file_is_refused_with_a_hint(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "excel-de.csv", "id;type;email\nL1;lead;jo@x.com\n")
    with pytest.raises(records.ImportFileError, match="separated by commas, not semicolons"):
        read(path)


def test_the_format_comes_from_the_extension(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "leads.xlsx", "")
    with pytest.raises(records.ImportFileError, match=r"name it \.csv"):
        read(path)
    upper = write(tmp_path, "LEADS.CSV", "id,type\nL1,lead\n")
    assert [r.id for r in read(upper)] == ["L1"]


def test_a_missing_file_is_an_import_file_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(records.ImportFileError, match="cannot read"):
        read(tmp_path / "nowhere.csv")


# --- Streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_the_first_row_comes_without_reading_the_whole_file(tmp_path: pathlib.Path, ext: str) -> None:
    path = tmp_path / f"big.{ext}"
    with path.open("w", encoding="utf-8") as f:
        if ext == "csv":
            f.write("id,type,email,score,created_at\n")
            f.writelines(f"L{i},lead,person.{i}@example.com,{i},2026-01-01\n" for i in range(100_000))
        else:
            f.writelines(
                json.dumps({"id": f"L{i}", "type": "lead", "email": f"person.{i}@example.com", "score": i}) + "\n"
                for i in range(100_000)
            )
    assert path.stat().st_size > 4_000_000
    next(iter(read_lazily(path)))  # loads email-validator and the like before measuring

    tracemalloc.start()
    try:
        rows = read_lazily(path)
        first = next(rows)
        _, peak = tracemalloc.get_traced_memory()
        rows.close()
    finally:
        tracemalloc.stop()
    assert isinstance(first, records.Row) and first.id == "L0"
    assert peak < 500_000


def read_lazily(path: pathlib.Path) -> Any:
    return records.read_rows(str(path), fields=SETTINGS.fields, modules=SETTINGS.all_modules, default_type=None)
