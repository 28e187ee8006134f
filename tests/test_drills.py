"""The drills of bench/drills/, each in its quick form, as CI runs them (issue 20): a daemon SIGKILLed while it
sends, and a flaky relay. Each prints what it found as figures and exits 1 when a check fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance


@pytest.mark.parametrize("drill", ["crash", "flaky"])
def test_the_drill_passes(drill: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "drills" / f"{drill}.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict                    passed" in done.stdout
    assert "taken twice                0" in done.stdout
