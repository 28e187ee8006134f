"""`outreach plan --base REF`: a pull request's rule change against the rules at a git ref, without a database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.rules import validate
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

NURTURE_BEFORE = [
    'Mon 2026-11-23 08:00 UTC  Mon 09:00 CET  step 1 intro  email intro  "Quick question, <first_name>"',
    'Wed 2026-11-25 08:00 UTC  Wed 09:00 CET  step 2 nudge  email follow-up  "Re: Quick question, <first_name>"',
    'Thu 2026-11-26 08:00 UTC  Thu 09:00 CET  step 3 call   task "Call the lead"',
    'Mon 2026-11-30 08:00 UTC  Mon 09:00 CET  step 4 promo  email promo  "What teams like yours do with Example"',
]
NURTURE_AFTER = [
    'Mon 2026-11-23 08:00 UTC  Mon 09:00 CET  step 1 intro  email intro  "A quick question, <first_name>"',
    'Thu 2026-11-26 08:00 UTC  Thu 09:00 CET  step 2 nudge  email follow-up  "Re: A quick question, <first_name>"',
    'Fri 2026-11-27 08:00 UTC  Fri 09:00 CET  step 3 call   task "Call the lead"',
    'Tue 2026-12-01 08:00 UTC  Tue 09:00 CET  step 4 promo  email promo  "What teams like yours do with Example"',
]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Rule Author", "-c", "user.email=author@example.com", "-c", "commit.gpgsign=false",
         *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose `main` holds the example rules (without their RuleTests), checked out as it is."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "the example rules")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def changed(repo: Path) -> Path:
    """The pull request: a wait, a template subject and a stage's max changed, a sequence removed."""
    rules = repo / "rules"
    edit(rules / "sequences" / "inbound-nurture.yaml", "wait: 2 business days, thread: reply",
         "wait: 3 business days, thread: reply")  # fmt: skip
    edit(rules / "templates" / "nurture.yaml", 'subject: "Quick question, ', 'subject: "A quick question, ')
    edit(rules / "processes" / "partner-leads.yaml", "{name: New, max: 2 days}", "{name: New, max: 3 days}")
    (rules / "sequences" / "welcome.yaml").unlink()
    return repo


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["plan", *args])
    return result.exit_code, result.output


def test_text_lists_each_change_with_what_it_means_and_exits_2(changed: Path) -> None:
    code, out = run("--base", "main", "rules")
    assert code == 2, out
    lines = out.splitlines()
    assert lines[0].startswith("~ Template intro (8faa26f7 -> ")
    assert lines[1] == (
        '    subject: "Quick question, {{ record.first_name }}" → "A quick question, {{ record.first_name }}"'
    )
    assert lines[2].startswith("~ Sequence inbound-nurture (e927993a -> ")
    assert lines[3] == "    step 2 (nudge) wait: 2 business days → 3 business days"
    assert "- Sequence welcome (4bd4727d)" in lines
    assert "    stage New max: 2 days → 3 days" in lines
    commit = git(changed, "rev-parse", "main")
    assert lines[-1] == f"Plan against main ({commit[:8]}): 0 to add, 3 to change, 1 to remove (11 unchanged)."


def test_a_changed_sequence_shows_a_sample_enrollment_before_and_after(changed: Path) -> None:
    _code, out = run("--base", "main", "rules")
    block = out.split("~ Sequence inbound-nurture", 1)[1].split("\n- Sequence", 1)[0].splitlines()[1:]
    assert block == [
        "    step 2 (nudge) wait: 2 business days → 3 business days",
        "    before (main):",
        *(f"      {line}" for line in NURTURE_BEFORE),
        "    after:",
        *(f"      {line}" for line in NURTURE_AFTER),
    ]
    assert "Timelines: a sample record enrolled Mon 2026-11-23 08:00 UTC" in out


def test_json_carries_the_changes_details_and_timelines(changed: Path) -> None:
    code, out = run("--base", "main", "--format", "json", "rules")
    assert code == 2
    data = json.loads(out)
    assert data["base"] == "main" and data["commit"] == git(changed, "rev-parse", "main")
    assert data["has_changes"] and data["unchanged"] == 11
    by_name = {c["name"]: c for c in data["changes"]}
    assert [(c["action"], c["kind"]) for c in data["changes"]] == [
        ("change", "Template"), ("change", "Sequence"), ("remove", "Sequence"), ("change", "SalesProcess"),
    ]  # fmt: skip
    nurture = by_name["inbound-nurture"]
    assert nurture["details"] == ["step 2 (nudge) wait: 2 business days → 3 business days"]
    assert "-  wait: 2 business days\n+  wait: 3 business days" in nurture["diff"]
    assert [(s["at"], s["weekday"], s["id"], s["action"]) for s in nurture["after"]] == [
        ("2026-11-23T08:00:00+00:00", "Mon", "intro", "email"),
        ("2026-11-26T08:00:00+00:00", "Thu", "nudge", "email"),
        ("2026-11-27T08:00:00+00:00", "Fri", "call", "task"),
        ("2026-12-01T08:00:00+00:00", "Tue", "promo", "email"),
    ]
    assert nurture["before"][1]["at"] == "2026-11-25T08:00:00+00:00"
    assert by_name["welcome"]["before"] is None and by_name["welcome"]["after"] is None


def test_markdown_is_a_pull_request_comment_with_a_table_and_fenced_timelines(changed: Path) -> None:
    code, out = run("--base", "main", "--format", "markdown", "rules")
    assert code == 2
    assert out.startswith("### outreach plan against `main`\n\nPlan against main (")
    assert "| ~ | Sequence | `inbound-nurture` | step 2 (nudge) wait: 2 business days → 3 business days |" in out
    assert "| - | Sequence | `welcome` | removed |" in out
    assert "| ~ | SalesProcess | `partner-leads` | stage New max: 2 days → 3 days |" in out
    before = "Before (`main`):\n\n```text\n" + "\n".join(NURTURE_BEFORE) + "\n```"
    after = "After:\n\n```text\n" + "\n".join(NURTURE_AFTER) + "\n```"
    assert before in out and after in out
    assert "<details><summary>YAML diff</summary>" in out and "```diff" in out


def test_no_change_exits_0(repo: Path) -> None:
    code, out = run("--base", "main", "rules")
    assert code == 0
    assert out.startswith("No changes against main (") and out.rstrip().endswith("15 definitions are the same.")


def test_an_added_step_and_a_new_sequence_get_timelines(repo: Path) -> None:
    rules = repo / "rules"
    edit(rules / "sequences" / "welcome.yaml", "  - {id: check-in, email: check-in, wait: 3 days, thread: reply}",
         "  - {id: check-in, email: check-in, wait: 3 days, thread: reply}\n"
         "  - {id: nudge-2, email: check-in, wait: 1 week}")  # fmt: skip
    text = (rules / "sequences" / "welcome.yaml").read_text(encoding="utf-8")
    (rules / "sequences" / "welcome-copy.yaml").write_text(text.replace("name: welcome", "name: welcome-2"))
    code, out = run("--base", "main", "--sample-start", "2026-11-28T10:00", "rules")
    assert code == 2
    assert "    added step 3 (nudge-2): email check-in, wait 1 week" in out
    new = out.split("+ Sequence welcome-2", 1)[1].splitlines()
    assert new[1] == "    timeline:"
    assert new[2].startswith("      Sat 2026-11-28 10:00 UTC  Sat 11:00 CET  step 1 welcome")  # calendar anytime
    assert "Timelines: a sample record enrolled Sat 2026-11-28 10:00 UTC" in out


# --- bad input ----------------------------------------------------------------------------------


def test_a_ref_that_does_not_exist_is_a_clear_error(repo: Path) -> None:
    code, out = run("--base", "origin/nope", "rules")
    assert code == 1
    assert (
        out.strip()
        == "Error: --base 'origin/nope' is not a commit, branch or tag of the repository (git fetch it first?)"
    )


def test_a_rule_directory_that_did_not_exist_at_the_ref_is_a_clear_error(repo: Path) -> None:
    shutil.copytree(repo / "rules", repo / "team-rules")
    code, out = run("--base", "main", "team-rules")
    commit = git(repo, "rev-parse", "main")
    assert code == 1
    assert out.strip() == f"Error: the rule directory team-rules/ did not exist at main ({commit[:8]})"


def test_rules_invalid_at_the_ref_name_the_file_and_line_there(repo: Path) -> None:
    nurture = repo / "rules" / "sequences" / "inbound-nurture.yaml"
    edit(nurture, "email: promo", "email: promotion")
    git(repo, "commit", "-q", "-am", "a typo")
    git(repo, "checkout", "-q", "HEAD~1", "--", "rules/sequences/inbound-nurture.yaml")  # the fix, not committed
    code, out = run("--base", "main", "rules")
    assert code == 1
    assert out.splitlines()[0] == (
        "main:rules/sequences/inbound-nurture.yaml:15:24: error: unknown template 'promotion'; "
        "did you mean 'promo'? [steps[3].email]"
    )
    assert "rules at main (" in out and "1 error" in out


def test_a_directory_outside_git_is_a_clear_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    code, out = run("--base", "main", str(tmp_path / "rules"))
    assert code == 1 and "is not in a git repository" in out


def test_base_reads_no_database_and_sample_start_needs_base(repo: Path) -> None:
    code, out = run("--base", "main", "--db", "sqlite:///o.db", "rules")
    assert code == 1 and "drop --db" in out
    code, out = run("--sample-start", "2026-11-28", "rules")
    assert code == 1 and "--sample-start goes with --base" in out
    code, out = run("--base", "main", "--sample-start", "next week", "rules")
    assert code == 1 and "not an ISO 8601 date and time" in out
    assert not (repo / "o.db").exists()


def test_the_rules_at_a_ref_validate_like_the_working_tree(changed: Path) -> None:
    from outreach.rules import gitref

    commit, texts = gitref.read_texts("rules", "main")
    assert commit == git(changed, "rev-parse", "main")
    assert "main:rules/sequences/welcome.yaml" in texts and "main:rules/settings.yaml" in texts
    at_ref = validate.validate_texts(texts).ruleset
    assert at_ref is not None and set(at_ref.sequences) == {"inbound-nurture", "welcome"}


_COMMIT = re.compile(r"(against main \()[0-9a-f]{8}\)")


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_the_base_examples_of_cli_md_are_real(fmt: str, changed: Path) -> None:
    command = (
        "outreach plan --base main rules/" if fmt == "text" else f"outreach plan --base main --format {fmt} rules/"
    )
    fence = "```" if fmt == "text" else "````"
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    match = re.search(rf"^{fence}text\n\$ {re.escape(command)}\n(.*?)^{fence}\n", page, re.S | re.M)
    assert match, f"docs/cli.md shows no output of `{command}`"
    code, out = run(*command.split()[2:])
    assert code == 2
    assert _COMMIT.sub(r"\1…)", out) == _COMMIT.sub(r"\1…)", match.group(1))


def test_a_settings_change_shows_the_sequences_that_send_differently(repo: Path) -> None:
    edit(repo / "rules" / "settings.yaml", 'send_window: "08:00-18:00"', 'send_window: "10:00-18:00"')
    code, out = run("--base", "main", "rules")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("~ Settings settings (")
    assert lines[1] == "    calendars default send_window: 08:00-18:00 → 10:00-18:00"
    assert lines[2] == "= Sequence inbound-nurture (unchanged; sends differently with the changes above)"
    assert lines[3:5] == ["    before (main):", f"      {NURTURE_BEFORE[0]}"]
    assert lines[8] == "    after:"
    assert lines[9].startswith("      Mon 2026-11-23 09:00 UTC  Mon 10:00 CET  step 1 intro")
    assert "= Sequence welcome" not in out  # its calendar `anytime` has no send window
    code, out = run("--base", "main", "--format", "json", "rules")
    data = json.loads(out)
    assert [k["sequence"] for k in data["knock_on"]] == ["inbound-nurture"]
    assert data["knock_on"][0]["after"][0]["at"] == "2026-11-23T09:00:00+00:00"
    _code, out = run("--base", "main", "--format", "markdown", "rules")
    assert "#### = Sequence `inbound-nurture` (unchanged; sends differently with the changes above)" in out
