"""The user documentation stays true: its examples validate and it names every kind, key, code and option."""

from __future__ import annotations

import datetime as dt
import glob
import logging
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from outreach import cli
from outreach import daemon as daemon_module
from outreach.cli import options
from outreach.rules import loader, schemas, validate
from outreach.rules.diagnostics import Code
from tests.conftest import ROOT

DOCS = ROOT / "docs"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _rules_md_blocks() -> list[str]:
    return _YAML_BLOCK.findall(_read("rules.md"))


def _write_blocks(blocks: list[str], where: Path) -> list[Path]:
    paths = []
    for i, block in enumerate(blocks):
        path = where / f"block-{i:02d}.yaml"
        path.write_text(block, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.mark.unit
def test_the_yaml_examples_of_rules_md_form_one_rule_set_without_errors(tmp_path: Path) -> None:
    blocks = _rules_md_blocks()
    assert blocks, "docs/rules.md has no ```yaml blocks"
    _write_blocks(blocks, tmp_path)
    result = validate.validate([str(tmp_path)])
    problems = "\n".join(f"{d.file}:{d.line}: {d.severity}: {d.message} ({d.code})" for d in result.errors)
    assert result.errors == [], f"the ```yaml blocks of docs/rules.md do not validate:\n{problems}"
    assert result.ruleset is not None


@pytest.mark.unit
def test_rules_md_has_a_yaml_example_of_every_kind() -> None:
    kinds: set[str] = set()
    for i, block in enumerate(_rules_md_blocks()):
        docs, problems = loader.parse_text(block, f"block-{i:02d}.yaml")
        assert problems == []
        kinds |= {d.data.get("kind") for d in docs}
    assert set(schemas.KINDS) <= kinds, f"no ```yaml example of {sorted(set(schemas.KINDS) - kinds)}"


@pytest.mark.unit
def test_errors_md_explains_every_code() -> None:
    text = _read("errors.md")
    missing = [code.value for code in Code if f"`{code.value}`" not in text]
    assert missing == [], f"docs/errors.md does not mention {missing}"


@pytest.mark.unit
@pytest.mark.parametrize("kind", schemas.KINDS)
def test_rules_md_names_every_kind_and_every_key_of_it(kind: str) -> None:
    text = _read("rules.md")
    assert f"`{kind}`" in text
    keys = schemas.schema(kind)["properties"]
    missing = [key for key in keys if f"`{key}`" not in text]
    assert missing == [], f"docs/rules.md does not mention these {kind} keys: {missing}"


def _commands() -> dict[str, click.Command]:
    assert isinstance(cli.main, click.Group)
    return cli.all_commands()


def _mentions(text: str, command: click.Command) -> list[str]:
    """The options and arguments of `command` that `text` does not mention."""
    missing = []
    for param in command.params:
        if isinstance(param, click.Option):
            missing += [opt for opt in (*param.opts, *param.secondary_opts) if f"`{opt}" not in text]
        elif param.human_readable_name not in text:
            missing.append(param.human_readable_name)
    help_option = command.get_help_option(click.Context(command))
    if help_option is not None:
        missing += [opt for opt in help_option.opts if f"`{opt}" not in text]
    return missing


@pytest.mark.unit
def test_cli_md_describes_every_command_and_option() -> None:
    text = _read("cli.md")
    assert _mentions(text, cli.main) == []
    for name, command in _commands().items():
        assert f"outreach {name}" in text, f"docs/cli.md does not describe `outreach {name}`"
        assert _mentions(text, command) == [], f"docs/cli.md misses options of `outreach {name}`"


@pytest.mark.acceptance
def test_outreach_help_exits_0_and_shows_an_example() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "outreach validate rules/" in result.output


@pytest.mark.acceptance
@pytest.mark.parametrize("name", sorted(_commands()))
def test_command_help_exits_0_and_shows_an_example(name: str) -> None:
    result = CliRunner().invoke(cli.main, [name, "--help"])
    assert result.exit_code == 0, result.output
    examples = [line for line in result.output.splitlines() if line.strip().startswith(f"outreach {name} ")]
    assert examples, f"`outreach {name} --help` shows no example line"


def _cli_md_example(text: str, file: str) -> str:
    match = re.search(rf"^`{re.escape(file)}`:\n\n```yaml\n(.*?)^```", text, re.S | re.M)
    assert match, f"docs/cli.md has no example {file}"
    return match.group(1)


def _cli_md_output(text: str, command: str, first_line: str = "") -> str:
    """The output shown under `$ COMMAND` in a ```text block, up to the next `$` line."""
    pattern = rf"^```text\n\$ {re.escape(command)}\n({re.escape(first_line)}.*?)(?:^\$ |^```)"
    match = re.search(pattern, text, re.S | re.M)
    assert match, f"docs/cli.md shows no output of `{command}`"
    return match.group(1)


@pytest.mark.acceptance
@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_the_output_examples_of_cli_md_are_real(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _read("cli.md")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("settings.yaml", "welcome.yaml"):
        (rules / name).write_text(_cli_md_example(text, f"rules/{name}"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = ["validate", "rules/"] if fmt == "text" else ["validate", "--format", fmt, "rules/"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1
    shown = _cli_md_output(text, "outreach " + " ".join(args), first_line="" if fmt != "text" else "rules/welcome")
    assert result.output == shown


_LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.M)  # the real time a log line was written
_MESSAGE_ID = re.compile(r"<[0-9a-f]{32}@")
_LINK_TOKEN = re.compile(r"(/[uoc]/)[A-Za-z0-9_-]{48}(?![A-Za-z0-9_-])")  # a signed link: random key and secret


def _transcript(text: str, section: str) -> list[tuple[str, str]]:
    """(command, output) of every `$ ` line in the ```text blocks of a section."""
    return _page_transcript(text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0], every_block=True)


def _same(expected: str, actual: str) -> bool:
    """The output as the page shows it: a line `...` stands for lines left out."""

    def normal(text: str) -> str:
        return _LINK_TOKEN.sub(r"\1", _MESSAGE_ID.sub("<@", _LOG_TIME.sub("", text)))

    chunks = [normal(c) for c in expected.split("...\n")]
    actual = normal(actual)
    if len(chunks) == 1:
        return actual == chunks[0]
    at = 0
    for chunk in chunks:
        found = actual.find(chunk, at)
        if found < 0:
            return False
        at = found + len(chunk)
    return True


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + "\n")


@pytest.mark.acceptance
def test_the_worked_example_of_reminders_md_is_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the worked example, run again in a copy of the rules: the page shows its real output.

    A `cat` of a file that does not exist yet writes the file from the page (the example's input).
    """
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    monkeypatch.chdir(tmp_path)
    for name in ("OUTREACH_SECRET", "OUTREACH_DB", "STATE_DIRECTORY"):  # the secret is created in var/
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(daemon_module, "configure_logging", lambda _fmt="text": None)
    log = logging.getLogger("outreach")
    handler = _Lines()
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    steps = _transcript(_read("reminders.md"), "A worked example")
    assert len(steps) > 10
    try:
        for command, expected in steps:
            args = shlex.split(command)
            if args[0] == "cat":
                paths = sorted(glob.glob(args[1]))
                if not paths:
                    Path(args[1]).write_text(expected, encoding="utf-8")
                    continue
                actual = "".join(Path(p).read_text(encoding="utf-8") for p in paths)
            else:
                assert args[0] == "outreach", command
                handler.lines.clear()
                result = CliRunner().invoke(cli.main, args[1:])
                assert result.exit_code == 0, f"{command}: {result.output}"
                actual = result.output + "".join(handler.lines)
            assert _same(expected, actual), f"`{command}` printed\n{actual}\nbut docs/reminders.md shows\n{expected}"
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


class _Stderr(logging.Handler):
    """What Python does with a warning when nothing configured logging: the message alone, on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


WALK_CLOCK = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)  # the clock sequences.md's walk-through holds
_MAILDIR_NAME = re.compile(r"\b\d{10}\.M\d+P\d+Q\d+\.[\w-]+")  # Maildir's unique name: time, µs, process, host
_ENV = re.compile(r"^[A-Z_]+=")


def _page_transcript(text: str, every_block: bool = False) -> list[tuple[str, str]]:
    """(command, output) of every `$ ` line of a page, in order, over its ```text blocks that start with a
    command (`every_block`: over all of them, a block's first lines belonging to the command before)."""
    out: list[tuple[str, str]] = []
    for block in re.findall(r"^```text\n(.*?)^```", text, re.S | re.M):
        if not (every_block or block.startswith("$ ")):
            continue
        for line in block.splitlines(keepends=True):
            if line.startswith("$ "):
                out.append((line[2:].rstrip("\n"), ""))
            else:
                out[-1] = (out[-1][0], out[-1][1] + line)
    return out


def _outbox_file(page_name: str, expected: str, files: dict[str, Path]) -> Path:
    """The Maildir file the page means: the one it named before, or the one with the page's enrollment and step."""
    if page_name in files:
        return files[page_name]
    wanted = [line for line in expected.splitlines() if line.startswith(("X-Outreach-Enrollment:", "X-Outreach-Step:"))]
    assert len(wanted) == 2, f"the page shows no enrollment and step for {page_name}"
    for path in sorted(Path("var/outbox/new").iterdir()):
        head = path.read_text(encoding="utf-8").split("\n\n", 1)[0].splitlines()
        if all(line in head for line in wanted):
            files[page_name] = path
            return path
    raise AssertionError(f"no message in var/outbox/new has {wanted}")


def walk_through(text: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str, Path]]:
    """Run the commands of a walk-through page in `where`, with the clock held at WALK_CLOCK.

    Yields (command, what the page shows, what it printed, the file it read). `outreach` commands run in-process
    (their log lines follow their output, as `LEVEL message`); `cat`, `ls`, `sed -n '1,/^$/p'`, `python3 -c`,
    `sqlite3` and `echo $?` are done here. A `cat` of a file that does not exist yet writes it from the page. A
    Maildir file name of the page stands for the file with the same enrollment and step.
    """
    shutil.copytree(ROOT / "rules", where / "rules")
    shutil.copytree(ROOT / "samples", where / "samples")
    monkeypatch.chdir(where)
    mailboxes = ("ANNA_IMAP_USER", "BEN_IMAP_USER", "BEN_IMAP_PASSWORD")
    for name in ("OUTREACH_SECRET", "OUTREACH_DB", "STATE_DIRECTORY", *mailboxes):  # the secret is created in var/
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(options, "now", lambda: WALK_CLOCK)
    kwdefaults = daemon_module.Daemon.__init__.__kwdefaults__
    assert kwdefaults is not None
    monkeypatch.setitem(kwdefaults, "clock", lambda: WALK_CLOCK)
    monkeypatch.setattr(daemon_module, "configure_logging", lambda _fmt="text": None)
    log = logging.getLogger("outreach")
    handler = _Lines()
    level = log.level
    log.setLevel(logging.INFO)
    files: dict[str, Path] = {}
    status = 0
    steps = _page_transcript(text)
    try:
        for i, (command, expected) in enumerate(steps):
            args = shlex.split(command)
            env = {}
            while _ENV.match(args[0]):
                name, value = args.pop(0).split("=", 1)
                env[name] = value
            read = Path()
            if args[0] == "cat":
                read = Path(args[1])
                if not read.exists():
                    read.write_text(expected, encoding="utf-8")
                actual = read.read_text(encoding="utf-8")
            elif args[0] == "ls":
                actual = "".join(f"{name}\n" for name in sorted(p.name for p in Path(args[1]).iterdir()))
            elif args[:3] == ["sed", "-n", "1,/^$/p"]:
                read = _outbox_file(Path(args[3]).name, expected, files)
                actual = read.read_text(encoding="utf-8").split("\n\n", 1)[0] + "\n\n"
            elif args[:2] == ["python3", "-c"]:
                read = files[Path(args[3]).name]
                actual = subprocess.run([sys.executable, "-c", args[2], str(read)], capture_output=True, text=True,
                                        check=True).stdout  # fmt: skip
            elif args[0] == "sqlite3":
                with sqlite3.connect(args[1]) as db:
                    db.execute(args[2])
                db.close()
                actual = ""
            elif args == ["echo", "$?"]:
                actual = f"{status}\n"
            else:
                assert args[0] == "outreach", command
                handler.lines.clear()
                # `run` logs `LEVEL message` lines; other commands configure no logging, so Python prints their
                # warnings alone on stderr.
                logs = handler if args[1] == "run" else _Stderr()
                log.addHandler(logs)
                try:
                    result = CliRunner().invoke(cli.main, args[1:], env=env)
                finally:
                    log.removeHandler(logs)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    raise result.exception
                status = result.exit_code
                followed_by_status = i + 1 < len(steps) and steps[i + 1][0] == "echo $?"
                assert status == 0 or followed_by_status, f"{command} exited {status}: {result.output}"
                actual = result.output + "".join(handler.lines)
            yield command, expected, actual, read
    finally:
        log.setLevel(level)


@pytest.mark.acceptance
def test_the_walk_through_of_sequences_md_is_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the page, run again in order on copies of rules/ and samples/: the page shows its output.

    Log times, Message-IDs, link tokens and Maildir file names aside; the clock is held where the page says it was.
    """
    text = _read("sequences.md")
    shown = re.findall(r"^```text\n(# yaml-language-server.*?)^```", text, re.S | re.M)
    assert shown == [(ROOT / "rules" / "sequences" / f"{name}.yaml").read_text(encoding="utf-8")
                     for name in ("inbound-nurture", "welcome")]  # fmt: skip
    ran = 0
    for command, expected, actual, _read_file in walk_through(text, tmp_path, monkeypatch):
        page, real = _MAILDIR_NAME.sub("M", expected), _MAILDIR_NAME.sub("M", actual)
        assert _same(page, real), f"`{command}` printed\n{actual}\nbut docs/sequences.md shows\n{expected}"
        ran += 1
    assert ran > 50


@pytest.mark.acceptance
@pytest.mark.parametrize("entered, until", [("2026-11-21T10:00:00Z", "2026-12-02"),
                                            ("2027-03-13T10:00:00Z", "2027-04-01")])  # fmt: skip
def test_the_simulate_examples_of_cli_md_are_real(entered: str, until: str) -> None:
    command = f"outreach simulate --process partner-leads --stage New --entered {entered} --until {until}"
    result = CliRunner().invoke(cli.main, [*command.split()[1:], "--rules", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert result.output == _cli_md_output(_read("cli.md"), command)
    if entered.startswith("2026"):
        assert result.output == _cli_md_output(_read("testing-rules.md"), command)


@pytest.mark.acceptance
@pytest.mark.parametrize("command", [
    "outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z",
    "outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z --record-json "
    """'{"id": "J1", "type": "lead", "email": "jo@example.org", "owner": "ben"}'""",
])  # fmt: skip
def test_the_sequence_simulate_examples_of_cli_md_are_real(command: str) -> None:
    result = CliRunner().invoke(cli.main, [*shlex.split(command)[1:], "--rules", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert result.output == _cli_md_output(_read("cli.md"), command)


@pytest.mark.acceptance
def test_the_simulated_timeline_of_testing_rules_md_is_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The events file the page shows, written where the command runs; the timeline is the command's output."""
    section = _read("testing-rules.md").split("\n## A simulated timeline\n", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "reply.yaml").write_text(_YAML_BLOCK.findall(section)[0], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    steps = _transcript(_read("testing-rules.md"), "A simulated timeline")
    assert [command.split(" --")[0] for command, _ in steps] == ["outreach simulate inbound-nurture"]
    for command, expected in steps:
        result = CliRunner().invoke(cli.main, [*shlex.split(command)[1:], "--rules", str(ROOT / "rules")])
        assert result.exit_code == 0, result.output
        assert result.output == expected
        assert "reply from sam@example.org  [reply.yaml:2]" in result.output


@pytest.mark.acceptance
def test_the_markdown_plan_of_testing_rules_md_is_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example rules committed on `main`, the nudge's wait changed in the working tree, as the page says."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=Rule Author", "-c", "user.email=author@example.com",
                        "-c", "commit.gpgsign=false", *args], cwd=tmp_path, check=True, capture_output=True)  # fmt: skip

    shutil.copytree(ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "the example rules")
    path = tmp_path / "rules" / "sequences" / "inbound-nurture.yaml"
    text = path.read_text(encoding="utf-8")
    assert "wait: 2 business days, thread: reply" in text
    path.write_text(text.replace("wait: 2 business days, thread: reply", "wait: 3 business days, thread: reply"))
    monkeypatch.chdir(tmp_path)
    command = "outreach plan --base main --format markdown rules/"
    page = _read("testing-rules.md").split("\n## What a change does: plan --base\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"^````text\n\$ {re.escape(command)}\n(.*?)^````\n", page, re.S | re.M)
    assert match, f"docs/testing-rules.md shows no output of `{command}`"

    result = CliRunner().invoke(cli.main, command.split()[1:])

    assert result.exit_code == 2, result.output
    commit = re.compile(r"(against main \()[0-9a-f]{8}\)")
    assert commit.sub(r"\1…)", result.output) == commit.sub(r"\1…)", match.group(1))
    assert (
        "| ~ | Sequence | `inbound-nurture` | step 2 (nudge) wait: 2 business days → 3 business days |" in result.output
    )
