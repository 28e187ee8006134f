"""Benchmark: a campaign to 100,000 recipients, picked and queued, and its statistics (issue 16).

Run on demand from the repository root:

    .venv/bin/python bench/campaign.py [--recipients 100000] [--message-kb 0] [--keep] [--profile FILE]

It builds a SQLite store in a temporary file through `Store.open` (the
migrations make the schema) and applies the example rules (without the users'
daily limits, as bench/scheduler.py does: 300 a day would hold back the
window), whose campaign `spring-webinar` sends to the View `dach-qualified`
(stage Qualified, country DE, AT or CH, not purchased). Then it seeds, with raw
`sqlite3` (not the code under test), N leads the View matches (default
100,000) and one more for every ten that it does not (another stage, country,
or purchased), interleaved in id order so the picking must filter. Of the N,
some are skipped, each for a reason the statistics count: 1% share an address
with the record before them (another case of its local part: addresses compare
without case), 1% are suppressed (unsubscribed, bounced, complaint), 0.5% have
no address and 0.1% are deleted.

Each measured part runs in a fresh process (this script with `--child`), so
that its peak memory is its own work and not the seeding's:

- **expand and queue**: `Campaigns.run(now)`, the campaigns phase of a
  scheduler tick, at the campaign's send time, called until its run is `sent`
  (every recipient picked or skipped, the decisions and the cursor written a
  batch of `PICK` at a time). The first call also renders the first window of
  mail into the outbox (`RENDER_AHEAD` messages): rendering goes a window
  ahead of the relay by design, so the outbox never holds the whole campaign.
  Target from the issue: **under 5 s**. `--profile FILE` writes cProfile's
  view of this part.
- **render a window**: that window handed to the relay (its outbox rows marked
  sent, as the dispatcher would), one more `Campaigns.run`, which renders the
  next window. A figure, no target: the relay's speed sets the pace of these.
- **peak RSS**: the kernel's `ru_maxrss` of that process (the interpreter, the
  imports and the store included; the RSS before the work is printed beside
  it). Target: **under 200 MB**.
- **stats**: `outreach.app.campaigns.detail` (what `outreach campaigns stats`
  calls) on a store opened afresh, as the command opens it: the first call,
  and the next two. Twice: right after the expansion (two windows rendered),
  and after the whole campaign went out (`deliver`: every recipient given an
  outbox row with a copy of a rendered message, some bounced, failed, opened,
  clicked; `--message-kb` makes those messages larger, as a richer template
  would). Target: **under 0.5 s**, judged on the slower first call.
- **follow-ups**: both of the campaign's follow-ups picked at their time (to
  those who opened it, and to those who received it, less the exceptions). A
  figure, no target.

The statistics are checked against the seed (recipients, each skip reason, and
after delivery each count) and the follow-ups' candidates against who opened
and received, so that a fast run that did nothing cannot pass. It prints the
figures with the load average and a verdict per target (`measure()` returns
them, for `python -m bench`); it exits 1 only when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMPAIGN = "spring-webinar"
APPLIED_AT = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)  # before its send_at
SEND = dt.datetime(2027, 3, 2, 18, 1, tzinfo=dt.UTC)  # a minute after its send_at (10:00 at UTC-8)
FOLLOW_UPS = dt.datetime(2027, 3, 8, 9, 0, tzinfo=dt.UTC)  # both follow-ups due (3 days after; 8 March 09:00+01:00)
EXPAND_TARGET_S, STATS_TARGET_S, PEAK_TARGET_MB = 5.0, 0.5, 200.0  # 100,000 recipients
FULL = 100_000
FIRST = ["Jo", "Kim", "Sam", "Anna", "Ben", "Lena", "Max", "Mia", "Noah", "Emma", "Luca", "Sofia"]
COMPANIES = ["Fjord AS", "ACME GmbH", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne & Co"]
COUNTRIES = ["DE", "AT", "CH"]
SUPPRESSED = ["unsubscribed", "bounced", "complaint"]


def stamp(value: dt.datetime) -> str:
    """A UTC datetime as the store keeps it in SQLite (the store compares these as text)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_rules() -> Any:
    """The example rules without the users' daily limits."""
    from outreach.rules import validate

    result = validate.validate([str(ROOT / "rules")])
    if result.ruleset is None:
        raise SystemExit("the example rules do not validate")
    settings = result.ruleset.settings
    users = {k: dataclasses.replace(u, daily_limit=None) for k, u in settings.users.items()}
    return dataclasses.replace(result.ruleset, settings=dataclasses.replace(settings, users=users))


@dataclasses.dataclass
class Seeded:
    records: int = 0
    matching: int = 0
    duplicate: int = 0
    suppressed: int = 0
    no_email: int = 0
    deleted: int = 0

    @property
    def picked(self) -> int:
        return self.matching - self.duplicate - self.suppressed - self.no_email - self.deleted


def seed(db: Path, n: int) -> tuple[Seeded, float]:
    """N matching leads and one in ten more that do not match, with the skips the docstring lists; raw sqlite3 in
    one transaction. Returns what was seeded and the seconds it took."""
    s = Seeded()
    at = stamp(APPLIED_AT - dt.timedelta(days=30))
    deleted_at = stamp(APPLIED_AT - dt.timedelta(days=2))
    records: list[tuple[Any, ...]] = []
    suppressions: list[tuple[str, str, str]] = []
    started = time.perf_counter()
    k = 0
    while s.matching < n:
        rid = f"L{k:07d}"
        first = FIRST[k % len(FIRST)]
        fields: dict[str, Any] = {"first_name": first, "company": COMPANIES[k % len(COMPANIES)]}
        owner = "anna" if k % 2 else "ben"
        if k % 11 == 10:  # not in the View: another stage, country, or bought already
            kind = k // 11 % 3
            fields |= {"country": "FR" if kind == 1 else "DE", "purchased": kind == 2}
            records.append((rid, f"o{k}@example.net", owner, "New" if kind == 0 else "Qualified",
                            json.dumps(fields), at, at, None))  # fmt: skip
            k += 1
            continue
        m = s.matching
        s.matching += 1
        fields |= {"country": COUNTRIES[m % 3]}
        if m % 4 == 1:
            fields["purchased"] = False  # the others have no value: `not purchased eq true` takes both
        email: str | None = f"lead{m}@example.org"
        gone = None
        if m % 100 == 99:  # the address of the one before, another case of its local part
            email = f"Lead{m - 1}@example.org"
            s.duplicate += 1
        elif m % 100 == 50:
            suppressions.append((f"lead{m}@example.org", SUPPRESSED[m // 100 % 3], at))
            s.suppressed += 1
        elif m % 200 == 25:
            email = None
            s.no_email += 1
        elif m % 1000 == 333:
            gone = deleted_at
            s.deleted += 1
        records.append((rid, email, owner, "Qualified", json.dumps(fields), at, at, gone))
        k += 1
    s.records = k
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO records (id, type, email, owner, stage, fields, created_at, updated_at, deleted_at)"
            " VALUES (?, 'lead', ?, ?, ?, ?, ?, ?, ?)", records)  # fmt: skip
        conn.executemany("INSERT INTO suppressions (email, reason, at) VALUES (?, ?, ?)", suppressions)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return s, time.perf_counter() - started


async def prepare(db: Path) -> None:
    """The schema and the example rules applied (the campaign scheduled), as `outreach apply` does."""
    from outreach.app import rules as app_rules
    from outreach.store import Store

    ruleset = load_rules()
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    await app_rules.apply(store, ruleset, now=APPLIED_AT)
    await store.close()


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def expand(db: Path, profile: Path | None) -> dict[str, Any]:
    """The measured part, in a process of its own: expand and queue, then render a window. Returns figures."""
    from outreach.app import campaigns
    from outreach.mail import links
    from outreach.store import Store

    ruleset = load_rules()
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    work = campaigns.Campaigns(store, ruleset, links=links.Links("https://t.example.com", links.Keys((b"k" * 32,))))
    before_mb = rss_mb()
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    calls = picked = skipped = rendered = 0
    started = time.perf_counter()
    status = ""
    while status != "sent":
        report = await work.run(SEND)
        calls += 1
        picked, skipped, rendered = picked + report.picked, skipped + report.skipped, rendered + report.rendered
        status = (await store.campaign_runs([CAMPAIGN]))[0]["status"]
        if calls > 1000:
            raise RuntimeError(f"the campaign is still {status} after {calls} calls")
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)

    conn = sqlite3.connect(db)  # the relay took the window: the dispatcher would mark it so
    with conn:
        conn.execute("UPDATE outbox SET state = 'sent', sent_at = ? WHERE campaign = ? AND state = 'queued'",
                     (stamp(SEND), CAMPAIGN))  # fmt: skip
    conn.close()
    started = time.perf_counter()
    window = await work.run(SEND)
    render = time.perf_counter() - started
    await store.close()
    return {"expand_seconds": seconds, "calls": calls, "picked": picked, "skipped": skipped, "rendered": rendered,
            "render_seconds": render, "window": window.rendered, "window_size": campaigns.RENDER_AHEAD,
            "before_mb": before_mb, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


async def stats(db: Path) -> dict[str, Any]:
    """`campaigns.detail` on a store opened afresh, as `outreach campaigns stats` does: three calls, timed."""
    from outreach.app import campaigns
    from outreach.store import Store

    ruleset = load_rules()
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    times = []
    view = None
    for _ in range(3):
        started = time.perf_counter()
        view = await campaigns.detail(store, ruleset, CAMPAIGN)
        times.append(time.perf_counter() - started)
    await store.close()
    assert view is not None
    main = view.steps[0].stats
    return {"first": times[0], "warm": statistics.median(times[1:]), "status": view.status,
            "counts": {k: v for k, v in dataclasses.asdict(main).items() if isinstance(v, int)},
            "skips": main.skipped, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def deliver(db: Path, pad: int = 0) -> tuple[dict[str, int], float]:
    """The campaign's mail went out, as if the dispatcher and the web side had run (raw sqlite3, not the code
    under test): every recipient still queued gets an outbox row holding a copy of a message rendered above (so
    the rows are of a real size; `pad` bytes longer each, for a larger template), then 2% bounce, 0.5% fail, 30%
    of those delivered open it (people), 5% click, 1% more are opened by a machine only. Returns the counts the
    statistics should show, and the seconds."""
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    with conn:
        messages = conn.execute("SELECT sender, subject, message FROM outbox WHERE campaign = ? ORDER BY id",
                                (CAMPAIGN,)).fetchall()  # fmt: skip
        if pad:
            messages = [(sender, subject, message + b"\n" * pad) for sender, subject, message in messages]
            conn.execute("UPDATE outbox SET message = message || zeroblob(?) WHERE campaign = ?", (pad, CAMPAIGN))
        (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        queued = conn.execute("SELECT id, record_id, email FROM campaign_recipients WHERE campaign = ? AND step = 0"
                              " AND status = 'queued' ORDER BY id", (CAMPAIGN,)).fetchall()  # fmt: skip
        at = stamp(SEND)
        conn.executemany(
            "INSERT INTO outbox (id, campaign, record_id, template, step_id, sender, recipient, subject, message_id,"
            " message, state, attempts, created_at, link_key, language)"
            " VALUES (?, ?, ?, 'webinar-invite', '0', ?, ?, ?, ?, ?, 'queued', 0, ?, ?, 'de')",
            ((top + 1 + i, CAMPAIGN, rid, *messages[i % len(messages)][:2], email, f"<bench-{i}@example.com>",
              messages[i % len(messages)][2], at, f"{i:032x}") for i, (_, rid, email) in enumerate(queued)))  # fmt: skip
        conn.executemany("UPDATE campaign_recipients SET status = 'mailed', outbox_id = ? WHERE id = ?",
                         ((top + 1 + i, cid) for i, (cid, _, _) in enumerate(queued)))  # fmt: skip
        mailed = conn.execute("SELECT id, outbox_id FROM campaign_recipients WHERE campaign = ? AND step = 0"
                              " AND status = 'mailed' ORDER BY id", (CAMPAIGN,)).fetchall()  # fmt: skip
        counts = {"sent": 0, "bounced": 0, "not_delivered": 0, "opened": 0, "clicked": 0, "automated_opens": 0}
        sends, hits = [], []
        for i, (cid, oid) in enumerate(mailed):
            state = "bounced" if i % 50 == 7 else "failed" if i % 200 == 3 else "sent"
            opened = at if state == "sent" and i % 10 < 3 else None
            clicked = at if opened and i % 20 == 0 else None
            machine = int(state == "sent" and i % 100 == 55)
            counts["sent"] += state != "failed"
            counts["bounced"] += state == "bounced"
            counts["not_delivered"] += state != "sent"
            counts["opened"] += opened is not None
            counts["clicked"] += clicked is not None
            counts["automated_opens"] += machine
            sends.append((state, at if state != "failed" else None, oid))
            hits.append((opened, clicked, at if state == "bounced" else None, machine, cid))
        conn.executemany("UPDATE outbox SET state = ?, sent_at = ?, attempts = 1 WHERE id = ?", sends)
        conn.executemany("UPDATE campaign_recipients SET opened_at = ?, clicked_at = ?, bounced_at = ?,"
                         " automated_opens = ? WHERE id = ?", hits)  # fmt: skip
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    counts["pending"] = 0
    return counts, time.perf_counter() - started


async def follow_ups(db: Path) -> dict[str, Any]:
    """Both follow-ups picked, at the second one's date (the first, to those who opened, is due by then too):
    `Campaigns.run` until each is `sent` in campaign_steps. Returns the seconds and how many each picked."""
    from outreach.app import campaigns
    from outreach.mail import links
    from outreach.store import Store

    ruleset = load_rules()
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    work = campaigns.Campaigns(store, ruleset, links=links.Links("https://t.example.com", links.Keys((b"k" * 32,))))
    at = FOLLOW_UPS
    calls = 0
    started = time.perf_counter()
    while True:
        await work.run(at)
        calls += 1
        steps = {s["step"]: s["status"] for s in await store.campaign_steps([CAMPAIGN])}
        if steps == {1: "sent", 2: "sent"} or calls > 1000:
            break
    seconds = time.perf_counter() - started
    view = await campaigns.detail(store, ruleset, CAMPAIGN)
    await store.close()
    return {"seconds": seconds, "calls": calls, "steps": steps,
            "picked": [s.stats.recipients + sum(s.stats.skipped.values()) for s in view.steps[1:]],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def child(phase: str, db: Path, profile: Path | None) -> dict[str, Any]:
    """`--child PHASE DB`: one measured part in a fresh process; the parent reads its figures as JSON."""
    if phase == "expand":
        return asyncio.run(expand(db, profile))
    return asyncio.run(stats(db) if phase == "stats" else follow_ups(db))


def _child(phase: str, db: Path, profile: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", phase, str(db)]
    if profile is not None:
        command += ["--profile", str(profile)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measured process ({phase}) failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def run(n: int, work: Path, profile: Path | None = None, pad: int = 0) -> dict[str, float]:
    """Build the store in `work`, run the measured parts in child processes, print; returns the figures. Raises
    RuntimeError when a child fails or the statistics do not match what was seeded."""
    db = work / "campaign.db"
    print(f"outreach campaign benchmark: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    asyncio.run(prepare(db))
    seeded, seconds = seed(db, n)
    print(f"store: {seeded.records:,} leads, {seeded.matching:,} in the View dach-qualified: {seeded.duplicate:,} "
          f"share an address, {seeded.suppressed:,} suppressed, {seeded.no_email:,} without one, "
          f"{seeded.deleted:,} deleted (seeded with sqlite3 in {seconds:.1f} s)")  # fmt: skip

    f = _child("expand", db, profile)
    queued = _child("stats", db)
    expected, delivering = deliver(db, pad)
    sent = _child("stats", db)
    follow = _child("follow_ups", db)

    problems = []
    skips = {k: v for k, v in sent["skips"].items() if v}
    wanted = {k: v for k, v in {"no valid email": seeded.no_email, "suppressed": seeded.suppressed,
                                "same address twice": seeded.duplicate, "deleted": seeded.deleted}.items() if v}  # fmt: skip
    if f["picked"] != seeded.picked or queued["counts"]["recipients"] != seeded.picked or queued["status"] != "sent":
        problems.append(f"expected {seeded.picked:,} recipients and the run sent: {f['picked']:,} picked, "
                        f"{queued['counts']['recipients']:,} in the statistics, the run {queued['status']}")  # fmt: skip
    if skips != wanted:
        problems.append(f"expected the skips {wanted}, the statistics say {sent['skips']}")
    if f["rendered"] + f["window"] != min(2 * f["window_size"], seeded.picked):
        problems.append(f"expected two windows rendered: {f['rendered']:,}, then {f['window']:,}")
    if queued["counts"]["sent"] != f["rendered"]:
        problems.append(f"expected the first window sent: the statistics say {queued['counts']['sent']:,} sent")
    found = {k: sent["counts"][k] for k in expected}
    if found != expected:
        problems.append(f"after delivery expected {expected}, the statistics say {found}")
    received = expected["sent"]  # the second follow-up's candidates: who received it (bounced ones are skipped)
    if follow["steps"] != {"1": "sent", "2": "sent"} or follow["picked"] != [expected["opened"], received]:
        problems.append(f"expected both follow-ups sent, to {expected['opened']:,} and {received:,} candidates: "
                        f"{follow['steps']}, {follow['picked']}")  # fmt: skip

    scale = n / FULL
    expand_target = EXPAND_TARGET_S * scale

    def verdict(ok: bool) -> str:
        return ("met" if ok else "NOT met") + (" (scaled)" if n < FULL else "")

    print(f"\ncampaign {CAMPAIGN} to {n:,} candidates, at its send time{'':<15} {'seconds':>8}")
    label = f"expand and queue: Campaigns.run until the run is sent ({_calls(f['calls'])})"
    print(f"  {label:<64} {f['expand_seconds']:8.2f}   {f['picked'] / f['expand_seconds']:,.0f} recipients/s")
    print(f"    {f['picked']:,} picked, {f['skipped']:,} skipped ({', '.join(f'{k} {v:,}' for k, v in skips.items())}),"
          f" {f['rendered']:,} rendered into the outbox (the first window)")  # fmt: skip
    print(f"    target: under {expand_target:.1f} s -> {verdict(f['expand_seconds'] < expand_target)}")
    label = f"render a window: the next {f['window']:,} messages into the outbox"
    print(f"  {label:<64} {f['render_seconds']:8.2f}   {f['window'] / f['render_seconds']:,.0f} messages/s "
          "(no target: the relay sets the pace)")  # fmt: skip
    print(f"  {'stats, queued (two windows rendered, one sent): first call':<64} {queued['first']:8.2f}   "
          f"then {queued['warm']:.2f} (median of 2 more)")  # fmt: skip
    print(f"  {'stats, sent (every message out; seeded in ' + format(delivering, '.1f') + ' s): first call':<64} "
          f"{sent['first']:8.2f}   then {sent['warm']:.2f}")  # fmt: skip
    c = sent["counts"]
    print(f"    {c['sent']:,} sent, {c['bounced']:,} bounced, {c['not_delivered']:,} not delivered, {c['opened']:,} "
          f"opened ({c['automated_opens']:,} automated left out), {c['clicked']:,} clicked")  # fmt: skip
    worst = max(queued["first"], sent["first"])
    print(f"    target: under {STATS_TARGET_S} s -> {verdict(worst < STATS_TARGET_S)} (the slower first call)")
    print(f"  peak RSS of the expanding process (ru_maxrss): {f['peak_rss_mb']:.0f} MB "
          f"({f['before_mb']:.0f} MB before the work: the interpreter, the imports, the store open); "
          f"of the stats process {sent['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"    target: under {PEAK_TARGET_MB:.0f} MB -> {verdict(f['peak_rss_mb'] < PEAK_TARGET_MB)}")
    label = f"follow-ups picked: {follow['picked'][0]:,} who opened, {follow['picked'][1]:,} who received"
    print(f"  {label:<64} {follow['seconds']:8.2f}   ({_calls(follow['calls'])}, peak RSS {follow['peak_rss_mb']:.0f} MB;"
          " no target)")  # fmt: skip
    print(f"  load average now {os.getloadavg()[0]:.2f}")
    if problems:
        raise RuntimeError("; ".join(problems))
    return {"expand_seconds": f["expand_seconds"], "stats_seconds": worst, "peak_rss_mb": f["peak_rss_mb"],
            "render_seconds": f["render_seconds"], "stats_queued_seconds": queued["first"],
            "stats_sent_seconds": sent["first"], "follow_ups_seconds": follow["seconds"], "seed_seconds": seconds}  # fmt: skip


def measure(recipients: int = FULL) -> dict[str, float]:
    """`run` in a temporary directory, removed after: expand_seconds, stats_seconds, peak_rss_mb (and more)."""
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-campaign-"))
    try:
        return run(recipients, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=FULL, help="leads the campaign's View matches")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and print where")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile the expansion into FILE")
    parser.add_argument("--message-kb", type=int, default=0, metavar="KB",
                        help="make the delivered messages this much larger (the example's are 1.5 kB)")  # fmt: skip
    parser.add_argument("--child", nargs=2, metavar=("PHASE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.profile)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-campaign-"))
    try:
        run(args.recipients, work, args.profile, args.message_kb * 1000)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
