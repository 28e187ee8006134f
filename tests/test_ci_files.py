"""The CI and editor files the project ships: pre-commit hooks and the GitHub Actions example run real commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

import outreach
from outreach import cli
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

WORKFLOW = ROOT / "docs" / "ci" / "github-actions.yml"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _check_command_line(line: str) -> str:
    """An `outreach ...` command line: its command exists and takes these options and values. Returns its name."""
    words = shlex.split(line.split(">", 1)[0].split("||", 1)[0], posix=True)
    assert words[0] == "outreach", line
    name, args = words[1], words[2:]
    assert isinstance(cli.main, click.Group)
    commands = cli.all_commands()
    if name not in commands:
        return name  # written by another change (outreach test); checked once it is there
    command: click.Command = commands[name]
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    for i, word in enumerate(args):
        if word.startswith("--"):
            assert word in options, f"{line}: `outreach {name}` has no option {word}"
            choice = options[word].type
            if isinstance(choice, click.Choice) and not options[word].is_flag:
                assert args[i + 1] in choice.choices, f"{line}: {word} {args[i + 1]} is not one of {choice.choices}"
    return name


def test_pre_commit_hooks_run_validate_and_test_on_the_rule_directory() -> None:
    hooks = _load(ROOT / ".pre-commit-hooks.yaml")
    assert isinstance(hooks, list)
    by_id = {h["id"]: h for h in hooks}
    assert set(by_id) == {"outreach-validate", "outreach-test"}
    for hook in hooks:
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert hook["args"] == ["rules/"]
        re.compile(hook["files"])
    assert _check_command_line(by_id["outreach-validate"]["entry"]) == "validate"
    assert _check_command_line(by_id["outreach-test"]["entry"]) == "test"


def test_the_github_actions_example_validates_tests_and_posts_the_plan() -> None:
    flow = _load(WORKFLOW)
    triggers = flow.get("on", flow.get(True))  # PyYAML reads the key `on` as YAML 1.1's true
    assert "pull_request" in triggers
    assert flow["permissions"]["pull-requests"] == "write"
    steps = flow["jobs"]["rules"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    lines = [line.strip() for s in steps for line in s.get("run", "").splitlines()]
    commands = [line for line in lines if line.startswith("outreach ")]
    assert [_check_command_line(c) for c in commands] == ["validate", "test", "plan"]
    assert "--format github" in commands[0] and "--format junit" in commands[1]
    assert '--base "$BASE" --format markdown' in commands[2]
    assert any(line.startswith('gh pr comment "$PR" --body-file plan.md') for line in lines)
    assert any(s.get("uses", "").startswith("mikepenz/action-junit-report@") for s in steps)


def test_ci_md_shows_the_workflow_file_as_it_is() -> None:
    page = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert "```yaml\n" + WORKFLOW.read_text(encoding="utf-8") + "```" in page


def _pages() -> dict[str, str]:
    """What a user reads to install outreach: the README, the docs, the changelog and the hooks file's comment."""
    paths = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / ".pre-commit-hooks.yaml", *sorted(ROOT.glob("docs/**/*.md")),
             *sorted(ROOT.glob("docs/**/*.yml"))]  # fmt: skip
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


def test_the_tag_the_docs_name_is_this_version() -> None:
    tag = f"v{outreach.__version__}"
    found = {
        (name, match.group(1) or match.group(2))
        for name, text in _pages().items()
        if name != "CHANGELOG.md"  # it names every version
        for match in re.finditer(r"(?:rev: |git\+https://\S+?/outreach@)(\S+?)(?=[\"'\s])|\b(v\d+\.\d+\.\d+)\b", text)
    }
    assert {name for name, _ in found} >= {".pre-commit-hooks.yaml", "docs/ci.md", "docs/ci/github-actions.yml"}
    assert {(name, t) for name, t in found if t != tag} == set(), f"a page names another tag than {tag}"


def _index_installs(name: str, text: str) -> list[str]:
    """`pip install` lines a user copies (in a page's code blocks; anywhere in YAML) that ask an index for outreach.

    `outreach[postgres]` alone is not one: it adds an extra to the outreach installed (the store's error says it)."""
    blocks = re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, re.M | re.S) if name.endswith(".md") else [text]
    found = []
    for line in (line for block in blocks for line in block.splitlines() if "pip install " in line):
        words = shlex.split(line.split("pip install ", 1)[1].split(" #", 1)[0], posix=True)
        found += [line.strip() for w in words if re.fullmatch(r"outreach|outreach(\[[\w,]+\])?[=<>~!].*", w)]
    return found


def test_no_page_tells_users_to_pip_install_outreach_from_a_package_index() -> None:
    found = [f"{name}: {line}" for name, text in _pages().items() for line in _index_installs(name, text)]
    assert found == [], "outreach is not on a package index: install it from its repository at a tag (docs/ci.md)"


def test_an_index_install_is_found_in_a_code_block_and_a_repository_install_or_prose_is_not() -> None:
    page = """Not `pip install outreach`: it is not released.

```sh
pip install outreach
pip install -q 'outreach[postgres]==0.2.0'  # pinned
pip install "outreach @ git+https://github.com/OWNER/outreach@v0.2.0"
pip install -e '.[dev]'
pip install 'outreach[postgres]'
```
"""
    assert _index_installs("x.md", page) == [
        "pip install outreach",
        "pip install -q 'outreach[postgres]==0.2.0'  # pinned",
    ]
    assert _index_installs("x.yml", "- run: pip install outreach==0.1.0\n") == ["- run: pip install outreach==0.1.0"]
