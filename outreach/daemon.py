"""The daemon's composition root.

So far it does what the daemon must do first (ARCHITECTURE.md, decision 6):
load and validate the whole rule directory, all or nothing, and refuse to
start on an invalid one. The scheduler, dispatcher, inbox and web loops come
with the sequences and mail issues; until then it reports the rule set and
exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from outreach.rules import diagnostics
from outreach.rules import validate as rules_validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daemon.py", description="Run the outreach daemon on a rule directory.")
    parser.add_argument("--rules", default="rules", help="the rule directory (default: rules)")
    args = parser.parse_args(argv)
    result = rules_validate.validate([args.rules], now=dt.datetime.now(dt.UTC))
    if result.diagnostics:
        print(diagnostics.format_text(result.diagnostics), file=sys.stderr)
    if result.ruleset is None:
        print(f"outreach daemon: {args.rules} has errors; not starting", file=sys.stderr)
        return 1
    print(
        f"outreach daemon: {args.rules} is valid ({result.documents} definitions). "
        "The scheduler and mail loops are not built yet; nothing to run."
    )
    return 0
