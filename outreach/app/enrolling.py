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

from outreach import calendar
from outreach import store as store_module
from outreach.app import sending
from outreach.engine import events
from outreach.engine import sequences as seq
from outreach.rules import criteria, model, timing
from outreach.rules import validate as rules_validate
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
    transaction (20,000 records take seconds, not minutes). An address that two records share (compared without
    case, as the suppression list and the live-enrollment index compare it) is enrolled once: the later record is
    refused ("same_address"), as the index would refuse it.
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
    taken: dict[str, str] = {}  # lower-cased address -> the record enrolled with it in this run
    for start in range(0, len(found), MANY_CHUNK):
        chunk = found[start : start + MANY_CHUNK]
        live, unsubscribed = await store.enrolling_facts([r.email for r in chunk if r.email], sequence.name)
        decided: list[tuple[str, seq.Enrollment | str]] = []
        for record in chunk:
            email = record.email or ""
            address = email.lower()  # Sam.Jones@... is sam.jones@...
            why = seq.refusal(recipient_of(record), sequence, live_in_sequence=address in live,
                              unsubscribed_at=unsubscribed.get(address))  # fmt: skip
            if why is None and address in taken:
                why = seq.Refusal("same_address", f"{email} is enrolled already in this run (record {taken[address]})")
            if why is not None:
                decided.append((record.id, why))
                continue
            taken[address] = record.id
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
    the last of their first mails are due; and, when the senders' daily limits hold some of them back (`limits`,
    the engine's forecast per sender), when each of those goes instead (`held`, by record id)."""

    enrolled: int
    refused: dict[str, int]
    first_mail: dt.datetime | None
    last_mail: dt.datetime | None
    limits: tuple[seq.LimitForecast, ...] = ()  # only the senders whose limit holds some back
    held: Mapping[str, dt.datetime] = dataclasses.field(default_factory=dict)


def tally(results: Sequence[tuple[str, seq.Enrollment | str]], forecast: Outlook | None = None) -> Tally:
    refused: dict[str, int] = {}
    due: list[dt.datetime] = []
    for _rid, r in results:
        if isinstance(r, seq.Enrollment):
            if r.next_due_at is not None:
                due.append(r.next_due_at)
        else:
            kind = r.kind if isinstance(r, seq.Refusal) else "other"
            refused[kind] = refused.get(kind, 0) + 1
    limits: tuple[seq.LimitForecast, ...] = ()
    held: dict[str, dt.datetime] = {}
    if forecast is not None:
        limits = tuple(f for f in forecast.senders if f.held)
        held = {rid: goes for rid, (due_at, goes) in forecast.first_mails.items() if goes > due_at}
    return Tally(len(results) - sum(refused.values()), dict(sorted(refused.items(), key=lambda kv: -kv[1])),
                 min(due, default=None), max(due, default=None), limits, held)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Outlook:
    """When new first mails go out under their senders' daily limits: per sender (the engine's LimitForecast),
    and per record its first mail's due time and when it goes."""

    senders: tuple[seq.LimitForecast, ...]
    first_mails: Mapping[str, tuple[dt.datetime, dt.datetime]]


class LimitStore(Protocol):
    """The store's verbs the forecast of daily limits reads (outreach.store.Store has them)."""

    async def owners_and_zones(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]: ...

    async def queued_by_sender(
        self, since: dt.datetime, senders: Sequence[str]
    ) -> dict[str, list[tuple[dt.datetime, int]]]: ...

    async def scheduled_steps(self) -> list[rows.ScheduledSteps]: ...


async def limit_outlook(
    store: LimitStore, ruleset: model.RuleSet, sequence: model.Sequence,
    results: Sequence[tuple[str, seq.Enrollment | str]], *, now: dt.datetime,
) -> Outlook | None:  # fmt: skip
    """When the first mails of `results` (enroll_many's, written or a dry run) go out under their senders' daily
    limits: the engine's forecast (seq.limit_forecast) over what each sender queued in the 24 hours before `now`,
    after the mail of theirs already scheduled (the due email steps of live enrollments, those the limit holds
    back included). None when the first step is no email or none of their senders has a daily limit."""
    settings = ruleset.settings
    planned = [e for _, e in results if isinstance(e, seq.Enrollment) and e.next_due_at is not None]
    if not planned or sequence.steps[0].kind is not model.StepKind.EMAIL:
        return None
    if all(u.daily_limit is None for u in settings.users.values()):
        return None
    records = await store.owners_and_zones([e.record_id for e in planned])
    cal = settings.calendar(sequence.calendar)
    mails: list[seq.FirstMail] = []
    whose: list[str] = []
    written: dict[tuple[str, int, str, str | None, dt.datetime], int] = {}  # these, as scheduled_steps has them
    for e in planned:
        record = records.get(e.record_id)
        if record is None or e.next_due_at is None:
            continue
        owner, timezone = record
        if e.id:  # written (not a dry run): the store's scheduled steps have it too
            key = (e.sequence, e.step_index, e.enrolled_by, owner, e.next_due_at)
            written[key] = written.get(key, 0) + 1
        who = seq.Recipient(e.record_id, "", e.email, owner, timezone, {})  # what says its sender and clock
        sender = seq.sender_of(sequence, e, who, settings)
        if isinstance(sender, str):  # the step will be blocked: no mail
            continue
        mails.append(seq.FirstMail(sender, e.next_due_at, cal, seq.zone(who, sequence, settings)))
        whose.append(e.record_id)
    users = {m.sender.id: m.sender for m in mails if m.sender.daily_limit is not None}
    if not users:
        return None
    queued = await store.queued_by_sender(now - seq.DAY, sorted({u.email for u in users.values()}))
    # The email steps already scheduled for these senders go first, in their turn; read with today's rules (a
    # step of an older version is taken as the same step of the one in force), in the calendar's zone.
    waiting: list[seq.FirstMail] = []
    for group in await store.scheduled_steps():
        key = (group.sequence, group.step_index, group.enrolled_by, group.owner, group.due)
        count = group.count - written.pop(key, 0)
        current = ruleset.sequences.get(group.sequence)
        if count <= 0 or current is None or group.step_index >= len(current.steps):
            continue
        if current.steps[group.step_index].kind is not model.StepKind.EMAIL:
            continue
        user = users.get(seq.sending_user(current, enrolled_by=group.enrolled_by, owner=group.owner) or "")
        if user is not None:
            its = settings.calendar(current.calendar)
            waiting += [seq.FirstMail(user, group.due, its, calendar.zone_for(None, its, settings.timezone),
                                      new=False)] * count  # fmt: skip
    found = seq.limit_forecast([*waiting, *mails], queued=queued, day_zone=timing.zone(settings.timezone))
    goes = found.times[len(waiting) :]
    return Outlook(found.senders, {rid: (m.due, t) for rid, m, t in zip(whose, mails, goes, strict=True)})


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
    steps = tuple(seq.walk(e, sequence, who, ruleset, facts=lambda at: sending.facts(links(at))))
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


# --- one enrollment, its course and its history ------------------------------------------------------------------


class VersionStore(Protocol):
    async def definition_body(self, kind: str, name: str, digest: str) -> dict[str, Any] | None: ...


async def version_of(store: VersionStore, ruleset: model.RuleSet, name: str, digest: str) -> model.Sequence | None:
    """The version of sequence `name` an enrollment runs on: the one in force, or a stored earlier one read with
    today's rules; None when that cannot be read (the scheduler then blocks it and says why)."""
    current = ruleset.sequences.get(name)
    if current is not None and current.source.hash == digest:
        return current
    body = await store.definition_body("Sequence", name, digest)
    if body is None:
        return None
    rebuilt = rules_validate.rebuild_sequence(body, ruleset)
    return dataclasses.replace(rebuilt, name=name) if rebuilt is not None and rebuilt.name != name else rebuilt


class ShowStore(VersionStore, Protocol):
    async def enrollment(self, enrollment_id: int) -> dict[str, Any]: ...

    async def get_record(self, record_id: str) -> rows.Record: ...

    async def events(self, record_id: str) -> list[rows.Event]: ...


Planned = tuple[dt.datetime, int, seq.SendEmail | seq.CreateTask | seq.Block]


@dataclasses.dataclass(frozen=True)
class Course:
    """One enrollment as `outreach enrollments show` tells it: its row, the version it runs on (None: it cannot be
    read with today's rules), the steps ahead, each decided as the daemon would decide it (with what they
    assume: `its task is completed now`, `it is retried now`), and its history (its events, in time order)."""

    enrollment: seq.Enrollment
    sequence: model.Sequence | None
    upcoming: tuple[Planned, ...]
    assuming: str | None
    history: tuple[rows.Event, ...]


# What ends an enrollment that an event of the record says, not of the enrollment (a reply ends every sequence).
_ENDING = frozenset({*events.ENDS_SEQUENCES, events.Kind.BOUNCED})


async def course(
    store: ShowStore, ruleset: model.RuleSet, enrollment_id: int, *, now: dt.datetime,
    links: Callable[[seq.Enrollment], str | None],
) -> Course:  # fmt: skip
    """An enrollment's future mail and history. What is to come is the engine's `walk` from where the enrollment
    stands at `now` (as `preview` walks a new one): a step overdue runs at `now`, an enrollment waiting for its task
    goes on as if the task were completed now, a blocked one as if retried now. NotFound: no such enrollment."""
    e = enrollment_of(await store.enrollment(enrollment_id))
    sequence = await version_of(store, ruleset, e.sequence, e.version)
    try:
        record: rows.Record | None = await store.get_record(e.record_id)
    except store_module.NotFound:
        record = None
    upcoming: tuple[Planned, ...] = ()
    assuming = None
    if sequence is not None and record is not None and e.status in seq.LIVE:
        who = recipient_of(record)
        start = e
        if e.status is seq.Status.BLOCKED:
            start, assuming = seq.retry(e, now), "it is retried now"
        elif e.awaiting_task:
            start, assuming = seq.after_step(e, sequence, who, ruleset.settings, now), "its task is completed now"
        elif e.next_due_at is not None and e.next_due_at < now:
            start = seq.evolve(e, next_due_at=now)  # overdue: the next tick runs it
        upcoming = tuple(seq.walk(start, sequence, who, ruleset, facts=lambda at: sending.facts(links(at))))
    current = ruleset.sequences.get(e.sequence)
    names = {e.sequence, *(current.source.renamed_from if current is not None else ())}  # events keep old names
    history = _history(e, await store.events(e.record_id), names)
    return Course(e, sequence, upcoming, assuming, tuple(history))


def _history(e: seq.Enrollment, found: Sequence[rows.Event], names: set[str]) -> list[rows.Event]:
    """The events of a record that are about one of its enrollments: those that name it; those of its sequence
    (`names`) while it was live; the tasks of its task steps and their completion; and the event that ended it."""
    tasks: set[Any] = set()
    out = []
    for x in found:
        if x.at < e.started_at or (e.ended_at is not None and x.at > e.ended_at):
            continue
        about = x.data.get("enrollment")
        if about == e.id or (about is None and x.data.get("sequence") in names):
            out.append(x)
            if x.kind == "task_created":
                tasks.add(x.data.get("task"))
        elif (x.kind == "task_completed" and x.data.get("task") in tasks) or (x.at == e.ended_at
                                                                              and x.kind in _ENDING):  # fmt: skip
            out.append(x)
    return out


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
