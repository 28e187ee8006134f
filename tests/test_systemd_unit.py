"""The shipped systemd unit (contrib/systemd/): `systemd-analyze verify` passes on it, alone and with each drop-in
(the example's and the docs'), and `systemd-analyze security --offline=yes` rates it 2.0 or lower ("OK").

systemd need not run: systemd-analyze reads the files (Debian's package `systemd` has it; .ci/run installs it).
Without it these tests skip outside CI and fail in CI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from outreach import cli
from tests.conftest import ROOT, need

pytestmark = pytest.mark.acceptance

CONTRIB = ROOT / "contrib" / "systemd"
UNIT = CONTRIB / "outreach.service"
EXAMPLE = CONTRIB / "outreach.service.d" / "example.conf"
INSTALLED = "/opt/outreach/.venv/bin/outreach"  # where docs/operations.md installs outreach; the unit runs it
THRESHOLD = 2.0  # the overall exposure the unit must not exceed: 2.0 and below is "OK" or better

_BLOCK = re.compile(r"^```(?:ini|systemd)\n(.*?)^```", re.S | re.M)
_SECTION = re.compile(r"^\[(Unit|Service|Install)\]$", re.M)
_SCORE = re.compile(r"Overall exposure level for outreach\.service: (\d+\.\d+) (\S+)")


# --- reading unit files ---------------------------------------------------------------------------------------


def _lines(text: str) -> list[tuple[int, str, str, str]]:
    """(line number, section, key, value) of every assignment, as systemd reads them: `#` and `;` start a comment
    only at the start of a line, and a line ending in a backslash goes on on the next."""
    out: list[tuple[int, str, str, str]] = []
    section, pending, start = "", "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if not pending and line.startswith("["):
            section = line.strip("[]")
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        key, _, value = (pending + line).partition("=")
        out.append((start, section, key.strip(), value.strip()))
        pending = ""
    return out


def _values(text: str, section: str, key: str) -> list[str]:
    """The values of `key` in `section`, an empty assignment resetting the list as systemd does."""
    values: list[str] = []
    for _line, sec, k, value in _lines(text):
        if sec == section and k == key:
            values = [] if value == "" else [*values, value]
    return values


def _comments_after_values(name: str, text: str) -> list[str]:
    """`name:line: ...` for every value with a comment after it: systemd would read it as part of the value."""
    return [f"{name}:{line}: {key}={value}" for line, _sec, key, value in _lines(text)
            if re.search(r"\s[#;]", value)]  # fmt: skip


def _docs_units() -> list[tuple[str, str]]:
    """(docs/PAGE.md#N, text) of every ```ini or ```systemd block of docs/*.md that is a unit or a drop-in."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        blocks = _BLOCK.findall(page.read_text(encoding="utf-8"))
        found += [(f"docs/{page.name}#{i}", b) for i, b in enumerate(blocks) if _SECTION.search(b)]
    return found


# --- running systemd-analyze -----------------------------------------------------------------------------------


def _analyze() -> str:
    path = shutil.which("systemd-analyze") or next(
        (p for p in ("/usr/bin/systemd-analyze", "/bin/systemd-analyze") if os.access(p, os.X_OK)), None
    )
    need(path is not None, "systemd-analyze is not installed (Debian: apt-get install systemd)")
    assert path is not None
    return path


def _stage(where: Path, drop_ins: dict[str, str] | None = None) -> Path:
    """The unit, and `drop_ins` (name -> text) in outreach.service.d/ beside it, in `where`.

    `systemd-analyze verify` checks that ExecStart='s program exists and is executable, and outreach is not
    installed in /opt/outreach on a test machine: the copies name an executable stand-in created here instead.
    """
    stand_in = where / "bin" / "outreach"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    unit = where / "outreach.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, str(stand_in)), encoding="utf-8")
    if drop_ins:
        (where / "outreach.service.d").mkdir()
        for name, text in drop_ins.items():
            (where / "outreach.service.d" / name).write_text(text.replace(INSTALLED, str(stand_in)), encoding="utf-8")
    return unit


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([_analyze(), *args], capture_output=True, text=True, env=env, timeout=120)


def _verify_problems(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about our files (the unit, its drop-ins); other units it loads (the
    targets it names) are not ours."""
    result = _run("verify", "--man=no", str(unit))
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "outreach.service" in line or str(unit.parent) in line]  # fmt: skip
    if result.returncode != 0:
        ours.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return ours


# --- the tests -------------------------------------------------------------------------------------------------


def test_systemd_analyze_verify_passes_on_the_unit(tmp_path: Path) -> None:
    assert _verify_problems(_stage(tmp_path)) == []


def test_systemd_analyze_verify_passes_with_the_example_drop_in(tmp_path: Path) -> None:
    unit = _stage(tmp_path, {"example.conf": EXAMPLE.read_text(encoding="utf-8")})
    assert _verify_problems(unit) == []


def test_verify_would_see_a_bad_drop_in(tmp_path: Path) -> None:
    """The check above reads the drop-ins: a second ExecStart= without the empty one before it is refused."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("ExecStart=\n", "", 1)
    assert "ExecStart=\n" not in text
    problems = _verify_problems(_stage(tmp_path, {"example.conf": text}))
    assert any("more than one ExecStart=" in p for p in problems), problems


@pytest.mark.parametrize("name, text", _docs_units(), ids=[name for name, _ in _docs_units()])
def test_systemd_analyze_verify_passes_with_each_drop_in_of_the_docs(name: str, text: str, tmp_path: Path) -> None:
    assert _verify_problems(_stage(tmp_path, {"docs.conf": text})) == [], f"the drop-in of {name}"


@pytest.mark.parametrize("with_example", [False, True], ids=["unit", "unit+example.conf"])
def test_systemd_analyze_security_rates_the_unit_ok(with_example: bool, tmp_path: Path) -> None:
    unit = _stage(tmp_path, {"example.conf": EXAMPLE.read_text(encoding="utf-8")} if with_example else None)
    result = _run("security", "--offline=yes", f"--threshold={round(THRESHOLD * 10)}", "--no-pager", str(unit))
    scores = _SCORE.findall(result.stdout)
    assert scores, f"no overall exposure level in the output:\n{result.stdout}\n{result.stderr}"
    score, rating = float(scores[-1][0]), scores[-1][1]
    exposed = "\n".join(line for line in result.stdout.splitlines() if line.startswith("✗"))
    assert score <= THRESHOLD, f"exposure {score} {rating} (at most {THRESHOLD}); what counts:\n{exposed}"
    assert result.returncode == 0, result.stderr
    assert rating in ("OK", "SAFE", "PERFECT")


def test_the_unit_has_the_options_the_issue_names() -> None:
    text = UNIT.read_text(encoding="utf-8")
    service = {key: _values(text, "Service", key) for _line, sec, key, _value in _lines(text) if sec == "Service"}
    for key, value in [("Type", "notify"), ("NotifyAccess", "main"), ("DynamicUser", "yes"),
                       ("StateDirectory", "outreach"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
                       ("SystemCallFilter", "@system-service"), ("ExecReload", "/bin/kill -HUP $MAINPID"),
                       ("WorkingDirectory", "/var/lib/outreach")]:  # fmt: skip
        assert value in service.get(key, []), f"{UNIT.name}: no {key}={value} (has {service.get(key)})"
    credentials = service.get("LoadCredential", [])
    assert {c.split(":", 1)[0] for c in credentials} >= {"tracking-secret", "api-token", "smtp-password"}
    assert all(":" in c and not c.split(":", 1)[1].startswith("/") for c in credentials), (
        "the shipped credentials are looked up in /etc/credstore (a relative name), so a missing one is skipped"
    )
    assert service["WatchdogSec"] and service["TimeoutStopSec"] and service["Restart"] == ["on-failure"]
    grace = 30  # `outreach run --grace` (default 30 s): SIGTERM lets mail in flight finish within it
    stop = service["TimeoutStopSec"][-1]
    assert stop.endswith("s") and int(stop[:-1]) > grace, f"TimeoutStopSec={stop} leaves no time past the grace"


def test_the_unit_runs_outreach_run_with_options_it_has() -> None:
    """Every ExecStart= of the unit and the example drop-in is `outreach run` with options the command takes."""
    assert isinstance(cli.main, click.Group)
    command = cli.all_commands()["run"]
    options = {opt for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    runs = [v for f in (UNIT, EXAMPLE) for v in _values(f.read_text(encoding="utf-8"), "Service", "ExecStart")]
    assert len(runs) == 2
    for line in runs:
        words = shlex.split(line)
        assert words[:2] == [INSTALLED, "run"], line
        unknown = [w.split("=")[0] for w in words[2:] if w.startswith("--") and w.split("=")[0] not in options]
        assert unknown == [], f"{line}: `outreach run` has no option {unknown}"


def test_no_value_of_the_unit_or_its_drop_ins_has_a_comment_after_it() -> None:
    files = [UNIT, *sorted((CONTRIB / "outreach.service.d").glob("*.conf"))]
    problems = [p for f in files for p in _comments_after_values(str(f.relative_to(ROOT)), f.read_text("utf-8"))]
    assert problems == [], "systemd reads a comment after a value as part of it:\n" + "\n".join(problems)


def test_no_unit_or_drop_in_of_the_docs_has_a_comment_after_a_value() -> None:
    blocks = _docs_units()
    pages = {name.split("#")[0] for name, _ in blocks}
    assert {"docs/mail.md", "docs/operations.md"} <= pages, f"no unit or drop-in found in {pages}"
    problems = [p for name, text in blocks for p in _comments_after_values(name, text)]
    assert problems == [], "systemd reads a comment after a value as part of it:\n" + "\n".join(problems)


def test_the_comment_check_sees_a_comment_after_a_value() -> None:
    text = "[Service]\nEnvironmentFile=/etc/outreach/secrets.env   # BEN_IMAP_PASSWORD=...\n# a comment line\n"
    assert _comments_after_values("x.conf", text) == [
        "x.conf:2: EnvironmentFile=/etc/outreach/secrets.env   # BEN_IMAP_PASSWORD=..."
    ]
