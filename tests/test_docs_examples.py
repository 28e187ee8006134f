"""The pages say only what is true today: none calls a built thing missing, every RuleTest they show runs as they
say, and every `outreach` command line they show is one the CLI accepts; the safe ones run, in order, and exit as
the page shows.

The pages are docs/*.md and README.md. tests/test_docs.py compares the output of some examples as well.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import click
import pytest
from click.testing import CliRunner

from outreach import cli
from outreach import daemon as daemon_module
from outreach.cli import options
from outreach.rules import loader
from tests.conftest import ROOT

PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.S | re.M,
)


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


class Block(NamedTuple):
    line: int  # of the block's first line, after the fence
    lang: str
    body: str
    before: str  # the last line of text before the fence
    end: int  # the offset in the page after the closing fence


def _blocks(text: str) -> list[Block]:
    return [
        Block(text.count("\n", 0, m.start("body")) + 1, m.group("lang"), m.group("body"),
              text[: m.start()].rstrip().rpartition("\n")[2], m.end())
        for m in _FENCE.finditer(text)
    ]  # fmt: skip


# --- a) no built thing is called missing ----------------------------------------------------------------------

# What a sentence says when it calls something missing or promises it for later.
_MISSING = (
    r"\bnot (?:yet )?(?:built|implemented|detected|recognized)\b|\b(?:is|are) not yet\b"
    r"|\blater issue\b|\barrives? in a later\b|\bonce it exists\b|\bcoming soon\b|\bstill to come\b"
    r"|\b(?:are|is) validated now\b|\bwhen (?:it|they) (?:is|are) built\b|(?-i:\b(?:TODO|TBD|FIXME)\b)"
    r"|\bissue \d+\b.*\b(?:yet|will|later|until|once)\b|\b(?:yet|will|later|until|once)\b.*\bissue \d+\b"
)

# (what a sentence names, the built thing it would call missing, and the page that describes it)
BUILT: list[tuple[str, str]] = [
    (r"\bsmtp\b|\brelay\b", "SMTP sending (docs/mail.md)"),
    (r"\bimap\b|\brepl(?:y|ies)\b|\bauto-?repl(?:y|ies)\b|\bbounces?\b|\bmailbox(?:es)?\b",
     "reading replies, auto-replies and bounces over IMAP (docs/mail.md)"),
    (r"\boutreach test\b|\bRuleTests?\b", "`outreach test`, which runs RuleTests (docs/testing-rules.md)"),
    (r"\bsimulat(?:e|es|ing|ion)\b", "`outreach simulate`, of a sequence or a sales process (docs/testing-rules.md)"),
    (r"\breminders?\b|\boverdue\b|\bsales process(?:es)?\b", "stage-duration reminders (docs/reminders.md)"),
    (r"\bunsubscribe\b|\btracking\b|\bopens?\b|\bclicks?\b|\bingest\b|\bweb endpoints?\b|\bhealthz\b|\bmetrics\b"
     r"|\boutreach web\b", "the web endpoints: unsubscribe, tracking, the ingest API (docs/web.md, docs/api.md)"),
    (r"\bsystemd\b|\bdaemon\b|\boutreach run\b|\bwatchdog\b", "the daemon, under systemd too (docs/operations.md)"),
    (r"\boutreach status\b|\bleases?\b|\bseveral daemons\b", "`outreach status` and daemons sharing the work "
     "(docs/operations.md)"),
    (r"\bdkim\b", "DKIM signing (docs/mail.md)"),
    (r"\bplan --base\b|\bpre-commit\b", "`outreach plan --base` and the pre-commit hook (docs/testing-rules.md)"),
]  # fmt: skip

# Campaigns are the one thing not built yet (they validate, `plan` shows them, nothing sends them): a sentence that
# calls something missing must be about them.
_NOT_BUILT = r"\bcampaigns?\b"

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z`(\[*\"])|\n[ \t]*\n|\n(?=[ \t]*(?:[-*+] |\d+\. |#|\|))")


def _units(text: str) -> Iterator[tuple[int, str]]:
    """(offset, text) of every sentence, list item, heading and table row of the prose, and every line of the
    code blocks."""
    code = [(m.start("body"), m.end("body")) for m in _FENCE.finditer(text)]
    at = 0
    for start, end in [*code, (len(text), len(text))]:
        prose = text[at:start]
        cut = 0
        for m in _SENTENCE_END.finditer(prose):
            yield at + cut, prose[cut : m.start()]
            cut = m.end()
        yield at + cut, prose[cut:]
        offset = start
        for line in text[start:end].splitlines(keepends=True):
            yield offset, line
            offset += len(line)
        at = end


def _subject(sentence: str, at: int) -> str | None:
    """What the words at `at` are about: the built thing or campaigns named last before them, else first after."""
    named = [(m.start(), m.end(), built) for subject, built in [*BUILT, (_NOT_BUILT, "")]
             for m in re.finditer(subject, sentence, re.I)]  # fmt: skip
    before = [n for n in named if n[1] <= at]
    if before:
        return max(before)[2]
    after = [n for n in named if n[0] >= at]
    return min(after)[2] if after else None


def stale_claims(text: str) -> list[tuple[int, str, str]]:
    """(line, the sentence, what it calls missing) of every sentence that calls a built thing missing or for later,
    or calls something that is not campaigns not built yet."""
    found = []
    for offset, unit in _units(text):
        sentence = " ".join(unit.split())
        line = text.count("\n", 0, offset) + 1 + unit[: len(unit) - len(unit.lstrip())].count("\n")
        for missing in re.finditer(_MISSING, sentence, re.I):
            built = _subject(sentence, missing.start())
            if built is None:
                found.append((line, sentence, "something that is not campaigns"))
            elif built and (line, sentence, built) not in found:
                found.append((line, sentence, built))
    return found


@pytest.mark.unit
@pytest.mark.parametrize(
    "sentence, built",
    [
        ("With the `maildir` transport every message becomes a file; the\n`smtp` transport is not built yet, and a "
         "daemon configured for it does not\nstart.", "SMTP"),
        ("Replies are not detected yet (IMAP, issue 5), so the reply rate stays 0.", "IMAP"),
        ("RuleTests\nare validated now (their references, times and fields); **`outreach test`,\nwhich runs them, "
         "arrives in a later issue.**", "`outreach test`"),
        ("## Not built yet\n\n- `outreach test` (issue 7): a RuleTest's reminders\n  (`rules/tests/reminders.yaml`) "
         "are checked once it exists. `outreach\n  simulate --process` is built; simulating a sequence is not yet.",
         "`outreach simulate`"),
        ("## Not built yet\n\n- Campaigns.\n", "not campaigns"),
        ("The unsubscribe page is coming soon.", "web endpoints"),
        ("- DKIM signing: TODO", "DKIM"),
    ],
)  # fmt: skip
def test_the_stale_phrase_check_finds_what_the_pages_once_said(sentence: str, built: str) -> None:
    found = stale_claims(sentence)
    assert any(built in what for _line, _sentence, what in found), found


@pytest.mark.unit
@pytest.mark.parametrize(
    "sentence",
    [
        "Campaigns are not sent yet: they validate and `outreach plan` shows them.",
        'with `campaign` they are an error, "campaigns are not built yet".',
        "Bulk campaigns, when they are built, skip every suppressed address.",
        "| `Qualified` | less than a week | `not yet (at 2026-12-01 10:00 UTC)` |",
        "Replies are read from the senders' mailboxes ([mail.md](mail.md)).",
        "- a task of type `todo`",
    ],
)
def test_the_stale_phrase_check_lets_true_sentences_be(sentence: str) -> None:
    assert stale_claims(sentence) == []


@pytest.mark.unit
def test_no_page_calls_a_built_thing_missing() -> None:
    problems = [
        f"{_name(page)}:{line}: calls {built} missing or for later: {sentence!r}"
        for page in PAGES
        for line, sentence, built in stale_claims(page.read_text(encoding="utf-8"))
    ]
    assert problems == [], "describe what exists and link the page that covers it:\n" + "\n".join(problems)


# --- b) every RuleTest shown runs as the page says ------------------------------------------------------------


class Example(NamedTuple):
    page: Path
    line: int
    text: str  # the ```yaml block
    file: str  # where it goes: rules/tests/NAME.yaml
    shown: str | None  # the `outreach test` output the page shows under it


def _kinds(body: str) -> list[str]:
    docs, problems = loader.parse_text(body, "block.yaml")
    return [] if problems else [str(d.data.get("kind")) for d in docs if isinstance(d.data, dict)]


def _rule_test_examples() -> list[Example]:
    """Every ```yaml block of a page that holds a complete RuleTest (a name, a start and expectations)."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = _blocks(text)
        for i, block in enumerate(blocks):
            docs, problems = loader.parse_text(block.body, "block.yaml") if block.lang == "yaml" else ([], [])
            tests = [d.data for d in docs if isinstance(d.data, dict) and d.data.get("kind") == "RuleTest"]
            if problems or not tests or not all({"name", "start", "expect"} <= t.keys() for t in tests):
                continue
            # The output the page shows: the next ```text block, before the next ```yaml one, of `outreach test`.
            later = [b for b in blocks[i + 1 :] if b.lang in ("text", "yaml")]
            output = (
                later[0] if later and later[0].lang == "text" and later[0].body.startswith(("ok ", "FAIL ")) else None
            )
            # Its file: as the output or the words after the block name it ("with this file as
            # `rules/tests/nurture.yaml`"), or the block's comment; else a name of its own.
            after = text[block.end : block.end + 400] if output is None else output.body
            named = re.search(r"rules/tests/[\w.-]+\.ya?ml", after) or re.search(
                r"(?<=^# )rules/tests/[\w.-]+\.ya?ml$", block.body, re.M
            )
            file = named.group() if named else f"rules/tests/{page.stem}-{block.line}.yaml"
            out.append(Example(page, block.line, block.body, file, output.body if output else None))
    return out


def _page_rules(page: Path, where: Path) -> Path:
    """The rule set a page's RuleTests run against: the page's own ```yaml blocks when they include Settings (as
    docs/rules.md's do: tests/test_docs.py validates them as one rule set), else the example rules."""
    text = page.read_text(encoding="utf-8")
    own = [b.body for b in _blocks(text) if b.lang == "yaml" and (kinds := _kinds(b.body)) and "RuleTest" not in kinds]
    rules = where / "rules"
    if any("Settings" in _kinds(body) for body in own):
        rules.mkdir()
        for i, body in enumerate(own):
            (rules / f"block-{i:02d}.yaml").write_text(body, encoding="utf-8")
    else:
        shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "tests").mkdir()
    return rules


RULE_TESTS = _rule_test_examples()


@pytest.mark.unit
def test_the_pages_show_rule_tests() -> None:
    assert {_name(e.page) for e in RULE_TESTS} >= {"docs/rules.md", "docs/testing-rules.md"}


@pytest.mark.acceptance
@pytest.mark.parametrize("example", RULE_TESTS, ids=[f"{_name(e.page)}:{e.line}" for e in RULE_TESTS])
def test_every_rule_test_a_page_shows_runs_as_the_page_says(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It passes, or, when the page shows what `outreach test` printed for it, it prints exactly that."""
    rules = _page_rules(example.page, tmp_path)
    (tmp_path / example.file).write_text(example.text, encoding="utf-8")
    assert rules.exists()
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(cli.main, ["test", "rules/"])

    where = f"{_name(example.page)}:{example.line} (as {example.file})"
    if example.shown is None:
        assert result.exit_code == 0, f"the RuleTest of {where} does not pass:\n{result.output}"
        assert re.search(r"^\d+ RuleTests?, 0 failed$", result.output, re.M), result.output
    else:
        assert result.output == example.shown, f"{where}: `outreach test rules/` printed\n{result.output}"
        assert result.exit_code == (1 if "FAIL " in example.shown else 0), result.output


# --- c) every `outreach` command line shown is one the CLI takes; the safe ones run as the page says -----------

_SHELLS = ("sh", "shell", "console", "bash")
# Plausible values for what a page leaves to the reader; a command with any other `$` or `<...>` fails the check.
PLACEHOLDERS = {
    "$(openssl rand -base64 32)": "c2VjcmV0LW9mLXRoZS1kb2NzLWV4YW1wbGVzLTMyYnl0ZXM=",
    '"$OUTREACH_DB"': "sqlite:///var/outreach.db",
}
_OPERATOR = re.compile(r"^[;&|<>()]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class Command(NamedTuple):
    page: str
    line: int
    shown: str  # the command line as the page shows it
    program: str  # `outreach`; `cat` of a file the page shows, or `file`: a block the page names as a file
    argv: tuple[str, ...]  # after the program
    env: tuple[tuple[str, str], ...]  # NAME=VALUE before it
    statuses: frozenset[int] | None  # the exit statuses the page shows it ends with; None: it shows no outcome
    output: str  # what the page shows it printed (the file's text)


def _words(line: str) -> list[str]:
    for name, value in PLACEHOLDERS.items():
        line = line.replace(name, value)
    line = re.sub(r"(?:^|\s)#(?:\s.*)?$", "", line)  # a shell comment
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


def _commands_of_line(line: str) -> Iterator[tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]]:
    """(argv, env, the operator after it) of every `outreach` in a shell line, wrapped or not (`sudo`, `a && b`,
    `systemd-run -p X=Y /opt/.../outreach ...`)."""
    if not re.search(r"(?:^|[\s/])outreach(?:\s|$)", line):
        return
    words = _words(line)
    segments: list[tuple[list[str], str, str]] = []  # (words, the operator before, the operator after)
    current: list[str] = []
    before = ""
    for word in [*words, ";"]:
        if _OPERATOR.match(word):
            segments.append((current, before, word))
            current, before = [], word
        else:
            current.append(word)
    for i, (segment, before, _after) in enumerate(segments):
        if before in (">", ">>", "<"):
            continue  # a file name
        env = [tuple(word.split("=", 1)) for word in itertools.takewhile(_ENV.match, segment)]
        segment = segment[len(env) :]
        if segment[:1] == ["sudo"]:
            segment = segment[1:]
        if segment[:1] == ["systemd-run"]:  # its options, then the command it runs
            segment = segment[1:]
            while segment and segment[0].startswith("-"):
                segment = segment[2:] if segment[0] in ("-p", "--property", "-E", "--setenv") else segment[1:]
        if not segment or Path(segment[0]).name != "outreach":
            continue
        j = i
        while segments[j][2] in (">", ">>", "<") and j + 1 < len(segments):
            j += 1  # past a redirection's file name
        rest = segments[j][2]
        if rest == "||" and j + 1 < len(segments):
            rest = "|| " + " ".join(segments[j + 1][0])
        yield tuple(segment[1:]), tuple(env), rest


# What the CLI prints when it exits with other than 0, as docs/cli.md gives each command's exit status: a page
# that shows one of these under a command shows that status even without `echo $?`.
_SHOWN_STATUS = [
    (r"^Usage: outreach ", 2),  # click's usage error
    (r"^Error: ", 1),
    (r"^\S+:\d+(?::\d+)?: error: ", 1),  # rules with errors (validate, plan, test, run)
    (r"^FAIL ", 1),  # a RuleTest failed
    (r"nothing was imported", 1),  # records import: a bad row
    (r"^\S+: 0 (?:enrolled|would enroll), [1-9]", 1),  # enroll: every record refused
    (r"^enrolling \S+ would be refused|^\s*BLOCKED: ", 1),  # preview: refused, or a step would block
    (r"^problem ", 1),  # doctor
    (r"^Plan: (?!0 to add, 0 to change, 0 to remove)", 2),  # plan: changes, as `terraform plan -detailed-exitcode`
]


def _status(output: str | None, rest: str, echoed: str | None) -> frozenset[int] | None:
    """The exit statuses the page shows: `echo $?` after it, `|| [ $? -eq N ]`, what the CLI prints on a failure,
    else 0; None for a line of a ```sh block, which shows no outcome."""
    if echoed is not None:
        return frozenset({int(echoed)})
    accepted = re.fullmatch(r"\|\| \[ \$\? -eq (\d+) \]", rest)
    if accepted:
        return frozenset({0, int(accepted.group(1))})
    if output is None:
        return None
    for pattern, status in _SHOWN_STATUS:
        if re.search(pattern, output, re.M):
            return frozenset({status})
    return frozenset({0})


def _shown_commands(page: Path) -> list[Command]:
    """Every `outreach` command line of a page's code blocks, in order, with what the page shows it printed: the
    lines of ```sh (shell, console, bash) blocks, and the `$ ` lines of any block; and every `$ cat FILE`."""
    out = []
    for block in _blocks(page.read_text(encoding="utf-8")):
        named = re.search(
            r"`([\w./-]+\.(?:ya?ml|csv|jsonl?|txt))`\)?:$", block.before
        )  # "`more.csv`:", "(`reply.yaml`):"
        if named and block.lang not in _SHELLS:
            out.append(Command(_name(page), block.line, named.group(1), "file", (named.group(1),), (), None,
                               block.body))  # fmt: skip
            continue
        lines = block.body.replace("\\\n", " ").splitlines()  # a continued line is one command
        prompts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                line = line[2:]
                end = next((j for j in prompts if j > i), len(lines))
                output = "".join(f"{x}\n" for x in lines[i + 1 : end])
                echoed = lines[end + 1] if end < len(lines) - 1 and lines[end] == "$ echo $?" else None
                if re.fullmatch(r"cat [\w./-]+", line):
                    out.append(
                        Command(_name(page), block.line + i, line, "cat", (line[4:],), (), frozenset({0}), output)
                    )
                    continue
            elif block.lang in _SHELLS and not prompts:
                output, echoed = None, None
            else:
                continue
            for argv, env, rest in _commands_of_line(line):
                out.append(Command(_name(page), block.line + i, line.strip(), "outreach", argv, env,
                                   _status(output, rest, echoed), output or ""))  # fmt: skip
    return out


STEPS = {_name(page): _shown_commands(page) for page in PAGES}
COMMANDS = [command for steps in STEPS.values() for command in steps if command.program == "outreach"]


def _command_path(argv: tuple[str, ...]) -> list[str]:
    """The command path click resolves `outreach ARGV` to, parsing every option and argument as a run does (not
    resiliently): an unknown command or option, or a bad value, raises click's UsageError."""
    ctx = cli.main.make_context("outreach", list(argv))
    command: click.Command = cli.main
    path = ["outreach"]
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
        path.append(name)
    return path


@pytest.mark.unit
def test_the_pages_show_every_command() -> None:
    shown = {c.argv[0] for c in COMMANDS if c.argv}
    assert sorted(set(cli.all_commands()) - shown) == []


@pytest.mark.unit
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.page}:{c.line}" for c in COMMANDS])
def test_every_command_line_a_page_shows_is_one_outreach_takes(command: Command) -> None:
    """Its command and options exist and its values parse; only a file the page's machine has and this checkout
    has not (leads.csv, /etc/outreach/rules) may be missing."""
    where = f"{command.page}:{command.line}: `{command.shown}`"
    leftover = [word for word in command.argv if re.search(r"\$|<[A-Za-z_]+>", word)]
    assert leftover == [], f"{where}: give {leftover} a plausible value in PLACEHOLDERS"
    if not command.argv:  # shell completion: the script of `_OUTREACH_COMPLETE=SHELL_source outreach`
        assert dict(command.env).get("_OUTREACH_COMPLETE") in ("bash_source", "zsh_source", "fish_source"), where
        return
    try:
        _command_path(command.argv)
    except click.UsageError as exc:
        if command.statuses == {2}:
            return  # the page shows this usage error
        if isinstance(exc, click.BadParameter) and "does not exist" in exc.format_message():
            return
        raise AssertionError(f"{where}: {exc.format_message()}") from None


# Commands the pages show that this test does not run, and why (their command lines are checked above).
NOT_RUN = [
    (r"^run(?!.* --once)", "the daemon runs until it is stopped (tests/test_daemon.py runs it); `run --once` runs"),
    (r"^web\b", "serves HTTP until it is stopped (tests/test_web_cli.py runs it)"),
    (r"--connect\b", "connects to the SMTP relay and IMAP servers of the page's Settings (tests/test_cli_doctor.py)"),
    (r"@db\.internal\b", "the page's PostgreSQL server, db.internal"),
    (r"^plan --base\b", "needs the page's git history (tests/test_docs.py runs testing-rules.md's `plan --base`)"),
    (r"/etc/outreach\b|/srv/", "paths of the page's server (/etc/outreach/rules, /srv/imports)"),
]  # fmt: skip

# Pages whose commands run elsewhere, output and all.
RUN_ELSEWHERE = {
    "docs/sequences.md": "tests/test_docs.py test_the_walk_through_of_sequences_md_is_real",
    "docs/reminders.md": "tests/test_docs.py test_the_worked_example_of_reminders_md_is_real",
}

# Commands a page shows in a state its own commands do not lead to (a rule file it edits in prose, a file it does
# not show): (page, command, a line of the output the page shows) -> that state. They are not run.
CONTEXT = {
    ("docs/cli.md", "outreach validate rules/", "rules/welcome.yaml:9:7: warning: template 'old-welcome'"):
        "the section's own rule set of two files, with mistakes (tests/test_docs.py checks the output)",
    ("docs/cli.md", "outreach validate --strict rules/", "rules/welcome.yaml:9:7: error: template 'old-welcome'"):
        "the section's own rule set of two files, with mistakes",
    ("docs/cli.md", "outreach plan rules/", "~ Sequence inbound-nurture (e927993a -> a15f2d1c)"):
        "the nudge's wait changed to 3 business days in rules/sequences/inbound-nurture.yaml",
    ("docs/cli.md", "outreach plan --format markdown rules/", "Plan: 0 to add, 1 to change, 0 to remove"):
        "the nudge's wait changed to 3 business days in rules/sequences/inbound-nurture.yaml",
    ("docs/cli.md", "outreach records import leads.csv --type lead --update", "leads.csv: 1 imported, 3 updated"):
        "line 4 of leads.csv fixed, as the page says",
    ("docs/cli.md", "outreach records delete L3", "record L3 deleted"):
        "L3 imported from leads.csv with line 4 fixed",
    ("docs/cli.md", "outreach run --once", "rules/sequences/inbound-nurture.yaml:13:24: error"):
        "rules with a mistake in rules/sequences/inbound-nurture.yaml",
    ("docs/cli.md", "outreach enroll inbound-nurture --record S5 --as anna", "Error: sequence inbound-nurture in "
     "the rules is not the applied version"): "a database the rules were never applied to",
    ("docs/cli.md", "outreach enroll inbound-nurture --where country=DE --as anna --now 2026-11-23T08:00:00Z",
     "19,600 enrolled"):
        "a database of 20,000 records (bench/enroll.py)",
    ("docs/cli.md", "outreach enroll inbound-nurture --where country=DE --as anna --now 2026-11-23T08:00:00Z "
     "--dry-run", "20,000 would enroll"): "a database of 20,000 leads of anna's in DE",
    ("docs/cli.md", "outreach enroll inbound-nurture --record L20001 --as anna --now 2026-11-23T08:00:00Z --verbose",
     "after 20,000 of theirs already scheduled"): "the 20,000 leads enrolled, and one more, L20001",
    ("docs/cli.md", "outreach preview welcome --record S1", "step 1 welcome at Mon 2026-11-23 16:31 UTC"):
        "before the daemon's first tick enrolled S1 in welcome",
    ("docs/mail.md", "outreach doctor", "ok       dkim"): "the page's Settings with a DKIM key",
    ("docs/rules.md", "outreach plan rules/", "> Sequence webinar-nurture (renamed from inbound-nurture"):
        "inbound-nurture of the example rules renamed while two people are in it (tests/test_renames.py)",
    ("docs/operations.md", "outreach records import leads.csv --type lead", "leads.csv:7: invalid email"):
        "a leads.csv the page does not show",
}  # fmt: skip

# Commands before which a page starts again on a new database (var/ removed), and why.
FRESH = {
    ("docs/cli.md", "outreach db current", "is at schema revision none"): "the section starts with no database",
    ("docs/cli.md", "outreach records import samples/leads.csv --update", "samples/leads.csv: 5 imported"):
        "from `outreach run` on, the page's database holds the samples alone",
}  # fmt: skip

# Absolute paths of a page, moved into the test's directory.
PATHS = {"sqlite:////tmp/readme/o.db": "sqlite:///readme.db"}


def _marked(table: dict[tuple[str, str, str], str], command: Command) -> str | None:
    """What `table` says of the command: its entries are (page, command, a line of the output it shows)."""
    return next((why for (page, shown, line), why in table.items()
                 if (page, shown) == (command.page, command.shown) and line in command.output), None)  # fmt: skip


def _why_not_run(command: Command) -> str | None:
    if command.page in RUN_ELSEWHERE:
        return f"run by {RUN_ELSEWHERE[command.page]}"
    line = shlex.join(command.argv)
    return next((why for pattern, why in NOT_RUN if re.search(pattern, line)), None) or _marked(CONTEXT, command)


# Pages that add rule files of their own (a new campaign and its templates): written into the copy's rules/.
NEW_RULES = {"docs/campaigns.md"}

RUN_CLOCK = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)  # the time of the pages' example runs
_SECRETS = ("OUTREACH_SECRET", "OUTREACH_DB", "OUTREACH_API_TOKEN", "STATE_DIRECTORY", "ANNA_IMAP_USER",
            "BEN_IMAP_USER", "BEN_IMAP_PASSWORD", "OUTREACH_SMTP_PASSWORD")  # fmt: skip


def run_page(page: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Command, int, str]]:
    """Run the commands of a page that are safe and offline, in order, in a copy of the example project (rules/
    and samples/, and the test corpora of inbound mail) with a fresh SQLite database (OUTREACH_DB) and the clock held at RUN_CLOCK.

    Yields (command, its exit status, what it printed). A file the page shows (`cat FILE` and its text, or a
    block after "`FILE`:") is written when it does not exist yet, outside rules/: the example rules stay as they
    are.
    """
    shutil.copytree(ROOT / "rules", where / "rules")
    shutil.copytree(ROOT / "samples", where / "samples")
    for corpus in ("tests/fixtures/inbound", "tests/data/flufl_bounce"):  # the messages `inbound classify` reads
        shutil.copytree(ROOT / corpus, where / corpus)
    monkeypatch.chdir(where)
    for name in _SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OUTREACH_DB", f"sqlite:///{where / 'var' / 'outreach.db'}")
    monkeypatch.setattr(options, "now", lambda: RUN_CLOCK)
    kwdefaults = daemon_module.Daemon.__init__.__kwdefaults__
    assert kwdefaults is not None
    monkeypatch.setitem(kwdefaults, "clock", lambda: RUN_CLOCK)
    monkeypatch.setattr(daemon_module, "configure_logging", lambda _fmt="text": None)
    for command in STEPS[page]:
        if command.program in ("cat", "file"):
            path = Path(command.argv[0])
            if not path.exists() and not path.is_absolute() and (path.parts[0] != "rules" or page in NEW_RULES):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(command.output, encoding="utf-8")
            continue
        if _why_not_run(command) is not None:
            continue
        if _marked(FRESH, command):
            shutil.rmtree("var", ignore_errors=True)
        argv = [PATHS.get(word, word) for word in command.argv]
        result = CliRunner().invoke(cli.main, argv, env=dict(command.env), prog_name="outreach")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{command.page}:{command.line}: `{command.shown}` crashed") from result.exception
        yield command, result.exit_code, result.output


RUN_PAGES = sorted({c.page for c in COMMANDS if _why_not_run(c) is None})


@pytest.mark.unit
def test_every_command_not_run_says_why() -> None:
    not_run = {f"{c.page}:{c.line}: `{c.shown}`": why for c in COMMANDS if (why := _why_not_run(c)) is not None}
    assert all(not_run.values())
    for table in (CONTEXT, FRESH):
        unused = [key for key in table if not any(_marked({key: "x"}, c) for c in COMMANDS)]
        assert unused == [], f"these entries name commands no page shows (any more): {unused}"
    assert {"docs/cli.md", "docs/operations.md", "README.md"} <= set(RUN_PAGES)


@pytest.mark.acceptance
@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_commands_a_page_shows_exit_as_it_shows(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In order, in a copy of the example project. A command of a ```sh block, which shows no outcome, must be one
    click takes when it runs, apart from input files the page does not give."""
    wrong = []
    ran = 0
    for command, status, output in run_page(page, tmp_path, monkeypatch):
        ran += 1
        if command.statuses is None:
            if "Usage: outreach" in output and "does not exist" not in output:
                wrong.append(f"{page}:{command.line}: `{command.shown}` is a usage error:\n{output}")
        elif status not in command.statuses:
            shown = " or ".join(str(s) for s in sorted(command.statuses))
            wrong.append(f"{page}:{command.line}: `{command.shown}` exited {status}, the page shows {shown}:\n"
                         f"{output}")  # fmt: skip
    assert ran > 0
    assert wrong == [], "\n".join(wrong)
