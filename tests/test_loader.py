"""Reading rule files: YAML 1.2 values, marks, and bad input that must give one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outreach.rules import loader
from outreach.rules.diagnostics import Code

pytestmark = pytest.mark.unit


def one_doc(text: str) -> loader.Document:
    docs, problems = loader.parse_text(text, "t.yaml")
    assert problems == []
    assert len(docs) == 1
    return docs[0]


def only_problem(text: str) -> tuple[int, int, Code, str]:
    _docs, problems = loader.parse_text(text, "t.yaml")
    assert len(problems) == 1, problems
    p = problems[0]
    return p.line, p.column, p.code, p.message


def test_yaml_1_1_booleans_stay_text_so_norway_is_no() -> None:
    doc = one_doc("kind: View\nwhere: {field: country, in: [NO, SE, no, yes, on, off, y, n, Yes]}\n")
    assert doc.data["where"]["in"] == ["NO", "SE", "no", "yes", "on", "off", "y", "n", "Yes"]


def test_the_campaign_key_on_is_a_key_not_true() -> None:
    doc = one_doc("kind: Campaign\non:\n  opened: []\n")
    assert list(doc.data) == ["kind", "on"]


def test_times_and_dates_stay_text() -> None:
    doc = one_doc("a: 7:30\nb: 2027-03-02T10:00:00-08:00\nc: 2026-11-23\nd: 1_000\n")
    assert doc.data == {"a": "7:30", "b": "2027-03-02T10:00:00-08:00", "c": "2026-11-23", "d": "1_000"}


def test_yaml_1_2_core_numbers_booleans_and_nulls() -> None:
    doc = one_doc("i: 42\nn: -7\nh: 0x1F\no: 0o17\nf: 1.5\ne: 1e3\nt: true\nF: FALSE\nz: ~\nnull_word: null\nq: '42'\n")
    assert doc.data == {
        "i": 42, "n": -7, "h": 31, "o": 15, "f": 1.5, "e": 1000.0, "t": True, "F": False, "z": None,
        "null_word": None, "q": "42",
    }  # fmt: skip


def test_marks_point_at_values_and_keys() -> None:
    doc = one_doc("kind: Sequence\nsteps:\n  - {id: a, wait: 3 days}\n  - id: b\n    wait: soon\n")
    assert doc.mark(("steps", 1, "wait")) == (5, 11, "")
    assert doc.key_mark(("steps", 1, "wait"))[:2] == (5, 5)
    assert doc.mark(("steps", 0, "wait"))[:2] == (3, 19)
    # a path that does not exist falls back to its nearest ancestor
    assert doc.mark(("steps", 0, "missing"))[:2] == (3, 5)


def test_scalar_styles_are_kept_for_line_mapping() -> None:
    doc = one_doc("a: |\n  hello\nb: >\n  folded\nc: 'q'\nd: plain\n")
    assert [doc.mark((k,)).style for k in "abcd"] == ["|", ">", "'", ""]


def test_several_documents_per_file_and_empty_ones_skipped() -> None:
    docs, problems = loader.parse_text("---\nkind: A\n---\n---\nkind: B\n...\n", "t.yaml")
    assert problems == []
    assert [d.data["kind"] for d in docs] == ["A", "B"]
    assert docs[1].mark(("kind",)).line == 5


def test_duplicate_key_is_an_error_naming_both_lines() -> None:
    line, col, code, msg = only_problem("kind: Template\nname: a\nsubject: x\nname: b\n")
    assert (line, col, code) == (4, 1, Code.YAML_DUPLICATE_KEY)
    assert "duplicate key 'name'" in msg and "line 2" in msg


def test_duplicate_key_deep_inside_flow_mapping() -> None:
    line, col, code, _ = only_problem("steps:\n  - {id: a, wait: 1h, id: b}\n")
    assert (line, col, code) == (2, 23, Code.YAML_DUPLICATE_KEY)


def test_a_tab_in_indentation_names_the_tab() -> None:
    line, _col, code, msg = only_problem("kind: View\nwhere:\n\tfield: x\n")
    assert (line, code) == (3, Code.YAML_SYNTAX)
    assert "tab" in msg


def test_an_unclosed_quote_points_at_its_start() -> None:
    line, col, code, msg = only_problem('kind: Template\nsubject: "Hello\ntext: x\n')
    assert (line, col, code) == (2, 10, Code.YAML_SYNTAX)
    assert "quoted scalar" in msg


def test_a_list_document_and_a_scalar_document_are_refused() -> None:
    assert only_problem("- a\n- b\n")[2:] == (
        Code.YAML_NOT_MAPPING,
        "document 1 is a list; a rule document is a mapping with a `kind`",
    )
    assert only_problem("just text\n")[2] is Code.YAML_NOT_MAPPING


def test_an_empty_or_comment_only_file_is_an_error() -> None:
    assert only_problem("")[2] is Code.FILE_EMPTY
    assert only_problem("# only a comment\n")[2] is Code.FILE_EMPTY


def test_a_recursive_alias_is_refused_not_followed_forever() -> None:
    assert only_problem("a: &x [1, *x]\n")[2] is Code.YAML_RECURSIVE_ALIAS


def test_an_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 9)
    ]
    code = only_problem("\n".join(lines) + "\n")[2]
    assert code is Code.YAML_RECURSIVE_ALIAS


def test_tags_other_than_plain_values_are_refused() -> None:
    line, _col, code, msg = only_problem("a: !!binary aGVsbG8=\n")
    assert (line, code) == (1, Code.YAML_SYNTAX)
    assert "unsupported tag" in msg


def test_complex_keys_are_refused() -> None:
    assert only_problem("? [a, b]\n: c\n")[2] is Code.YAML_NON_STRING_KEY


def test_a_binary_file_gets_one_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "logo.yaml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    docs, problems = loader.read_file(str(f))
    assert docs == [] and len(problems) == 1
    assert problems[0].code is Code.FILE_ENCODING and "binary" in problems[0].message


def test_a_non_utf8_file_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("kind: Template\nname: x\nsubject: Grüße\n".encode("latin-1"))
    _docs, problems = loader.read_file(str(f))
    assert [(p.line, p.code) for p in problems] == [(3, Code.FILE_ENCODING)]
    assert "not UTF-8" in problems[0].message


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufeffkind: Template\n".encode())
    docs, problems = loader.read_file(str(f))
    assert problems == [] and docs[0].data == {"kind": "Template"}


def test_a_ten_megabyte_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with open(f, "wb") as fh:
        fh.write(b"kind: Template\ntext: |\n")
        fh.write(b"  " + b"x" * 100 + b"\n" * 1)
        fh.seek(10 * 1024 * 1024)
        fh.write(b"\n")
    docs, problems = loader.read_file(str(f))
    assert docs == [] and [p.code for p in problems] == [Code.FILE_TOO_LARGE]
    assert "10485" in problems[0].message


def test_a_symlink_loop_file_gets_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    _files, docs, problems = loader.load([str(tmp_path)])
    assert docs == [] and len(problems) == 1
    assert problems[0].code is Code.FILE_UNREADABLE and "symbolic link loop" in problems[0].message
    assert problems[0].file.endswith("loop.yaml")


def test_a_directory_symlink_loop_is_read_once_and_reported(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("kind: Template\n")
    (tmp_path / "rules" / "again").symlink_to(tmp_path / "rules")
    _files, docs, problems = loader.load([str(tmp_path / "rules")])
    assert len(docs) == 1
    assert [p.code for p in problems] == [Code.FILE_UNREADABLE]


def test_hidden_directories_and_other_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yaml").write_text("- not a rule\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    (tmp_path / "a.yml").write_text("kind: Template\n")
    files, _docs, problems = loader.load([str(tmp_path)])
    assert [os.path.basename(f) for f in files] == ["a.yml"] and problems == []


def test_an_unreadable_path_is_reported(tmp_path: Path) -> None:
    # a directory where a file is expected: open() fails as it does for a file without read permission
    d = tmp_path / "odd.yaml"
    d.mkdir()
    _docs, problems = loader.read_file(str(d))
    assert [p.code for p in problems] == [Code.FILE_UNREADABLE]
    assert "cannot read the file" in problems[0].message


def _aliased_scalar_view(times: int, length: int) -> str:
    """The issue's hostile View: an `in:` list that aliases one long scalar `times` times."""
    items = ", ".join(["*a"] * times)
    return f"kind: View\nname: hostile\nmodule: lead\nwhere:\n  field: country\n  in: [&a {'a' * length}, {items}]\n"


def test_a_one_megabyte_file_of_aliases_is_refused_at_the_alias_quickly_and_in_little_memory(tmp_path: Path) -> None:
    """1 MB that aliases a 600,000-character value 100,000 times (60 GB once expanded): one error at the alias
    where the expansion passes the limit, found while the aliases are followed, before anything is built."""
    import time
    import tracemalloc

    from outreach.rules import validate

    text = _aliased_scalar_view(100_000, 600_000)
    assert len(text) < loader.MAX_FILE_BYTES
    (tmp_path / "hostile.yaml").write_text(text)
    (tmp_path / "settings.yaml").write_text("kind: Settings\n")
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = validate.validate([str(tmp_path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 64 * 1024 * 1024
    [problem] = result.diagnostics
    sixth_alias = text.splitlines()[5].index("*a", 600_000) + 5 * len(", *a")
    where = (problem.file, problem.line, problem.column, problem.code)
    assert where == (str(tmp_path / "hostile.yaml"), 6, sixth_alias + 1, Code.YAML_RECURSIVE_ALIAS)
    assert problem.message.startswith(f"aliases expand the file to more than {loader.MAX_EXPANDED_CHARS} characters")


def test_aliases_count_across_the_documents_of_a_file_and_small_ones_are_fine() -> None:
    assert one_doc(_aliased_scalar_view(100, 1000)).data["where"]["in"] == ["a" * 1000] * 101
    document = _aliased_scalar_view(3, 1_000_000)  # 4 million characters: at the limit, not past it
    _docs, problems = loader.parse_text(document + "---\n" + document, "t.yaml")
    assert [(p.line, p.code) for p in problems] == [(13, Code.YAML_RECURSIVE_ALIAS)]


def test_the_text_an_error_leaves_unread_starts_at_the_document_it_is_in() -> None:
    text = "kind: Template\nname: first\n---\nkind: Template\nname: second\nsubject: {oops\n"
    docs, problems, unread = loader.parse(text, "t.yaml")
    assert [d.data["name"] for d in docs] == ["first"] and len(problems) == 1
    assert unread == "---\nkind: Template\nname: second\nsubject: {oops\n"
    assert loader.parse("kind: View\n", "t.yaml").unread == ""
