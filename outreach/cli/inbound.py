"""`outreach inbound classify`: what the IMAP poller makes of a message, for an operator who wants to understand one.

Imports only click and the standard library at the top: the classifier (through the application layer) is imported
when the command runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from outreach.cli import output


@click.group()
def inbound() -> None:
    """Inbound mail: classify messages as the IMAP poller would.

    The daemon reads each mailbox of Settings.mailboxes and sorts what
    arrives: a reply, an auto-reply, a bounce, a delay warning, a spam
    complaint, or other mail (docs/mail.md). These commands show that
    sorting on messages saved as files.

    \b
    Examples:
      outreach inbound classify bounce.eml
      outreach inbound classify --json ~/Maildir/new
    """


@inbound.command()
@click.argument("paths", metavar="FILE...", nargs=-1, required=True, type=click.Path(exists=True, readable=True))
@output.output_format(help="text: for people; json: one object per file, a line each.")
def classify(paths: tuple[str, ...], fmt: str) -> None:
    """Classify .eml or Maildir files as the IMAP poller would.

    Given no store, it tells what the message says about itself: its kind
    (bounce, delayed, complaint, auto_reply, reply, other), for a bounce each
    recipient with its status, reason and whether the address is dead
    (permanent), the Message-ID of the original message, and why. Every
    Message-ID the message refers to is taken for one of ours (the daemon
    asks its store); a bounce or complaint that refers to none is
    "unverified": the daemon records it and changes nothing. A directory
    (a Maildir, or its cur/ and new/) means every file in it. Only the first
    MiB of a file is read, as the poller does.

    \b
    With --json, one object per file, a line each:
      {"file", "kind", "recipients": [{"address", "status", "reason",
       "permanent"}], "original_message_id", "why"}

    \b
    Examples:
      outreach inbound classify bounce.eml
      outreach inbound classify --json ~/Maildir/cur ~/Maildir/new
    """
    from outreach.app import inbox

    failed = False
    for path in _files(paths):
        try:
            message = inbox.classify_file(path)
        except OSError as exc:
            click.echo(f"{path}: cannot be read: {exc.strerror or exc}", err=True)
            failed = True
            continue
        if fmt == "json":
            click.echo(json.dumps(_object(path, message), ensure_ascii=False))
        else:
            click.echo(_text(path, message))
    sys.exit(1 if failed else 0)


def _files(paths: tuple[str, ...]) -> Iterator[str]:
    """The files given, and every file below a directory given (sorted; hidden ones and Maildir's tmp/ left out)."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for top, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "tmp")
            for name in sorted(names):
                if not name.startswith("."):
                    yield os.path.join(top, name)


def _recipients(message: Any) -> list[dict[str, object]]:
    found: list[dict[str, object]] = [
        {"address": r.address, "status": r.status, "reason": r.reason, "permanent": r.permanent}
        for r in message.bounced
    ]
    found += [{"address": a, "status": "", "reason": "complaint", "permanent": True} for a in message.complainants]
    return found


def _object(path: str, message: Any) -> dict[str, object]:
    return {
        "file": path,
        "kind": str(message.kind),
        "recipients": _recipients(message),
        "original_message_id": message.original_message_id,
        "why": message.reason,
    }


def _text(path: str, message: Any) -> str:
    kind = str(message.kind)
    failures = [r for r in message.bounced if r.action == "failed"]
    if kind == "bounce":
        kind += " (permanent)" if any(r.permanent for r in failures) else " (temporary: the address is not dead)"
    lines = [f"{path}: {kind}"]
    for r in _recipients(message):
        permanent = "permanent" if r["permanent"] else "temporary"
        lines.append(f"  {r['address']}  {r['status'] or '-'}  {r['reason']}  {permanent}")
    if message.original_message_id:
        lines.append(f"  original Message-ID: {message.original_message_id}")
    lines.append(f"  why: {message.reason}")
    return "\n".join(lines)
