"""The arrows between the parts hold (import-linter's contracts in pyproject.toml, docs/architecture.md), and a
broken arrow fails them: SQL only under outreach/store, the engine above neither store nor mail, mail and store
apart, the CLI and the web handlers on the application layer."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application import use_cases

from tests.conftest import ROOT

configuration.configure()  # what import-linter's command does first


@pytest.mark.unit
def test_the_import_rules_of_pyproject_hold() -> None:
    out = io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
        kept = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, out.getvalue()
    assert "4 kept, 0 broken" in out.getvalue()


def _broken_copy(tmp_path: Path, edits: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """import-linter run on a copy of the package with `edits` (path -> a line appended), as CI would run it."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "outreach", source / "outreach", ignore=shutil.ignore_patterns("__pycache__"))
    for path, line in edits.items():
        with open(source / path, "a", encoding="utf-8") as f:
            f.write(f"\n{line}\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--no-cache", "--config", str(tmp_path / "pyproject.toml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.acceptance
def test_a_broken_arrow_fails_the_rules_and_names_the_import(tmp_path: Path) -> None:
    done = _broken_copy(tmp_path, {
        "outreach/engine/events.py": "from outreach.store import changes as _changes  # noqa",
        "outreach/mail/links.py": "import sqlalchemy as _sa  # noqa",
        "outreach/cli/doctor.py": "from outreach.mail import smtp as _smtp  # noqa",
        "outreach/store/rows.py": "from outreach.mail import inbound as _inbound  # noqa",
        "outreach/web/pages.py": "from outreach.engine import tracking as _tracking  # noqa",
    })  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    report = " ".join(done.stdout.split())
    assert "0 kept, 4 broken" in report
    assert "outreach.web.pages -> outreach.engine.tracking" in report
    assert "outreach.engine.events -> outreach.store.changes" in report
    assert "outreach.store.rows -> outreach.mail.inbound" in report
    assert "outreach.mail.links -> sqlalchemy" in report
    assert "outreach.cli.doctor -> outreach.mail.smtp" in report


@pytest.mark.acceptance
def test_the_daemon_is_imported_by_the_cli_only_to_run_it(tmp_path: Path) -> None:
    done = _broken_copy(tmp_path, {"outreach/cli/records.py": "from outreach import daemon as _daemon  # noqa"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "outreach.cli.records -> outreach.daemon" in " ".join(done.stdout.split())
