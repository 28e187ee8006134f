"""Stage-duration reminders, run: read a process's records from the store, ask the engine, queue the mail.

The engine (outreach.engine.reminders) decides; this is its shell. The scheduler's
tick calls `Reminders.run`: for each process with reminders on, at its daily run
(and when records changed), one pass reads the records that can be overdue with
their states and activity, asks the engine, renders each reminder mail with the
process's template, and writes the new states, the queued mail and a
`reminder_sent` event per record in one transaction. A reminder that cannot go
(the user is not in Settings, the template does not render) is blocked: it stays
due, the reason is kept with the record's state, and a `reminder_blocked` event
and a warning say so once. `standings` tells the commands where records stand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach import store as store_module
from outreach.engine import reminders, render
from outreach.mail import dkim
from outreach.mail import message as mail_message
from outreach.rules import model, timing
from outreach.store import reminding as store_reminding
from outreach.store import rows

log = logging.getLogger("outreach")
LOOK_AFTER_CHANGES = dt.timedelta(minutes=5)  # changed records are looked at again, but not at every tick


def _everyone(_process: model.SalesProcess, _record: Mapping[str, Any]) -> bool:
    return True  # the store has applied the process's `where` in SQL


def scope(process: model.SalesProcess, now: dt.datetime) -> store_reminding.Scope:
    """The records a pass reads: the process's, in a stage with a max, entered early enough to be overdue."""
    cutoffs: dict[str, dt.datetime] = {}
    for stage in process.stages:
        if stage.max is None:
            continue
        if stage.max.is_business:  # N business days are at least N days, less an hour across a clock change
            cutoffs[stage.name] = now - dt.timedelta(days=stage.max.business_days - 1)
        else:
            cutoffs[stage.name] = now - stage.max.as_timedelta()
    return store_reminding.Scope(process.name, process.module, process.where, process.stage_field, cutoffs, now)


def state_of(row: Mapping[str, Any] | None) -> reminders.ReminderState | None:
    if row is None:
        return None
    return reminders.ReminderState(
        stage=row["stage"], stage_entered_at=row["stage_entered_at"], overdue_since=row["overdue_since"],
        sent=row["sent"], first_sent_at=row["first_sent_at"], last_sent_at=row["last_sent_at"],
        next_due_at=row["next_due_at"], stopped=reminders.StopReason(row["stopped"]) if row["stopped"] else None,
        stopped_at=row["stopped_at"],
    )  # fmt: skip


def columns_of(state: reminders.ReminderState, blocked: str | None = None) -> dict[str, Any]:
    values = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    values["stopped"] = str(state.stopped) if state.stopped is not None else None
    values["blocked"] = blocked[:500] if blocked else None
    return values


def entry_of(c: store_reminding.Candidate) -> reminders.Entry:
    meetings = tuple(reminders.Appointment(entered, starts) for entered, starts in c.appointments)
    return reminders.Entry(c.record.as_dict(), state_of(c.state), reminders.Activity(c.tasks_created_at, meetings))


def local_time(t: dt.datetime, zone: str) -> str:
    """A time as a reminder mail shows it, on the reminded user's clock: `Mon 2026-11-23 11:00 CET`."""
    return t.astimezone(timing.zone(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


class ReminderStore(Protocol):
    """The store's verbs that the reminder runs and the commands' standings use (outreach.store.Store has them)."""

    async def last_record_change(self) -> dt.datetime | None: ...

    def reminder_pass(
        self, scope: store_reminding.Scope, known: Sequence[str]
    ) -> AbstractAsyncContextManager[store_reminding.ReminderPass]: ...

    async def reminder_candidates(
        self, scope: store_reminding.Scope, *, record_ids: Sequence[str] | None = None, everyone: bool = False
    ) -> list[store_reminding.Candidate]: ...


class Reminders:
    """The reminders phase of the scheduler's tick, for one rule set."""

    def __init__(self, store: ReminderStore, ruleset: model.RuleSet, *, signer: dkim.Signer | None = None) -> None:
        self.store = store
        self.ruleset = ruleset
        self.signer = signer  # DKIM (Settings.dkim); None: unsigned
        self._looked: dict[str, dt.datetime] = {}  # per process: when a pass last read every candidate

    async def run(self, now: dt.datetime) -> int:
        """Every process with reminders on whose pass is due; returns how many reminder mails were queued."""
        return await self.run_after_change(now, await self.store.last_record_change())

    async def run_after_change(self, now: dt.datetime, changed: dt.datetime | None) -> int:
        """`run`, knowing when a record last changed (the scheduler looks once a tick)."""
        processes = [p for p in self.ruleset.processes.values() if p.follow_up.enabled]
        if not processes:
            return 0
        queued = 0
        for process in processes:
            last = self._looked.get(process.name)
            if last is not None and not _pass_due(process, last, now, changed):
                continue
            try:
                queued += await self.run_process(process, now)
            except store_module.DatabaseError:
                raise  # the pass's transaction is gone; the daemon logs it and the next tick tries again
            except Exception:  # one broken process must not stop the others, nor the daemon
                log.exception("the reminders of process %s failed", process.name)
            self._looked[process.name] = now
        return queued

    async def run_process(self, process: model.SalesProcess, now: dt.datetime) -> int:
        """One pass over one process at `now`; returns how many reminder mails were queued."""
        settings = self.ruleset.settings
        async with self.store.reminder_pass(scope(process, now), list(self.ruleset.processes)) as batch:
            records: dict[str, rows.Record] = {}
            loaded: dict[str, Mapping[str, Any] | None] = {}
            outcomes: list[reminders.Outcome] = []
            for c in batch.candidates:
                records[c.record.id], loaded[c.record.id] = c.record, c.state
                try:
                    e = entry_of(c)
                    outcomes.append(reminders.tick(process, e.record, e.state, now, activity=e.activity,
                                                   matches=_everyone, settings=settings))  # fmt: skip
                except Exception:  # one bad record must not stop the others; its state stays as it was
                    log.exception("the reminders of process %s for record %s failed", process.name, c.record.id)
            queued = 0
            blocked: dict[str, str] = {}
            for mail in reminders.mails(process, outcomes, digest=process.follow_up.digest):
                try:
                    why = self._queue(batch, process, mail, records, now)
                except Exception as exc:
                    log.exception("a reminder mail of process %s to %s failed", process.name, mail.to)
                    why = f"internal error: {type(exc).__name__}: {exc}"
                if why is None:
                    queued += 1
                else:
                    blocked.update((r.record_id, why) for r in mail.reminders)
            for o in outcomes:
                self._keep(batch, process, o, loaded[o.record_id], blocked.get(o.record_id), now)
            return queued

    def _keep(
        self,
        batch: store_reminding.ReminderPass,
        process: model.SalesProcess,
        o: reminders.Outcome,
        old: Mapping[str, Any] | None,
        blocked: str | None,
        now: dt.datetime,
    ) -> None:
        """Write a record's new state, if it changed; a blocked reminder keeps its state unsent (it stays due)."""
        if o.state is None:
            if old is not None:
                batch.delete(o.record_id)
            return
        state = o.state
        if blocked is not None and o.reminder is not None:
            state = _unsent(o.reminder, state_of(old))
        why = (blocked or o.problem or "")[:500] or None
        new = columns_of(state, why)
        if why is not None and (old is None or old["blocked"] != why):
            log.warning("process %s: the reminder for record %s cannot go: %s", process.name, o.record_id, why)
            batch.event(o.record_id, "reminder_blocked", now, {"process": process.name, "reason": why})
        if old is None or any(old[c] != new[c] for c in store_reminding.STATE_COLUMNS):
            batch.save(o.record_id, new)

    def _queue(
        self,
        batch: store_reminding.ReminderPass,
        process: model.SalesProcess,
        mail: reminders.Mail,
        records: Mapping[str, rows.Record],
        now: dt.datetime,
    ) -> str | None:
        """Render and queue one reminder mail with its events; or say why it cannot go."""
        settings = self.ruleset.settings
        recipient = settings.users.get(mail.to)
        if recipient is None:
            return f"{mail.to!r} is not a user in Settings.users"
        template = self.ruleset.templates.get(mail.template or "")
        if template is None:
            return f"template {mail.template!r} no longer exists"
        zone = recipient.timezone or settings.timezone
        due = [self._item(records[r.record_id], r.stage, r.stage_entered_at, r.max, r.overdue_since, r.number, now,
                          zone) for r in mail.reminders]  # fmt: skip
        also = [self._item(records[o.record_id], o.stage, o.stage_entered_at, o.max, o.overdue_since, o.sent, now,
                           zone) for o in mail.also_overdue]  # fmt: skip
        digest = process.follow_up.digest
        merge = render.reminder_context(recipient=recipient, organization=settings.organization, records=due,
                                        also_overdue=also, digest=digest)  # fmt: skip
        try:
            rendered = render.render(template, merge, settings.limits)
        except render.RenderError as exc:
            return exc.reason
        sender: mail_message.Person = settings.organization or recipient
        message_id = mail_message.new_message_id(sender.email.rpartition("@")[2], uuid.uuid4().hex)
        headers = {"Auto-Submitted": "auto-generated", "X-Outreach-Process": process.name}  # RFC 3834: no one wrote it
        if not digest:
            headers["X-Outreach-Record"] = mail.reminders[0].record_id
        try:
            data = mail_message.build(
                sender=sender, to=recipient.email, subject=rendered.subject, text=rendered.text,
                html=rendered.html, message_id=message_id, date=now, extra_headers=headers,
            )  # fmt: skip
        except mail_message.HeaderError as exc:
            return str(exc)
        if self.signer is not None:
            data = self.signer.sign(data, sender.email.rpartition("@")[2], now=now)
        batch.enqueue({
            "enrollment_id": None, "record_id": None if digest else mail.reminders[0].record_id,
            "template": template.name, "step_id": None, "process": process.name, "sender": sender.email,
            "recipient": recipient.email, "subject": rendered.subject, "message_id": message_id, "message": data,
            "state": "queued", "attempts": 0, "created_at": now,
        })  # fmt: skip
        for r in mail.reminders:
            batch.event(r.record_id, "reminder_sent", now, {
                "process": process.name, "stage": r.stage, "reminder": r.number, "to": mail.to,
                "subject": rendered.subject, "message_id": message_id, "digest": digest,
            })  # fmt: skip
        return None

    def _item(
        self, record: rows.Record, stage: str, entered: dt.datetime, max_: timing.Duration, since: dt.datetime,
        number: int, now: dt.datetime, zone: str,
    ) -> dict[str, Any]:  # fmt: skip
        owner = self.ruleset.settings.users.get(record.owner) if record.owner else None
        return render.reminder_item(record.as_dict(), owner=owner, stage=stage, in_stage=render.human_duration(now - entered),
                                    max=str(max_), overdue_since=local_time(since, zone), reminder=number)  # fmt: skip


def _pass_due(process: model.SalesProcess, last: dt.datetime, now: dt.datetime, changed: dt.datetime | None) -> bool:
    """Whether a pass must look again: a daily run came, records changed, or the clock went back (`run --now`).

    Between runs only a changed record can have a reminder due (one imported long overdue, an owner
    set where none was): such changes are looked at within LOOK_AFTER_CHANGES.
    """
    if now < last or (changed is not None and changed >= last and now - last >= LOOK_AFTER_CHANGES):
        return True
    run = reminders.next_run(process, last)
    return run is not None and run <= now


def _unsent(reminder: reminders.Reminder, old: reminders.ReminderState | None) -> reminders.ReminderState:
    """The state of a record whose due reminder did not go: as before it, with the reminder still due."""
    if reminder.number == 1 or old is None:
        return reminders.ReminderState(reminder.stage, reminder.stage_entered_at, reminder.overdue_since,
                                       next_due_at=reminder.due_at)  # fmt: skip
    return dataclasses.replace(old, next_due_at=reminder.due_at)


# --- where records stand (for the commands) --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Standing:
    """A record in a process, at `now`: its overdue standing (None: not overdue) and a blocked reminder's reason."""

    record: rows.Record
    process: model.SalesProcess
    overdue: reminders.Overdue | None
    overdue_since: dt.datetime | None  # when it became (or will become) overdue in its stage; None: never
    blocked: str | None = None


async def standings(
    store: ReminderStore,
    ruleset: model.RuleSet,
    process: model.SalesProcess,
    now: dt.datetime,
    *,
    record_ids: Sequence[str] | None = None,
    everyone: bool = False,
) -> list[Standing]:
    """Where the process's records stand at `now`: the overdue ones, or with `everyone` all that follow it."""
    found = await store.reminder_candidates(scope(process, now), record_ids=record_ids, everyone=everyone)
    out = []
    for c in found:
        e = entry_of(c)
        overdue = reminders.status(process, e.record, e.state, now, activity=e.activity, matches=_everyone,
                                   settings=ruleset.settings)  # fmt: skip
        if overdue is None and not everyone:
            continue
        blocked = c.state["blocked"] if c.state is not None and overdue is not None else None
        since = reminders.overdue_since(process, c.record.value(process.stage_field), c.record.stage_entered_at,
                                        settings=ruleset.settings)  # fmt: skip
        out.append(Standing(c.record, process, overdue, since, blocked))
    return out
