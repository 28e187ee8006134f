"""Benchmark: how long the `outreach` command takes to start, as a user and a shell's Tab see it.

Run on demand from the repository root:

    .venv/bin/python bench/cli_start.py [--runs R]

Times, as subprocesses and by wall clock, R runs each (default 7, after one
warm-up) of:

| what | command |
|---|---|
| the bare interpreter | `python -c pass` (the floor; the reference measured in the same run) |
| help | `outreach --help` |
| version | `outreach --version` |
| Tab after `outreach rec` | the command's bash completion (`_OUTREACH_COMPLETE=bash_complete`) |
| Tab after `outreach records li` | the completion of a sub-command, which loads that command's module |
| Tab after `outreach enroll x --wh` | the completion of an option |
| validate | `outreach validate rules/` on the example rules |

and prints the best and the median of each, its part above the bare
interpreter, and the targets from issue 19: help, version and completion under
0.3 s, `validate` of the example rules under 0.5 s (judged on the median), on
the project's 2-core machines. The python-holidays answers `validate` keeps in
the user's cache directory are made by the warm-up run, as any second run of
`validate` finds them. It only prints (`measure()` returns the medians, for
`python -m bench`, which reads the targets from CASES).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTREACH = str(Path(sys.executable).with_name("outreach"))


def _complete(words: str) -> tuple[list[str], dict[str, str]]:
    return [OUTREACH], {"_OUTREACH_COMPLETE": "bash_complete", "COMP_WORDS": words,
                        "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip


CASES: list[tuple[str, list[str], dict[str, str], float | None]] = [
    ("python -c pass", [sys.executable, "-c", "pass"], {}, None),
    ("outreach --help", [OUTREACH, "--help"], {}, 0.3),
    ("outreach --version", [OUTREACH, "--version"], {}, 0.3),
    ("Tab: outreach rec", *_complete("outreach rec"), 0.3),
    ("Tab: outreach records li", *_complete("outreach records li"), 0.3),
    ("Tab: outreach enroll x --wh", *_complete("outreach enroll x --wh"), 0.3),
    ("outreach validate rules/", [OUTREACH, "validate", "rules/"], {}, 0.5),
]


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **env}, cwd=ROOT, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode()}")
    return took


def measure(runs: int = 7) -> dict[str, float]:
    """Times every case; prints the table as the command does and returns each case's median seconds by name."""
    results = []
    for name, argv, env, target in CASES:
        _time(argv, env)  # warm-up: the page cache, and validate's holiday answers
        times = [_time(argv, env) for _ in range(runs)]
        results.append((name, min(times), statistics.median(times), target))
    floor = results[0][2]
    print(f"{'command':<30}{'best':>8}{'median':>8}{'above python':>14}{'target':>8}  verdict")
    for name, best, median, target in results:
        verdict = "" if target is None else ("met" if median < target else "missed")
        shown = "" if target is None else f"{target:.1f} s"
        print(f"{name:<30}{best:>7.3f}s{median:>7.3f}s{median - floor:>13.3f}s{shown:>8}  {verdict}")
    return {name: median for name, _best, median, _target in results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (default 7)")
    args = parser.parse_args()
    measure(args.runs)
    return 0

if __name__ == "__main__":
    sys.exit(main())
