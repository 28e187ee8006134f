"""The store never reads the database's clock: every time it writes is the one its caller passes (a virtual clock
in tests, RuleTests and `simulate`; the daemon's clock in production)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_no_statement_reads_the_database_clock() -> None:
    for path in (ROOT / "outreach" / "store").rglob("*.py"):
        text = path.read_text(encoding="utf-8").lower()
        for word in ("now()", "current_timestamp", "func.now", "datetime.now", "utcnow"):
            assert word not in text, f"{path} uses {word}"
