"""Benchmark of the inbound classifier: how fast `outreach.mail.inbound.classify` sorts a mailbox's worth of mail.

Run on demand from the repository root:

    .venv/bin/python bench/classify.py [--messages 10000] [--runs 3]

It builds N messages (default 10,000) from the hand-written corpus in
tests/fixtures/inbound/ (replies, auto-replies, bounces in Postfix, Exim,
Exchange, Gmail and qmail shapes, delay warnings, newsletters and other mail),
taking the corpus in turn and varying each copy as a mailbox would: one to
five `Received:` header fields of its own and a unique delivery id in front,
as the servers on the way add them. It first checks that every copy gets its
corpus message's kind from expected.yaml (it exits 1 if one does not), then
times R runs (default 3) of classifying all N, each the raw bytes as an IMAP
FETCH returns them, against the manifest's `known` section held in memory
(`inbound.Sent`): store lookups are not part of the figure.

It prints the best and median run in seconds and messages/s, and for
reference, in the same run, the time of the standard email package's parser
alone (`email.message_from_bytes`) and of `inbound.read` alone, so the reader
sees what is parsing and what is classifying. Target from the issue: 10,000
messages in under 10 s (judged on the median). It only prints; no test asserts
a time.
"""

from __future__ import annotations

import argparse
import collections
import email
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.mail import inbound  # noqa: E402 - after the path

CORPUS = ROOT / "tests" / "fixtures" / "inbound"
TARGET = 10.0  # seconds for 10,000 messages


def load() -> tuple[dict[str, bytes], dict[str, str], inbound.Sent]:
    """The corpus messages, their expected kinds, and what the store knows."""
    manifest = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
    messages = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))}
    kinds = {name: entry["kind"] for name, entry in manifest["messages"].items()}
    known = manifest["known"]
    sent = inbound.Sent(
        frozenset(known["sent_message_ids"]),
        {address: tuple(subjects) for address, subjects in known["subjects_sent_to"].items()},
    )
    return messages, kinds, sent


def mailbox(messages: dict[str, bytes], n: int) -> list[tuple[str, bytes]]:
    """N varied copies of the corpus messages, in turn, each with its corpus name."""
    names = sorted(messages)
    out = []
    for i in range(n):
        name = names[i % len(names)]
        data = messages[name]
        newline = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
        hops = b"".join(
            b"Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])%s\tby mx.example.com with ESMTPS "
            b"id %08x; Mon, 2 Mar 2026 09:%02d:%02d +0100%s" % (h, h, h + 1, newline, i * 7 + h, h, i % 60, newline)
            for h in range(1 + i % 5)
        )
        out.append((name, b"X-Delivery-Id: bench-%d%s" % (i, newline) + hops + data))
    return out


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    messages, kinds, sent = load()
    box = mailbox(messages, args.messages)
    size = sum(len(data) for _, data in box)
    print(f"outreach inbound classifier benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"mailbox: {len(box):,} messages built from {len(messages)} corpus messages, {size / 1e6:.1f} MB, "
          f"{size // len(box):,} bytes on average")  # fmt: skip

    wrong = [
        (name, kinds[name], r.kind) for name, data in box if (r := inbound.classify(data, sent)).kind != kinds[name]
    ]
    if wrong:
        for name, expected, got in wrong[:10]:
            print(f"  {name}: expected {expected}, got {got}", file=sys.stderr)
        sys.exit(1)
    mix = collections.Counter(kinds[name] for name, _ in box)
    print("mix: " + ", ".join(f"{count:,} {kind}" for kind, count in mix.most_common()) + " (each checked)")

    def classify_all() -> None:
        for _, data in box:
            inbound.classify(data, sent)

    def parse_all() -> None:
        for _, data in box:
            email.message_from_bytes(data)

    def read_all() -> None:
        for _, data in box:
            inbound.read(data)

    n = len(box)
    rows = [
        ("reference: email.message_from_bytes alone", timed(parse_all, args.runs)),
        ("reference: inbound.read alone (parse, bounce, markers)", timed(read_all, args.runs)),
        ("inbound.classify (read + decide)", timed(classify_all, args.runs)),
    ]
    print(f"\n{f'{n:,} messages, {args.runs} runs':<58} {'best s':>8} {'median s':>9} {'msg/s':>9}")
    for label, times in rows:
        median = statistics.median(times)
        print(f"  {label:<56} {min(times):8.2f} {median:9.2f} {n / median:9,.0f}")
    median = statistics.median(rows[-1][1])
    scaled = median * 10_000 / n
    print(f"  target: 10,000 messages in under {TARGET:.0f} s -> {scaled:.2f} s for 10,000, "
          f"{'met' if scaled < TARGET else 'NOT met'} (median)")  # fmt: skip


if __name__ == "__main__":
    main()
