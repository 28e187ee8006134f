"""Enrolling people in sequences, and ending or retrying an enrollment by hand: the one home of `enroll`.

- `enroll`: one record, or why not (the notice for the user); `outreach enroll`, a RuleTest's `enroll` event
  and automatic enrollment all come here;
- `enroll_many`: records by id, criteria or a View (`outreach enroll --view`, `--where`);
- `AutoEnrollment`: the scheduler's phase for sequences with `enroll_when`;
- `refusal`: why a record cannot be enrolled now, and `preview`: every step a record would get
  (`outreach preview`, before anyone enrolls);
- `stop` and `retry`: a user ends a live enrollment, or tries a blocked step again;
- `widget`: a record's sequences as `records show` and the ingest API show them.

The engine decides (outreach/engine/sequences.py: who may be enrolled, the first step's time; engine/events.py:
what a stop does); the store writes. Every function takes the store through the narrow Protocol below and `now`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach import store as store_module
from outreach.engine import events
from outreach.engine import sequences as seq
from outreach.rules import criteria, model
from outreach.store import changes, rows

FULL_SCAN_EVERY = dt.timedelta(hours=1)  # auto-enrollment looks at every record this often (criteria on time)

# --- an enrollment and its row -----------------------------------------------------------------------------

_ENROLLMENT_COLUMNS = tuple(f for f in seq.ENROLLMENT_FIELDS if f not in ("version", "status"))
# The columns of Enrollment's fields in their order, and where the status is: a claimed row becomes an
# Enrollment without a dictionary in between (the scheduler does it for every due step).
_ROW_COLUMNS = tuple("sequence_hash" if f == "version" else f for f in seq.ENROLLMENT_FIELDS)
_STATUS_AT = _ROW_COLUMNS.index("status")
_ATTRIBUTES = operator.attrgetter(*_ENROLLMENT_COLUMNS)


def recipient_of(record: rows.Record) -> seq.Recipient:
    return seq.Recipient(record.id, record.type, record.email, record.owner, record.timezone, record.as_dict(),
                         deleted=record.deleted_at is not None)  # fmt: skip


def enrollment_of(row: Mapping[str, Any]) -> seq.Enrollment:
    try:
        values = [row[c] for c in _ROW_COLUMNS]
    except KeyError:  # a row without some optional columns
        named = {k: v for k, v in row.items() if k in seq.ENROLLMENT_FIELDS}
        named["status"] = seq.Status(named["status"])
        named["version"] = row["sequence_hash"]
        return seq.Enrollment(**named)
    values[_STATUS_AT] = seq.Status(values[_STATUS_AT])
    return seq.enrollment_from(values)


def columns_of(e: seq.Enrollment) -> dict[str, Any]:
    values = dict(zip(_ENROLLMENT_COLUMNS, _ATTRIBUTES(e), strict=True))  # shallow: every field is a plain value
    values["sequence_hash"] = e.version
    values["status"] = str(e.status)
    return values


# --- what enrolling needs of the store ------------------------------------------------------------------------


class EnrollStore(Protocol):
    """The store's verbs that enrolling uses (outreach.store.Store has them)."""

    async def live_in_sequence(self, email: str, sequence: str) -> bool: ...

    async def unsubscribed_at(self, email: str) -> dt.datetime | None: ...

    async def insert_enrollment(self, values: Mapping[str, Any], *, now: dt.datetime, source: str = "cli") -> int: ...

    async def auto_enrollment_candidates(
        self, where: criteria.Criteria, *, modules: tuple[str, ...], sequence: str,
        changed_since: dt.datetime | None, now: dt.datetime, limit: int,
    ) -> list[rows.Record]: ...  # fmt: skip


class ManyStore(EnrollStore, Protocol):
    async def enrolling_facts(self, emails: Sequence[str], sequence: str) -> tuple[set[str], dict[str, dt.datetime]]: ...

    async def insert_enrollments(
        self, many: Sequence[Mapping[str, Any]], *, now: dt.datetime, source: str = "cli"
    ) -> list[int]: ...
    async def active_definitions(self) -> dict[tuple[str, str], rows.ActiveDefinition]: ...

    async def records_by_id(self, ids: list[str]) -> dict[str, rows.Record]: ...

    async def list_records(
        self, where: criteria.Criteria | None = None, *, now: dt.datetime, module: str | None = None,
        include_deleted: bool = False, limit: int | None = None,
    ) -> list[rows.Record]: ...  # fmt: skip


class ByHandStore(Protocol):
    def changing(self) -> AbstractAsyncContextManager[changes.Changes]: ...


# --- enrolling ---------------------------------------------------------------------------------------------


async def refusal(store: EnrollStore, record: rows.Record, sequence: model.Sequence) -> str | None:
    """Why the record cannot be enrolled in the sequence now (the engine's answer, with the store's facts)."""
    email = record.email or ""
    return seq.refusal(
        recipient_of(record), sequence,
        live_in_sequence=bool(email) and await store.live_in_sequence(email, sequence.name),
        unsubscribed_at=await store.unsubscribed_at(email) if email else None,
    )  # fmt: skip


async def enroll(
    store: EnrollStore, ruleset: model.RuleSet, record: rows.Record, sequence: model.Sequence, *,
    enrolled_by: str, now: dt.datetime, dry_run: bool = False, source: str = "cli",
) -> seq.Enrollment | str:  # fmt: skip
    """Enroll one record, or say why not (the notice for the user). With `dry_run` nothing is written."""
    if enrolled_by not in ruleset.settings.users:
        return seq.Refusal("not_a_user", f"{enrolled_by!r} is not a user in Settings.users")
    why = await refusal(store, record, sequence)
    if why is not None:
        return why
    planned = seq.enroll(0, recipient_of(record), sequence, ruleset.settings, enrolled_by=enrolled_by, now=now)
    if dry_run:
        return planned
    try:
        new_id = await store.insert_enrollment(columns_of(planned), now=now, source=source)
    except store_module.AlreadyLive as exc:
        return seq.Refusal("already_active", str(exc))
    return dataclasses.replace(planned, id=new_id)


class NotApplied(store_module.StoreError):
    """The sequence in the rules is not the version applied to the store: enrolling would run another one."""


async def enroll_many(
    store: ManyStore, ruleset: model.RuleSet, sequence: model.Sequence, *, record_ids: Sequence[str] = (),
    where: criteria.Criteria | None = None, enrolled_by: str, now: dt.datetime, dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None, source: str = "cli",
) -> list[tuple[str, seq.Enrollment | str]]:  # fmt: skip
    """Enroll records by id and those matching `where` (a View's criteria, --where pairs): each record's
    enrollment or the reason it was refused (a seq.Refusal), unknown ids first. `progress(done, total)` follows
    the records. NotApplied when the rules' version of the sequence is not the one applied (`outreach apply`
    first).

    Records go in chunks of MANY_CHUNK: the store's facts about a chunk's addresses are read in two queries, the
    engine decides each record as `enroll` does, and the chunk's enrollments and their events are written in one
    transaction (20,000 records take seconds, not minutes). An address that two records share is enrolled once:
    the later record is refused ("same_address"), as the live-enrollment index would refuse it.
    """
    applied = (await store.active_definitions()).get(("Sequence", sequence.name))
    if applied is None or applied.hash != sequence.source.hash:
        raise NotApplied(f"sequence {sequence.name} in the rules is not the applied version: run `outreach apply` first")
    found = list((await store.records_by_id(list(record_ids))).values()) if record_ids else []
    known = {r.id for r in found}
    results: list[tuple[str, seq.Enrollment | str]] = [
        (rid, seq.Refusal("no_record", f"no record {rid!r}")) for rid in record_ids if rid not in known
    ]
    if where is not None:
        found += await store.list_records(where, now=now, limit=None)
    if enrolled_by not in ruleset.settings.users:
        notice = seq.Refusal("not_a_user", f"{enrolled_by!r} is not a user in Settings.users")
        return results + [(r.id, notice) for r in found]
    taken: dict[str, str] = {}  # address -> the record enrolled with it in this run
    for start in range(0, len(found), MANY_CHUNK):
        chunk = found[start : start + MANY_CHUNK]
        live, unsubscribed = await store.enrolling_facts([r.email for r in chunk if r.email], sequence.name)
        decided: list[tuple[str, seq.Enrollment | str]] = []
        for record in chunk:
            email = record.email or ""
            why = seq.refusal(recipient_of(record), sequence, live_in_sequence=email in live,
                              unsubscribed_at=unsubscribed.get(email.lower()))  # fmt: skip
            if why is None and email in taken:
                why = seq.Refusal("same_address", f"{email} is enrolled already in this run (record {taken[email]})")
            if why is not None:
                decided.append((record.id, why))
                continue
            taken[email] = record.id
            decided.append((record.id, seq.enroll(0, recipient_of(record), sequence, ruleset.settings,
                                                  enrolled_by=enrolled_by, now=now)))  # fmt: skip
        if not dry_run:
            decided = await _write_chunk(store, ruleset, sequence, chunk, decided, enrolled_by=enrolled_by, now=now,
                                         source=source)  # fmt: skip
        results.extend(decided)
        if progress is not None:
            progress(min(start + MANY_CHUNK, len(found)), len(found))
    return results


MANY_CHUNK = 1000  # records decided and written together by enroll_many


async def _write_chunk(
    store: ManyStore, ruleset: model.RuleSet, sequence: model.Sequence, chunk: list[rows.Record],
    decided: list[tuple[str, seq.Enrollment | str]], *, enrolled_by: str, now: dt.datetime, source: str,
) -> list[tuple[str, seq.Enrollment | str]]:  # fmt: skip
    """Write a chunk's enrollments in one transaction. When another writer enrolled one of its addresses since
    the facts were read (the live-enrollment index refuses the whole chunk), each record is enrolled alone."""
    planned = [e for _, e in decided if isinstance(e, seq.Enrollment)]
    try:
        ids = iter(await store.insert_enrollments([columns_of(e) for e in planned], now=now, source=source))
    except store_module.AlreadyLive:
        by_id = {r.id: r for r in chunk}
        return [(rid, e if isinstance(e, str) else await enroll(store, ruleset, by_id[rid], sequence,
                                                                 enrolled_by=enrolled_by, now=now, source=source))
                for rid, e in decided]  # fmt: skip
    return [(rid, e if isinstance(e, str) else dataclasses.replace(e, id=next(ids))) for rid, e in decided]


@dataclasses.dataclass(frozen=True)
class Tally:
    """What `enroll_many` did, for its summary: how many were enrolled, refusals by kind, and when the first and
    the last of their first mails go out."""

    enrolled: int
    refused: dict[str, int]
    first_mail: dt.datetime | None
    last_mail: dt.datetime | None


def tally(results: Sequence[tuple[str, seq.Enrollment | str]]) -> Tally:
    refused: dict[str, int] = {}
    due: list[dt.datetime] = []
    for _rid, r in results:
        if isinstance(r, seq.Enrollment):
            if r.next_due_at is not None:
                due.append(r.next_due_at)
        else:
            kind = r.kind if isinstance(r, seq.Refusal) else "other"
            refused[kind] = refused.get(kind, 0) + 1
    return Tally(len(results) - sum(refused.values()), dict(sorted(refused.items(), key=lambda kv: -kv[1])),
                 min(due, default=None), max(due, default=None))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Preview:
    """What enrolling a record would do: why it would be refused (None: it would not be), and every step as it
    would run if nothing stopped it (when, the step's index, the mail, task or block it makes)."""

    refusal: str | None
    steps: tuple[tuple[dt.datetime, int, seq.SendEmail | seq.CreateTask | seq.Block], ...]


async def preview(
    store: EnrollStore, ruleset: model.RuleSet, record: rows.Record, sequence: model.Sequence, *,
    enrolled_by: str | None, start: dt.datetime, links: Callable[[seq.Enrollment], str | None],
) -> Preview:  # fmt: skip
    """Every step of `sequence` for `record` enrolled at `start` by `enrolled_by` (default: its owner); a task
    counts as done when it is created. Nothing is written."""
    who = recipient_of(record)
    planned = seq.enroll(0, dataclasses.replace(who, email=who.email or "-"), sequence, ruleset.settings,
                         enrolled_by=enrolled_by or record.owner or "", now=start)  # fmt: skip
    e = dataclasses.replace(planned, email=who.email or "")
    steps = tuple(seq.walk(e, sequence, who, ruleset, unsubscribe_url=links))
    return Preview(await refusal(store, record, sequence), steps)


class AutoEnrollment:
    """Enrolls records matching a sequence's `enroll_when`, once per record and sequence (the scheduler's phase).

    An edited sequence does not enroll again those who had it. They are enrolled as their owner (a record without
    an owner is left out). A sequence is looked at again only when a record changed since its last look, and at
    every record once an hour (criteria on time, older_than, start to match without the record changing).
    """

    def __init__(self, store: EnrollStore, ruleset: model.RuleSet, *, batch: int = 500) -> None:
        self.store = store
        self.ruleset = ruleset
        self.batch = batch
        self._scanned: dict[tuple[str, str], dt.datetime] = {}  # the last look, per version
        self._full_scan: dict[tuple[str, str], dt.datetime] = {}  # and the last look at every record

    async def run(self, now: dt.datetime, changed: dt.datetime | None) -> int:
        """Look, knowing when a record last changed; returns how many were enrolled."""
        enrolled = 0
        for sequence in self.ruleset.sequences.values():
            if sequence.enroll_when is None:
                continue
            key = (sequence.name, sequence.source.hash)
            full_due = key not in self._full_scan or now - self._full_scan[key] >= FULL_SCAN_EVERY
            if not full_due and (changed is None or changed < self._scanned.get(key, now)):
                continue  # no record changed since the last look
            since = None if full_due else self._scanned.get(key)
            found = await self.store.auto_enrollment_candidates(
                sequence.enroll_when, modules=sequence.applies_to, sequence=sequence.name,
                changed_since=since, now=now, limit=self.batch,
            )  # fmt: skip
            for record in found:
                if record.owner is None:
                    continue
                result = await enroll(self.store, self.ruleset, record, sequence, enrolled_by=record.owner, now=now,
                                      source="engine")  # fmt: skip
                enrolled += isinstance(result, seq.Enrollment)
            if len(found) < self.batch:
                self._scanned[key] = max([now, *(r.updated_at for r in found)])
                if since is None:
                    self._full_scan[key] = now
        return enrolled


# --- a record's sequences --------------------------------------------------------------------------------------


class WidgetStore(Protocol):
    async def enrollments(self, *, record_id: str | None = None) -> list[dict[str, Any]]: ...


async def widget(store: WidgetStore, ruleset: model.RuleSet, record_id: str) -> tuple[dict[str, int],
                                                                                       list[seq.SequenceLine]]:  # fmt: skip
    """A record's sequences as `records show` and the ingest API's GET /api/v1/records/{id} show them: counts of
    active, blocked and completed ones, and a line per enrollment, live ones first (the engine's `widget`)."""
    return seq.widget([enrollment_of(e) for e in await store.enrollments(record_id=record_id)], ruleset)


# --- by hand: stop, retry ----------------------------------------------------------------------------------


async def stop(
    store: ByHandStore, *, enrollment_id: int | None = None, record_id: str | None = None,
    sequence: str | None = None, by: str | None, now: dt.datetime, source: str = "cli",
) -> list[dict[str, Any]]:  # fmt: skip
    """Stop an enrollment (by id), or a record's live enrollments in a sequence, at once: nothing further is sent.
    Returns the stopped enrollments' rows; NotFound or StoreError (ended already) says why nothing was."""
    async with store.changing() as tx:
        if enrollment_id is not None:
            found = await tx.enrollments(ids=[enrollment_id], live_only=False)
        else:
            found = await tx.enrollments(record_ids=[record_id or ""], sequences=[sequence or ""])
        if not found:
            raise store_module.NotFound("no such live enrollment")
        ended = [r for r in found if r["status"] not in seq.LIVE]
        if ended:
            raise store_module.StoreError(f"enrollment {ended[0]['id']} is {ended[0]['status']} already; "
                                          "nothing to stop")  # fmt: skip
        effects = events.of_hand_stop([enrollment_of(r) for r in found], by=by, now=now)
        out = []
        for e in effects.enrollments:
            values = columns_of(e)
            await tx.save_enrollment(values)
            await tx.event(e.record_id, "sequence_stopped", now, {"sequence": e.sequence, "reason": e.reason}, source)
            out.append(values)
        return out


async def retry(store: ByHandStore, enrollment_id: int, *, now: dt.datetime, source: str = "cli") -> dict[str, Any]:
    """A blocked enrollment's step is tried again at the next tick; StoreError when it is not blocked."""
    async with store.changing() as tx:
        found = await tx.enrollments(ids=[enrollment_id], live_only=False)
        if not found:
            raise store_module.NotFound(f"no enrollment {enrollment_id}")
        try:
            again = seq.retry(enrollment_of(found[0]), now)
        except ValueError as exc:
            raise store_module.StoreError(str(exc)) from None
        values = columns_of(again)
        await tx.save_enrollment(values)
        await tx.event(again.record_id, "sequence_retried", now, {"sequence": again.sequence}, source)
        return values
