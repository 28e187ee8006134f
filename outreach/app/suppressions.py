"""The suppression list by hand: an operator lists it, adds an address to it, or takes one off it.

Events fill the list (an unsubscribe, a complaint, a permanent bounce: outreach/app/events.py, app/inbox.py); these
are the operator's verbs (`outreach suppressions`). Adding an address by hand does what an unsubscribe does to the
records that have it, as HubSpot and Zendesk do when an admin unsubscribes an address: in one transaction the
address is suppressed, each such record gets a `suppressed` event, and the engine ends its live sequences
(outreach/engine/events.py, `Kind.SUPPRESSED`: "suppressed"). Taking an address off needs a reason, which is kept
in an `unsuppressed` event on those records (with the reason it had been suppressed for); it restarts nothing,
the records can be enrolled again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from outreach import store as store_module
from outreach.app import enrolling, importing
from outreach.app import events as app_events
from outreach.engine import events
from outreach.store import changes, rows

REASONS = events.SUPPRESSION_REASONS  # why an address is suppressed; `manual`: by hand


class SuppressionStore(Protocol):
    """The store's verbs the suppression list's use cases take (outreach.store.Store has them)."""

    def changing(self) -> AbstractAsyncContextManager[changes.Changes]: ...

    async def get_suppression(self, email: str) -> rows.Suppression | None: ...

    async def records_with_email(self, email: str) -> list[str]: ...

    async def list_suppressions(self, *, reason: str | None = None, search: str | None = None,
                                limit: int | None = None) -> tuple[list[rows.Suppression], int]: ...  # fmt: skip

    async def remove_suppression(self, email: str, *, reason: str, now: dt.datetime,
                                 source: str = "cli") -> tuple[rows.Suppression, list[str]] | None: ...  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Added:
    """What adding an address did. `added` False: it was on the list already (`existing`), nothing changed."""

    email: str
    reason: str  # the entry's reason: the one given, or the one it had
    added: bool
    records: tuple[str, ...] = ()  # the records with the address (their live sequences were stopped)
    stopped: int = 0
    existing: rows.Suppression | None = None


@dataclasses.dataclass(frozen=True)
class Removed:
    """The entry taken off the list, why, and the records whose events keep that."""

    email: str
    reason: str
    was: rows.Suppression
    records: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Listing:
    """Suppressed addresses, newest first, and how many match in all (the limit aside)."""

    suppressions: tuple[rows.Suppression, ...]
    total: int


def address(text: str) -> str:
    """The address as the suppression list keeps it (lower case), checked as `records import` checks one: a display
    name is dropped. ValueError: it is not an email address."""
    return importing.normalized_email(text.strip()).lower()


def _lookup(text: str) -> str:
    """The address to look up on the list: checked when it is one, else as given (the list may hold an odd
    address a bounce report named), in lower case."""
    try:
        return address(text)
    except ValueError:
        found = text.strip().lower()
        if not found:
            raise ValueError("no address given") from None
        return found


async def add(store: SuppressionStore, email: str, *, reason: str = "manual", now: dt.datetime,
              source: str = "cli") -> Added:  # fmt: skip
    """Put an address on the suppression list by hand, and end the live sequences of the records that have it
    (each gets a `suppressed` event, or one event on no record when none has it), all in one transaction. An
    address on the list already is left as it is (`added` False). ValueError: not an address, or an unknown
    reason."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r} (reasons: {', '.join(REASONS)})")
    kept = address(email)
    candidates = await store.records_with_email(kept)
    data = {"email": kept, "reason": reason}
    found: list[str] = []
    effects = events.NOTHING
    async with store.changing() as tx:
        already = await tx.suppressed(kept)
        if not already:
            for record_id in candidates:
                record = await tx.record(record_id)  # read again in the transaction: it may have changed since
                if record is None or record.deleted_at is not None or (record.email or "").lower() != kept:
                    continue
                found.append(record.id)
                await tx.event(record.id, str(events.Kind.SUPPRESSED), now, data, source)
                live = [enrolling.enrollment_of(r) for r in await tx.enrollments(record_ids=[record.id])]
                effects += events.of_record_event(events.Kind.SUPPRESSED, live=live, email=record.email, now=now)
            if not found:
                await tx.event(None, str(events.Kind.SUPPRESSED), now, data, source)
            # the engine's answer, with the operator's reason for the address (the engine's is `manual`)
            effects = events.Effects(effects.enrollments, (events.Suppression(kept, reason),))
            await app_events.write(tx, effects, now=now, source=source)
    if already:
        existing = await store.get_suppression(kept)
        return Added(kept, existing.reason if existing else reason, added=False, existing=existing)
    return Added(kept, reason, added=True, records=tuple(found), stopped=effects.stopped)


async def remove(store: SuppressionStore, email: str, *, reason: str, now: dt.datetime,
                 source: str = "cli") -> Removed:  # fmt: skip
    """Take an address off the suppression list; `reason` (required) is kept in an `unsuppressed` event with the
    reason the address had been suppressed for. Nothing is restarted. ValueError: no reason, no address;
    NotFound: the address is not on the list."""
    why = reason.strip()
    if not why:
        raise ValueError("say why the address may be mailed again: a reason is required")
    kept = _lookup(email)
    done = await store.remove_suppression(kept, reason=why, now=now, source=source)
    if done is None:
        raise store_module.NotFound(f"{kept} is not on the suppression list")
    was, records = done
    return Removed(kept, why, was, tuple(records))


async def listing(store: SuppressionStore, *, reason: str | None = None, search: str | None = None,
                  limit: int | None = 100) -> Listing:  # fmt: skip
    """Suppressed addresses, newest first: only those of a reason, only those whose address contains `search`
    (any case: `@example.org`, `example.org` or a part of an address), at most `limit`. ValueError: an unknown
    reason."""
    if reason is not None and reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r} (reasons: {', '.join(REASONS)})")
    text = search.strip().lower() if search else None
    found, total = await store.list_suppressions(reason=reason, search=text or None, limit=limit)
    return Listing(tuple(found), total)
