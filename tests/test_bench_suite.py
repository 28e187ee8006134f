"""`python -m bench` (bench/suite.py): the rows it makes of a benchmark's figures, met or missed, and its table. No
benchmark runs here: the figures are given."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bench import suite
from tests.conftest import ROOT

SCHEDULER_FULL = {"enrollments": 1_000_000, "due": 10_000, "tick_median_ms": 0.8, "due_median_s": 2.4,
                  "decide_build_s": 0.4, "daemon_peak_mb": 180.0, "tick_target_ms": 5.0, "due_target_s": 2.0}  # fmt: skip


@pytest.mark.unit
def test_a_time_under_its_target_is_met_and_one_over_it_missed() -> None:
    tick, due, memory = suite.rows_scheduler(SCHEDULER_FULL)
    assert (tick.name, tick.verdict) == ("idle tick at 1,000,000 enrollments", "met")
    assert (due.name, due.verdict) == ("10,000 due steps at 1,000,000 enrollments", "missed")
    assert due.reference == 0.4 and due.ratio == pytest.approx(6.0)
    assert (memory.unit, memory.figure, memory.verdict) == ("MB", 180.0, "no target")


@pytest.mark.unit
def test_smtp_is_judged_on_its_share_of_smtp_source_in_the_same_run() -> None:
    figures = {"messages": 20_000, "pool": 4, "sessions": 20, "rate": 2_600.0, "reference_rate": 5_000.0,
               "target": 0.5}  # fmt: skip
    (row,) = suite.rows_smtp(figures)
    assert (row.verdict, suite.ratio_text(row), suite.target_text(row)) == ("met", "52%", ">= 50% of ref")
    (row,) = suite.rows_smtp({**figures, "rate": 2_400.0})
    assert row.verdict == "missed"


@pytest.mark.unit
def test_a_run_below_the_issues_size_scales_the_targets_that_grow_with_it_and_says_scaled() -> None:
    tick, due, _ = suite.rows_scheduler({**SCHEDULER_FULL, "enrollments": 200_000, "due": 2_000, "due_median_s": 0.3})
    assert tick.target == suite.Target(5.0)  # an idle tick should not grow with the store: kept
    assert due.target == suite.Target(0.4)  # 2 s for 10,000 steps
    assert (tick.verdict, due.verdict) == ("met (scaled)", "met (scaled)")


@pytest.mark.unit
def test_a_share_is_a_floor() -> None:
    figures = {"messages": 10_000, "classify_s": 4.2, "parse_s": 2.7, "target": 5.0, "share": 0.973,
               "flufl_share": 0.595, "share_target": 0.97, "flufl_s": 9.2}  # fmt: skip
    speed, share, beside = suite.rows_classify(figures)
    assert (speed.verdict, share.verdict, beside.verdict) == ("met", "met", "no target")
    assert suite.amount(share.figure or 0, share.unit) == "97.3%"
    (_, share, _) = suite.rows_classify({**figures, "share": 0.95})
    assert share.verdict == "missed"


@pytest.mark.unit
def test_the_tab_completions_are_one_row_their_slowest() -> None:
    medians = {"python -c pass": 0.02, "outreach --help": 0.2, "outreach --version": 0.2, "Tab: outreach rec": 0.21,
               "Tab: outreach enroll x --wh": 0.31, "outreach validate rules/": 0.3}  # fmt: skip
    targets = {f"{k} target": (0.5 if "validate" in k else 0.3) for k in medians if k != "python -c pass"}
    rows = suite.rows_cli({**medians, **targets})
    assert [(r.name, r.figure, r.verdict) for r in rows] == [
        ("start-up: outreach --help", 0.2, "met"),
        ("start-up: outreach --version", 0.2, "met"),
        ("start-up: Tab, slowest of 2", 0.31, "missed"),
        ("start-up: outreach validate rules/", 0.3, "met"),
    ]
    assert all(r.reference == 0.02 and r.reference_name == "python -c pass" for r in rows)


@pytest.mark.unit
def test_a_benchmark_not_run_says_why_in_its_row() -> None:
    outcome = suite.Outcome(None, "not run: bench/campaign.py missing", load=1.5, seconds=0.1)
    (row,) = suite.rows_of(suite.BY_NAME["campaign"], outcome)
    table = suite.format_table([row], "header")
    assert "campaign of 100,000 recipients" in table and "not run: bench/campaign.py missing" in table


@pytest.mark.unit
def test_the_table_has_a_line_a_row_with_figure_target_reference_ratio_and_verdict() -> None:
    rows = [dataclasses.replace(r, load=1.25) for r in suite.rows_scheduler(SCHEDULER_FULL)]
    table = suite.format_table(rows, "outreach benchmarks: load average 1.25 at the start", "the end")
    lines = table.splitlines()
    assert lines[0] == "outreach benchmarks: load average 1.25 at the start" and lines[-1] == "the end"
    assert lines[2].split() == ["benchmark", "figure", "target", "reference", "ratio", "verdict", "load"]
    due = next(line for line in lines if line.startswith("10,000 due steps"))
    for cell in ("2.40 s", "< 2 s", "0.40 s engine, no store", "6.0x", "missed", "1.2"):
        assert cell in due
    assert "scaled:" not in table  # no row ran below the issue's size


@pytest.mark.unit
def test_the_campaign_benchmark_is_bench_campaign_py_measure_when_it_is_there(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(suite, "BENCH", tmp_path)
    with pytest.raises(suite.NotRun, match=r"bench/campaign\.py missing"):
        suite.measure_campaign(suite.QUICK, None)
    (tmp_path / "campaign.py").write_text(
        "def measure(recipients):\n"
        "    return {'expand_seconds': recipients / 1e5, 'stats_seconds': 0.1, 'peak_rss_mb': 150.0}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "campaign", raising=False)
    figures = suite.measure_campaign(suite.FULL, None)
    assert figures["recipients"] == 100_000 and figures["expand_seconds"] == 1.0
    assert [r.verdict for r in suite.rows_campaign(figures)] == ["met", "met", "met"]


@pytest.mark.unit
def test_help_names_quick_and_plot(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        suite.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m bench" in out and "--quick" in out and "--plot FILE.png" in out


@pytest.mark.acceptance
def test_python_m_bench_help_runs_from_the_repository_root() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
