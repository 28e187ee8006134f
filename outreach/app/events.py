"""Recording what happens to a record, and what it means: the one home of every event but inbound mail's.

An unsubscribe, a complaint, a reply recorded by hand, a conversion or a deletion is written with what it means
for the person's sequences and address in one transaction: the record's live enrollments are read, the engine
decides (outreach/engine/events.py: which stop, what is suppressed) and the store writes the event and that
answer together. A stage change, a task, a task done, an appointment, an open or a click is activity that
changes no enrollment (the scheduler and the reminders read it on their own). Mail that comes back (replies,
auto-replies, bounces read over IMAP) goes through outreach/app/inbox.py, which ends in `write` here.

The CLI (`records convert|delete|set`, `tasks`, `appointments`), RuleTests and later the web handlers call these.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach import store as store_module
from outreach.app import enrolling, importing
from outreach.engine import events
from outreach.store import changes, rows


class EventStore(Protocol):
    """The store's verbs that recording events uses (outreach.store.Store has them)."""

    def changing(self) -> AbstractAsyncContextManager[changes.Changes]: ...

    async def get_record(self, record_id: str) -> rows.Record: ...

    async def set_fields(self, record_id: str, values: Mapping[str, Any], *, now: dt.datetime,
                         source: str = "cli") -> rows.Record: ...  # fmt: skip

    async def add_task(
        self, record_id: str, subject: str, *, now: dt.datetime, type: str = "todo", priority: str = "normal",
        owner: str | None = None, due_at: dt.datetime | None = None, enrollment_id: int | None = None,
        step_id: str | None = None, source: str = "cli",
    ) -> rows.Task: ...  # fmt: skip

    async def complete_task(self, task_id: int, *, now: dt.datetime, source: str = "cli") -> rows.Task: ...

    async def add_appointment(self, record_id: str, starts_at: dt.datetime, subject: str, *, now: dt.datetime,
                              source: str = "cli") -> rows.Appointment: ...  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What an event did: how many live enrollments it stopped, and the addresses it newly suppressed."""

    stopped: int = 0
    suppressed: tuple[str, ...] = ()


async def write(tx: changes.Changes, effects: events.Effects, *, now: dt.datetime, source: str) -> tuple[str, ...]:
    """Write the engine's answer in the event's transaction: the enrollments' new states and the suppressed
    addresses. Returns the addresses suppressed now (not those that were already)."""
    for e in effects.enrollments:
        await tx.save_enrollment(enrolling.columns_of(e))
    suppressed = []
    for s in effects.suppressions:
        if await tx.suppress(s.email, s.reason, now, source):
            suppressed.append(s.email)
    return tuple(suppressed)


async def _on_record(
    tx: changes.Changes, record: rows.Record, kind: events.Kind, *, now: dt.datetime, data: Mapping[str, Any],
    source: str,
) -> Recorded:  # fmt: skip
    await tx.event(record.id, str(kind), now, data, source)
    live = [enrolling.enrollment_of(r) for r in await tx.enrollments(record_ids=[record.id])]
    effects = events.of_record_event(kind, live=live, email=record.email, now=now)
    return Recorded(effects.stopped, await write(tx, effects, now=now, source=source))


async def record(
    store: EventStore, record_id: str, kind: events.Kind, *, now: dt.datetime,
    data: Mapping[str, Any] | None = None, source: str = "cli",
) -> Recorded:  # fmt: skip
    """An event on a record, and what it means, in one transaction (NotFound: no such record). For the kinds
    that end sequences or suppress (reply, unsubscribe, complaint), and those that are activity only (open,
    click); a conversion and a deletion change the record too: `convert`, `delete`."""
    if kind in (events.Kind.CONVERTED, events.Kind.DELETED):
        raise ValueError(f"a {kind} event changes the record: use convert() or delete()")
    async with store.changing() as tx:
        found = await tx.record(record_id)
        if found is None:
            raise store_module.NotFound(f"no record {record_id!r}")
        return await _on_record(tx, found, kind, now=now, data=data or {}, source=source)


async def unsubscribe(store: EventStore, record_id: str, *, now: dt.datetime, source: str = "cli") -> Recorded:
    """The person asked for no more mail: every live sequence stops ("unsubscribed"), the address is suppressed."""
    return await record(store, record_id, events.Kind.UNSUBSCRIBED, now=now, source=source)


async def complaint(store: EventStore, record_id: str, *, now: dt.datetime, data: Mapping[str, Any] | None = None,
                    source: str = "cli") -> Recorded:  # fmt: skip
    """The person marked our mail as spam: every live sequence stops ("complained"), the address is suppressed
    (reason `complaint`)."""
    return await record(store, record_id, events.Kind.COMPLAINED, now=now, data=data, source=source)


async def opened(store: EventStore, record_id: str, *, now: dt.datetime, data: Mapping[str, Any] | None = None,
                 source: str = "cli") -> Recorded:  # fmt: skip
    """The person opened our mail (activity only; campaigns' trigger actions will read it)."""
    return await record(store, record_id, events.Kind.OPENED, now=now, data=data, source=source)


async def clicked(store: EventStore, record_id: str, *, now: dt.datetime, data: Mapping[str, Any] | None = None,
                  source: str = "cli") -> Recorded:  # fmt: skip
    """The person clicked a link in our mail (activity only; campaigns' trigger actions will read it)."""
    return await record(store, record_id, events.Kind.CLICKED, now=now, data=data, source=source)


async def convert(store: EventStore, record_id: str, *, now: dt.datetime, source: str = "cli") -> rows.Record:
    """A lead becomes a contact; its live sequences stop ("converted"). NotFound: no such live record;
    StoreError: it is not a lead."""
    async with store.changing() as tx:
        found = await tx.record(record_id)
        if found is None or found.deleted_at is not None:
            raise store_module.NotFound(f"no record {record_id!r}")
        why = events.conversion_refusal(found.type)
        if why is not None:
            raise store_module.StoreError(f"record {record_id!r} {why}")
        await tx.update_record(record_id, {"type": "contact", "converted_at": now, "updated_at": now})
        await _on_record(tx, found, events.Kind.CONVERTED, now=now, data={}, source=source)
    return await store.get_record(record_id)


async def delete(store: EventStore, record_id: str, *, now: dt.datetime, source: str = "cli") -> Recorded:
    """Mark a record deleted (kept for history; hidden from lists and campaigns); its live sequences stop
    ("deleted"). NotFound: no such record, or deleted already."""
    async with store.changing() as tx:
        found = await tx.record(record_id)
        if found is None or found.deleted_at is not None:
            raise store_module.NotFound(f"no record {record_id!r}")
        await tx.update_record(record_id, {"deleted_at": now, "updated_at": now})
        return await _on_record(tx, found, events.Kind.DELETED, now=now, data={}, source=source)


async def set_fields(store: EventStore, record_id: str, values: Mapping[str, Any], *, now: dt.datetime,
                     source: str = "cli", owners: Collection[str] | None = None) -> rows.Record:  # fmt: skip
    """Change fields of a record; a stage change records when the record entered the stage and a `stage_changed`
    event (the reminders of its process stop when they next look). The values pass an import row's checks first
    (importing.checked_fields: an address `records import` would refuse is refused here too, InvalidValue)."""
    return await store.set_fields(record_id, importing.checked_fields(values, owners=owners), now=now, source=source)


async def add_task(store: EventStore, record_id: str, subject: str, *, now: dt.datetime, type: str = "todo",
                   priority: str = "normal", owner: str | None = None, due_at: dt.datetime | None = None,
                   source: str = "cli") -> rows.Task:  # fmt: skip
    """A task for a record (its process's reminders stop: someone is on it)."""
    return await store.add_task(record_id, subject, now=now, type=type, priority=priority, owner=owner, due_at=due_at,
                                source=source)  # fmt: skip


async def complete_task(store: EventStore, task_id: int, *, now: dt.datetime, source: str = "cli") -> rows.Task:
    """A task done; a sequence waiting on it (a task step) goes on at the next tick."""
    return await store.complete_task(task_id, now=now, source=source)


async def add_appointment(store: EventStore, record_id: str, starts_at: dt.datetime, subject: str, *,
                          now: dt.datetime, source: str = "cli") -> rows.Appointment:  # fmt: skip
    """An appointment with the record (a future one stops its process's reminders)."""
    return await store.add_appointment(record_id, starts_at, subject, now=now, source=source)
