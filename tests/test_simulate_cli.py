"""`outreach simulate --process`: the overdue moment and every reminder, with weekdays, in UTC and local time."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from outreach import cli
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

RULES = str(ROOT / "rules")


def simulate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--process", "partner-leads", *args])
    return result.exit_code, result.output


def test_overdue_on_monday_is_reminded_tuesday_at_seven_utc_and_again_the_next_tuesday() -> None:
    code, out = simulate("--stage", "New", "--entered", "2026-11-21T10:00:00Z", "--until", "2026-12-02")

    assert code == 0, out
    assert out.splitlines() == [
        'partner-leads: a lead in New from Sat 2026-11-21 10:00 UTC; daily run "0 7 * * *" UTC, then every 1 week',
        "  Sat 2026-11-21 10:00 UTC  Sat 11:00 CET    enters New (max 2 days)",
        "  Mon 2026-11-23 10:00 UTC  Mon 11:00 CET    overdue in New",
        "  Tue 2026-11-24 07:00 UTC  Tue 08:00 CET    reminder 1 to the record's owner (overdue-reminder)",
        "  Tue 2026-12-01 07:00 UTC  Tue 08:00 CET    reminder 2 to the record's owner (overdue-reminder)",
        "until Wed 2026-12-02 00:00 UTC: 2 reminders",
    ]


def test_the_local_time_of_the_utc_run_moves_with_daylight_saving_time_in_berlin() -> None:
    code, out = simulate("--stage", "New", "--entered", "2027-03-13T10:00:00Z", "--until", "2027-04-01")

    assert code == 0, out
    reminders = [line for line in out.splitlines() if "reminder " in line]
    assert [line.split("  reminder")[0].rstrip() for line in reminders] == [
        "  Tue 2027-03-16 07:00 UTC  Tue 08:00 CET",
        "  Tue 2027-03-23 07:00 UTC  Tue 08:00 CET",
        "  Tue 2027-03-30 07:00 UTC  Tue 09:00 CEST",  # clocks went forward on Sunday 28 March
    ]


def test_another_local_zone_can_be_shown() -> None:
    code, out = simulate("--stage", "New", "--entered", "2026-11-21T10:00:00", "--until", "2026-11-25",
                         "--timezone", "America/New_York")  # fmt: skip
    assert code == 0, out
    assert "  Tue 2026-11-24 07:00 UTC  Tue 02:00 EST    reminder 1" in out


def test_a_stage_without_max_is_never_overdue() -> None:
    code, out = simulate("--stage", "Won", "--entered", "2026-11-21T10:00:00Z")
    assert code == 0, out
    assert "enters Won (no max)" in out and "overdue" not in out and out.endswith(": 0 reminders\n")


def test_unknown_names_and_bad_times_are_usage_errors() -> None:
    code, out = simulate("--stage", "Lost", "--entered", "2026-11-21T10:00:00Z")
    assert code == 2 and "partner-leads has no stage 'Lost' (its stages: New, Contacted, Qualified, Won)" in out
    result = CliRunner().invoke(cli.main, ["simulate", "--rules", RULES, "--process", "nope", "--stage", "New",
                                           "--entered", "2026-11-21"])  # fmt: skip
    assert result.exit_code == 2 and "no SalesProcess 'nope'" in result.output
    code, out = simulate("--stage", "New", "--entered", "next monday")
    assert code == 2 and "'next monday' is not an ISO 8601 date and time" in out
    code, out = simulate("--stage", "New", "--entered", "2026-11-21", "--until", "2026-11-20")
    assert code == 2 and "--until must be after --entered" in out
