"""`python -m bench`: every benchmark of the project in one run, and one table of what it found (issue 20).

Each benchmark runs in a subprocess of its own (`python -m bench --child NAME`), so that one's memory, imports and
caches do not distort another's: the child imports the benchmark's script from bench/, calls its `measure()` (the
script's own printout goes to a log file, NAME.log) and hands the figures back as JSON, with the script's targets.
This parent imports none of them: it turns the figures into rows (figure, target, the reference measured in the
same run where there is one, their ratio, met or missed) and prints one table. `--quick` runs smaller sizes; a row
run below the issue's size says "scaled". `--plot FILE` draws how the idle tick, 10,000 due steps and a campaign
cost at 10k, 100k and 1M of total state (matplotlib, in the `dev` extra).

bench/campaign.py, when it exists, has `measure(recipients: int) -> dict[str, float]` returning
{"expand_seconds": ..., "stats_seconds": ..., "peak_rss_mb": ...}; without it the campaign rows say "not run".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
Figures = Mapping[str, float]

# Issue 16's targets for a campaign of 100,000 recipients; bench/campaign.py returns figures only.
CAMPAIGN_EXPAND_S, CAMPAIGN_STATS_S, CAMPAIGN_PEAK_MB = 5.0, 0.5, 200.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs. FULL is the issue's; QUICK keeps the whole run under two minutes on the
    project's 2-core machine while other jobs run (about 95 s at a load average of 3), keeping full sizes where
    they are cheap (validate, enroll)."""

    validate_files: int = 1000
    validate_runs: int = 5
    import_rows: int = 1_000_000
    plan_enrollments: int = 1_000_000
    enrollments: int = 1_000_000
    due: int = 10_000
    bursts: int = 3
    ticks: int = 20
    smtp_messages: int = 20_000
    smtp_sessions: int = 20  # smtp-source's, as issue 20 measured it; outreach keeps the relay's default pool
    enroll_records: int = 20_000
    enroll_runs: int = 3
    classify_messages: int = 10_000
    classify_runs: int = 3
    campaign_recipients: int = 100_000
    ruletests: int = 100
    ruletest_runs: int = 3
    cli_runs: int = 7
    plot_states: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # enrollments; recipients of the campaign


FULL = Sizes()
QUICK = Sizes(validate_runs=1, import_rows=100_000, plan_enrollments=100_000, enrollments=200_000, due=2_000,
              bursts=1, ticks=10, smtp_messages=2_000, enroll_runs=1, classify_messages=2_000, classify_runs=1,
              campaign_recipients=20_000, ruletests=50, ruletest_runs=1, cli_runs=3,
              plot_states=(2_000, 20_000, 200_000))  # fmt: skip


class NotRun(Exception):
    """What a benchmark needs is missing here (a tool, bench/campaign.py): its rows say so and why."""


# --- the rows of the table --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    value: float
    at_least: bool = False  # a floor (a rate, a share); else a ceiling (time, memory)
    on_ratio: bool = False  # judged on the figure over the reference (SMTP: a share of smtp-source's rate)


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    figure: float | None  # None: not measured, and `note` says why
    unit: str = "s"  # s, ms, MB, % (the figure a fraction), msg/s
    target: Target | None = None
    reference: float | None = None
    reference_name: str = ""
    scaled: bool = False  # run below the size (--quick)
    note: str = ""
    load: float | None = None  # the 1-minute load average when the benchmark started

    @property
    def ratio(self) -> float | None:
        if self.figure is None or not self.reference:
            return None
        return self.figure / self.reference

    @property
    def verdict(self) -> str:
        if self.figure is None:
            return self.note
        if self.target is None:
            return "no target"
        value = self.ratio if self.target.on_ratio else self.figure
        if value is None:
            return "no reference"
        met = value >= self.target.value if self.target.at_least else value < self.target.value
        return ("met" if met else "missed") + (" (scaled)" if self.scaled else "")


def amount(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1%}"
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:,.0f} s"


def target_text(row: Row) -> str:
    if row.target is None:
        return "-"
    sign = ">=" if row.target.at_least else "<"
    if row.target.on_ratio:
        return f"{sign} {row.target.value:.0%} of ref"
    value = amount(row.target.value, row.unit)
    return f"{sign} {value.replace('.00 ', ' ')}"


def ratio_text(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    # a rate or a share reads as a share of the reference; a time as how many times the reference's
    return f"{ratio:.0%}" if row.unit in ("msg/s", "%") else f"{ratio:.1f}x"


COLUMNS = (("benchmark", 48), ("figure", 12), ("target", 15), ("reference", 32), ("ratio", 7), ("verdict", 14),
           ("load", 5))  # fmt: skip


def format_table(rows: Sequence[Row], header: str, footer: str = "") -> str:
    """The table as text: a header line, the columns, a line a row; a row not measured says why after its name."""
    lines = [header, ""]
    lines.append("  ".join(f"{title:<{width}}" if i == 0 else f"{title:>{width}}"
                           for i, (title, width) in enumerate(COLUMNS)).rstrip())  # fmt: skip
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    for row in rows:
        load = f"{row.load:.1f}" if row.load is not None else ""
        if row.figure is None:
            lines.append(f"{row.name:<{COLUMNS[0][1]}}  {row.note}")
            continue
        reference = "-" if row.reference is None else f"{amount(row.reference, row.unit)} {row.reference_name}"
        cells = (row.name, amount(row.figure, row.unit), target_text(row), reference, ratio_text(row), row.verdict,
                 load)  # fmt: skip
        lines.append("  ".join(f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
                               for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))).rstrip())  # fmt: skip
    if any(r.scaled for r in rows):
        lines += ["", "scaled: run below the issue's size (--quick); a target on work that grows with the size is "
                      "scaled in proportion, the others are kept: the verdict is a hint, not a result"]  # fmt: skip
    if footer:
        lines += ["", footer]
    return "\n".join(lines)


def _n(value: float) -> str:
    return f"{int(value):,}"


def rows_validate(f: Figures) -> list[Row]:
    return [Row(f"validate {_n(f['files'])} files", f["median"], target=Target(f["target"]), reference=f["import"],
                reference_name="import outreach.cli", scaled=f["files"] < FULL.validate_files)]  # fmt: skip


def rows_store(f: Figures) -> list[Row]:
    rows, plan = f["rows"], f["enrollments"]
    scaled = rows < FULL.import_rows
    return [
        Row(f"import {_n(rows)} records", f["import_s"], target=Target(f["import_target_s"] * rows / FULL.import_rows),
            reference=f["sqlite_s"], reference_name="sqlite3 plain rows", scaled=scaled),
        Row(f"import {_n(rows)} records: peak RSS", f["import_peak_mb"], "MB", Target(f["import_target_mb"]),
            scaled=scaled),
        Row(f"plan over {_n(plan)} enrollments", f["plan_s"], target=Target(f["plan_target_s"]),
            scaled=plan < FULL.plan_enrollments),
    ]  # fmt: skip


def rows_scheduler(f: Figures) -> list[Row]:
    n, due = f["enrollments"], f["due"]
    scaled = n < FULL.enrollments or due < FULL.due
    rows = [
        Row(f"idle tick at {_n(n)} enrollments", f["tick_median_ms"], "ms", Target(f["tick_target_ms"]),
            scaled=scaled),
        Row(f"{_n(due)} due steps at {_n(n)} enrollments", f["due_median_s"],
            target=Target(f["due_target_s"] * due / FULL.due), reference=f["decide_build_s"],
            reference_name="engine, no store", scaled=scaled),
    ]  # fmt: skip
    if "daemon_peak_mb" in f:
        rows.append(Row(f"daemon peak RSS, tick at {_n(n)} enrollments", f["daemon_peak_mb"], "MB",
                        scaled=scaled))  # fmt: skip
    return rows


def rows_smtp(f: Figures) -> list[Row]:
    return [Row(f"SMTP end to end: {_n(f['messages'])} messages, pool {_n(f['pool'])}", f["rate"], "msg/s",
                Target(f["target"], at_least=True, on_ratio=True), reference=f["reference_rate"],
                reference_name=f"smtp-source -s {_n(f['sessions'])}",
                scaled=f["messages"] < FULL.smtp_messages)]  # fmt: skip


def rows_enroll(f: Figures) -> list[Row]:
    n = f["records"]
    return [Row(f"bulk enroll {_n(n)}", f["seconds"], target=Target(f["target"] * n / FULL.enroll_records),
                scaled=n < FULL.enroll_records)]  # fmt: skip


def rows_classify(f: Figures) -> list[Row]:
    n = f["messages"]
    rows = [Row(f"classify {_n(n)} real-size messages", f["classify_s"],
                target=Target(f["target"] * n / FULL.classify_messages), reference=f["parse_s"],
                reference_name="email parser", scaled=n < FULL.classify_messages)]  # fmt: skip
    if "share" in f:
        rows.append(Row("real bounces: recipient and status", f["share"], "%", Target(f["share_target"], at_least=True),
                        reference=f.get("flufl_share"), reference_name="flufl.bounce"))  # fmt: skip
    if "flufl_s" in f:
        rows.append(Row(f"classify {_n(n)}: beside flufl.bounce", f["classify_s"], reference=f["flufl_s"],
                        reference_name="flufl.bounce", scaled=n < FULL.classify_messages))  # fmt: skip
    return rows


def rows_campaign(f: Figures) -> list[Row]:
    n = f["recipients"]
    scaled = n < FULL.campaign_recipients
    return [
        Row(f"campaign of {_n(n)}: expand and queue", f["expand_seconds"],
            target=Target(CAMPAIGN_EXPAND_S * n / FULL.campaign_recipients), scaled=scaled),
        Row(f"campaign of {_n(n)}: stats", f["stats_seconds"], target=Target(CAMPAIGN_STATS_S), scaled=scaled),
        Row(f"campaign of {_n(n)}: peak RSS", f["peak_rss_mb"], "MB", Target(CAMPAIGN_PEAK_MB), scaled=scaled),
    ]  # fmt: skip


def rows_ruletest(f: Figures) -> list[Row]:
    n = f["tests"]
    return [Row(f"{_n(n)} RuleTests of a month", f["run_all_s"], target=Target(f["target"] * n / FULL.ruletests),
                scaled=n < FULL.ruletests)]  # fmt: skip


def rows_cli(f: Figures) -> list[Row]:
    """One row a command with a target; the Tab completions as one row, the slowest of them."""
    floor = f["python -c pass"]
    named = {k: v for k, v in f.items() if not k.endswith(" target") and f"{k} target" in f}
    rows = [Row(f"start-up: {k}", v, target=Target(f[f"{k} target"]), reference=floor,
                reference_name="python -c pass") for k, v in named.items() if not k.startswith("Tab")]  # fmt: skip
    tabs = {k: v for k, v in named.items() if k.startswith("Tab")}
    if tabs:
        slowest = max(tabs, key=tabs.__getitem__)
        rows.insert(min(2, len(rows)), Row(f"start-up: Tab, slowest of {len(tabs)}", tabs[slowest],
                                           target=Target(f[f"{slowest} target"]), reference=floor,
                                           reference_name="python -c pass"))  # fmt: skip
    return rows


# --- the benchmarks, as the child runs them ----------------------------------------------------------------------
# Each imports its script from bench/ (on sys.path in the child) only here, in the child.


def measure_validate(s: Sizes, state: int | None) -> dict[str, float]:
    import validate

    return {**validate.measure(s.validate_files, s.validate_runs), "target": validate.TARGET_SECONDS}


def measure_store(s: Sizes, state: int | None) -> dict[str, float]:
    import store

    return {**store.measure(s.import_rows, s.plan_enrollments), "import_target_s": store.IMPORT_TARGET_S,
            "import_target_mb": store.IMPORT_TARGET_MB, "plan_target_s": store.PLAN_TARGET_S}  # fmt: skip


def measure_scheduler(s: Sizes, state: int | None) -> dict[str, float]:
    """With `state` (a point of the plot): that many enrollments, one burst, no daemon."""
    import scheduler

    if state is None:
        figures = scheduler.measure(s.enrollments, s.due, s.ticks, s.bursts, daemon=True)
    else:
        figures = scheduler.measure(state, min(s.due, state), s.ticks, bursts=1)
    return {**figures, "tick_target_ms": scheduler.TICK_TARGET * 1000, "due_target_s": scheduler.DUE_TARGET}


def measure_smtp(s: Sizes, state: int | None) -> dict[str, float]:
    import smtp_throughput

    try:
        figures = smtp_throughput.measure(s.smtp_messages, s.smtp_sessions, from_due=True)
    except smtp_throughput.NotInstalled as exc:
        raise NotRun(str(exc)) from None
    return {**figures, "target": smtp_throughput.END_TO_END_TARGET}


def measure_enroll(s: Sizes, state: int | None) -> dict[str, float]:
    import enroll

    return {**enroll.measure(s.enroll_records, s.enroll_runs), "target": enroll.TARGET_SECONDS}


def measure_classify(s: Sizes, state: int | None) -> dict[str, float]:
    import classify

    return {**classify.measure(s.classify_messages, s.classify_runs), "target": classify.TARGET,
            "share_target": 0.97}  # fmt: skip  # issue 17, as tests/test_bounce_corpus.py asserts it


def measure_campaign(s: Sizes, state: int | None) -> dict[str, float]:
    """bench/campaign.py's `measure`, when it is there (it is written apart from this suite)."""
    if not (BENCH / "campaign.py").exists():
        raise NotRun("bench/campaign.py missing")
    import campaign

    if not callable(getattr(campaign, "measure", None)):
        raise NotRun("bench/campaign.py has no measure(recipients)")
    recipients = state or s.campaign_recipients
    return {**campaign.measure(recipients), "recipients": recipients}


def measure_ruletest(s: Sizes, state: int | None) -> dict[str, float]:
    import ruletest

    return {**ruletest.measure(s.ruletests, runs=s.ruletest_runs), "target": ruletest.TARGET}


def measure_cli(s: Sizes, state: int | None) -> dict[str, float]:
    import cli_start

    medians = cli_start.measure(s.cli_runs)
    return {**medians, **{f"{name} target": target for name, _, _, target in cli_start.CASES if target is not None}}


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    title: str  # the row of a benchmark not run
    measure: Callable[[Sizes, int | None], dict[str, float]]
    rows: Callable[[Figures], list[Row]]


BENCHMARKS = (
    Benchmark("validate", "validate 1,000 files", measure_validate, rows_validate),
    Benchmark("store", "import 1M records, plan over 1M", measure_store, rows_store),
    Benchmark("scheduler", "idle tick, 10,000 due steps, daemon RSS", measure_scheduler, rows_scheduler),
    Benchmark("smtp", "SMTP end to end vs smtp-source", measure_smtp, rows_smtp),
    Benchmark("enroll", "bulk enroll 20,000", measure_enroll, rows_enroll),
    Benchmark("classify", "classify 10,000 real-size messages", measure_classify, rows_classify),
    Benchmark("campaign", "campaign of 100,000 recipients", measure_campaign, rows_campaign),
    Benchmark("ruletest", "100 RuleTests of a month", measure_ruletest, rows_ruletest),
    Benchmark("cli", "CLI start-up", measure_cli, rows_cli),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def child(name: str, quick: bool, state: int | None, out: Path) -> int:
    """In the subprocess: run one benchmark and write {"figures": ...}, {"not_run": why} or {"failed": why}."""
    sys.path.insert(0, str(BENCH))  # the scripts import each other as top-level modules, as when run by hand
    sizes = QUICK if quick else FULL
    try:
        result: dict[str, object] = {"figures": BY_NAME[name].measure(sizes, state)}
    except NotRun as exc:
        result = {"not_run": str(exc)}
    except (Exception, SystemExit) as exc:  # a script's check failed, or it exited: the table says so
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        result = {"failed": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"}
    out.write_text(json.dumps(result), encoding="utf-8")
    return 0


# --- the parent ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    figures: dict[str, float] | None
    problem: str  # "not run: ..." or "failed: ..." when figures is None
    load: float
    seconds: float


def run_child(name: str, quick: bool, logs: Path, state: int | None = None, timeout: float = 3600) -> Outcome:
    label = name if state is None else f"{name}-{state}"
    out, log = logs / f"{label}.json", logs / f"{label}.log"
    load, start = os.getloadavg()[0], time.perf_counter()
    command = [sys.executable, "-m", "bench", "--child", name, "--out", str(out)]
    command += ["--quick"] if quick else []
    command += ["--state", str(state)] if state is not None else []
    with log.open("wb") as fh:
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.perf_counter() - start
    result = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    if "figures" in result:
        return Outcome(result["figures"], "", load, seconds)
    if "not_run" in result:
        return Outcome(None, f"not run: {result['not_run']}", load, seconds)
    why = result.get("failed") or (f"timed out after {timeout:.0f} s" if code is None else f"exited {code}")
    return Outcome(None, f"failed: {why} (see {log})", load, seconds)


def rows_of(benchmark: Benchmark, outcome: Outcome) -> list[Row]:
    if outcome.figures is None:
        return [Row(benchmark.title, None, note=outcome.problem, load=outcome.load)]
    return [dataclasses.replace(r, load=outcome.load) for r in benchmark.rows(outcome.figures)]


def plot(points: Mapping[str, Mapping[int, float]], path: Path, due: int, note: str) -> None:
    """Three panels over total state (log-log): the idle tick and `due` due steps by enrollments, a campaign by
    its recipients, each with a dashed line of what growing with the total state would look like."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    from matplotlib import pyplot

    panels = [("tick_ms", "idle tick (ms, median)", "enrollments in the store", "the store"),
              ("due_s", f"{due:,} due steps (s, median)", "enrollments in the store", "the store"),
              ("campaign_s", "campaign: expand and queue (s)", "recipients: all of them due work", "the recipients")]  # fmt: skip
    figure, axes = pyplot.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
    for ax, (key, title, xlabel, total) in zip(axes, panels, strict=True):
        data = sorted(points.get(key, {}).items())
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if not data:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, note or "not measured", ha="center", va="center", transform=ax.transAxes, wrap=True)
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs, ys = [x for x, _ in data], [y for _, y in data]
        ax.plot(xs, ys, "o-", label="measured")
        ax.plot(xs, [ys[0] * x / xs[0] for x in xs], "--", color="grey", label=f"in proportion to {total}")
        for x, y in data:
            ax.annotate(f"{y:.3g}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center")
        ax.legend(loc="upper left")
    figure.suptitle("What a tick and a campaign cost as the state grows: the due work counts, not the total")
    figure.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller sizes: the whole run in under two minutes")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="also draw the idle tick, the due steps and a campaign at three sizes of total state")
    parser.add_argument("--only", metavar="NAME,...", help=f"run only these ({', '.join(BY_NAME)})")
    parser.add_argument("--logs", type=Path, metavar="DIR", help="where each benchmark's printout goes "
                        "(default: a new temporary directory, named at the end)")  # fmt: skip
    parser.add_argument("--child", choices=list(BY_NAME), help=argparse.SUPPRESS)  # one benchmark, in its process
    parser.add_argument("--state", type=int, help=argparse.SUPPRESS)  # with --child: a point of the plot
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # with --child: where its JSON goes
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.state, args.out)

    names = args.only.split(",") if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} (there are {', '.join(BY_NAME)})")
    sizes = QUICK if args.quick else FULL
    logs = args.logs or Path(tempfile.mkdtemp(prefix="outreach-bench-suite-"))
    logs.mkdir(parents=True, exist_ok=True)
    timeout = 600 if args.quick else 3600
    header = (f"outreach benchmarks, python -m bench{' --quick' if args.quick else ''}: Python "
              f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the "
              "start")  # fmt: skip
    print(header, file=sys.stderr)
    started = time.perf_counter()
    rows: list[Row] = []
    outcomes: dict[str, Outcome] = {}
    for name in names:
        outcome = outcomes[name] = run_child(name, args.quick, logs, timeout=timeout)
        print(f"  {name}: {outcome.seconds:.1f} s{', ' + outcome.problem if outcome.problem else ''}", file=sys.stderr)
        rows += rows_of(BY_NAME[name], outcome)

    if args.plot:
        points, note = plot_points(sizes, outcomes, args.quick, logs, timeout)
        plot(points, args.plot, sizes.due, note)
        print(f"  plot: {args.plot}{'; ' + note if note else ''}", file=sys.stderr)

    footer = (f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - started:.0f} s in all; "
              f"each benchmark's own printout is in {logs}/")  # fmt: skip
    print(format_table(rows, header, footer))
    return 0


def plot_points(sizes: Sizes, outcomes: Mapping[str, Outcome], quick: bool, logs: Path,
                timeout: float) -> tuple[dict[str, dict[int, float]], str]:  # fmt: skip
    """The plot's points: the runs of the table where their size is one of the plot's, a child for each other."""
    points: dict[str, dict[int, float]] = {"tick_ms": {}, "due_s": {}, "campaign_s": {}}
    note = ""
    main = outcomes.get("scheduler")
    for state in sizes.plot_states:
        if main is not None and main.figures and state == main.figures["enrollments"]:
            figures: Mapping[str, float] | None = main.figures
        else:
            figures = run_child("scheduler", quick, logs, state, timeout).figures
        if figures is not None:
            points["tick_ms"][state] = figures["tick_median_ms"]
            points["due_s"][state] = figures["due_median_s"]
    main = outcomes.get("campaign")
    for state in sizes.plot_states:
        if main is not None and main.figures and state == main.figures["recipients"]:
            outcome = main
        else:
            outcome = run_child("campaign", quick, logs, state, timeout)
        if outcome.figures is None:
            note = f"campaign {outcome.problem}"
            break
        points["campaign_s"][state] = outcome.figures["expand_seconds"]
    return points, note


if __name__ == "__main__":
    sys.exit(main())
