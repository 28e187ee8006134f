"""One scheduler tick: auto-enroll, resume task steps, run due steps, hand queued mail to the transport.

The engine decides (pure); this module reads state from the store, asks the
engine, writes its decisions back, renders messages once into bytes, and lets
the transport send them. `now` comes in: the daemon loop reads the clock once a
tick, and `outreach run --once` and the tests pass it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach import store as store_module
from outreach.app import campaigns, enrolling, reminding, sending
from outreach.app import events as recording
from outreach.engine import events
from outreach.engine import sequences as seq
from outreach.mail import dkim, limits
from outreach.mail import links as mail_links
from outreach.mail import message as mail_message
from outreach.mail import transport as mail_transport
from outreach.rules import criteria, model
from outreach.store import changes, rows
from outreach.store.sequencing import Batch, Pending, SendOutcome

log = logging.getLogger("outreach")


@dataclasses.dataclass
class TickReport:
    enrolled: int = 0
    queued: int = 0
    tasks: int = 0
    blocked: int = 0
    completed: int = 0
    reminders: int = 0  # reminder mails queued (a digest is one)
    campaign_mail: int = 0  # campaign mails rendered into the outbox
    campaign_skipped: int = 0  # campaign recipients skipped (no valid email, suppressed, deleted, twice)
    held: int = 0  # by a sender's daily limit or a recipient domain's cap
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0  # handed to the relay, the answer lost: `unknown`, for an operator
    replies: dict[str, int] = dataclasses.field(default_factory=dict)  # the relay's replies by class: 2xx, 4xx ...

    def __str__(self) -> str:
        parts = [f"{v} {k}" for k, v in dataclasses.asdict(self).items() if v and k != "replies"]
        return ", ".join(parts) or "nothing to do"


def reply_class(result: mail_transport.SendResult) -> str | None:
    """The class of the relay's reply to a send (2xx, 4xx, 5xx); "none" when a send failed without a reply (the
    connection failed); None when no relay was asked (the maildir transport took the message)."""
    if result.code is not None:
        return f"{result.code // 100}xx"
    return None if result.ok else "none"


# A due step waits for nothing (a render takes up to limits.render_time): after this many seconds of them, a batch
# lets the daemon's other loops and its signal handlers run, so that a stopping daemon stops between two steps;
# and a batch of slow steps is written after BATCH_SECONDS, its other steps left due for the next batch, so that a
# daemon restarted in the middle of it (by the watchdog, say) does not start the same work again.
YIELD_EVERY = 0.05
BATCH_SECONDS = 5.0


# While the database refuses to write what became of sent messages (a connection ended, a full disk), the
# dispatcher keeps the answers and tries again after a pause of this many seconds, doubled each time up to the cap.
WRITE_RETRY, WRITE_RETRY_CAP = 1.0, 30.0


def _why(exc: Exception) -> str:
    """The first line of what the database driver said (SQLAlchemy's message adds the statement and its values)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


async def _let_the_loop_run() -> None:
    """Give the event loop the rounds a signal needs to reach its handler: the loop reads the signal in one round
    and runs its handler in the next; the third round comes back here, after it."""
    for _ in range(3):
        await asyncio.sleep(0)


class SchedulerStore(enrolling.EnrollStore, reminding.ReminderStore, campaigns.CampaignStore, Protocol):
    """The store's verbs that a tick uses (outreach.store.Store has them)."""

    fields: Mapping[str, criteria.FieldType]

    async def pending(self, now: dt.datetime) -> Pending: ...

    def due_batch(self, now: dt.datetime, limit: int) -> AbstractAsyncContextManager[Batch]: ...

    async def finished_step_tasks(self, limit: int) -> list[tuple[dict[str, Any], dt.datetime]]: ...

    async def records_by_id(self, ids: list[str]) -> dict[str, rows.Record]: ...

    async def save_enrollment(self, values: Mapping[str, Any], *, event: tuple[str, Mapping[str, Any]] | None = None,
                              now: dt.datetime | None = None, source: str = "cli") -> None: ...  # fmt: skip

    async def definition_body(self, kind: str, name: str, digest: str) -> dict[str, Any] | None: ...

    async def daily_usage(self, since: dt.datetime) -> dict[str, tuple[int, dt.datetime]]: ...

    async def claim_outbox(self, now: dt.datetime, limit: int, attempt_id: str,
                           daemon_id: str | None = None) -> list[dict[str, Any]]: ...  # fmt: skip

    def finishing_sends(
        self, done: Sequence[SendOutcome], now: dt.datetime
    ) -> AbstractAsyncContextManager[changes.FinishedSends]: ...


class Scheduler:
    """Runs the rule set's sequences against the store and a transport."""

    def __init__(
        self,
        store: SchedulerStore,
        ruleset: model.RuleSet,
        transport: mail_transport.Transport | None,
        *,
        batch: int = 500,
        send_batch: int = 100,
        links: mail_links.Links | None = None,
        signer: dkim.Signer | None = None,
        rng: random.Random | None = None,
        daemon_id: str | None = None,
    ) -> None:
        self.store = store
        store.fields = dict(ruleset.settings.fields)  # criteria compare by the rule set's field types (a reload's too)
        self.send_batch = send_batch
        self.rng = rng or random.Random()
        self.domain_caps = limits.DomainCaps(ruleset.settings.limits.domains)
        self.ruleset = ruleset
        self.transport = transport
        self.batch = batch
        self.links = links  # signed links (unsubscribe, open, click); None: the rule set has no tracking
        self.signer = signer  # DKIM (Settings.dkim): mail is signed when it is queued; None: unsigned
        self.daemon_id = daemon_id  # names the daemon in the outbox rows it claims (several daemons on PostgreSQL)
        self.progress: Callable[[], None] = lambda: None  # called as each message's answer arrives (the watchdog)
        self._versions: dict[tuple[str, str], model.Sequence | None] = {
            (s.name, s.source.hash): s for s in ruleset.sequences.values()
        }
        self.auto_enrollment = enrolling.AutoEnrollment(store, ruleset, batch=batch)
        self.reminders = reminding.Reminders(store, ruleset, signer=signer)
        self.campaigns = campaigns.Campaigns(store, ruleset, links=links, signer=signer)
        self._usage: dict[str, tuple[int, dt.datetime]] = {}  # mail per sender address in the last 24 hours

    async def version(self, name: str, digest: str) -> model.Sequence | None:
        """The sequence an enrollment runs on: the current one, or a stored older version."""
        key = (name, digest)
        if key not in self._versions:
            self._versions[key] = await enrolling.version_of(self.store, self.ruleset, name, digest)
        return self._versions[key]

    # --- running due steps ----------------------------------------------------------------------

    async def tick(self, now: dt.datetime, *, dispatch: bool = True, reminders: bool = True,
                   stop: Callable[[], bool] | None = None) -> TickReport:  # fmt: skip
        """One round of work at `now`. One look at the store says what there is to do; a phase with nothing to do
        (and nothing made for it by an earlier phase of this tick) is skipped, so an idle tick is one query.
        The daemon runs the dispatch in a loop of its own (`dispatch=False`), and the reminders only where it
        holds their lease (`reminders=False` elsewhere). Once `stop()` says so, due steps not yet run wait for
        the next tick (a stopping daemon does not render the rest of a batch)."""
        report = TickReport()
        pending = await self.store.pending(now)  # nothing below changes records
        report.enrolled += await self.auto_enrollment.run(now, pending.record_changed)
        resumed = await self.resume_tasks(now) if pending.tasks_done else 0
        if pending.due or report.enrolled or resumed:
            while await self.run_due(now, report, stop) >= self.batch and not (stop is not None and stop()):
                pass
        if reminders:
            report.reminders += await self.reminders.run_after_change(now, pending.record_changed)
        if self.ruleset.campaigns:
            done = await self.campaigns.run(now, stop)
            report.campaign_mail += done.rendered
            report.campaign_skipped += done.skipped  # mail that waits (a send window) is shown by `campaigns show`
        if dispatch and (pending.mail or report.queued or report.reminders or report.campaign_mail):
            await self.dispatch(now, report)
        return report

    async def resume_tasks(self, now: dt.datetime) -> int:
        """Task steps whose task was completed: the next step's wait starts at the completion. Returns how many."""
        finished = await self.store.finished_step_tasks(self.batch)
        for row, completed_at in finished:
            e = enrolling.enrollment_of(row)
            sequence = await self.version(e.sequence, e.version)
            record = (await self.store.records_by_id([e.record_id])).get(e.record_id)
            if sequence is None or record is None:
                continue
            done = seq.after_step(e, sequence, enrolling.recipient_of(record), self.ruleset.settings, completed_at)
            done = await self._follow_edit(done, sequence, enrolling.recipient_of(record), completed_at)
            await self.store.save_enrollment(enrolling.columns_of(done))
        return len(finished)

    async def run_due(self, now: dt.datetime, report: TickReport, stop: Callable[[], bool] | None = None) -> int:
        """Run a batch of due steps; returns how many were due, or the batch size when it was cut short after
        BATCH_SECONDS (the tick goes on with the rest at the same `now`). Those left when `stop()` says so stay due."""
        async with self.store.due_batch(now, self.batch) as batch:
            if not batch.rows:
                return 0
            records = batch.records
            if any(u.daily_limit is not None for u in self.ruleset.settings.users.values()):
                self._usage = await self.store.daily_usage(now - seq.DAY)
            started = slice_start = time.monotonic()
            for row in batch.rows:
                if time.monotonic() - slice_start > YIELD_EVERY:
                    await _let_the_loop_run()
                    slice_start = time.monotonic()
                    if slice_start - started > BATCH_SECONDS:
                        return self.batch  # written now; the steps not run are taken again at once
                if stop is not None and stop():
                    break  # what was done is written; the rest is not touched
                e = enrolling.enrollment_of(row)
                mark = (len(batch.saves), len(batch.messages), len(batch.events))
                try:
                    await self._run_one(batch, e, records.get(row["record_id"]), now, report)
                except store_module.DatabaseError:
                    raise  # the batch's transaction is gone; the daemon logs it and tries again next tick
                except Exception as exc:  # one bad enrollment must not stop the others
                    log.exception("enrollment %s failed", e.id, extra={"enrollment": e.id})
                    del batch.saves[mark[0] :], batch.messages[mark[1] :], batch.events[mark[2] :]
                    await self._block(batch, e, f"internal error: {type(exc).__name__}: {exc}"[:500], now, report)
            return len(batch.rows)

    async def _run_one(
        self, batch: Batch, e: seq.Enrollment, record: rows.Record | None, now: dt.datetime, report: TickReport
    ) -> None:
        sequence = await self.version(e.sequence, e.version)
        if record is None or sequence is None:
            why = "the record no longer exists" if record is None else \
                f"version {e.version[:8]} of sequence {e.sequence} cannot be read with today's rules"  # fmt: skip
            await self._block(batch, e, why, now, report)
            return
        who = enrolling.recipient_of(record)
        key = mail_links.new_key() if self.links is not None else None  # the message's links name it
        url = self.links.unsubscribe(key) if self.links is not None and key is not None else None
        # the engine decides, as it does for `outreach preview`, with the facts only this tick knows
        decision = seq.decide(e, sequence, who, self.ruleset, now, facts=sending.facts(url, sent_today=self._usage))
        if isinstance(decision, seq.SendEmail):
            if decision.sender.daily_limit is not None:
                used, oldest = self._usage.get(decision.sender.email, (0, None))
                self._usage[decision.sender.email] = (used + 1, oldest or now)
            try:
                data, message_id, urls = self._message(e, sequence, decision, now, url, key)
            except mail_message.HeaderError as exc:
                await self._block(batch, e, str(exc), now, report)
                return
            await batch.enqueue({
                "enrollment_id": e.id, "record_id": e.record_id, "template": decision.step.template,
                "step_id": decision.step.id, "sender": decision.sender.email, "recipient": decision.to,
                "subject": decision.rendered.subject, "message_id": message_id, "message": data, "state": "queued",
                "attempts": 0, "created_at": now, "link_key": key.hex() if key is not None else None,
                "link_urls": list(urls) if urls else None, "language": sequence.unsubscribe_language,
            })  # fmt: skip
            # no event: the outbox row is the record's activity (store.events shows it as `sequence_email`)
            done = seq.after_step(e, sequence, who, self.ruleset.settings, now, message_id=message_id,
                                  subject=decision.rendered.subject)  # fmt: skip
            done = await self._follow_edit(done, sequence, who, now)
            report.queued += 1
            report.completed += done.status is seq.Status.COMPLETED
            await batch.save(enrolling.columns_of(done))
        elif isinstance(decision, seq.CreateTask):
            task_id = await batch.add_task({
                "record_id": e.record_id, "subject": decision.subject, "type": decision.type, "priority": "normal",
                "owner": decision.owner, "due_at": decision.due_at, "created_at": now, "enrollment_id": e.id,
                "step_id": decision.step.id,
            })  # fmt: skip
            await batch.event(e.record_id, "task_created", now, {"task": task_id, "subject": decision.subject,
                                                                 "sequence": e.sequence, "step": decision.step.id})  # fmt: skip
            await batch.save(enrolling.columns_of(seq.task_created(e)))
            report.tasks += 1
        elif isinstance(decision, seq.Block):
            await self._block(batch, e, decision.reason, now, report)
        elif isinstance(decision, seq.Wait) and decision.until is not None and decision.reason is not None:
            if decision.reason != e.reason:  # held back, e.g. by the sender's daily limit
                log.info("enrollment %s of %s: %s", e.id, e.sequence, decision.reason)
            await batch.save(enrolling.columns_of(seq.evolve(e, next_due_at=decision.until, reason=decision.reason)))
            report.held += 1
        elif isinstance(decision, seq.Wait) and decision.until is not None:
            await batch.save(enrolling.columns_of(seq.evolve(e, next_due_at=decision.until)))
        elif isinstance(decision, seq.Complete):
            await batch.save(enrolling.columns_of(seq.evolve(e, status=seq.Status.COMPLETED, ended_at=now,
                                                   next_due_at=None)))  # fmt: skip
            report.completed += 1

    async def _block(self, batch: Batch, e: seq.Enrollment, reason: str, now: dt.datetime, report: TickReport) -> None:
        await batch.save(enrolling.columns_of(seq.block(e, reason)))
        await batch.event(e.record_id, "sequence_blocked", now, {"sequence": e.sequence, "reason": reason,
                                                                 "enrollment": e.id})  # fmt: skip
        report.blocked += 1

    async def _follow_edit(
        self, e: seq.Enrollment, old: model.Sequence, who: seq.Recipient, done_at: dt.datetime
    ) -> seq.Enrollment:
        """`on_edit: next_step`: after a step, move onto the version in force, matching steps by id."""
        current = self.ruleset.sequences.get(e.sequence)
        if current is None or e.status is not seq.Status.ACTIVE or current.source.hash == e.version:
            return e
        moved = seq.follow_edit(e, old, current)
        if moved.version == e.version:
            return e
        return seq.schedule_next(moved, current, who, self.ruleset.settings, done_at)

    def _message(
        self, e: seq.Enrollment, sequence: model.Sequence, d: seq.SendEmail, now: dt.datetime, url: str | None,
        key: bytes | None,
    ) -> tuple[bytes, str, tuple[str, ...]]:  # fmt: skip
        """The message's bytes, its Message-ID, and the URLs its tracked links lead to."""
        return sending.compose(
            d.rendered, sender=(d.sender.name, d.sender.email), to=d.to, now=now, links_=self.links, key=key,
            unsubscribe_url=url, list_unsubscribe=sequence.unsubscribe_language is not None, signer=self.signer,
            in_reply_to=d.in_reply_to, headers={"X-Outreach-Enrollment": str(e.id), "X-Outreach-Step": d.step.id,
                                                "X-Outreach-Sequence": e.sequence},
        )  # fmt: skip

    # --- sending --------------------------------------------------------------------------------

    async def dispatch(self, now: dt.datetime, report: TickReport, *, stop: Callable[[], bool] | None = None) -> None:
        """Hand queued messages to the transport, as many at once as it sends at once (its `concurrency`: the SMTP
        pool's size), claiming more as answers come. A claim marks its messages `sending` (committed) before any
        goes out, and each answer is written as it arrives (those that arrive together in one transaction) and
        before the next claim, so the store never holds more `sending` than the window and a crash leaves
        `unknown` at most the messages on the wire. A message handed over whose answer was lost
        (`in_doubt`) becomes `unknown` at once and is never sent again by itself. When the database fails (a
        connection ended, a full disk), nothing more is claimed: the messages in flight finish, and their answers
        are kept and written once the database takes them (`_write`)."""
        if self.transport is None:
            return
        window = max(1, int(getattr(self.transport, "concurrency", self.send_batch)))
        in_flight: dict[asyncio.Task[mail_transport.SendResult], dict[str, Any]] = {}
        try:
            await self._dispatching(now, report, stop, window, in_flight)
        finally:  # cancelled (the process stops): what is on the wire stays `sending`, `unknown` at the next start
            for task in in_flight:
                task.cancel()

    async def _dispatching(self, now: dt.datetime, report: TickReport, stop: Callable[[], bool] | None, window: int,
                           in_flight: dict[asyncio.Task[mail_transport.SendResult], dict[str, Any]]) -> None:  # fmt: skip
        answered: list[SendOutcome] = []  # answers (and held-back messages) not written yet
        more = True  # the last claim found as many as it asked for
        while True:
            if answered:  # written before claiming more: what is `sending` in the store never exceeds the window
                await self._write(answered, now)
                answered.clear()
            stopping = stop is not None and stop()  # stopping: no new claims; the messages in flight finish
            if more and not stopping and len(in_flight) < window:
                want = window - len(in_flight)
                try:
                    claimed = await self.store.claim_outbox(now, want, uuid.uuid4().hex, self.daemon_id)
                except store_module.DatabaseError as exc:
                    # The claim's transaction is gone with nothing claimed. Raising would abandon the messages in
                    # flight, `sending` for as long as this daemon runs: they finish first, and the next dispatch
                    # claims again.
                    log.warning("no mail can be claimed (%s); the messages in flight finish, and the next look "
                                "claims again", _why(exc))  # fmt: skip
                    claimed, more = [], False
                else:
                    more = len(claimed) == want
                for m in claimed:
                    free_at = self.domain_caps.take(m["recipient"], now)
                    if free_at is None:
                        in_flight[asyncio.ensure_future(self._send(m))] = m
                    else:  # not an attempt: it waits for its turn
                        answered.append(SendOutcome(m["id"], False, self.domain_caps.why(m["recipient"]), free_at,
                                                    False))  # fmt: skip
                        report.held += 1
            if answered:
                continue  # the held-back messages: written, and their room in the window claimed again
            if not in_flight:
                return
            finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                answered.append(self._outcome(in_flight.pop(task), task.result(), now, report))

    def _outcome(self, m: dict[str, Any], result: mail_transport.SendResult, now: dt.datetime,
                 report: TickReport) -> SendOutcome:  # fmt: skip
        """What a transport's answer means for the message: sent, in doubt, failed for good, or tried again later."""
        cls = reply_class(result)
        if cls is not None:
            report.replies[cls] = report.replies.get(cls, 0) + 1
        if result.ok:
            report.sent += 1
            return SendOutcome(m["id"], True, result.detail)
        if result.in_doubt:
            report.in_doubt += 1
            return SendOutcome(m["id"], False, result.detail, in_doubt=True)
        if result.permanent or m["attempts"] + 1 >= self.ruleset.settings.limits.max_attempts:
            report.failed += 1
            return SendOutcome(m["id"], False, result.detail)
        report.deferred += 1
        return SendOutcome(m["id"], False, result.detail, now + self.backoff(m["attempts"]))

    async def _write(self, done: Sequence[SendOutcome], now: dt.datetime) -> None:
        """`_finish`, tried again until the database takes it. The answers are the only record of what the relay
        took: while the database refuses them (a connection ended, a full disk) they are kept and nothing more is
        claimed, and the log says why at each try."""
        pause, tries = WRITE_RETRY, 0
        while True:
            try:
                await self._finish(done, now)
            except store_module.DatabaseError as exc:
                tries += 1
                log.warning("what became of %d message(s) cannot be written (%s); nothing more is claimed until it "
                            "is; trying again in %g s", len(done), _why(exc), pause)  # fmt: skip
            else:
                if tries:
                    log.info("what became of %d message(s) is written after %d failed tries; sending goes on",
                             len(done), tries)  # fmt: skip
                return
            await asyncio.sleep(pause)
            pause = min(2 * pause, WRITE_RETRY_CAP)

    async def _finish(self, done: Sequence[SendOutcome], now: dt.datetime) -> None:
        """Write what became of claimed messages. A message that failed for good blocks its live enrollment with
        the server's reply (the engine's answer) and leaves a `send_failed` event, in the same transaction."""
        if not done:
            return
        async with self.store.finishing_sends(done, now) as tx:
            if not tx.failed:
                return
            ids = [f.enrollment_id for f in tx.failed if f.enrollment_id is not None]
            found = {row["id"]: enrolling.enrollment_of(row)
                     for row in await tx.enrollments(ids=ids, live_only=False)} if ids else {}  # fmt: skip
            ended = [e for e in found.values() if e.status is seq.Status.COMPLETED]
            live_again = {(r["sequence"], r["email"].lower()) for r in await tx.enrollments(
                emails=[e.email for e in ended], sequences=[e.sequence for e in ended])} if ended else set()  # fmt: skip
            for f in tx.failed:
                e = found.get(f.enrollment_id) if f.enrollment_id is not None else None
                reopen = e is not None and (e.sequence, e.email.lower()) not in live_again
                await recording.write(tx, events.of_failed_send(e, f.detail, reopen=reopen), now=now, source="engine")
                await tx.event(f.record_id, "send_failed", now, {"outbox": f.outbox_id, "detail": f.detail}, "engine")

    async def _send(self, m: dict[str, Any]) -> mail_transport.SendResult:
        assert self.transport is not None
        try:
            return await self.transport.send(m["sender"], [m["recipient"]], m["message"])
        except Exception as exc:  # a transport bug: try again later, never lose the message
            log.exception("the transport failed on outbox message %s", m["id"], extra={"outbox": m["id"]})
            return mail_transport.SendResult(False, detail=f"{type(exc).__name__}: {exc}")
        finally:
            self.progress()

    def backoff(self, attempts: int) -> dt.timedelta:
        """How long a message waits after its attempts-th temporary failure (0-based): 1, 2, 4 ... minutes,
        at most 6 hours, of which a random half ("equal jitter"), so that deferred messages do not return
        to a recovering relay all at once."""
        ceiling = min(2**attempts, 360) * 60.0
        return dt.timedelta(seconds=ceiling / 2 + self.rng.uniform(0, ceiling / 2))
