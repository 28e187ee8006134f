"""`outreach validate` and `outreach schema` as a user and a CI job run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.rules import schemas
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.acceptance

BASE = str(FIXTURES / "base")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_example_rules_validate_clean_with_a_summary() -> None:
    code, out = run("validate", "--summary", str(ROOT / "rules"))
    assert code == 0, out
    assert "OK" in out and "no problems" in out
    for name in ("inbound-nurture", "spring-webinar", "partner-leads", "dach-qualified", "overdue-reminder"):
        assert name in out


def test_an_error_is_printed_as_file_line_col_with_its_path_and_exits_1(tmp_path: Path) -> None:
    f = write(
        tmp_path, "seq.yaml", "kind: Sequence\nname: s\nsteps:\n  - {id: a, email: intro, wait: 2 busines days}\n"
    )
    code, out = run("validate", BASE, f)
    assert code == 1
    assert f"{f}:4:33: error: '2 busines days' is not a duration" in out
    assert "[steps[0].wait]" in out
    assert "1 error, 0 warnings in 3 files" in out


def test_json_format_lists_objects_with_every_field(tmp_path: Path) -> None:
    f = write(tmp_path, "seq.yaml", "kind: Sequence\nname: s\nsteps:\n  - {id: a, emial: intro}\n")
    code, out = run("validate", "--format", "json", BASE, f)
    assert code == 1
    items = json.loads(out)
    assert {"file", "line", "column", "severity", "path", "message", "code"} <= set(items[0])
    unknown = next(i for i in items if i["code"] == "schema-unknown-key")
    assert (unknown["line"], unknown["path"], unknown["severity"]) == (4, "steps[0].emial", "error")
    assert "did you mean 'email'?" in unknown["message"]


def test_json_format_of_a_clean_run_is_an_empty_list() -> None:
    code, out = run("validate", "--format", "json", BASE)
    assert (code, json.loads(out)) == (0, [])


def test_github_format_writes_workflow_commands(tmp_path: Path) -> None:
    f = write(tmp_path, "t.yaml", "kind: Template\nname: t\nsubject: Hi\ntext: '{{ record.nickname }}'\n")
    code, out = run("validate", "--format", "github", BASE, f)
    assert code == 1
    line = next(x for x in out.splitlines() if "nickname" in x)
    assert line.startswith(f"::error file={f},line=4,col=11,title=merge-field-unknown::")
    assert "unknown merge field record.nickname" in line


def test_github_format_escapes_newlines_in_messages() -> None:
    from outreach.rules.diagnostics import Code, Diagnostic, Severity, format_github

    d = Diagnostic("a,b.yaml", 1, 2, Severity.ERROR, Code.YAML_SYNTAX, "one\ntwo 100%")
    assert format_github([d]) == "::error file=a%2Cb.yaml,line=1,col=2,title=yaml-syntax::one%0Atwo 100%25"


def test_warnings_exit_0_and_strict_makes_them_errors(tmp_path: Path) -> None:
    f = write(tmp_path, "t.yaml", "kind: Template\nname: lonely\nsubject: Hi\ntext: Hello\n")
    code, out = run("validate", BASE, f)
    assert code == 0
    assert f"{f}:2:7: warning: template 'lonely' is not used" in out
    code, out = run("validate", "--strict", BASE, f)
    assert code == 1
    assert f"{f}:2:7: error: template 'lonely' is not used" in out


def test_a_campaign_in_the_past_is_a_warning_judged_against_now(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "c.yaml",
        "kind: Campaign\nname: c\nmodule: lead\nowner: anna\nto: {view: qualified}\ntemplate: intro\n"
        "send_at: 2026-01-05T10:00:00Z\n",
    )
    code, out = run("validate", "--now", "2026-11-23T08:00:00Z", BASE, f)
    assert code == 0 and "warning: send_at 2026-01-05T10:00:00+00:00 is in the past" in out
    code, out = run("validate", "--now", "2025-11-23T08:00:00Z", BASE, f)
    assert code == 0 and "in the past" not in out


def test_usage_errors_exit_2() -> None:
    assert run("validate", "/no/such/dir")[0] == 2
    assert run("validate", "--format", "xml", BASE)[0] == 2
    assert run("validate", "--now", "yesterday", BASE)[0] == 2
    assert run("schema", "Nonsense")[0] == 2


def test_schema_prints_one_kind_in_either_draft() -> None:
    code, out = run("schema", "sequence")
    assert code == 0
    assert json.loads(out) == schemas.schema("Sequence")
    code, out = run("schema", "--draft", "07", "Campaign")
    s = json.loads(out)
    assert s["$schema"] == schemas.DRAFT_07 and "definitions" in s and "$defs" not in s


def test_schema_without_a_kind_lists_the_kinds() -> None:
    code, out = run("schema")
    assert code == 0 and all(k in out for k in schemas.KINDS)


def test_schema_write_writes_both_drafts_of_every_kind(tmp_path: Path) -> None:
    code, _out = run("schema", "--write", str(tmp_path / "out"))
    assert code == 0
    for kind in schemas.KINDS:
        assert (tmp_path / "out" / schemas.file_name(kind)).is_file()
        assert (tmp_path / "out" / "draft-07" / schemas.file_name(kind)).is_file()


def test_every_command_has_help_with_an_example() -> None:
    for args in (["--help"], ["validate", "--help"], ["schema", "--help"]):
        code, out = run(*args)
        assert code == 0 and "Usage:" in out
    assert "outreach validate rules/" in run("validate", "--help")[1]
    assert "outreach schema --write schemas/" in run("schema", "--help")[1]


def test_the_console_script_runs_outside_the_test_process() -> None:
    exe = Path(sys.executable).with_name("outreach")
    proc = subprocess.run([str(exe), "validate", str(ROOT / "rules")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert proc.stdout.startswith("outreach, version ")


def test_shell_completion_script_is_generated() -> None:
    exe = Path(sys.executable).with_name("outreach")
    env = {"_OUTREACH_COMPLETE": "bash_source", "PATH": str(exe.parent)}
    proc = subprocess.run([str(exe)], capture_output=True, text=True, env=env, check=False)
    assert "_outreach_completion" in proc.stdout


def test_daemon_py_refuses_an_invalid_rule_directory(tmp_path: Path) -> None:
    write(tmp_path, "settings.yaml", "kind: Settings\ntimezone: Mars/Olympus\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "daemon.py"), "--rules", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "unknown time zone 'Mars/Olympus'" in proc.stderr and "not starting" in proc.stderr


def test_daemon_py_runs_a_tick_on_the_example_rules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "daemon.py"), "--rules", str(ROOT / "rules"), "--once"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rules applied: 15 added" in proc.stderr
    assert (tmp_path / "var" / "outreach.db").is_file()


def test_every_command_and_subcommand_has_help_with_an_example() -> None:
    import click

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        found = [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                found += walk(sub, [*path, name])
        return found

    for path in walk(cli.main, []):
        code, out = run(*path, "--help")
        assert code == 0, path
        assert "outreach" in out.split("Options:")[0].split("\n", 2)[-1], (
            f"`outreach {' '.join(path)} --help` shows no example"
        )


@pytest.mark.parametrize("name", sorted(cli.LAZY))
def test_a_lazy_commands_one_line_help_is_its_own(name: str) -> None:
    command = cli.all_commands()[name]
    assert command.name == name
    assert click.Command(name, help=cli.LAZY[name][2]).get_short_help_str(150) == command.get_short_help_str(150)


def test_the_cli_imports_neither_the_store_nor_the_daemon_nor_the_transports_to_start() -> None:
    probe = ("import sys, outreach.cli; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('outreach', 'sqlalchemy', 'aiohttp',"
             " 'aiosmtplib', 'aioimaplib', 'alembic', 'rich'))))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in loaded if m.startswith(("outreach.store", "outreach.daemon", "outreach.mail", "outreach.web",
                                                "outreach.app", "sqlalchemy", "aiohttp", "aiosmtplib", "aioimaplib",
                                                "alembic", "rich"))]  # fmt: skip
    assert heavy == []
    help_text = subprocess.run([sys.executable, "-m", "outreach.cli", "--help"], capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
    assert all(f"  {name} " in help_text for name in cli.LAZY)  # every command listed, none imported


_HEAVY = ("outreach.store", "outreach.daemon", "outreach.mail", "outreach.web", "outreach.app", "outreach.review.ruletests",
          "outreach.review.simulation",
          "sqlalchemy", "aiohttp", "aiosmtplib", "aioimaplib", "alembic", "aiosqlite", "asyncpg", "rich", "holidays")  # fmt: skip


def _loaded_by(code: str, env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """What a fresh interpreter printed running `code`, and the heavy modules it has loaded after it."""
    probe = f"{code}\nimport sys\nprint('MODULES', ' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed, _, modules = done.stdout.rpartition("MODULES ")
    return printed.splitlines(), [m for m in modules.split() if m.startswith(_HEAVY)]


@pytest.mark.parametrize("module", sorted({module for module, _attr, _help in cli.LAZY.values()}))
def test_a_command_module_imports_what_its_commands_need_only_when_they_run(module: str) -> None:
    """Tab completion of a sub-command or an option loads the command's module: it must start as fast as
    `outreach --help` (issue 19: completion under 0.3 s)."""
    assert _loaded_by(f"import outreach.cli.{module}")[1] == []


@pytest.mark.parametrize("words", ["outreach rec", "outreach records li", "outreach enroll x --wh", "outreach db "])
def test_tab_completion_loads_no_store_no_app_and_no_transport(words: str) -> None:
    code = ("import os, sys\nfrom outreach.cli import main\n"
            "try:\n    main(prog_name='outreach')\nexcept SystemExit:\n    pass")  # fmt: skip
    env = {"_OUTREACH_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    shown, heavy = _loaded_by(code, env)
    expected = {"outreach rec": "plain,records", "outreach records li": "plain,list",
                "outreach enroll x --wh": "plain,--where", "outreach db ": "plain,upgrade"}[words]  # fmt: skip
    assert expected in shown
    assert heavy == []
